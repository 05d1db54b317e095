"""The picture of a sequential run: each pair's confidence sequence narrowing until the stop."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover - typing only
    from matplotlib.axes import Axes


def sequential(run: Any, ax: Axes | None = None) -> Axes:
    """Bounds of each pair's difference (a - b, in the metric's units) against the items
    visited, one band per pair, with the zero line, the margin and the decision in the title.
    ``run``: a Run (``run.sequential``) or a ``SequentialReport``."""
    import matplotlib.pyplot as plt

    report = run.sequential if hasattr(run, "sequential") else run
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 3.5))
    history = None if report is None else report.history()
    if history is None or len(history) == 0:
        # Nothing to draw yet is said in words, as every plot here does.
        ax.set_title("Sequential run")
        ax.set_axis_off()
        why = "This run had no stop rule." if report is None else "No batch observed yet."
        ax.text(0.5, 0.5, why, ha="center", va="center", transform=ax.transAxes)
        return ax
    for i, (pair, rows) in enumerate(history.groupby("pair", sort=False)):
        ax.fill_between(
            rows["position"], rows["lower"], rows["upper"], step="post", alpha=0.3, color=f"C{i}"
        )
        ax.step(rows["position"], rows["lower"], where="post", color=f"C{i}", label=str(pair))
        ax.step(rows["position"], rows["upper"], where="post", color=f"C{i}")
    ax.axhline(0, color="black", linewidth=0.8)
    margin = float(report.rule.get("margin") or 0)
    if margin:
        for y in (-margin, margin):
            ax.axhline(y, color="grey", linestyle="--", linewidth=0.8)
    ax.set_xlabel("items visited")
    ax.set_ylabel(f"difference in {report.rule.get('metric')}")
    ax.set_title(
        f"{report.decision or 'undecided'}: {report.cells_done}/{report.cells_total} cells "
        f"({report.fraction_of_grid:.0%} of the grid)"
    )
    ax.legend(loc="upper right", fontsize="small")
    return ax
