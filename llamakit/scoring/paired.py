"""Paired comparison of two sets of cells on the items they share: the one statistic behind
``run.compare`` (two conditions of one run), ``llamakit.compare`` (two runs) and the regression
gate.

Each side's repeats are averaged per item first (repeats of one item are not independent
evidence), then only items with a value on both sides count. The difference ``a - b`` gets an
item-bootstrap percentile interval (``resample.cluster_bootstrap``) and a paired sign-flip
permutation p-value (``resample.sign_flip_p_value``); each side's price is the mean credits (USD)
its calls cost per paired item, so "is B as good as A at a tenth of the price?" reads off one
result.
"""

from __future__ import annotations

import html
import math
import zlib
from dataclasses import asdict, dataclass
from decimal import Decimal
from typing import Any

import numpy as np
import pandas as pd

from ..client.credits import to_credits
from ..errors import ValidationError
from .resample import CI_LEVEL, cluster_bootstrap, percentile_ci, sign_flip_p_value

# Item means closer than this count as a tie; scores are fractions, so this is far below noise.
_TIE_TOLERANCE = 1e-12


@dataclass(frozen=True)
class Comparison:
    """A paired comparison of ``a`` and ``b`` on ``metric`` over the items both have.

    ``mean_a``/``mean_b`` average each item's repeats first, then the items; ``diff`` is the mean
    of per-item differences (a - b) with a ``ci_level`` bootstrap interval over items
    (``ci_low``, ``ci_high``); ``p_value`` is a two-sided paired sign-flip permutation test
    (``p_method``: "exact" enumerates every sign pattern, "monte_carlo" samples them). ``wins``:
    items where a's value is higher. ``credits_a``/``credits_b``: mean credits (USD, exact) the
    calls of each side cost per paired item, all its repeats together (None when unknown).
    ``margin``: the non-inferiority margin; ``noninferior`` is True when the whole interval of
    a - b lies below it, that is b is at most ``margin`` worse than a (for a metric where
    higher is better). ``unscored_a``/``unscored_b``: each side's share (0..1) of successful
    cells with no value (set by ``stats.paired_compare``).
    """

    a: str
    b: str
    metric: str
    n_items: int
    mean_a: float
    mean_b: float
    diff: float
    ci_low: float
    ci_high: float
    p_value: float
    wins: int
    losses: int
    ties: int
    p_method: str = "exact"
    credits_a: Decimal | None = None
    credits_b: Decimal | None = None
    margin: float = 0.0
    ci_level: float = CI_LEVEL
    unscored_a: float = 0.0
    unscored_b: float = 0.0

    @property
    def noninferior(self) -> bool:
        """b is no worse than a by more than ``margin`` (the interval's top is below it)."""
        return self.ci_high < self.margin

    @property
    def cost_ratio(self) -> float | None:
        """credits_b / credits_a (0.1: b costs a tenth of a per item); None when unknown."""
        if self.credits_a is None or self.credits_b is None or self.credits_a == 0:
            return None
        return float(self.credits_b / self.credits_a)

    def to_frame(self) -> pd.DataFrame:
        """One row (indexed "a - b") with a column per field: easy to concat several comparisons."""
        row = {**asdict(self), "noninferior": self.noninferior, "cost_ratio": self.cost_ratio}
        return pd.DataFrame([row], index=[f"{self.a} - {self.b}"])

    def __str__(self) -> str:
        level = f"{self.ci_level:.0%}"
        text = (
            f"{self.a} - {self.b} on {self.metric}: {self.diff:+.4g} "
            f"({level} CI {self.ci_low:+.4g} to {self.ci_high:+.4g}, p = {self.p_value:.3g}, "
            f"{self.n_items} items; wins/losses/ties {self.wins}/{self.losses}/{self.ties})"
        )
        if self.credits_a is not None and self.credits_b is not None:
            ratio = self.cost_ratio
            shown = f", b/a {ratio:.3g}x" if ratio is not None else ""
            text += (
                f"; credits per item a {_credits(self.credits_a)}, "
                f"b {_credits(self.credits_b)}{shown}"
            )
        if self.margin:
            verdict = "non-inferior" if self.noninferior else "not shown non-inferior"
            text += f"; b is {verdict} within margin {self.margin:g}"
        return text

    def _repr_html_(self) -> str:
        fields = {**asdict(self), "noninferior": self.noninferior, "cost_ratio": self.cost_ratio}
        cells = "".join(
            f"<tr><th style='text-align:left'>{html.escape(str(k))}</th>"
            f"<td style='text-align:right'>{html.escape(_fmt(v))}</td></tr>"
            for k, v in fields.items()
        )
        return f"<table><caption>{html.escape(str(self))}</caption>{cells}</table>"


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _credits(value: Decimal) -> str:
    return f"{value:.3g}" if value else "0"


def check_margin(margin: Any) -> float:
    if (
        isinstance(margin, bool)
        or not isinstance(margin, (int, float))
        or not math.isfinite(margin)
    ):
        raise ValidationError(
            f"margin must be a finite number in the metric's units, got {margin!r}",
            field="margin",
        )
    if margin < 0:
        raise ValidationError(
            f"margin must be >= 0 (how much worse b may be), got {margin!r}", field="margin"
        )
    return float(margin)


def per_item(frame: pd.DataFrame, col: str) -> pd.Series:
    """Each item's mean of ``col`` over its succeeded cells (errored cells, missing values
    skipped), indexed by ``item_id``."""
    ok = frame["error"].isna() if "error" in frame.columns else pd.Series(True, frame.index)
    values = pd.to_numeric(frame.loc[ok, col], errors="coerce").astype(float)
    return values.groupby(frame.loc[ok, "item_id"]).mean().dropna()


def credits_per_item(frame: pd.DataFrame, items: pd.Index) -> Decimal | None:
    """Mean credits (exact) ``frame``'s succeeded cells on ``items`` cost per item, all repeats
    together: each response's price, whether this run paid it or reused it from the cache."""
    if "credits" not in frame.columns or not len(items):
        return None
    ok = frame["error"].isna() if "error" in frame.columns else pd.Series(True, frame.index)
    rows = frame[ok & frame["item_id"].isin(items)]
    known = [c for c in (to_credits(v) for v in rows["credits"] if not pd.isna(v)) if c is not None]
    if not known:
        return None
    return sum(known, Decimal(0)) / len(items)


def paired(
    frame_a: pd.DataFrame,
    frame_b: pd.DataFrame,
    name_a: str,
    name_b: str,
    col: str,
    *,
    margin: float = 0.0,
    ci_level: float = CI_LEVEL,
    n_boot: int = 2000,
    n_perm: int = 10_000,
    seed: int = 0,
) -> Comparison | None:
    """Compare the cells ``frame_a`` with ``frame_b`` on ``col``, paired on ``item_id``; None
    when they share no item with a value (the caller names the fix)."""
    margin = check_margin(margin)
    both = pd.DataFrame({"a": per_item(frame_a, col), "b": per_item(frame_b, col)}).dropna()
    if both.empty:
        return None
    va, vb = both["a"].to_numpy(float), both["b"].to_numpy(float)
    d = va - vb
    rng = np.random.default_rng([seed, _crc(name_a), _crc(name_b), _crc(col)])
    diff = float(d.mean())
    boot = cluster_bootstrap(d, np.ones_like(d), n_boot=n_boot, rng=rng)
    ci_low, ci_high = percentile_ci(boot, diff, level=ci_level)
    p_value, method = sign_flip_p_value(d, n_perm=n_perm, rng=rng)
    tied = np.abs(d) <= _TIE_TOLERANCE
    return Comparison(
        a=name_a,
        b=name_b,
        metric=col,
        n_items=len(d),
        mean_a=float(va.mean()),
        mean_b=float(vb.mean()),
        diff=diff,
        ci_low=ci_low,
        ci_high=ci_high,
        p_value=p_value,
        wins=int(((d > 0) & ~tied).sum()),
        losses=int(((d < 0) & ~tied).sum()),
        ties=int(tied.sum()),
        p_method=method,
        credits_a=credits_per_item(frame_a, both.index),
        credits_b=credits_per_item(frame_b, both.index),
        margin=margin,
        ci_level=ci_level,
    )


def _crc(value: Any) -> int:
    # A stable per-name seed component (hash() of a str changes between processes).
    return zlib.crc32(str(value).encode())
