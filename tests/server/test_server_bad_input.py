"""Bad input of every kind gets its documented status and a message naming what is wrong; none of it
crashes the server or touches the ledger."""

from __future__ import annotations

from decimal import Decimal

import pytest

from .server_helpers import CHAT, chat_body, http

BAD_BODIES = [
    # (raw body or JSON object, status, text the error must contain)
    (b"{not json", 422, "not valid JSON"),
    (b"", 422, "empty"),
    (b"\xff\xfe\x00garbage", 422, "UTF-8"),
    ('{"messages": [{"role": "user", "content": "caf\xe9"}]}'.encode("latin-1"), 422, "UTF-8"),
    (b"[1, 2, 3]", 422, "JSON object"),
    (b'"just a string"', 422, "JSON object"),
    ({}, 422, "messages"),
    ({"messages": []}, 422, "messages: must not be empty"),
    ({"messages": "hello"}, 422, "messages: must be a list"),
    ({"messages": ["hello"]}, 422, "messages[0]"),
    ({"messages": [{"role": "wizard", "content": "hi"}]}, 422, "messages[0].role"),
    ({"messages": [{"content": "hi"}]}, 422, "messages[0].role"),
    (
        {"messages": [{"role": "user", "content": "a"}, {"role": "tool", "content": "b"}]},
        422,
        "messages[1].role",
    ),
    ({"messages": [{"role": "user", "content": 42}]}, 422, "messages[0].content"),
    ({"messages": [{"role": "user"}]}, 422, "messages[0].content"),
    (
        {"messages": [{"role": "user", "content": [{"type": "image_url"}]}]},
        422,
        "messages[0].content[0]",
    ),
    ({"prompt": ""}, 422, "prompt"),
    ({"prompt": 5}, 422, "prompt"),
    (chat_body(max_tokens="ten"), 422, "max_tokens: must be an integer"),
    (chat_body(max_tokens=0), 422, "max_tokens: must be >= 1"),
    (chat_body(max_tokens=True), 422, "max_tokens"),
    (chat_body(max_tokens=10**9), 422, "8192"),
    (chat_body(temperature="hot"), 422, "temperature"),
    (chat_body(temperature=5), 422, "temperature: must be between 0 and 2"),
    (chat_body(top_p=1.5), 422, "top_p"),
    (chat_body(top_k=-1), 422, "top_k"),
    (chat_body(seed=1.5), 422, "seed"),
    (chat_body(stop=5), 422, "stop"),
    (chat_body(stop=["a", "b", "c", "d", "e"]), 422, "stop"),
    (chat_body(n=3), 422, "n"),
    (chat_body(response_format={"type": "xml"}), 422, "response_format"),
]


@pytest.mark.parametrize(("body", "status", "needle"), BAD_BODIES)
def test_bad_body(shared, body, status, needle):
    srv = shared
    billed_before, balance_before = srv.stats()["billed_calls"], srv.balance()
    with http(srv) as c:
        if isinstance(body, bytes):
            r = c.post(CHAT, content=body, headers={"content-type": "application/json"})
        else:
            r = c.post(CHAT, json=body)
        assert r.status_code == status, r.text
        assert needle in r.json()["error"]
        # The server is still fine and nothing was billed.
        assert c.post(CHAT, json=chat_body()).status_code == 200
    assert srv.stats()["billed_calls"] == billed_before + 1
    assert srv.balance() == balance_before - Decimal("0.00063")  # exact, not approx


def test_prompt_too_long_for_the_context_names_both_numbers(shared):
    long_text = "word " * 9000
    with http(shared) as c:
        r = c.post(CHAT, json=chat_body(long_text))
        r2 = c.post(CHAT, json=chat_body("short question", max_tokens=8190))
    assert r.status_code == 422
    assert "8192" in r.json()["error"]
    assert (
        r2.status_code == 422
        and "max_tokens" in r2.json()["error"]
        and "8190" in r2.json()["error"]
    )


def test_ten_megabyte_body_is_413_and_the_server_survives(shared):
    huge = b'{"messages": [{"role": "user", "content": "' + b"x" * (10 * 1024 * 1024) + b'"}]}'
    with http(shared, timeout=30.0) as c:
        r = c.post(CHAT, content=huge, headers={"content-type": "application/json"})
        assert r.status_code == 413
        assert "1048576" in r.json()["error"]
        assert c.post(CHAT, json=chat_body()).status_code == 200


def test_missing_content_type_header_is_fine_and_missing_key_is_401(shared):
    with http(shared) as c:
        r = c.post(CHAT, content=b'{"prompt": "hello"}', headers={"content-type": ""})
        assert r.status_code == 200
    with http(shared, key="") as c:
        assert c.post(CHAT, json=chat_body()).status_code == 401


def test_unknown_keys_and_stream_are_ignored(shared):
    with http(shared) as c:
        r = c.post(CHAT, json=chat_body(tools=[{"type": "function"}], stream=True, foo=1))
    assert r.status_code == 200
    assert r.json()["object"] == "chat.completion"


def test_bad_admin_bodies(shared):
    with http(shared) as c:
        assert c.post("/_llamakit/faults", json={"fail_rate": 2}).status_code == 422
        r = c.post("/_llamakit/faults", json={"bogus": 1})
        assert r.status_code == 422 and "bogus" in r.json()["error"]
        assert c.post("/_llamakit/faults", content=b"nope").status_code == 422
        assert c.post("/_llamakit/credits", json={"credits": -1}).status_code == 422
        assert c.post("/_llamakit/credits", json={"credits": "lots"}).status_code == 422
