"""The outermost ASGI layer: buffers the request body under a size cap, counts every response by
status for the admin stats, and implements the `drop` fault (closing the connection unanswered)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .stats import Stats

log = logging.getLogger("llamakit.server")

BODY_KEY = "llamakit.body"  # bytes of the request body (empty if it was too large)
BODY_SIZE_KEY = "llamakit.body_size"  # bytes received, for the 413 message
LABEL_KEY = "llamakit.key_label"  # set by the auth step, read here to count per key


class DropConnection(BaseException):
    """Raised by a handler to have the connection closed without any response. A BaseException so
    Starlette's error middleware (which catches Exception and answers 500) lets it through."""


class OuterMiddleware:
    def __init__(self, app: ASGIApp, stats: Stats, *, max_body: int, drain_limit: int) -> None:
        self.app = app
        self.stats = stats
        self.max_body = max_body
        self.drain_limit = drain_limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        body, size = await self._read_body(scope, receive)
        scope[BODY_KEY] = body if size <= self.max_body else b""
        scope[BODY_SIZE_KEY] = size
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": scope[BODY_KEY], "more_body": False}
            return await receive()

        status: list[int] = []

        async def counting_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                status.append(message["status"])
                # Counted before the client can see the response, so stats read right after a
                # call always include it.
                self.stats.record(message["status"], scope.get(LABEL_KEY))
            await send(message)

        try:
            await self.app(scope, replay, counting_send)
        except DropConnection:
            self.stats.record_drop(scope.get(LABEL_KEY))
            await _drop(send, started=bool(status))
            return
        except Exception:
            # Starlette has already answered 500 (JSON); log the bug, keep the server up.
            log.exception("unhandled error in %s %s", scope.get("method"), scope.get("path"))
            if not status:
                raise
        except BaseException as exc:
            # Past Starlette (which catches Exception), e.g. a Rust panic from a native library:
            # uvicorn answers 500 itself, so it is counted here. A cancelled task answers nothing.
            if not status and not isinstance(exc, asyncio.CancelledError):
                self.stats.record(500, scope.get(LABEL_KEY))
            raise

    async def _read_body(self, scope: Scope, receive: Receive) -> tuple[bytes, int]:
        """Read the whole body, keeping at most `max_body` bytes. Oversized bodies are drained (up
        to `drain_limit`) so the client, still sending, receives its 413 rather than a reset."""
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size <= self.max_body:
                chunks.append(chunk)
            elif chunks:
                chunks.clear()
            more = message.get("more_body", False)
            if size > self.drain_limit:
                break
        return b"".join(chunks), size


async def _drop(send: Send, *, started: bool) -> None:
    """Close the TCP connection without a response. uvicorn's `send` is a bound method of its
    request cycle, whose transport we close; we then wait until uvicorn has seen the disconnect,
    so it does not answer in our place."""
    cycle: Any = getattr(send, "__self__", None)
    transport = getattr(cycle, "transport", None)
    if transport is None or started:
        # Not uvicorn (or headers already out): abort mid-response, which also closes the socket.
        raise RuntimeError("dropped connection (fault injection)")
    transport.close()
    for _ in range(100):
        if getattr(cycle, "disconnected", True):
            return
        await asyncio.sleep(0.001)
