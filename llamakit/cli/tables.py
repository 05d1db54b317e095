"""Tables as a terminal shows them: the columns a reader compares first, with ``--wide`` for all.

pandas wraps a 22-column summary into blocks that no one can read across; the compact form keeps one
line per row at 100 characters for the demo's three variants.
"""

from __future__ import annotations

from typing import Any

# `llamakit runs`: who ran what, who answered, how it ended and what it cost.
RUNS_COMPACT = ["run_id", "name", "source", "status", "started_at", "cells_done", "credits_spent"]


def compact_summary(summary: Any) -> Any:
    """One column per scorer, ``mean [95% CI]``, then the count, errors, median latency (s) and
    credits. The full table (pass@k, consistency, tokens, ...) is ``--wide`` or ``run.summary()``."""
    import pandas as pd

    table = pd.DataFrame(index=summary.index)
    for column in ("n", "errors"):
        if column in summary.columns:
            table[column] = summary[column]
    for column in summary.columns:
        if column.startswith("score_") and column.endswith("_mean"):
            stem = column.removesuffix("_mean")
            low, high = summary.get(f"{stem}_ci_low"), summary.get(f"{stem}_ci_high")
            table[stem.removeprefix("score_")] = [
                _mean_ci(m, lo, hi)
                for m, lo, hi in zip(
                    summary[column],
                    low if low is not None else [None] * len(summary),
                    high if high is not None else [None] * len(summary),
                    strict=True,
                )
            ]
    if "latency_p50" in summary.columns:
        table["latency_p50_s"] = summary["latency_p50"].round(2)
    if "credits" in summary.columns:
        table["credits"] = summary["credits"].round(6)
    return table


def _mean_ci(mean: Any, low: Any, high: Any) -> str:
    import math

    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "-"
    if (
        low is None
        or high is None
        or any(isinstance(v, float) and math.isnan(v) for v in (low, high))
    ):
        return f"{mean:.2f}"
    return f"{mean:.2f} [{low:.2f}, {high:.2f}]"


def compact_runs(frame: Any) -> Any:
    """The runs table without balances and end times; start time to the second."""
    table = frame[[c for c in RUNS_COMPACT if c in frame.columns]].copy()
    if "started_at" in table:
        table["started_at"] = table["started_at"].dt.strftime("%Y-%m-%d %H:%M:%S")
    return table


def render(frame: Any, *, index: bool = True) -> str:
    """The whole frame as text, never wrapped into blocks nor elided with '...'."""
    import pandas as pd

    with pd.option_context("display.width", 10_000, "display.max_columns", None):
        return str(frame.to_string(index=index))
