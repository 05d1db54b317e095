"""Tables as a terminal shows them: the columns a reader compares first, with ``--wide`` for all.

pandas wraps a 22-column summary into blocks that no one can read across; the compact form keeps one
line per row at 100 characters for the demo's three variants.
"""

from __future__ import annotations

from typing import Any

# `llamakit runs`: who ran what, who answered, how it ended and what it cost.
RUNS_COMPACT = ["run_id", "name", "source", "status", "started_at", "cells_done", "credits_spent"]


def compact_summary(summary: Any) -> Any:
    """Score means with their 95% CI, the count, errors, median latency and credits; ``score_``
    dropped from the names."""
    keep = [c for c in ("n", "errors") if c in summary.columns]
    for column in summary.columns:
        if column.startswith("score_") and column.endswith(("_mean", "_ci_low", "_ci_high")):
            keep.append(column)
    keep += [c for c in ("latency_p50", "credits") if c in summary.columns]
    table = summary[keep].copy()
    table.columns = [c.removeprefix("score_") for c in keep]
    return table.round(4)


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
