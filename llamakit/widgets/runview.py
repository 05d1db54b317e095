"""RunView: a run's progress, errors and credit spend, updated live while it executes."""

from __future__ import annotations

import html
import threading
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import ipywidgets as widgets

from . import _render

if TYPE_CHECKING:  # pragma: no cover - typing only
    from ..experiment.run import Run, RunProgress

__all__ = ["RunView"]


class RunView(widgets.VBox):
    """Cells done/total, errors by class, credits spent and left for one :class:`~llamakit.Run`.

    The view subscribes to the run, so it updates after every cell while the run executes
    (``Experiment.start`` runs it in the background). Its figures are attributes
    (``done`` answered cells, ``processed`` = answered + failed, ``total``, ``errors`` by class,
    ``credits_spent``, ``credits_left``, ``finished``, ``status``), so code can assert on what
    it shows. When the run ends, ``unscored`` maps each scorer that left answered cells without
    a score to (count, first reason), shown under the errors.
    """

    def __init__(self, run: Run) -> None:
        self.run = run
        self.done = 0
        self.total = 0
        self.errors: dict[str, int] = {}
        self.credits_spent: Decimal | None = None
        self.credits_left: Decimal | None = None
        self.finished = False
        self.status = getattr(run, "status", None)
        self.updates = 0
        # Updates arrive on the runner's thread; the lock keeps one rendering at a time.
        self._lock = threading.Lock()
        self.bar = _render.classed(
            widgets.IntProgress(min=0, max=1, value=0, bar_style="info"), "llamakit-run-progress"
        )
        self.counts = _render.classed(widgets.HTML(), "llamakit-run-done")
        self.credits_label = _render.classed(widgets.HTML(), "llamakit-run-credits")
        self.errors_label = _render.classed(widgets.HTML(), "llamakit-run-errors")
        # When the run ends: per scorer, cells it left unscored and the first reason why.
        self.unscored: dict[str, tuple[int, str]] = {}
        self.unscored_label = _render.classed(widgets.HTML(), "llamakit-run-unscored")
        self.status_label = _render.classed(widgets.HTML(), "llamakit-run-status")
        self.stop_button = _render.classed(
            widgets.Button(
                description="Stop", icon="stop", tooltip="Stop after the calls in flight"
            ),
            "llamakit-run-stop",
        )
        self.stop_button.on_click(lambda _b: self.stop())
        self._unsubscribe: Any = None
        title = widgets.HTML(f"<b>{html.escape(str(getattr(run, 'name', '')))}</b>")
        super().__init__(
            children=[
                title,
                widgets.HBox([self.bar, self.counts, self.status_label, self.stop_button]),
                self.credits_label,
                self.errors_label,
                self.unscored_label,
            ]
        )
        self.add_class("llamakit-run")
        self.update(run.progress)
        if not self.finished:
            self._unsubscribe = run.subscribe(self.update)
            # The run may have finished between reading progress and subscribing.
            self.update(run.progress)

    def stop(self) -> None:
        """Ask the run to stop after the calls in flight (finished work is kept; rerun resumes)."""
        self.stop_button.disabled = True
        self.stop_button.description = "Stopping\u2026"
        self.run.stop()

    def update(self, progress: RunProgress) -> None:
        """Show ``progress`` (called by the run after each cell; safe from any thread)."""
        with self._lock:
            processed = int(progress.done) + sum(progress.errors.values())
            if (self.finished and not progress.finished) or processed < self.processed:
                return  # an older snapshot, overtaken by one the runner already delivered
            self.updates += 1
            self.total = int(progress.total)
            self.done = int(progress.done)
            self.errors = dict(progress.errors)
            self.credits_spent = progress.credits_spent
            self.credits_left = progress.credits_left
            self.finished = bool(progress.finished)
            self.status = getattr(progress, "status", None) or getattr(self.run, "status", None)
            self._render()
        if self.finished and not self.unscored_label.value:
            self._show_unscored()
        if self.finished and self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None

    @property
    def processed(self) -> int:
        """Cells with an outcome: answered (``done``) or failed (``errors``)."""
        return self.done + sum(self.errors.values())

    def _render(self) -> None:
        self.bar.max = max(self.total, 1)
        self.bar.value = min(self.processed, self.bar.max)
        n_err = sum(self.errors.values())
        if self.finished:
            self.bar.bar_style = "success" if self.done >= self.total else "danger"
        elif n_err:
            self.bar.bar_style = "warning"
        self.stop_button.layout.display = "none" if self.finished else None
        self.counts.value = f"{self.processed}/{self.total} cells \u00b7 {self.done} answered"
        self.status_label.value = f"\u00b7 {html.escape(str(self.status))}" if self.status else ""
        self.credits_label.value = (
            f"<b>Credits spent</b> {_render.credits(self.credits_spent)}"
            f" \u00b7 <b>left</b> {_render.credits(self.credits_left)}"
        )
        if n_err:
            parts = ", ".join(
                f"{html.escape(name)} \u00d7{n}" for name, n in sorted(self.errors.items())
            )
            self.errors_label.value = f"<b>Errors</b> {n_err}: {parts}"
        else:
            self.errors_label.value = "<b>Errors</b> none"

    def _show_unscored(self) -> None:
        try:
            results = self.run.results
        except Exception:  # a view must not fail over a store it cannot read
            return
        self.unscored = unscored_reasons(results)
        parts = [
            f"{html.escape(name)} \u00d7{n}: <small>{_render.text_html(reason)}</small>"
            for name, (n, reason) in sorted(self.unscored.items())
        ]
        self.unscored_label.value = (
            "<b>Unscored</b> " + "<br>".join(parts) if parts else "<b>Unscored</b> none"
        )

    def __repr__(self) -> str:
        return (
            f"RunView({getattr(self.run, 'name', '')!r}: {self.processed}/{self.total} cells, "
            f"errors={self.errors}, spent={_render.credits(self.credits_spent)})"
        )


def unscored_reasons(results: Any) -> dict[str, tuple[int, str]]:
    """Per scorer: how many answered cells it left without a score, and the first reason why
    (its ``<scorer>_reason`` column)."""
    out: dict[str, tuple[int, str]] = {}
    if "error" not in getattr(results, "columns", ()):
        return out
    answered = results[results["error"].isna()]
    for col in answered.columns:
        name = str(col).removeprefix("score_")
        if not str(col).startswith("score_") or f"{name}_reason" not in answered.columns:
            continue
        missing = answered[answered[col].isna()]
        if len(missing):
            reasons = missing[f"{name}_reason"].dropna()
            out[name] = (len(missing), str(reasons.iloc[0]) if len(reasons) else "")
    return out
