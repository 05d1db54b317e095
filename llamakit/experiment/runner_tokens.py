"""Local prompt token counts for a run's cells. They are informative, and loading the tokenizer
takes seconds: they are counted on a side thread and written into the cells when the run ends."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from .cells import Cell


class LocalTokenCounts:
    """One count per (variant, item): every cell of a pair sends the same prompt."""

    def __init__(self, count: Callable[[Cell], int | None]) -> None:
        self._count = count
        self._counts: dict[tuple[str, str], int | None] = {}
        self._thread: threading.Thread | None = None

    def start(self, cells: Iterable[Cell]) -> None:
        firsts = {(c.variant, c.item_id): c for c in cells}

        def count() -> None:
            for key, cell in firsts.items():
                self._counts[key] = self._count(cell)

        self._thread = threading.Thread(target=count, name="llamakit-tokens", daemon=True)
        self._thread.start()

    def get(self, cell: Cell) -> int | None:
        """The count if it is ready; a cell recorded before then is filled in by ``backfill``."""
        return self._counts.get((cell.variant, cell.item_id))

    def backfill(self, store: Any, run_id: str, cells: Sequence[Cell]) -> None:
        if self._thread is None:
            return
        self._thread.join(timeout=120)
        updates = [(n, run_id, c.cell_id) for c in cells if (n := self.get(c)) is not None]
        store.set_local_tokens(updates)
