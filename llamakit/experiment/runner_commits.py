"""Group commit for the runner: the cells that finish while one transaction is being written are
committed together in the next one, on a dedicated writer thread.

A worker hands its reply and cell rows to ``Commits.commit`` and awaits it: the await returns
only once the transaction holding them has committed, so a cell is still durable before its
worker takes the next one. What changes is the number of transactions: at concurrency N, up to N
cells share one commit (one wait for SQLite's write lock, one WAL append) instead of one each, and
the event loop never waits for a commit. The queue is bounded by the number of workers, since each
waits for its own commit before it can add another.

When nothing is queued and the write lock is free this instant (the usual case: a commit takes
well under a millisecond, a call hundreds), the commit is written on the loop itself. Handing it
to the writer thread and being woken back costs ~40 us of CPU a round trip here (GIL hand-offs,
a self-pipe write); written on the loop, the runner spent 3-6% less CPU per call. A commit that
would have to wait for the lock (the writer thread mid-transaction, another process writing)
goes to the thread.

SQLite checkpoints the write-ahead log on the commit that takes it past 1,000 pages (~every 50
commits here), copying and syncing megabytes: on the loop that stalled every call in flight for
2-16 ms. So while a run writes, its connection does not checkpoint on commit; the writer thread
runs a passive checkpoint every ``CHECKPOINT_EVERY`` transactions instead, and the store's own
setting comes back at ``close``.

That holds while this run's connection is the store's only writer. Once another connection or
process has committed to it (SQLite's ``data_version`` moved: processes sharing a run, or a second
store object), the store's own checkpoints come back at once and every commit goes to the writer
thread, as before: passive checkpoints from one writer among several rarely let the log start
over (three processes' log grew to 79-122 MB, against 15 MB with SQLite's own checkpoints).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ..errors import StoreError
from ..store import WouldWait

Call = tuple[Mapping[str, Any] | None, Sequence[Mapping[str, Any]]]
# Transactions between checkpoints: under SQLite's 1,000-page default at this runner's ~20 pages
# per transaction (400 cells without checkpoints left a 35 MB log; with them, 2 MB).
CHECKPOINT_EVERY = 32


class Commits:
    """``await commit(reply, cells)``: ``Store.record_call``, grouped with its neighbours."""

    def __init__(self, store: Any) -> None:
        self.store = store
        self._waiting: list[tuple[Call, asyncio.Future[None]]] = []
        self._writer: asyncio.Task[None] | None = None
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="llamakit-writer")
        self._since_checkpoint = 0
        self._checkpoint: asyncio.Future[None] | None = None
        self._own_checkpoints = False
        self._others: int | None = None  # other connections' commits when this run began writing
        self._shared = False  # another connection has committed since: the store's own path

    async def commit(
        self, response: Mapping[str, Any] | None, cells: Sequence[Mapping[str, Any]]
    ) -> None:
        """Return once ``response`` (None: cells only) and ``cells`` are committed; raise the
        store's StoreError if they could not be (the replies then are in the spill file)."""
        if not self._own_checkpoints and not self._shared:
            self._own_checkpoints = True
            with contextlib.suppress(StoreError):  # a tuning: the reply below must still be kept
                self._others = self.store.version()[0]
                self.store.autocheckpoint(0)
        if not self._waiting and not self._shared:
            try:
                others: int | None = self.store.version(wait=False)[0]
            except (WouldWait, StoreError):  # the writer thread is busy, or will report it
                others = None
            if others is not None and others != self._others:
                self._share()
            elif others is not None:
                try:
                    self.store.record_calls([(response, cells)], wait=False)
                    self._committed()
                    return
                except WouldWait:
                    pass
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
                self._committed()
                for _, done in batch:
                    if not done.done():
                        done.set_result(None)

    def _share(self) -> None:
        """Another connection writes to this store too: give it back its own checkpoints (on the
        writer thread, which may wait for the connection) and stop committing on the loop."""
        self._shared = True
        asyncio.get_running_loop().run_in_executor(self._thread, self._restore_autocheckpoint)

    def _restore_autocheckpoint(self) -> None:
        if self._own_checkpoints:
            with contextlib.suppress(StoreError):
                self.store.autocheckpoint(None)
            self._own_checkpoints = False

    def _committed(self) -> None:
        if self._shared:
            return
        self._since_checkpoint += 1
        if self._since_checkpoint < CHECKPOINT_EVERY:
            return
        if self._checkpoint is not None and not self._checkpoint.done():
            return
        self._since_checkpoint = 0
        loop = asyncio.get_running_loop()
        self._checkpoint = loop.run_in_executor(self._thread, self._passive_checkpoint)

    def _passive_checkpoint(self) -> None:
        # A checkpoint that fails (the disk full) loses nothing: the commits are in the log, and
        # the next checkpoint, or the next open of the store, copies them.
        with contextlib.suppress(StoreError):
            self.store.checkpoint("PASSIVE")

    async def close(self) -> None:
        """Wait for the commits already handed over, then stop the writer thread."""
        if self._writer is not None:
            await asyncio.gather(self._writer, return_exceptions=True)
        if self._checkpoint is not None:
            await asyncio.gather(self._checkpoint, return_exceptions=True)
        self._thread.shutdown(wait=True)  # a restore handed to it (``_share``) has run
        self._restore_autocheckpoint()
