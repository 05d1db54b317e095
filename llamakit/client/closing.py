"""Closing a client that is still in use, without losing a reply.

``close()`` may come from anywhere while calls are going: another thread, a scorer or progress
callback of a run, another task. Closing the connections at once cut off requests already on the
wire: the server billed them and their replies were lost (16 billed, 8 stored), and the calls not
yet sent failed with httpx's bare ``RuntimeError``. So every request passes through the client's
``Gate`` as it is sent: once closed, the gate lets no new request through (``ClientClosedError``,
nothing sent), and ``close()`` waits for the requests already through it to finish before the
connections are closed, so their replies reach the caller (and a run stores them).

A request sent by a task on an event loop goes on only while that loop's thread runs, so a
``close()`` called on that very thread (a run's progress callback closing the sync client the
run drives on its loop) does not wait for those: it would wait them out to its limit, the loop
stopped under them. They finish once ``close()`` returns, and their connections are closed with
their loop.
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
        # Requests in flight sent by tasks, per thread running their event loop.
        self._on_loop: dict[int, int] = {}
        self.closed = False

    def check(self) -> None:
        """ClientClosedError once the client is closed."""
        if self.closed:
            raise ClientClosedError(
                "this client is closed (close() was called, or its with-block ended): no "
                "request is sent through it any more; create a new client"
            )

    @contextmanager
    def sending(self, on_loop: bool = False) -> Iterator[None]:
        """Around one request on the wire; refuses to start one once the client is closed.
        ``on_loop``: the request is sent by a task on this thread's event loop."""
        thread = threading.get_ident() if on_loop else None
        with self._cond:
            self.check()
            self._sending += 1
            if thread is not None:
                self._on_loop[thread] = self._on_loop.get(thread, 0) + 1
        try:
            yield
        finally:
            with self._cond:
                self._sending -= 1
                if thread is not None:
                    left = self._on_loop.pop(thread) - 1
                    if left:
                        self._on_loop[thread] = left
                self._cond.notify_all()

    def close(self, wait_s: float) -> bool:
        """Let no new request start, then wait up to ``wait_s`` for those on the wire to finish
        (each is bounded by the client's timeout); True when none is left."""
        here = threading.get_ident()
        with self._cond:
            self.closed = True
            # Those sent from this thread's loop cannot finish while this thread waits.
            return self._cond.wait_for(
                lambda: self._sending <= self._on_loop.get(here, 0), timeout=wait_s
            )

    async def aclose(self, wait_s: float) -> bool:
        """``close`` for an event loop: waits without blocking it (requests in flight on this
        loop must go on to finish)."""
        with self._cond:
            self.closed = True
        end = time.monotonic() + wait_s
        while self._sending and time.monotonic() < end:
            await asyncio.sleep(_POLL_S)
        return not self._sending
