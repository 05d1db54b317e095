"""The report's figures: matplotlib drawn off-screen (no pyplot state), inlined as data URIs.

An SVG inside ``<img src="data:image/svg+xml;base64,...">`` keeps its vector sharpness but is not
part of the page's DOM, so no text from a run (variant or run names) can become markup there.
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any


@dataclass(frozen=True)
class Interval:
    """One condition's mean score with its 95% interval (NaN when the summary has none)."""

    label: str
    mean: float
    low: float
    high: float


def _data_uri(figure: Any) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="svg", bbox_inches="tight", metadata={"Date": None})
    return "data:image/svg+xml;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _figure(rows: int, width: float = 7.0) -> Any:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, max(1.6, 0.38 * rows + 1.0)))


def scores_figure(metric: str, intervals: Sequence[Interval]) -> str:
    """Mean ``metric`` per condition with its 95% CI as error bars; a data URI."""
    figure = _figure(len(intervals))
    ax = figure.add_subplot()
    ys = list(range(len(intervals)))[::-1]
    for y, item in zip(ys, intervals, strict=True):
        if math.isnan(item.mean):
            continue
        low = item.mean - item.low if not math.isnan(item.low) else 0.0
        high = item.high - item.mean if not math.isnan(item.high) else 0.0
        ax.errorbar(item.mean, y, xerr=[[low], [high]], fmt="o", color="C0", capsize=4)
    ax.set_yticks(ys, [i.label for i in intervals])
    ax.set_xlabel(f"{metric}: mean and 95% CI (bootstrap over items)")
    ax.grid(axis="x", alpha=0.3)
    return _data_uri(figure)


def credits_figure(labels: Sequence[str], credits: Sequence[Decimal]) -> str:
    """Credits (USD) per condition as horizontal bars; a data URI."""
    figure = _figure(len(labels))
    ax = figure.add_subplot()
    ys = list(range(len(labels)))[::-1]
    ax.barh(ys, [float(c) for c in credits], color="C2")
    for y, value in zip(ys, credits, strict=True):
        ax.annotate(f" {value}", (float(value), y), va="center", fontsize=8)
    ax.set_yticks(ys, list(labels))
    ax.set_xlabel("credits (USD) per condition")
    ax.margins(x=0.25)
    return _data_uri(figure)
