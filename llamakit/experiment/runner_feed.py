"""What keeps the runner's memory flat in the number of cells: the cells still to send are
generated again for the second pass (``Ordinals`` remembers which, one bit per cell) and handed
to the workers a chunk at a time (``CellFeed``), never held as a list.

Split from ``runner`` to keep each module readable at once.
"""

from __future__ import annotations

import itertools
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from .cells import Cell

# Cells generated, looked up in the store and queued at a time.
FEED_CHUNK = 2000
# The queue is topped up when it runs this low, so that claiming ahead sees the next cells.
LOW_WATER = 64


class Ordinals:
    """A set of cell ordinals below ``size``, one bit each (200,000 cells: 25 kB)."""

    def __init__(self, size: int) -> None:
        self._bits = bytearray((size + 7) // 8)
        self.count = 0

    def add(self, ordinal: int) -> None:
        byte, bit = divmod(ordinal, 8)
        if not self._bits[byte] >> bit & 1:
            self._bits[byte] |= 1 << bit
            self.count += 1

    def __contains__(self, ordinal: int) -> bool:
        byte, bit = divmod(ordinal, 8)
        return byte < len(self._bits) and bool(self._bits[byte] >> bit & 1)


def done_among(store: Any, run_id: str, cells: Sequence[Cell]) -> set[str]:
    """The ids of ``cells`` that run ``run_id`` has done (one query per 500: SQLite's bound on
    parameters)."""
    done: set[str] = set()
    for start in range(0, len(cells), 500):
        ids = tuple(c.cell_id for c in cells[start : start + 500])
        where = f"status = 'done' AND cell_id IN ({','.join('?' * len(ids))})"
        done.update(r["cell_id"] for r in store.cell_rows(run_id, where, ids, columns="cell_id"))
    return done


class CellFeed:
    """The workers' queue: cells from ``cells``, a chunk at a time, minus those the run has done
    meanwhile (another process sharing the run did them: ``on_done`` counts them). With
    ``preload`` (a run with judges, whose cached cells still go through the workers) the cached
    replies of a chunk are put in ``cache`` with it, and each is dropped once the last of its
    queued cells ``release``s it. Cells another process is paying for (``deferred``) go back
    into the queue at each top-up, then wait for the end."""

    def __init__(
        self,
        cells: Iterable[Cell],
        *,
        store: Any = None,
        run_id: str = "",
        on_done: Callable[[int], None] = lambda n: None,
        preload: dict[str, dict[str, Any]] | None = None,
    ) -> None:
        self._stream: Iterator[Cell] | None = iter(cells)
        self._store = store
        self._run_id = run_id
        self._on_done = on_done
        self._cache = preload
        self._refs: Counter[str] = Counter()
        self.queue: deque[Cell] = deque()
        self.deferred: list[Cell] = []
        if store is None:  # a given batch (a sequential run's): queued as is
            self.queue.extend(self._stream)
            self._stream = None

    @property
    def exhausted(self) -> bool:
        """No cell left to generate, queued or deferred."""
        return self._stream is None and not self.queue and not self.deferred

    def take(self) -> Cell | None:
        """The next cell to send; None when the queue and the stream are empty (deferred cells
        may remain: the caller waits, then ``requeue``s them)."""
        if len(self.queue) <= LOW_WATER:
            self._top_up()
        return self.queue.popleft() if self.queue else None

    def ahead(self, n: int) -> Iterator[Cell]:
        """The next ``n`` cells queued (for claiming them in one transaction)."""
        return itertools.islice(self.queue, n)

    def requeue(self) -> None:
        self.queue.extend(self.deferred)
        self.deferred.clear()

    def release(self, key: str) -> None:
        """A queued cell with a preloaded reply is done with it."""
        if self._cache is None or key not in self._refs:
            return
        self._refs[key] -= 1
        if self._refs[key] <= 0:
            del self._refs[key]
            self._cache.pop(key, None)

    def preloaded(self, key: str) -> bool:
        return key in self._refs

    def _top_up(self) -> None:
        while self._stream is not None and len(self.queue) <= LOW_WATER:
            chunk = list(itertools.islice(self._stream, FEED_CHUNK))
            if not chunk:
                self._stream = None
                break
            done = done_among(self._store, self._run_id, chunk)
            if done:
                self._on_done(len(done))
                chunk = [c for c in chunk if c.cell_id not in done]
            if self._cache is not None:
                found = self._store.cached_responses(c.cell_key for c in chunk)
                for cell in chunk:
                    row = found.get(cell.cell_key)
                    if row is not None:
                        self._cache[cell.cell_key] = row
                        self._refs[cell.cell_key] += 1
            self.queue.extend(chunk)
            self.requeue()
