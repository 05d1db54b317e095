"""A crash that escapes Starlette (a native library's panic is a BaseException) still answers
500, keeps the server up, and is counted in the stats."""

from __future__ import annotations

import httpx
import pytest

from llamakit import tokens
from llamakit.server import local_server


class PanicException(BaseException):
    """The shape of pyo3's panics (tiktoken, tokenizers): not an Exception."""


def test_a_panic_answers_500_and_is_counted(monkeypatch: pytest.MonkeyPatch) -> None:
    def panic(messages: object) -> int:
        raise PanicException("stack overflow")

    with local_server(backend="scripted", credits=10.0) as srv:
        body = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
        url, headers = f"{srv.url}/v1/llama-v3-8b-instruct", {"x-api-key": srv.api_key}
        monkeypatch.setattr(tokens, "count_messages", panic)
        assert httpx.post(url, json=body, headers=headers, timeout=10).status_code == 500
        monkeypatch.undo()
        assert httpx.post(url, json=body, headers=headers, timeout=10).status_code == 200
        stats = srv.stats()
    assert stats["requests"].get("500") == 1 and stats["billed_calls"] == 1
