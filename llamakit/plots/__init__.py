"""Matplotlib figures of runs and credit spend.

Every function takes a :class:`~llamakit.Run` or its ``results`` DataFrame (or, for
:func:`credit_spend`, the ``llamakit.runs()`` table), draws on ``ax`` (a new figure when ``None``),
returns the Axes and never calls ``show``. Input with nothing to draw (an empty store, a run whose
every cell errored) gives a chart that says so in words instead of raising: a notebook cell that
plots should not crash because the data is not there yet.

Layer: the top of the flow with ``llamakit.widgets``; plots may import every layer but the CLI.
``spend`` draws the credit-spend picture, ``sequence`` a sequential run's bounds.
"""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover - typing only
    import pandas as pd
    from matplotlib.axes import Axes

    from ..store import Store

__all__ = ["cost_per_variant", "credit_spend", "latency", "paired", "scores", "sequential"]


def credit_spend(
    runs: pd.DataFrame | None = None, *, store: Store | None = None, ax: Axes | None = None
) -> Axes:
    """Credits spent per run (bars in run order, model and judge calls stacked) with the
    cumulative spend and the remaining balance; see :mod:`llamakit.plots.spend`.

    ``runs`` is the ``llamakit.runs()`` table; ``None`` reads it from ``store`` (default store).
    """
    from .spend import credit_spend as draw

    return draw(runs, store=store, ax=ax)


def sequential(run: Any, ax: Axes | None = None) -> Axes:
    """A sequential run's confidence sequences narrowing until the stop; see
    :mod:`llamakit.plots.sequence`."""
    from .sequence import sequential as draw

    return draw(run, ax=ax)


def cost_per_variant(run: Any, ax: Axes | None = None) -> Axes:
    """Credits this run spent per prompt variant (bars), with the mean cost per billed call on each
    bar. Cells served from the cache cost this run nothing, as in ``summary()``. Judge grading
    calls (the ``judge_credits`` column) are stacked on top in their own colour and counted in
    the total, so the bars add up to what the run paid. A run over several models has a bar
    per model and variant, so each model's spend shows apart."""
    df = _results(run)
    ax = _axes(ax)
    title = "Cost per variant"
    if df is None or len(df) == 0:
        return _empty(ax, title, "This run has no results yet.")
    import pandas as pd

    several = "model" in df and df["model"].nunique() > 1
    if several:  # one bar per (model, variant)
        df = df.assign(variant=df["model"].astype(str) + "\n" + df["variant"].astype(str))
    cached = (
        df["cached"].fillna(False).astype(bool) if "cached" in df else pd.Series(False, df.index)
    )
    credits = df["credits"].map(_credits)  # exact Decimals; floats only to draw
    billed = df.assign(credits=credits)[(credits > 0) & ~cached]
    judged = (
        df["judge_credits"].map(_credits).groupby(df["variant"]).sum()
        if "judge_credits" in df
        else pd.Series(dtype=object)
    )
    if len(billed) == 0 and not (judged > 0).any():
        if cached.any() and df["error"].isna().all():
            return _empty(ax, title, f"Nothing billed: all {len(df)} cell(s) came from the cache.")
        return _empty(ax, title, _nothing_billed_reason(df))
    per = billed.groupby("variant")["credits"].agg(["sum", "count"])
    per["mean"] = per["sum"] / per["count"]
    variants = sorted(set(per.index) | set(judged[judged > 0].index), key=str)
    per = per.reindex(variants)
    per["sum"] = per["sum"].map(_credits)
    per["count"] = per["count"].fillna(0)
    judge = judged.reindex(variants).map(_credits)
    bars = ax.bar(
        [str(v) for v in variants], [float(x) for x in per["sum"]], color="C0", label="calls"
    )
    labels = [
        f"{m:.5f}/call\n({int(n)} calls)" if n else ""
        for m, n in zip(per["mean"], per["count"], strict=True)
    ]
    top = bars
    if (judge > 0).any():
        top = ax.bar(
            [str(v) for v in variants],
            [float(j) for j in judge],
            bottom=[float(x) for x in per["sum"]],
            color="C1",
            label="judge calls",
        )
        labels = [f"{lab}\n+{j:.5f} judge" for lab, j in zip(labels, judge, strict=True)]
        ax.legend(fontsize=8)
    ax.bar_label(top, labels=labels, fontsize=8)
    ax.set_ylabel("credits (USD)")
    ax.set_xlabel("model, variant" if several else "variant")
    ax.margins(y=0.25)
    total = sum(per["sum"], Decimal(0)) + sum(judge, Decimal(0))
    ax.set_title(f"{title} (total {total})")
    return ax


def scores(run: Any, metric: str | None = None, ax: Axes | None = None) -> Axes:
    """Mean score per variant with its 95% bootstrap interval (clustered by item)."""
    df = _results(run)
    ax = _axes(ax)
    title = "Scores per variant"
    if df is None or len(df) == 0:
        return _empty(ax, title, "This run has no results yet.")
    col = _metric_column(df, metric)
    if col is None:
        return _empty(ax, title, "This run has no scorers, so there is nothing to plot.")
    valid = df[df[col].notna()]
    if len(valid) == 0:
        return _empty(ax, f"{title}: {col}", _nothing_scored_reason(df))
    table = _mean_ci(valid, col)
    x = range(len(table))
    err = [
        (table["mean"] - table["ci_low"]).clip(lower=0),
        (table["ci_high"] - table["mean"]).clip(lower=0),
    ]
    bars = ax.bar(x, table["mean"], yerr=err, capsize=6, color="C2")
    # Labels keep a zero mean visible: a bar of height 0 is otherwise just missing.
    ax.bar_label(bars, labels=[f"{m:.2f}" for m in table["mean"]], padding=2, fontsize=8)
    ax.set_xticks(list(x), table.index.astype(str))
    # Scores live in [0, 1]: a fixed axis keeps an all-zero run at the bottom of a readable chart
    # (autoscale would centre it on a negative axis) and makes charts of two runs comparable.
    top = max(1.0, float(table["ci_high"].max()))
    bottom = min(0.0, float(table["ci_low"].min()))
    ax.set_ylim(bottom, top * 1.1)
    ax.set_ylabel(f"mean {col} (95% CI)")
    ax.set_xlabel("variant")
    ax.set_title(f"{title}: {col}")
    return ax


def paired(run: Any, a: str, b: str, metric: str | None = None, ax: Axes | None = None) -> Axes:
    """Per-item difference ``a - b`` on one metric (scores averaged over repeats), sorted.

    The sign follows :func:`llamakit.scoring.stats.paired_compare` (positive: ``a`` scored higher), which
    also gives the mean difference, its interval and the p-value drawn over the bars.
    """
    df = _results(run)
    ax = _axes(ax)
    title = f"{a} vs {b}"
    if df is None or len(df) == 0:
        return _empty(ax, title, "This run has no results yet.")
    col = _metric_column(df, metric)
    if col is None:
        return _empty(ax, title, "This run has no scorers, so there is nothing to compare.")
    missing = [v for v in (a, b) if v not in set(df["variant"])]
    if missing:
        return _empty(ax, title, f"No variant named {', '.join(map(repr, missing))} in this run.")
    sub = df[df["variant"].isin([a, b]) & df[col].notna()]
    wide = sub.pivot_table(index="item_id", columns="variant", values=col, aggfunc="mean")
    wide = wide.dropna() if {a, b} <= set(wide.columns) else wide.iloc[0:0]
    if len(wide) == 0:
        return _empty(ax, f"{title}: {col}", "No item has a score for both variants.")
    diff = (wide[a] - wide[b]).sort_values(kind="stable")
    colors = ["C2" if d > 0 else "C3" if d < 0 else "0.6" for d in diff]
    ax.bar(range(len(diff)), diff, color=colors)
    ax.axhline(0, color="0.3", lw=0.8)
    ax.set_xticks(range(len(diff)), diff.index.astype(str), rotation=60, fontsize=7)
    ax.set_xlabel("item")
    ax.set_ylabel(f"{col}: {a} \u2212 {b}")
    summary = _paired_summary(df, a, b, col)
    lo, hi = min(0.0, float(diff.min())), max(0.0, float(diff.max()))
    if summary is not None:
        ax.axhline(summary.diff, color="C0", ls="--", lw=1, label="mean difference, 95% CI")
        ax.axhspan(summary.ci_low, summary.ci_high, color="C0", alpha=0.12)
        ax.legend(loc="best", fontsize=8)
        lo, hi = min(lo, summary.ci_low), max(hi, summary.ci_high)
        p = "" if summary.p_value is None else f", p={summary.p_value:.3g}"
        title += (
            f": diff {summary.diff:+.3f} [{summary.ci_low:+.3f}, {summary.ci_high:+.3f}]{p}"
            f" (W/L/T {summary.wins}/{summary.losses}/{summary.ties})"
        )
    pad = 0.1 * ((hi - lo) or 1.0)
    # A difference of two scores in [0, 1] lies in [-1, 1]: never draw the axis beyond it.
    bound = 1.05 * max(1.0, abs(lo), abs(hi))
    ax.set_ylim(max(lo - pad, -bound), min(hi + pad, bound))
    ax.set_title(title, fontsize=10)
    return ax


def latency(run: Any, ax: Axes | None = None) -> Axes:
    """Distribution of latency per variant (successful calls only), as box plots."""
    df = _results(run)
    ax = _axes(ax)
    title = "Latency per variant"
    if df is None or len(df) == 0:
        return _empty(ax, title, "This run has no results yet.")
    ok = df[df["error"].isna() & df["latency_s"].notna()]
    if len(ok) == 0:
        return _empty(ax, title, _nothing_billed_reason(df, what="no call succeeded"))
    groups = [(str(v), g["latency_s"].to_numpy()) for v, g in ok.groupby("variant")]
    ax.boxplot([g for _, g in groups], showmeans=True)
    ax.set_xticks(range(1, len(groups) + 1), [v for v, _ in groups])
    ax.set_ylabel("latency (s)")
    ax.set_xlabel("variant")
    ax.set_title(f"{title} (n={len(ok)})")
    return ax


# --- helpers -------------------------------------------------------------------------------------


def _results(run: Any) -> pd.DataFrame | None:
    """A Run's results table, or the DataFrame itself when one is passed."""
    results: pd.DataFrame | None = getattr(run, "results", run)
    return results


def _axes(ax: Axes | None) -> Axes:
    if ax is not None:
        return ax
    import matplotlib.pyplot as plt

    _, ax = plt.subplots(figsize=(7, 4), layout="constrained")
    return ax


def _empty(ax: Axes, title: str, message: str) -> Axes:
    ax.set_title(title)
    ax.text(0.5, 0.5, message, ha="center", va="center", transform=ax.transAxes, wrap=True)
    ax.set_xticks([])
    ax.set_yticks([])
    return ax


def _credits(value: Any) -> Decimal:
    import pandas as pd

    from ..client.credits import to_credits

    return Decimal(0) if pd.isna(value) else to_credits(value) or Decimal(0)


def _error_counts(df: pd.DataFrame) -> str:
    counts = df["error"].dropna().value_counts()
    return ", ".join(f"{name} \u00d7{n}" for name, n in counts.items())


def _nothing_billed_reason(df: pd.DataFrame, what: str = "no call was billed") -> str:
    errors = _error_counts(df)
    if errors:
        return f"{what}: every cell errored\n({errors})"
    return f"{what} in {len(df)} cell(s)."


def _nothing_scored_reason(df: pd.DataFrame) -> str:
    errors = _error_counts(df)
    if errors and df["error"].notna().all():
        return f"No scores: every cell errored\n({errors})"
    return "No cell has a score (did every scorer fail?)."


def _metric_column(df: pd.DataFrame, metric: str | None) -> str | None:
    """``metric`` as a column name: accepts ``"exact"`` or ``"score_exact"``; None = first score."""
    cols = [c for c in df.columns if str(c).startswith("score_")]
    if metric is None:
        return cols[0] if cols else None
    name = metric if metric.startswith("score_") else f"score_{metric}"
    if name not in df.columns:
        raise KeyError(f"no score column {name!r}; this run has {cols or 'none'}")
    return name


def _mean_ci(df: pd.DataFrame, col: str) -> pd.DataFrame:
    """Mean and 95% CI per variant, from llamakit.scoring.stats when it can give them."""
    import pandas as pd

    try:
        from ..scoring.stats import summarize

        summary = summarize(df, n_boot=1000, seed=0)
        picked = _pick_ci(summary, col)
        if picked is not None:
            return picked
    except ImportError:
        pass
    means = df.groupby("variant")[col].mean()
    return pd.DataFrame({"mean": means, "ci_low": means, "ci_high": means})


def _pick_ci(summary: pd.DataFrame, col: str) -> pd.DataFrame | None:
    """Find ``mean``/``ci_low``/``ci_high`` for ``col`` in a summary table, flat or MultiIndex."""
    import pandas as pd

    out = {}
    for stat in ("mean", "ci_low", "ci_high"):
        for key in ((col, stat), f"{col}_{stat}", f"{col.removeprefix('score_')}_{stat}"):
            if key in summary.columns:
                out[stat] = summary[key]
                break
        else:
            return None
    return pd.DataFrame(out)


def _paired_summary(df: pd.DataFrame, a: str, b: str, col: str) -> Any | None:
    try:
        from ..scoring.stats import paired_compare
    except ImportError:
        return None
    return paired_compare(df, a, b, col)
