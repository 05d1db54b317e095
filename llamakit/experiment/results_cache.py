"""``run.results`` kept between reads while nothing in the store changes, within a bounded size.

``summary()``, ``compare()``, ``to_csv()`` and a notebook's repeated ``run.results`` each read the
whole table; building it (SQL, JSON, one row per cell) is most of their time. The table is kept
for the next read only while the store is unchanged: its key is the store's version (anything
committed by any connection or process changes it, ``Store.version``) with what else the table
depends on, so a cell finished by a resumed run or another process is never hidden by the cache.
Each read gets a copy, so a caller that adds a column changes nothing for the next one. A table
larger than ``MAX_CACHED_BYTES`` is not kept: memory stays bounded whatever the run's size (walk
a large run with ``run.iter_results()``).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any

# What one Run keeps at most; a larger table is built again on each read.
MAX_CACHED_BYTES = 128 * 2**20


class ResultsCache:
    """One table and the key it was built under."""

    __slots__ = ("_frame", "_key")

    def __init__(self) -> None:
        self._key: Hashable = None
        self._frame: Any = None

    def get(self, key: Hashable, build: Callable[[], Any]) -> Any:
        """A copy of the table built under ``key``, building it first if the kept one (if any)
        was built under another. ``key`` must be read before ``build`` runs: a commit made while
        the table is built then changes the next key."""
        if self._frame is not None and self._key == key:
            return self._frame.copy()
        self._key = self._frame = None
        frame = build()
        if int(frame.memory_usage(index=True, deep=True).sum()) <= MAX_CACHED_BYTES:
            self._key, self._frame = key, frame
            return frame.copy()
        return frame

    def clear(self) -> None:
        self._key = self._frame = None
