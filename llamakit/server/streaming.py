"""`stream: true` on the OpenAI route: the finished completion as Server-Sent Events in OpenAI's
`chat.completion.chunk` format (https://platform.openai.com/docs/api-reference/chat-streaming).

The reply is generated, and billed, before the first event is sent: a stream is one call, billed
exactly once, and a client that hangs up halfway has still been billed (as with OpenAI). The
Segmind routes never stream (CONTRACT §5): they ignore `stream`.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

from starlette.responses import StreamingResponse

from .responses import encode_json

# Words with their leading whitespace: what a token stream looks like to a reader.
_PIECE = re.compile(r"\s*\S+|\s+")


def sse_response(
    body: Mapping[str, Any],
    *,
    include_usage: bool,
    headers: Mapping[str, str],
    first_delay_s: float = 0.0,
) -> StreamingResponse:
    """Stream the `chat.completion` `body` as chunks, then `data: [DONE]`. `first_delay_s` is the
    `slow_body_s` fault: the wait between the response headers and the first event."""
    return StreamingResponse(
        _events(body, include_usage, first_delay_s),
        media_type="text/event-stream",
        headers={"cache-control": "no-cache", **headers},
    )


def chunks(body: Mapping[str, Any], *, include_usage: bool) -> list[dict[str, Any]]:
    """The chunk objects for one completion: the role, the text piece by piece, the finish reason,
    and (when asked) a last chunk with no choices and the usage."""
    choice = body["choices"][0]
    base = {
        "id": body["id"],
        "object": "chat.completion.chunk",
        "created": body.get("created", int(time.time())),
        "model": body["model"],
    }
    extra = {"usage": None} if include_usage else {}

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {
            **base,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            **extra,
        }

    out = [chunk({"role": "assistant", "content": ""})]
    out += [chunk({"content": piece}) for piece in _PIECE.findall(choice["message"]["content"])]
    out.append(chunk({}, choice["finish_reason"]))
    if include_usage:
        out.append({**base, "choices": [], "usage": body["usage"]})
    return out


async def _events(
    body: Mapping[str, Any], include_usage: bool, first_delay_s: float
) -> AsyncIterator[bytes]:
    if first_delay_s > 0:
        await asyncio.sleep(first_delay_s)
    for item in chunks(body, include_usage=include_usage):
        yield b"data: " + encode_json(item) + b"\n\n"
    yield b"data: [DONE]\n\n"
