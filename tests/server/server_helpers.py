"""Helpers shared by the server tests (imported by module name: tests/server is on sys.path)."""

from __future__ import annotations

import ssl
from functools import cache
from typing import Any

import httpx

from llamakit.server import ServerHandle

SLUG = "llama-v3-8b-instruct"
CHAT = f"/v1/{SLUG}"


def chat_body(text: str = "Tell me about the history of Rome", **params: Any) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": text}], **params}


@cache
def ssl_context() -> ssl.SSLContext:
    # Building httpx's default context (certifi) costs ~0.1 s per client; the servers are plain
    # HTTP, so one shared context keeps the many short-lived test clients cheap.
    return ssl.create_default_context()


def http(srv: ServerHandle, key: str | None = None, **kw: Any) -> httpx.Client:
    """A plain httpx client of `srv` sending `key` (default: the server's primary key)."""
    headers = {"x-api-key": key if key is not None else srv.api_key}
    kw.setdefault("timeout", 10.0)
    return httpx.Client(base_url=srv.url, headers=headers, verify=ssl_context(), **kw)
