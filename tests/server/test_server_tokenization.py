"""The stand-in tokenizes each prompt once and each reply once, whatever the route or the cut.

A counting proxy stands in for the Llama 3 tokenizer inside a real server (in this process, so
the proxy is the one the server uses); every request over real HTTP must cost exactly two
encodes: the rendered prompt (at admission, reused for usage and billing) and the reply (one
encode gives both the cut at `max_tokens` and the completion count).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from llamakit import tokens
from llamakit.server import ServerHandle, local_server, tokencount
from llamakit.tokens.chat_template import render

from .server_helpers import CHAT, http

pytestmark = pytest.mark.skipif(not tokens.is_exact(), reason="needs the Llama 3 tokenizer")


class CountingTokenizer:
    """Delegates to the real tokenizer and records the text of every `encode`."""

    def __init__(self, real: Any) -> None:
        self._real = real
        self.texts: list[str] = []
        self._lock = threading.Lock()

    def encode(self, text: str, *args: Any, **kw: Any) -> Any:
        with self._lock:
            self.texts.append(text)
        return self._real.encode(text, *args, **kw)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[ServerHandle, CountingTokenizer]]:
    tokens.is_exact()  # loaded, so the proxy below is what every count uses
    proxy = CountingTokenizer(tokens._tokenizer)
    with local_server(backend="scripted", credits=1000.0) as srv:
        monkeypatch.setattr(tokens, "_tokenizer", proxy)
        yield srv, proxy


MESSAGES = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "Tell me about the history of Rome, in a few sentences."},
]
LONG = [{"role": "user", "content": "Describe the sea. " * 1500}]  # counted off the event loop


@pytest.mark.parametrize(
    ("path", "body"),
    [
        (CHAT, {"messages": MESSAGES}),
        (CHAT, {"messages": MESSAGES, "max_tokens": 1}),
        (CHAT, {"messages": MESSAGES, "max_tokens": 7}),
        (CHAT, {"messages": MESSAGES, "stop": ["."]}),
        (CHAT, {"messages": MESSAGES, "stop": ["."], "max_tokens": 3}),
        (CHAT, {"messages": MESSAGES, "response_format": {"type": "json_object"}}),
        (CHAT, {"messages": [{"role": "user", "content": "What is 17 + 25?"}], "max_tokens": 2}),
        (CHAT, {"messages": LONG, "max_tokens": 5}),
        (
            "/v1/chat/completions",
            {"model": "llama-v3-8b-instruct", "messages": MESSAGES, "max_tokens": 9},
        ),
    ],
    ids=[
        "plain",
        "cut-1",
        "cut-7",
        "stop",
        "stop-then-cut",
        "json",
        "arithmetic-cut",
        "long-prompt",
        "openai-route",
    ],
)
def test_two_encodes_per_request_and_exact_usage(
    counted: tuple[ServerHandle, CountingTokenizer], path: str, body: dict[str, Any]
) -> None:
    srv, proxy = counted
    with http(srv) as c:
        r = c.post(path, json=body)
    assert r.status_code == 200, r.text
    reply = r.json()
    content = reply["choices"][0]["message"]["content"]
    usage = reply["usage"]
    prompt = render(body["messages"])
    encoded = list(proxy.texts)
    assert len(encoded) == 2, [t[:60] for t in encoded]
    assert encoded[0] == prompt  # the prompt, once
    assert encoded[1].startswith(content)  # the reply, once, before the cut
    assert usage["prompt_tokens"] == tokens.count_messages(body["messages"])
    limit = body.get("max_tokens")
    if reply["choices"][0]["finish_reason"] == "length":
        assert usage["completion_tokens"] == limit
        assert tokens.count(content) <= limit
        assert len(content) < len(encoded[1])
    else:
        assert usage["completion_tokens"] == tokens.count(content)
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


def test_streamed_replies_tokenize_once_too(
    counted: tuple[ServerHandle, CountingTokenizer],
) -> None:
    srv, proxy = counted
    body = {
        "model": "llama-v3-8b-instruct",
        "messages": MESSAGES,
        "max_tokens": 6,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    with http(srv) as c:
        r = c.post("/v1/chat/completions", json=body)
    assert r.status_code == 200, r.text
    chunks = [
        json.loads(line[6:])
        for line in r.text.splitlines()
        if line.startswith("data: {")  # the last event is `data: [DONE]`
    ]
    assert chunks[-1]["usage"]["completion_tokens"] == 6
    assert len(proxy.texts) == 2


def test_many_requests_scale_as_two_encodes_each(
    counted: tuple[ServerHandle, CountingTokenizer],
) -> None:
    srv, proxy = counted
    n = 25
    with http(srv) as c:
        for i in range(n):
            body = {"messages": [{"role": "user", "content": f"Explain topic {i}."}]}
            assert c.post(CHAT, json={**body, "max_tokens": 4 + i % 5}).status_code == 200
    assert len(proxy.texts) == 2 * n


def test_refused_requests_tokenize_at_most_the_prompt(
    counted: tuple[ServerHandle, CountingTokenizer],
) -> None:
    srv, proxy = counted
    with http(srv) as c:
        # Over the context window: counted once, refused before any reply exists.
        huge = {"messages": [{"role": "user", "content": "word " * 9000}], "max_tokens": 10}
        assert c.post(CHAT, json=huge).status_code == 422
        assert len(proxy.texts) == 1
        # Refused before counting (a bad body): nothing tokenized.
        assert c.post(CHAT, json={"messages": "nope"}).status_code == 422
    assert len(proxy.texts) == 1


def test_server_fallback_cut_is_one_pass_and_consistent(monkeypatch: pytest.MonkeyPatch) -> None:
    # As if llamakit.tokens were missing: the built-in estimate's pieces are the tokens.
    monkeypatch.setattr(tokencount, "_tokens_module", lambda: None)
    text = "Short answer: 12345 apples, déjà vu; 🙂🙂 and more words here."
    total = tokencount.count_text(text)
    for n in range(total + 2):
        head, used, cut = tokencount.truncate_to_tokens(text, n)
        assert text.startswith(head)
        assert used == tokencount.count_text(head) <= n
        assert cut == (n < total)
        if cut:
            assert used == n or tokencount.count_text(text[: len(head) + 1]) > n
