"""The scripted backend: deterministic, rules from YAML/JSON, max_tokens and stop honoured, JSON mode."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llamakit.errors import ValidationError
from llamakit.server.backends.rules import load_rules

from .server_helpers import CHAT, chat_body, http

RULES_FILE = Path(__file__).resolve().parents[2] / "data" / "scripted_rules.yaml"


def _reply(c, text="Tell me about the history of Rome", system=None, **params) -> dict:
    messages = ([{"role": "system", "content": system}] if system else []) + [
        {"role": "user", "content": text}
    ]
    r = c.post(CHAT, json={"messages": messages, **params})
    assert r.status_code == 200, r.text
    return r.json()


def test_same_request_same_reply(shared):
    with http(shared) as c:
        a = _reply(c)
        b = _reply(c)
        other = _reply(c, "Explain how vaccines work")
        seeded = [
            _reply(c, seed=s, temperature=0.8)["choices"][0]["message"]["content"] for s in range(6)
        ]
    text = a["choices"][0]["message"]["content"]
    assert text == b["choices"][0]["message"]["content"]
    assert "history of rome" in text
    assert text != other["choices"][0]["message"]["content"]
    assert len(set(seeded)) > 1  # different seeds can give different (still deterministic) answers


def test_max_tokens_cuts_with_finish_reason_length(shared):
    with http(shared) as c:
        full = _reply(c)
        for n in (1, 5, 12):
            cut = _reply(c, max_tokens=n)
            choice = cut["choices"][0]
            assert choice["finish_reason"] == "length"
            assert cut["usage"]["completion_tokens"] <= n
            assert full["choices"][0]["message"]["content"].startswith(choice["message"]["content"])
        roomy = _reply(c, max_tokens=500)
    assert roomy["choices"][0]["finish_reason"] == "stop"
    assert roomy["choices"][0]["message"]["content"] == full["choices"][0]["message"]["content"]


def test_stop_sequences(shared):
    with http(shared) as c:
        full = _reply(c)["choices"][0]["message"]["content"]
        cut = _reply(c, stop=["."])
    assert cut["choices"][0]["message"]["content"] == full.split(".")[0]
    assert cut["choices"][0]["finish_reason"] == "stop"


def test_arithmetic_and_terse_system_prompts(shared):
    with http(shared) as c:
        assert _reply(c, "What is 17 + 25?")["choices"][0]["message"]["content"] == "17 + 25 = 42"
        terse = _reply(c, "What is 17 + 25?", system="Reply with only the number.")
        assert terse["choices"][0]["message"]["content"] == "42"
        assert _reply(c, "12 / 0")["choices"][0]["message"]["content"].endswith("division by zero.")


def test_json_modes(shared):
    schema = {
        "type": "json_schema",
        "json_schema": {
            "name": "a",
            "schema": {"properties": {"city": {"type": "string"}, "n": {"type": "integer"}}},
        },
    }
    with http(shared) as c:
        plain = json.loads(
            _reply(c, response_format={"type": "json_object"})["choices"][0]["message"]["content"]
        )
        shaped = json.loads(_reply(c, response_format=schema)["choices"][0]["message"]["content"])
    assert set(plain) == {"answer"}
    assert set(shaped) == {"city", "n"} and isinstance(shaped["n"], int)


def test_rules_file_from_data(make_server):
    srv = make_server(rules=RULES_FILE)
    with http(srv) as c:
        assert _reply(c, "What is the capital of Germany?")["choices"][0]["message"]["content"] == (
            "The capital of Germany is Berlin."
        )
        terse = _reply(c, "What is the capital of France?", system="Answer in one word.")
        assert terse["choices"][0]["message"]["content"] == "Paris"
        assert (
            _reply(c, "Sentiment of: I love this film")["choices"][0]["message"]["content"]
            == "positive"
        )
        assert _reply(c, "hello there")["choices"][0]["message"]["content"].startswith("Hello!")
        assert c.post(CHAT, json=chat_body("FAIL please")).status_code == 500


def test_rules_from_json_and_inline(make_server, tmp_path):
    path = tmp_path / "rules.json"
    path.write_text(
        json.dumps({"rules": [{"pattern": r"name is (?P<name>\w+)", "reply": "Hi {name}! ({0})"}]})
    )
    srv = make_server(rules=path)
    with http(srv) as c:
        text = _reply(c, "My name is Ada")["choices"][0]["message"]["content"]
    assert text == "Hi Ada! (name is Ada)"


@pytest.mark.parametrize(
    ("rules", "message"),
    [
        ([{"pattern": "("}], "bad regex"),
        ([{"pattern": "x"}], "needs reply"),
        ([{"pattern": "x", "reply": "y", "flags": "q"}], "unknown flag"),
        ("not a rule", r"rules: rule 0 is str 'not a rule', not a mapping"),
        ([{"pattern": "x", "reply": {"a": 1}}], "rule 0 has reply .* not text"),
        ([{"pattern": "x", "reply": "y", "repl": "z"}], "unknown key"),
        ([{"pattern": 5, "reply": "y"}], "pattern 5, which is not text"),
    ],
)
def test_bad_rules_are_rejected_with_their_position(rules, message):
    with pytest.raises(ValueError, match=message):
        load_rules(rules if isinstance(rules, list) else [rules])  # type: ignore[list-item]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "must hold a non-empty list of rules, got nothing"),
        (b"a,b\n1,2\n", "got str"),
        (b'- {pattern: "(", reply: x}\n', "rule 0 has a bad regex"),
        (b"- {pattern: ok, reply: x}\n- {pattern: x}\n", "rule 1 needs reply, replies or error"),
        (b"[1, 2]\n", "rule 0 is int 1, not a mapping"),
        (b": : :\n", "is not valid YAML/JSON"),
        (b"{a: 1}\n", "got dict"),
        (bytes(range(256)), "is not UTF-8 text"),
    ],
)
def test_a_bad_rules_file_is_one_validation_error_naming_file_rule_and_fix(
    tmp_path, content, message
):
    path = tmp_path / "rules.yaml"
    path.write_bytes(content)
    with pytest.raises(ValidationError, match=message) as info:
        load_rules(path)
    assert f"rules file {path}" in str(info.value) and "such as - {pattern:" in str(info.value)
    assert info.value.field == "rules"


def test_local_server_refuses_a_bad_rules_file_before_starting(tmp_path):
    import llamakit as lk

    path = tmp_path / "rules.yaml"
    path.write_bytes(b"\xff\xfe binary")
    with pytest.raises(ValidationError, match="is not UTF-8 text"):
        lk.local_server("scripted", rules=path)
    with pytest.raises(ValidationError, match="rule 0 has a bad regex"):
        lk.local_server("scripted", rules=[{"pattern": "(", "reply": "x"}])


def test_a_number_reply_is_its_text():
    (rule,) = load_rules([{"pattern": "x", "reply": 42}])
    assert rule.replies == ("42",)


def test_works_without_llamakit_tokens(shared, monkeypatch):
    from llamakit.server import tokencount

    # As if llamakit.tokens were missing or broken: counts fall back to the built-in estimate.
    monkeypatch.setattr(tokencount, "_tokens_module", lambda: None)
    assert not tokencount.have_llama3_counts()
    with http(shared) as c:
        cut = _reply(c, max_tokens=4)
    assert cut["choices"][0]["finish_reason"] == "length"
    assert cut["usage"]["completion_tokens"] <= 4
    assert tokencount.count_text(cut["choices"][0]["message"]["content"]) <= 4
    assert tokencount.count_messages([{"role": "user", "content": "hi"}]) == 1 + (1 + 5) + 4


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
def test_a_reply_utf8_cannot_hold_is_sent_escaped_and_billed_once(make_server, stream):
    # A lone surrogate in generated text: Starlette's UTF-8 renderer would raise after the ledger
    # was debited, so the caller got a 500 for a billed call and every retry paid again.
    srv = make_server(rules=[{"pattern": "surrogate", "reply": "bad \ud800 reply"}], credits=1.0)
    route = "/v1/chat/completions" if stream else CHAT
    extra = {"stream": True, "model": "llama-v3-8b-instruct"} if stream else {}
    body = {**chat_body("a surrogate please"), **extra}
    with http(srv) as c:
        resp = c.post(route, json=body)
    assert resp.status_code == 200
    if stream:
        chunks = [
            json.loads(line.removeprefix("data: "))
            for line in resp.text.splitlines()
            if line.startswith("data: {")
        ]
        text = "".join(
            ch["choices"][0]["delta"].get("content") or "" for ch in chunks if ch["choices"]
        )
        assert text == "bad \ud800 reply"  # sent as JSON escapes, decoded to the same text
    else:
        assert json.loads(resp.content)["choices"][0]["message"]["content"] == "bad \ud800 reply"
    assert srv.stats()["billed_calls"] == 1 and srv.stats()["requests"].get("500", 0) == 0
