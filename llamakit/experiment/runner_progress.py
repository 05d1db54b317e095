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

        # smoothing=0: the rate is cells over elapsed time since `begin`, not a moving average of
        # the last few updates, which swings with every burst of `concurrency` replies.
        self._bar = tqdm(total=total, desc=desc, unit="cell", dynamic_ncols=True, smoothing=0)

    def begin(self, already: int) -> None:
        """Called once the cells finished before this session (resume) and the cache hits are
        counted and before any call is sent: they took no time, so the rate and the ETA start
        here, from the calls actually sent (else a resumed run shows a wildly short ETA)."""
        bar = self._bar
        if bar is None:
            return
        bar.n = bar.initial = bar.last_print_n = already
        bar.start_t = bar.last_print_t = bar._time()
        bar.refresh()

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
