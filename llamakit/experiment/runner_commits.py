"""Group commit for the runner: the cells that finish while one transaction is being written are
committed together in the next one, on a dedicated writer thread.

A worker hands its reply and cell rows to ``Commits.commit`` and awaits it: the await returns
only once the transaction holding them has committed, so a cell is still durable before its
worker takes the next one. What changes is the number of transactions: at concurrency N, up to N
cells share one commit (one wait for SQLite's write lock, one WAL append) instead of one each, and
the event loop never blocks on a commit. The queue is bounded by the number of workers, since each
waits for its own commit before it can add another.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

Call = tuple[Mapping[str, Any] | None, Sequence[Mapping[str, Any]]]


class Commits:
    """``await commit(reply, cells)``: ``Store.record_call``, grouped with its neighbours."""

    def __init__(self, store: Any) -> None:
        self.store = store
        self._waiting: list[tuple[Call, asyncio.Future[None]]] = []
        self._writer: asyncio.Task[None] | None = None
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="llamakit-writer")

    async def commit(
        self, response: Mapping[str, Any] | None, cells: Sequence[Mapping[str, Any]]
    ) -> None:
        """Return once ``response`` (None: cells only) and ``cells`` are committed; raise the
        store's StoreError if they could not be (the replies then are in the spill file)."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append(((response, cells), done))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write())
        await asyncio.shield(done)  # a cancelled worker must not cancel its neighbours' commit

    async def _write(self) -> None:
        loop = asyncio.get_running_loop()
        while self._waiting:
            batch, self._waiting = self._waiting, []
            try:
                await loop.run_in_executor(
                    self._thread, self.store.record_calls, [call for call, _ in batch]
                )
            except BaseException as exc:  # StoreError, or this task cancelled mid-write
                for _, done in batch:
                    if not done.done():
                        done.set_exception(exc)
                        done.add_done_callback(lambda f: f.exception())
                if not isinstance(exc, Exception):
                    raise
            else:
                for _, done in batch:
                    if not done.done():
                        done.set_result(None)

    async def close(self) -> None:
        """Wait for the commits already handed over, then stop the writer thread."""
        if self._writer is not None:
            await asyncio.gather(self._writer, return_exceptions=True)
        self._thread.shutdown(wait=True)
