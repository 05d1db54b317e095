"""JSON responses: the error shape `{"error": "..."}`, the chat.completion body, slow bodies."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Mapping
from typing import Any

from starlette.responses import JSONResponse
from starlette.types import Receive, Scope, Send

from .backends.base import Generation

# Suggested wording from CONTRACT §4.3 (Segmind's exact strings are unknown).
MESSAGES = {
    401: "User authentication failed: missing or unknown API key (send it as x-api-key)",
    404: "The requested URL does not exist",
    405: "The requested HTTP method is not allowed",
    406: "Not enough credits",
    413: "Request body too large",
    429: "Rate limit exceeded",
    500: "Server had some issue with processing",
}


class ApiError(Exception):
    """Raised anywhere in a handler; rendered as `{"error": message}` with `status`."""

    def __init__(
        self, status: int, message: str | None = None, headers: Mapping[str, str] | None = None
    ):
        super().__init__(message or MESSAGES.get(status, "Error"))
        self.status = status
        self.message = message or MESSAGES.get(status, "Error")
        self.headers = dict(headers or {})


def error_response(
    status: int, message: str, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=dict(headers or {}))


def encode_json(content: Any) -> bytes:
    """Compact JSON as UTF-8, as Starlette renders it; text UTF-8 cannot hold (a lone surrogate
    in a reply) is written as JSON ``\\uXXXX`` escapes instead, which decode to the same text.

    Why: the reply of a billed call must always be sendable. Starlette's renderer raises
    UnicodeEncodeError on such text *after* the ledger was debited, turning a paid 200 into a 500
    that every retry pays for again."""
    try:
        return json.dumps(
            content, ensure_ascii=False, allow_nan=False, separators=(",", ":")
        ).encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(
            content, ensure_ascii=True, allow_nan=False, separators=(",", ":")
        ).encode("ascii")


class DelayedJSONResponse(JSONResponse):
    """The reply of a billed call: rendered by `encode_json`; sends the headers, waits
    `body_delay_s`, then sends the body (the `slow_body_s` fault)."""

    def render(self, content: Any) -> bytes:
        return encode_json(content)

    def __init__(self, content: Any, *, body_delay_s: float = 0.0, **kw: Any) -> None:
        super().__init__(content, **kw)
        self.body_delay_s = body_delay_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.body_delay_s <= 0:
            await super().__call__(scope, receive, send)
            return
        await send(
            {"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers}
        )
        await asyncio.sleep(self.body_delay_s)
        await send({"type": "http.response.body", "body": self.body})


def new_request_id() -> str:
    return str(uuid.uuid4())


def completion_body(
    gen: Generation, *, prompt_tokens: int, model: str, request_id: str
) -> dict[str, Any]:
    """The OpenAI `chat.completion` object of CONTRACT §3. `prompt_tokens` is the billed count
    (`gen.prompt_tokens`, or the server's own when the backend has none)."""
    usage: dict[str, Any] = {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": gen.completion_tokens,
        "total_tokens": prompt_tokens + gen.completion_tokens,
        **gen.usage_extras,
    }
    return {
        "id": request_id,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": gen.text},
                "finish_reason": gen.finish_reason,
            }
        ],
        "usage": usage,
    }
