"""Run a coroutine from sync code, also from inside a running event loop (a Jupyter cell)."""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` to completion and return its result (or raise its exception).

    With no loop running in this thread it is ``asyncio.run``. Inside a running loop (Jupyter),
    ``asyncio.run`` would refuse, so the coroutine runs on a fresh loop in a worker thread while
    this thread waits: the cell blocks as a sync call should. The coroutine must therefore not
    need objects bound to the outer loop.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    context = contextvars.copy_context()
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="llamakit-run-sync") as pool:
        return pool.submit(context.run, asyncio.run, coro).result()
