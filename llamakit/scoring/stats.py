"""Statistics over ``run.results``: per-condition summaries and paired comparisons between
conditions (a condition is a variant with one param setting; see ``conditions``).

Both take the results DataFrame (one row per cell: ``variant``, ``item_id``, ``repeat``, ``error``,
``latency_s``, token and credit columns, one ``score_<name>`` column per scorer).

Uncertainty comes from a percentile bootstrap that resamples dataset *items* and keeps all of an
item's repeats together: repeats of one item are not independent evidence, so resampling cells
would make intervals too narrow. Resampling is vectorised with numpy (2,000 resamples of 1,000
items take a fraction of a second) and seeded, so a notebook shows the same interval on every run.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
import zlib
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import numpy as np
import pandas as pd

from ..errors import ValidationError
from .conditions import condition_columns, select, unit_columns
from .paired import Comparison, paired
from .resample import (
    CI_LEVEL,
    EXACT_PERMUTATION_MAX_ITEMS,
    cluster_bootstrap,
    percentile_ci,
    sign_flip_p_value,
)

__all__ = [
    "CI_LEVEL",
    "EXACT_PERMUTATION_MAX_ITEMS",
    "SCORE_PREFIX",
    "UNSCORED_GAP",
    "Comparison",
    "UnscoredShareWarning",
    "cluster_bootstrap",
    "paired_compare",
    "pass_at_k",
    "pass_hat_k",
    "percentile_ci",
    "sign_flip_p_value",
    "summarize",
]

SCORE_PREFIX = "score_"


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k (Chen et al. 2021): the chance that at least one of ``k`` samples, drawn
    without replacement from ``n`` samples of which ``c`` passed, passes: 1 - C(n-c, k) / C(n, k)."""
    _check_counts(n, c, k)
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


def pass_hat_k(n: int, c: int, k: int) -> float:
    """pass^k: the chance that all ``k`` samples drawn without replacement from ``n`` samples of
    which ``c`` passed pass: C(c, k) / C(n, k). It rewards consistency where pass@k rewards luck."""
    _check_counts(n, c, k)
    return math.comb(c, k) / math.comb(n, k)


def _check_counts(n: int, c: int, k: int) -> None:
    if not (0 <= c <= n and 1 <= k <= n):
        raise ValidationError(f"need 0 <= c <= n and 1 <= k <= n, got n={n}, c={c}, k={k}")


def summarize(
    results: pd.DataFrame,
    *,
    n_boot: int = 2000,
    seed: int = 0,
    by: str | Sequence[str] | None = None,
    k: int | None = None,
) -> pd.DataFrame:
    """One row per condition (or per ``by`` group) describing its cells, scores, latency and cost.

    ``by=None`` groups by condition: ``variant``, plus ``params`` and ``model`` when the results
    hold more than one of them (so the index shows the params only when there are settings to
    tell apart). Columns:
      - ``n``: cells; ``items``: distinct item ids; ``k``: repeats (cells per item and condition);
        ``errors``: cells whose call failed (``error`` not null).
      - per ``score_<name>`` column: ``score_<name>_n`` (cells with a score), ``_unscored``
        (cells whose call succeeded but got no score, e.g. a judge reply without a verdict), ``_mean``,
        ``_ci_low``/``_ci_high`` (95% percentile bootstrap clustered by item),
        ``_consistency`` (share of (item, condition) units with 2+ scored repeats whose repeats
        all agree; NaN if none), and when every score of that scorer is 0/1, ``_pass@k`` and
        ``_pass^k``.
      - ``latency_p50``/``latency_p95`` (seconds, successful cells), ``prompt_tokens``,
        ``completion_tokens``: sums over all cells (NaN when none is known); ``credits``: what
        this run paid (USD), the sum over cells not served from the cache (``cached`` column)
        plus, for a run with judges, ``judge_credits``, also shown on its own.

    Repeats are samples of one condition on one item: pass@k, pass^k and consistency count the
    repeats of each (item, model, variant, params) unit, never pooling two param settings even
    when ``by`` groups them together. pass@k / pass^k average the Chen et al. (2021, "Evaluating
    Large Language Models Trained on Code", eq. 1) unbiased per-unit estimators
    1 - C(n-c, k)/C(n, k) and C(c, k)/C(n, k) over the units with at least ``k`` scored repeats
    (``k=None``: the group's repeat count, so units with an errored repeat are left out).
    Errored cells count in ``errors`` and are excluded from every score statistic and from
    latency. A score is the mean over scored cells, so an item with more scored repeats weighs
    more. The bootstrap RNG is seeded from ``seed``, the group and the column, so adding a
    variant does not move another variant's interval. Raises ValidationError for a frame that
    lacks the grouping columns or a ``k`` below 1.
    """
    if by is None:
        _require_columns(results, ["variant", "item_id"])
        by = condition_columns(results)
    keys = [by] if isinstance(by, str) else list(by)
    _require_columns(results, [*keys, "item_id"])
    if k is not None and (isinstance(k, bool) or not isinstance(k, int) or k < 1):
        raise ValidationError(f"k must be a positive integer or None, got {k!r}", field="k")
    score_cols = [
        c for c in results.columns if str(c).startswith(SCORE_PREFIX) and _is_numeric(results[c])
    ]
    ok = _succeeded(results)
    binary = {col: _is_binary(results.loc[ok, col]) for col in score_cols}
    judged = "judge_credits" in results.columns
    columns = _summary_columns(score_cols, binary, judged)
    units = unit_columns(results)
    rows: dict[Any, dict[str, Any]] = {}
    for key, group in results.groupby(keys if len(keys) > 1 else keys[0], sort=True):
        rows[key] = _group_row(group, units, score_cols, binary, n_boot, seed, key, k)
    frame = pd.DataFrame.from_dict(rows, orient="index").reindex(columns=columns)
    if len(keys) > 1 and len(frame):
        frame.index = pd.MultiIndex.from_tuples(frame.index, names=keys)
    else:
        frame.index.name = keys[0] if len(keys) == 1 else None
    return frame


def _summary_columns(score_cols: list[str], binary: dict[str, bool], judged: bool) -> list[str]:
    columns = ["n", "items", "k", "errors"]
    for col in score_cols:
        columns += [f"{col}_n", f"{col}_unscored", f"{col}_mean", f"{col}_ci_low", f"{col}_ci_high"]
        if binary[col]:
            columns += [f"{col}_pass@k", f"{col}_pass^k"]
        columns.append(f"{col}_consistency")
    columns += ["latency_p50", "latency_p95", "prompt_tokens", "completion_tokens", "credits"]
    return columns + (["judge_credits"] if judged else [])


def _group_row(
    group: pd.DataFrame,
    units: list[str],
    score_cols: list[str],
    binary: dict[str, bool],
    n_boot: int,
    seed: int,
    key: Any,
    k: int | None,
) -> dict[str, Any]:
    ok = _succeeded(group)
    clean = group[ok]
    repeats = int(group.groupby(units, dropna=False).size().max())
    row: dict[str, Any] = {
        "n": len(group),
        "items": int(group["item_id"].nunique()),
        "k": repeats,
        "errors": int((~ok).sum()),
    }
    for col in score_cols:
        rng = np.random.default_rng([seed, _crc(key), _crc(col)])
        row.update(_score_stats(clean, units, col, k or repeats, binary[col], n_boot, rng))
    latency = _numeric(clean, "latency_s").dropna().to_numpy(float)
    if len(latency):
        row["latency_p50"], row["latency_p95"] = np.quantile(latency, [0.5, 0.95])
    for col in ("prompt_tokens", "completion_tokens"):
        row[col] = _numeric(group, col).sum(min_count=1)
    # A cell served from the cache was paid for by an earlier run: it costs this run nothing.
    paid = group[~group["cached"].fillna(False).astype(bool)] if "cached" in group else group
    row["credits"] = _exact_sum(paid["credits"]) if "credits" in paid else math.nan
    if "judge_credits" in group.columns:
        # judge_credits is already only what this run paid (a cached grading call counts 0).
        judged = _exact_sum(group["judge_credits"])
        row["judge_credits"] = judged if isinstance(judged, Decimal) else Decimal(0)
        paid_calls = row["credits"] if isinstance(row["credits"], Decimal) else Decimal(0)
        row["credits"] = paid_calls + row["judge_credits"]
    return row


def _score_stats(
    clean: pd.DataFrame,
    units: list[str],
    col: str,
    k: int,
    binary: bool,
    n_boot: int,
    rng: np.random.Generator,
) -> dict[str, Any]:
    values = _numeric(clean, col)
    scored = clean.loc[values.notna(), units].assign(value=values[values.notna()])
    per_item = scored.groupby("item_id")["value"].agg(["sum", "count"])
    sums = per_item["sum"].to_numpy(float)
    counts = per_item["count"].to_numpy(float)
    out: dict[str, Any] = {
        f"{col}_n": int(counts.sum()),
        f"{col}_unscored": int(values.isna().sum()),
    }
    if not len(per_item):
        return out
    mean = sums.sum() / counts.sum()
    boot = cluster_bootstrap(sums, counts, n_boot=n_boot, rng=rng)
    out[f"{col}_mean"] = mean
    out[f"{col}_ci_low"], out[f"{col}_ci_high"] = percentile_ci(boot, mean)
    per_unit = scored.groupby(units, dropna=False)["value"].agg(["sum", "count", "min", "max"])
    repeated = per_unit[per_unit["count"] >= 2]
    if len(repeated):
        agree = (repeated["max"] - repeated["min"]) <= 1e-9
        out[f"{col}_consistency"] = float(agree.mean())
    complete = per_unit[per_unit["count"] >= k]
    if binary and len(complete):
        counts_passes = pd.DataFrame(
            {"n": complete["count"].to_numpy(int), "c": np.rint(complete["sum"]).astype(int)}
        )
        # The estimators depend only on (n, c): compute each distinct pair once.
        table = counts_passes.drop_duplicates()
        at = {(n, c): pass_at_k(n, c, k) for n, c in table.itertuples(index=False)}
        hat = {(n, c): pass_hat_k(n, c, k) for n, c in table.itertuples(index=False)}
        pairs = list(counts_passes.itertuples(index=False, name=None))
        out[f"{col}_pass@k"] = float(np.mean([at[p] for p in pairs]))
        out[f"{col}_pass^k"] = float(np.mean([hat[p] for p in pairs]))
    return out


def paired_compare(
    results: pd.DataFrame,
    a: Any,
    b: Any,
    metric: str,
    *,
    margin: float = 0.0,
    n_boot: int = 2000,
    n_perm: int = 10_000,
    seed: int = 0,
) -> Comparison:
    """Compare condition ``a`` with ``b`` on ``metric`` (a results column, e.g. "score_exact" or
    just "exact", or "latency_s"), pairing by item.

    A condition is a variant name, or ``(variant, {param: value})`` naming one of its param
    settings (required when the variant ran with several; two settings of one variant can be
    compared), or a mapping ``{"model": slug, "variant": name, "params": {...}}`` naming any
    of the three (a run over several models; see ``conditions.select``). ``margin`` is the
    non-inferiority margin (``Comparison.noninferior``); the result carries each side's credits
    per item. Each item's repeats are averaged per condition (errored cells and missing scores
    skipped); only items with a value for both count. The p-value comes from flipping the signs
    of the per-item differences: exact for up to 16 items, else ``n_perm`` Monte Carlo draws.
    Cells without a value are left out, which biases the comparison when one side loses more of
    them (a reply without a verdict is rarely missing at random): an ``UnscoredShareWarning`` is
    issued when the two sides' unscored shares differ by ``UNSCORED_GAP`` or more.
    Raises ValidationError for an unknown condition or metric, a condition compared with
    itself, and conditions that share no item with a value.
    """
    _require_columns(results, ["variant", "item_id"])
    col = _resolve_metric(results, metric)
    rows_a, name_a = select(results, a, field="a")
    rows_b, name_b = select(results, b, field="b")
    if name_a == name_b:
        raise ValidationError(
            f"a and b are the same condition ({name_a!r}); name two variants, or one variant "
            "with two param settings",
            field="b",
        )
    found = paired(
        results[rows_a],
        results[rows_b],
        name_a,
        name_b,
        col,
        margin=margin,
        n_boot=n_boot,
        n_perm=n_perm,
        seed=seed,
    )
    if found is None:
        raise ValidationError(
            f"conditions {name_a!r} and {name_b!r} share no item with a value of {col!r}; "
            "compare conditions run on the same dataset items (and check that they were scored)",
            field="metric",
        )
    ok = _succeeded(results)
    shares = [_unscored_share(results[ok & rows], col) for rows in (rows_a, rows_b)]
    if abs(shares[0] - shares[1]) >= UNSCORED_GAP:
        warnings.warn(
            f"{name_a!r} has {shares[0]:.0%} of its cells without a {col!r} value and "
            f"{name_b!r} {shares[1]:.0%}: the comparison covers only scored cells, and cells "
            "lost more on one side bias it; see summary()'s _unscored column and the reasons "
            "(the <scorer>_reason column) before trusting the difference",
            UnscoredShareWarning,
            stacklevel=2,
        )
    return dataclasses.replace(found, unscored_a=shares[0], unscored_b=shares[1])


class UnscoredShareWarning(UserWarning):
    """Two compared conditions lost materially different shares of their cells to no score."""


# A gap this large in unscored shares (10 percentage points) is too big to call noise-free
# bookkeeping: the scored cells no longer stand for the same population on both sides.
UNSCORED_GAP = 0.10


def _unscored_share(frame: pd.DataFrame, col: str) -> float:
    values = _numeric(frame, col)
    return float(values.isna().mean()) if len(values) else 0.0


def _resolve_metric(results: pd.DataFrame, metric: str) -> str:
    scores = [c for c in results.columns if str(c).startswith(SCORE_PREFIX)]
    for candidate in (metric, f"{SCORE_PREFIX}{metric}"):
        if isinstance(metric, str) and candidate in results.columns:
            if not (
                pd.api.types.is_numeric_dtype(results[candidate])
                or pd.api.types.is_bool_dtype(results[candidate])
            ):
                raise ValidationError(f"metric {candidate!r} is not numeric", field="metric")
            return candidate
    raise ValidationError(
        f"unknown metric {metric!r}; score columns: {scores} (or any numeric column)",
        field="metric",
    )


def _require_columns(results: Any, columns: list[str]) -> None:
    if not isinstance(results, pd.DataFrame):
        raise ValidationError(
            f"results must be a pandas DataFrame, got {type(results).__name__}", field="results"
        )
    missing = [c for c in columns if c not in results.columns]
    if missing:
        raise ValidationError(f"results lack the column(s) {missing}", field="results")


def _succeeded(frame: pd.DataFrame) -> pd.Series:
    if "error" not in frame.columns:
        return pd.Series(True, index=frame.index)
    return frame["error"].isna()


def _exact_sum(values: pd.Series) -> Any:
    """Credits summed exactly (Decimal; floats read at 15 digits); NaN when none is known."""
    from ..client.credits import to_credits

    known = [c for c in (to_credits(v) for v in values if not pd.isna(v)) if c is not None]
    return sum(known, Decimal(0)) if known or not len(values) else math.nan


def _numeric(frame: pd.DataFrame, col: str) -> pd.Series:
    if col not in frame.columns:
        return pd.Series(np.nan, index=frame.index, dtype=float)
    return pd.to_numeric(frame[col], errors="coerce").astype(float)


def _is_numeric(values: pd.Series) -> bool:
    return bool(pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values))


def _is_binary(values: pd.Series) -> bool:
    present = pd.to_numeric(values, errors="coerce").dropna()
    return bool(len(present)) and bool(present.isin([0.0, 1.0]).all())


def _crc(value: Any) -> int:
    # A stable per-name seed component (hash() of a str changes between processes).
    return zlib.crc32(str(value).encode())
