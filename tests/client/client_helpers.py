"""Helpers of the client tests: a fast retry policy, canned replies, mock routing."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx

from llamakit.client.client import AsyncClient
from llamakit.client.retry import RetryPolicy

# Retries in tests wait milliseconds, not seconds: the policy's decisions are tested on their own.
FAST = RetryPolicy(max_retries=4, base_delay=0.002, max_delay=0.02)

MOCK_URL = "http://api.test/v1"
MOCK_KEY = "SG_mocktestkey0001"

CHAT_OK: dict[str, Any] = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "created": 1727000000,
    "model": "llama-v3-8b-instruct",
    "choices": [
        {"index": 0, "message": {"role": "assistant", "content": "hello"}, "finish_reason": "stop"}
    ],
    "usage": {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6},
}

Handler = Callable[[httpx.Request], httpx.Response]


def json_reply(body: Any, status: int = 200, **headers: str) -> httpx.Response:
    return httpx.Response(
        status,
        content=json.dumps(body).encode(),
        headers={"content-type": "application/json", **headers},
    )


def routed(chat: Handler, balance: float = 1.0) -> Handler:
    """A mock server: the balance endpoint answers ``balance``; all else goes to ``chat``."""

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/get-user-credits"):
            return json_reply({"credits": balance, "free-credits": 0.0})
        return chat(request)

    return handler


def make_async_mock(chat: Handler, **kw: Any) -> AsyncClient:
    kw.setdefault("retry_policy", FAST)
    kw.setdefault("check_context", False)
    return AsyncClient(
        MOCK_KEY, base_url=MOCK_URL, transport=httpx.MockTransport(routed(chat)), **kw
    )


def settled_stats(
    server: Any, predicate: Callable[[dict[str, Any]], bool], timeout: float = 3.0
) -> dict[str, Any]:
    """The server's stats once ``predicate`` holds (or the last stats after ``timeout``).

    The server counts a response after it has sent it, so the very last reply can reach the client
    a moment before it shows up in the stats; this waits for that moment, it does not measure time.
    """
    import time

    deadline = time.monotonic() + timeout
    stats = server.stats()
    while not predicate(stats) and time.monotonic() < deadline:
        time.sleep(0.01)
        stats = server.stats()
    return stats
