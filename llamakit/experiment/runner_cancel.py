"""Cancellation helpers for the runner. A run's task cancelled (Ctrl-C under ``asyncio.run``,
``task.cancel()``, a ``wait_for`` timeout) must not abandon what the server has billed: the
runner waits for its workers instead of cancelling them (``Runner._drain``), and commits their
replies and ends the session even if cancelled again meanwhile (``shielded``). Only a second
cancellation while it waits for calls on the wire abandons them (``cancel_all``), and says so.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Sequence
from typing import Any


async def cancel_all(tasks: Sequence[asyncio.Task[Any]]) -> None:
    """Cancel ``tasks`` and wait until each has ended."""
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def shielded(coro: Coroutine[Any, Any, None]) -> None:
    """Await ``coro`` to its end even if this task is cancelled meanwhile; the cancellation is
    raised afterwards."""
    inner = asyncio.ensure_future(coro)
    cancelled: BaseException | None = None
    while not inner.done():
        try:
            await asyncio.shield(inner)
        except (asyncio.CancelledError, KeyboardInterrupt) as exc:
            if inner.done():
                break
            cancelled = exc
    inner.result()
    if cancelled is not None:
        raise cancelled
