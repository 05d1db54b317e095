"""The run's progress bar: a tqdm bar fed the same snapshots that ``Run.subscribe`` gets."""

from __future__ import annotations

from typing import Any

from .run import RunProgress


class ProgressBar:
    """Does nothing until ``open``: a run with ``progress=False`` shows no bar."""

    def __init__(self) -> None:
        self._bar: Any = None

    def open(self, *, total: int, desc: str) -> None:
        from tqdm.auto import tqdm

        self._bar = tqdm(total=total, desc=desc, unit="cell", dynamic_ncols=True)

    def show(self, snapshot: RunProgress) -> None:
        if self._bar is None:
            return
        error_count = snapshot.error_count
        postfix = {"errors": error_count, "credits": f"{snapshot.credits_spent:.5f}"}
        if snapshot.credits_left is not None:
            postfix["left"] = f"{snapshot.credits_left:.4f}"
        self._bar.set_postfix(postfix, refresh=False)
        # update() redraws at most every mininterval: a CI log gets a few lines, not one per cell
        self._bar.update(snapshot.done + error_count - self._bar.n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.refresh()
            self._bar.close()
