"""One AsyncClient, many event loops: a connection pool per loop, closed as its loop shuts down."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx


class PerLoop:
    """An ``httpx.AsyncClient`` (and a lock) per event loop. Connections belong to the loop that
    opened them, so one AsyncClient used by two successive ``asyncio.run()`` calls, or by a
    worker thread's loop (a sync ``exp.run`` inside Jupyter), needs a pool for each loop.

    Each pool is closed while its loop still runs: an async generator is parked on the loop, and
    ``asyncio.run`` (``loop.shutdown_asyncgens``) closes it before closing the loop; its
    ``finally`` closes the pool. Loops closed without that step leave their pool to the GC.
    """

    def __init__(self, make: Callable[[], httpx.AsyncClient]) -> None:
        self._make = make
        self._lock = threading.Lock()
        self._loops: dict[asyncio.AbstractEventLoop, tuple[Any, ...]] = {}

    async def get(self) -> tuple[httpx.AsyncClient, asyncio.Lock]:
        loop = asyncio.get_running_loop()
        with self._lock:
            for old in [lp for lp in self._loops if lp.is_closed()]:
                del self._loops[old]
            entry = self._loops.get(loop)
        if entry is None:
            http, lock = self._make(), asyncio.Lock()
            guard = _close_at_loop_shutdown(http, lambda: self._forget(loop))
            await guard.__anext__()  # registers the generator with the loop's shutdown hooks
            entry = (http, lock, guard)
            with self._lock:
                self._loops[loop] = entry
        return entry[0], entry[1]

    def _forget(self, loop: asyncio.AbstractEventLoop) -> None:
        with self._lock:
            self._loops.pop(loop, None)

    async def close_current(self) -> None:
        loop = asyncio.get_running_loop()
        with self._lock:
            entry = self._loops.pop(loop, None)
        if entry is not None:
            await entry[2].aclose()

    def close_all_soon(self, drained: Callable[[], Awaitable[object]]) -> None:
        """Close every loop's pool from sync code, on its own loop (a pool can only be closed
        there), once ``drained()`` returns: the requests on the wire have finished (closing
        their connections under them would lose paid replies). A loop in another thread or in
        this one (a notebook's, running the cell that called this) does so as soon as it next
        runs; a closed loop's pool went with it."""
        with self._lock:
            entries, self._loops = list(self._loops.items()), {}
        for loop, (_, _, guard) in entries:
            if not loop.is_closed():
                with contextlib.suppress(RuntimeError):  # closed since the check
                    loop.call_soon_threadsafe(_close_on, loop, drained, guard)


# Closing tasks in flight (the loop keeps only a weak reference to a task).
_CLOSING: set[asyncio.Task[None]] = set()


def _close_on(
    loop: asyncio.AbstractEventLoop, drained: Callable[[], Awaitable[object]], guard: Any
) -> None:
    async def close() -> None:
        await drained()
        await guard.aclose()

    task = loop.create_task(close())
    _CLOSING.add(task)
    task.add_done_callback(_CLOSING.discard)


async def _close_at_loop_shutdown(
    http: httpx.AsyncClient, forget: Callable[[], None]
) -> AsyncIterator[None]:
    try:
        yield
    finally:
        forget()
        await http.aclose()
