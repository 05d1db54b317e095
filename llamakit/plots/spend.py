"""``plots.credit_spend``: what each run cost, in run order, and where that leaves the balance.

One bar per run (model calls and judge calls stacked), so a run is as wide as any other however long
it took, labelled by its name and start time. The cumulative spend and the remaining balance after
each run are lines on their own right-hand axes. Labels stay readable from 1 run to hundreds:
rotated beyond a few runs and thinned to at most ``MAX_LABELS`` beyond that.
"""

from __future__ import annotations

import math
from decimal import Decimal
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover - typing only
    import pandas as pd
    from matplotlib.axes import Axes

    from ..store import Store

MAX_LABELS = 12  # tick labels drawn at most; beyond this every k-th run is labelled
FLAT_LABELS = 3  # up to this many runs the labels are horizontal
VALUE_LABELS = 10  # up to this many runs each bar carries its total
NAME_CHARS = 18  # run names are cut to this many characters in tick labels
HEADROOM = 1.4  # each y axis reaches this multiple of its data's maximum: room for the legend
MODEL_COLOR, JUDGE_COLOR, CUMULATIVE_COLOR, BALANCE_COLOR = "C0", "C4", "C2", "C1"


def credit_spend(
    runs: pd.DataFrame | None = None, *, store: Store | None = None, ax: Axes | None = None
) -> Axes:
    """Credits (USD) spent per run as bars in run order (model calls and judge calls stacked),
    with the cumulative spend and the remaining balance after each run on the right.

    ``runs`` is the ``llamakit.runs()`` table (``judge_credits`` optional: without it every credit
    counts as a model call); ``None`` reads it from ``store`` (default store). A run still going
    counts what it has spent so far. Returns the bars' Axes; the lines are on twin Axes of it.
    """
    if runs is None:
        from ..experiment.run import runs as list_runs

        runs = list_runs(store=store)
    ax = _axes(ax, 0 if runs is None else len(runs))
    title = "Credit spend per run"
    if runs is None or len(runs) == 0:
        return _empty(ax, title, "No runs in the store yet.\nRun an experiment, then plot again.")
    df = _in_run_order(runs)
    x = list(range(len(df)))
    model, judge = df["model_credits"].tolist(), df["judge_credits"].tolist()
    handles = [ax.bar(x, model, color=MODEL_COLOR, label="model calls")]
    if any(j > 0 for j in judge):
        handles.append(ax.bar(x, judge, bottom=model, color=JUDGE_COLOR, label="judge calls"))
    if len(df) <= VALUE_LABELS:
        ax.bar_label(handles[-1], labels=[f"{v:.4f}" for v in df["spent"]], fontsize=7, padding=2)
    ax.set_ylabel("credits per run (USD)")
    ax.set_ylim(0, max(df["spent"].max() * HEADROOM, 1e-9))
    pad = max(0.0, (3 - len(df)) * 0.5)  # one or two runs: bars of ordinary width, not slabs
    ax.set_xlim(-0.6 - pad, len(df) - 0.4 + pad)
    _label_runs(ax, df)
    handles += _cumulative_and_balance(ax, df, x)
    # The data stay under HEADROOM of each axis's height, so the legend's band on top covers none.
    ax.legend(handles=handles, loc="upper left", ncol=4, fontsize=8, framealpha=0.9)
    total = _exact_total(df["credits_spent"])  # the provider's figures, not the drawn floats
    left = df["balance_after"].dropna()
    balance = f"; {left.iloc[-1]} left" if len(left) else ""
    ax.set_title(f"{title}: {total} credits over {len(df)} run(s){balance}", fontsize=10)
    return ax


def _exact_total(values: pd.Series) -> Decimal:
    """The exact sum of the known, positive credit figures (Decimals; floats read at 15 digits)."""
    import pandas as pd

    from ..client.credits import to_credits

    known = (to_credits(v) for v in values if not pd.isna(v))
    return sum((c for c in known if c is not None and c > 0), Decimal(0))


def _in_run_order(runs: pd.DataFrame) -> pd.DataFrame:
    """Runs by start time, with spend split into model and judge credits (NaN spend: 0)."""
    import pandas as pd

    df = runs.copy()
    df["started"] = pd.to_datetime(df["started_at"], utc=True)
    df = df.sort_values("started", kind="stable").reset_index(drop=True)
    df["spent"] = pd.to_numeric(df["credits_spent"], errors="coerce").fillna(0.0).clip(lower=0)
    judge = df["judge_credits"] if "judge_credits" in df else pd.Series(0.0, index=df.index)
    df["judge_credits"] = pd.to_numeric(judge, errors="coerce").fillna(0.0).clip(lower=0)
    df["judge_credits"] = df[["judge_credits", "spent"]].min(axis=1)
    df["model_credits"] = df["spent"] - df["judge_credits"]
    for column in ("balance_after", "name"):
        if column not in df:
            df[column] = math.nan if column == "balance_after" else ""
    df["balance_after"] = pd.to_numeric(df["balance_after"], errors="coerce")
    return df


def _label_runs(ax: Axes, df: pd.DataFrame) -> None:
    """Run name and start time under each bar; every k-th run (and the last) beyond MAX_LABELS."""
    n = len(df)
    step = max(1, math.ceil(n / MAX_LABELS))
    shown = list(range(0, n, step))
    if shown[-1] != n - 1:
        if n - 1 - shown[-1] < step / 2:
            shown[-1] = n - 1  # the last run always has a label; keep the spacing even
        else:
            shown.append(n - 1)
    labels = [_run_label(df.iloc[i]) for i in shown]
    flat = n <= FLAT_LABELS
    ax.set_xticks(shown, labels, rotation=0 if flat else 45, ha="center" if flat else "right")
    ax.tick_params(axis="x", labelsize=8 if n <= VALUE_LABELS else 7)
    if step > 1:
        ax.set_xticks(range(n), minor=True)
        ax.set_xlabel(f"{n} runs in run order; every {step}th labelled", fontsize=8)
    else:
        ax.set_xlabel("run (in run order)", fontsize=8)


def _run_label(row: Any) -> str:
    name = str(row["name"])
    if len(name) > NAME_CHARS:
        name = name[: NAME_CHARS - 1] + "\u2026"
    started = row["started"]
    when = "" if started is None or str(started) == "NaT" else f"\n{started:%Y-%m-%d %H:%M}"
    return f"{name}{when}"


def _cumulative_and_balance(ax: Axes, df: pd.DataFrame, x: list[int]) -> list[Any]:
    """Cumulative spend on a right-hand axis; the balance after each run on a second one further
    right (their scales differ by orders of magnitude once a balance is large)."""
    handles = []
    cumulative = ax.twinx()
    (line,) = cumulative.plot(
        x, df["spent"].cumsum(), color=CUMULATIVE_COLOR, marker="o", ms=3, lw=1.5,
        label="cumulative spend",
    )  # fmt: skip
    cumulative.set_ylim(0, max(float(df["spent"].sum()) * HEADROOM, 1e-9))
    cumulative.set_ylabel("cumulative spend (USD)", color=CUMULATIVE_COLOR)
    cumulative.tick_params(axis="y", colors=CUMULATIVE_COLOR, labelsize=8)
    handles.append(line)
    known = df["balance_after"].notna()
    if known.any():
        balance = ax.twinx()
        balance.spines["right"].set_position(("outward", 52))
        (bline,) = balance.plot(
            [i for i, k in zip(x, known, strict=True) if k], df.loc[known, "balance_after"],
            color=BALANCE_COLOR, marker="s", ms=3, ls="--", lw=1.2, label="balance left",
        )  # fmt: skip
        top = float(df["balance_after"].max())
        balance.set_ylim(0, top * HEADROOM if top > 0 else 1.0)
        balance.set_ylabel("balance left (USD)", color=BALANCE_COLOR)
        balance.tick_params(axis="y", colors=BALANCE_COLOR, labelsize=8)
        handles.append(bline)
    return handles


def _axes(ax: Axes | None, runs: int) -> Axes:
    if ax is not None:
        return ax
    import matplotlib.pyplot as plt

    width = min(16.0, max(8.0, 3.5 + 0.2 * runs))
    _, ax = plt.subplots(figsize=(width, 4.6), layout="constrained")
    return ax


def _empty(ax: Axes, title: str, message: str) -> Axes:
    ax.set_title(title)
    ax.text(0.5, 0.5, message, ha="center", va="center", transform=ax.transAxes, wrap=True)
    ax.set_xticks([])
    ax.set_yticks([])
    return ax
