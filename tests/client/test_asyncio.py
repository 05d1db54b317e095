"""run_sync: from plain sync code and from inside a running loop (as in Jupyter)."""

from __future__ import annotations

import asyncio
import threading

import pytest

from llamakit.client.loop import run_sync


async def where() -> str:
    await asyncio.sleep(0)
    return threading.current_thread().name


async def boom() -> None:
    raise KeyError("inner")


def test_without_a_loop_runs_here() -> None:
    assert run_sync(where()) == threading.current_thread().name


def test_inside_a_running_loop_runs_on_a_worker_thread() -> None:
    async def cell() -> str:
        return run_sync(where())  # a sync call made from a notebook cell

    assert asyncio.run(cell()).startswith("llamakit-run-sync")


def test_exceptions_propagate_from_both_paths() -> None:
    with pytest.raises(KeyError, match="inner"):
        run_sync(boom())

    async def cell() -> None:
        run_sync(boom())

    with pytest.raises(KeyError, match="inner"):
        asyncio.run(cell())
