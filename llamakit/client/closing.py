"""Closing a client that is still in use, without losing a reply.

``close()`` may come from anywhere while calls are going: another thread, a scorer or progress
callback of a run, another task. Closing the connections at once cut off requests already on the
wire: the server billed them and their replies were lost (16 billed, 8 stored), and the calls not
yet sent failed with httpx's bare ``RuntimeError``. So every request passes through the client's
``Gate`` as it is sent: once closed, the gate lets no new request through (``ClientClosedError``,
nothing sent), and ``close()`` waits for the requests already through it to finish before the
connections are closed, so their replies reach the caller (and a run stores them).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from ..errors import ClientClosedError

# How long close() waits beyond the client's timeout for the requests on the wire (each attempt is
# bounded by that timeout as a whole, see ``transport``), before closing their connections anyway.
CLOSE_GRACE_S = 1.0
# How often an async close() looks again whether the requests in flight have finished (s).
_POLL_S = 0.005


class Gate:
    """The requests of one client on the wire now, and whether new ones may start."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._sending = 0
        self.closed = False

    def check(self) -> None:
        """ClientClosedError once the client is closed."""
        if self.closed:
            raise ClientClosedError(
                "this client is closed (close() was called, or its with-block ended): no "
                "request is sent through it any more; create a new client"
            )

    @contextmanager
    def sending(self) -> Iterator[None]:
        """Around one request on the wire; refuses to start one once the client is closed."""
        with self._cond:
            self.check()
            self._sending += 1
        try:
            yield
        finally:
            with self._cond:
                self._sending -= 1
                if not self._sending:
                    self._cond.notify_all()

    def close(self, wait_s: float) -> bool:
        """Let no new request start, then wait up to ``wait_s`` for those on the wire to finish
        (each is bounded by the client's timeout); True when none is left."""
        with self._cond:
            self.closed = True
            return self._cond.wait_for(lambda: not self._sending, timeout=wait_s)

    async def aclose(self, wait_s: float) -> bool:
        """``close`` for an event loop: waits without blocking it (requests in flight on this
        loop must go on to finish)."""
        with self._cond:
            self.closed = True
        end = time.monotonic() + wait_s
        while self._sending and time.monotonic() < end:
            await asyncio.sleep(_POLL_S)
        return not self._sending
