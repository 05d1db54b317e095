"""Statistics over ``run.results``: per-variant summaries and paired comparisons between variants.

Both take the results DataFrame (one row per cell: ``variant``, ``item_id``, ``repeat``, ``error``,
``latency_s``, token and credit columns, one ``score_<name>`` column per scorer).

Uncertainty comes from a percentile bootstrap that resamples dataset *items* and keeps all of an
item's repeats together: repeats of one item are not independent evidence, so resampling cells
would make intervals too narrow. Resampling is vectorised with numpy (2,000 resamples of 1,000
items take a fraction of a second) and seeded, so a notebook shows the same interval on every run.
"""

from __future__ import annotations

import html
import math
import zlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from decimal import Decimal
from typing import Any

import numpy as np
import pandas as pd

from .errors import ValidationError

SCORE_PREFIX = "score_"
CI_LEVEL = 0.95
# Up to 2**16 sign patterns are enumerated (an exact p-value); more items use Monte Carlo.
EXACT_PERMUTATION_MAX_ITEMS = 16
# Resamples are drawn in blocks of at most this many index draws, which bounds memory (~32 MB).
_BLOCK_ELEMENTS = 4_000_000
# Item means closer than this count as a tie; scores are fractions, so this is far below noise.
_TIE_TOLERANCE = 1e-12


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
    by: str | Sequence[str] = "variant",
) -> pd.DataFrame:
    """One row per variant (or per ``by`` group) describing its cells, scores, latency and cost.

    Columns:
      - ``n``: cells; ``items``: distinct item ids; ``k``: cells per item (the repeats);
        ``errors``: cells whose call failed (``error`` not null).
      - per ``score_<name>`` column: ``score_<name>_n`` (cells with a score), ``_mean``,
        ``_ci_low``/``_ci_high`` (95% percentile bootstrap clustered by item),
        ``_consistency`` (share of items with 2+ scored repeats whose repeats all agree; NaN if
        none), and when every score of that scorer is 0/1, ``_pass@k`` and ``_pass^k``.
      - ``latency_p50``/``latency_p95`` (seconds, successful cells), ``prompt_tokens``,
        ``completion_tokens``: sums over all cells (NaN when none is known); ``credits``: what
        this run paid, the sum over cells not served from the cache (``cached`` column).

    Errored cells count in ``errors`` and are excluded from every score statistic and from
    latency. A score is the mean over scored cells, so an item with more scored repeats weighs
    more. pass@k / pass^k average the Chen et al. per-item estimators over the items whose ``k``
    cells were all scored (an item with an errored repeat is left out of them).
    The bootstrap RNG is seeded from ``seed``, the group and the column, so adding a variant
    does not move another variant's interval.
    """
    keys = [by] if isinstance(by, str) else list(by)
    _require_columns(results, [*keys, "item_id"])
    score_cols = [c for c in results.columns if str(c).startswith(SCORE_PREFIX)]
    ok = _succeeded(results)
    binary = {col: _is_binary(results.loc[ok, col]) for col in score_cols}
    columns = _summary_columns(score_cols, binary)
    rows: dict[Any, dict[str, Any]] = {}
    for key, group in results.groupby(keys if len(keys) > 1 else keys[0], sort=True):
        rows[key] = _group_row(group, score_cols, binary, n_boot, seed, key)
    frame = pd.DataFrame.from_dict(rows, orient="index").reindex(columns=columns)
    if len(keys) > 1 and len(frame):
        frame.index = pd.MultiIndex.from_tuples(frame.index, names=keys)
    else:
        frame.index.name = keys[0] if len(keys) == 1 else None
    return frame


def _summary_columns(score_cols: list[str], binary: dict[str, bool]) -> list[str]:
    columns = ["n", "items", "k", "errors"]
    for col in score_cols:
        columns += [f"{col}_n", f"{col}_mean", f"{col}_ci_low", f"{col}_ci_high"]
        if binary[col]:
            columns += [f"{col}_pass@k", f"{col}_pass^k"]
        columns.append(f"{col}_consistency")
    return columns + ["latency_p50", "latency_p95", "prompt_tokens", "completion_tokens", "credits"]


def _group_row(
    group: pd.DataFrame,
    score_cols: list[str],
    binary: dict[str, bool],
    n_boot: int,
    seed: int,
    key: Any,
) -> dict[str, Any]:
    ok = _succeeded(group)
    clean = group[ok]
    k = int(group.groupby("item_id").size().max())
    row: dict[str, Any] = {
        "n": len(group),
        "items": int(group["item_id"].nunique()),
        "k": k,
        "errors": int((~ok).sum()),
    }
    for col in score_cols:
        rng = np.random.default_rng([seed, _crc(key), _crc(col)])
        row.update(_score_stats(clean, col, k, binary[col], n_boot, rng))
    latency = _numeric(clean, "latency_s").dropna().to_numpy(float)
    if len(latency):
        row["latency_p50"], row["latency_p95"] = np.quantile(latency, [0.5, 0.95])
    for col in ("prompt_tokens", "completion_tokens"):
        row[col] = _numeric(group, col).sum(min_count=1)
    # A cell served from the cache was paid for by an earlier run: it costs this run nothing.
    paid = group[~group["cached"].fillna(False).astype(bool)] if "cached" in group else group
    row["credits"] = _exact_sum(paid["credits"]) if "credits" in paid else math.nan
    return row


def _score_stats(
    clean: pd.DataFrame, col: str, k: int, binary: bool, n_boot: int, rng: np.random.Generator
) -> dict[str, Any]:
    scored = pd.DataFrame({"item_id": clean["item_id"], "value": _numeric(clean, col)})
    per_item = scored.dropna().groupby("item_id")["value"].agg(["sum", "count", "min", "max"])
    sums = per_item["sum"].to_numpy(float)
    counts = per_item["count"].to_numpy(float)
    out: dict[str, Any] = {f"{col}_n": int(counts.sum())}
    if not len(per_item):
        return out
    mean = sums.sum() / counts.sum()
    boot = cluster_bootstrap(sums, counts, n_boot=n_boot, rng=rng)
    out[f"{col}_mean"] = mean
    out[f"{col}_ci_low"], out[f"{col}_ci_high"] = percentile_ci(boot, mean)
    repeated = per_item[per_item["count"] >= 2]
    if len(repeated):
        agree = (repeated["max"] - repeated["min"]) <= 1e-9
        out[f"{col}_consistency"] = float(agree.mean())
    complete = per_item[per_item["count"] == k]
    if binary and len(complete):
        passes = np.rint(complete["sum"].to_numpy(float)).astype(int)
        # Per-item estimators depend only on the pass count, so tabulate them once for c = 0..k.
        at_k = np.array([pass_at_k(k, c, k) for c in range(k + 1)])
        hat_k = np.array([pass_hat_k(k, c, k) for c in range(k + 1)])
        out[f"{col}_pass@k"] = float(at_k[passes].mean())
        out[f"{col}_pass^k"] = float(hat_k[passes].mean())
    return out


def cluster_bootstrap(
    sums: np.ndarray, counts: np.ndarray, *, n_boot: int, rng: np.random.Generator
) -> np.ndarray:
    """``n_boot`` bootstrap means that resample whole items (clusters) with replacement.

    ``sums[i]`` and ``counts[i]`` are item i's score total and number of scored cells; a
    resample's mean is the total of its items' sums over the total of their counts.
    """
    if n_boot < 1:
        raise ValidationError(f"n_boot must be at least 1, got {n_boot}", field="n_boot")
    m = len(sums)
    out = np.empty(n_boot)
    block = max(1, _BLOCK_ELEMENTS // max(m, 1))
    for start in range(0, n_boot, block):
        stop = min(n_boot, start + block)
        idx = rng.integers(0, m, size=(stop - start, m))
        out[start:stop] = sums[idx].sum(axis=1) / counts[idx].sum(axis=1)
    return out


def percentile_ci(boot: np.ndarray, estimate: float) -> tuple[float, float]:
    """The 95% percentile interval of ``boot``.

    Resampled means are summed in a different order from the estimate, so with constant data a
    bound can land an ulp on the wrong side of it; such rounding is snapped back to the estimate.
    """
    alpha = (1 - CI_LEVEL) / 2
    low, high = (float(x) for x in np.quantile(boot, [alpha, 1 - alpha]))
    slack = 1e-12 * max(1.0, abs(estimate))
    if estimate < low <= estimate + slack:
        low = estimate
    if estimate - slack <= high < estimate:
        high = estimate
    return low, high


@dataclass(frozen=True)
class Comparison:
    """A paired comparison of variants ``a`` and ``b`` on ``metric`` over the items both have.

    ``mean_a``/``mean_b`` average each item's repeats first, then the items; ``diff`` is the mean
    of per-item differences (a - b) with a 95% bootstrap interval over items; ``p_value`` is a
    two-sided paired sign-flip permutation test (``p_method``: "exact" enumerates every sign
    pattern, "monte_carlo" samples them). ``wins``: items where a's value is higher.
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

    def to_frame(self) -> pd.DataFrame:
        """One row (indexed "a - b") with a column per field: easy to concat several comparisons."""
        return pd.DataFrame([asdict(self)], index=[f"{self.a} - {self.b}"])

    def __str__(self) -> str:
        return (
            f"{self.a} - {self.b} on {self.metric}: {self.diff:+.4g} "
            f"(95% CI {self.ci_low:+.4g} to {self.ci_high:+.4g}, p = {self.p_value:.3g}, "
            f"{self.n_items} items; wins/losses/ties {self.wins}/{self.losses}/{self.ties})"
        )

    def _repr_html_(self) -> str:
        cells = "".join(
            f"<tr><th style='text-align:left'>{html.escape(str(k))}</th>"
            f"<td style='text-align:right'>{html.escape(_fmt(v))}</td></tr>"
            for k, v in asdict(self).items()
        )
        return f"<table><caption>{html.escape(str(self))}</caption>{cells}</table>"


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def paired_compare(
    results: pd.DataFrame,
    a: str,
    b: str,
    metric: str,
    *,
    n_boot: int = 2000,
    n_perm: int = 10_000,
    seed: int = 0,
) -> Comparison:
    """Compare variant ``a`` with ``b`` on ``metric`` (a results column, e.g. "score_exact" or
    just "exact", or "latency_s"), pairing by item.

    Each item's repeats are averaged per variant (errored cells and missing scores skipped); only
    items with a value for both variants count. The p-value comes from flipping the signs of the
    per-item differences: exact for up to 16 items, else ``n_perm`` Monte Carlo draws.
    """
    _require_columns(results, ["variant", "item_id"])
    col = _resolve_metric(results, metric)
    known = sorted(map(str, results["variant"].dropna().unique()))
    for label, name in (("a", a), ("b", b)):
        if name not in known:
            raise ValidationError(
                f"unknown variant {name!r}; the results have {known}", field=label
            )
    if a == b:
        raise ValidationError(f"a and b are the same variant ({a!r})", field="b")
    clean = results[_succeeded(results) & results["variant"].isin([a, b])]
    values = clean.assign(_value=_numeric(clean, col)).dropna(subset=["_value"])
    per_item = (
        (values.groupby(["item_id", "variant"])["_value"].mean().unstack("variant"))
        .reindex(columns=[a, b])
        .dropna()
    )
    if per_item.empty:
        raise ValidationError(
            f"variants {a!r} and {b!r} share no item with a value of {col!r}", field="metric"
        )
    va, vb = per_item[a].to_numpy(float), per_item[b].to_numpy(float)
    d = va - vb
    rng = np.random.default_rng([seed, _crc(a), _crc(b), _crc(col)])
    diff = float(d.mean())
    boot = cluster_bootstrap(d, np.ones_like(d), n_boot=n_boot, rng=rng)
    ci_low, ci_high = percentile_ci(boot, diff)
    p_value, method = sign_flip_p_value(d, n_perm=n_perm, rng=rng)
    tied = np.abs(d) <= _TIE_TOLERANCE
    return Comparison(
        a=a,
        b=b,
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
    )


def sign_flip_p_value(
    d: np.ndarray, *, n_perm: int = 10_000, rng: np.random.Generator | None = None
) -> tuple[float, str]:
    """Two-sided p-value for "the paired differences ``d`` are symmetric around 0".

    Under that null each difference is as likely to have the other sign, so the observed
    ``|sum(d)|`` is ranked among the sums with signs flipped. Up to 16 items every pattern is
    enumerated; beyond, ``n_perm`` random patterns give (hits + 1) / (n_perm + 1), which never
    understates p.
    """
    d = np.asarray(d, dtype=float)
    n = len(d)
    observed = abs(d.sum())
    # Sums of the same numbers in another order differ by rounding; count those as ties.
    slack = 1e-9 * max(1.0, float(np.abs(d).sum()))
    if n <= EXACT_PERMUTATION_MAX_ITEMS:
        patterns = (np.arange(2**n)[:, None] >> np.arange(n)) & 1
        sums = np.abs((1 - 2 * patterns) @ d)
        return float(np.mean(sums >= observed - slack)), "exact"
    if n_perm < 1:
        raise ValidationError(f"n_perm must be at least 1, got {n_perm}", field="n_perm")
    rng = rng if rng is not None else np.random.default_rng(0)
    hits = 0
    block = max(1, _BLOCK_ELEMENTS // n)
    for start in range(0, n_perm, block):
        rows = min(block, n_perm - start)
        signs = rng.integers(0, 2, size=(rows, n)) * 2 - 1
        hits += int((np.abs(signs @ d) >= observed - slack).sum())
    return (hits + 1) / (n_perm + 1), "monte_carlo"


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
    from ._credits import to_credits

    known = [c for c in (to_credits(v) for v in values if not pd.isna(v)) if c is not None]
    return sum(known, Decimal(0)) if known or not len(values) else math.nan


def _numeric(frame: pd.DataFrame, col: str) -> pd.Series:
    if col not in frame.columns:
        return pd.Series(np.nan, index=frame.index, dtype=float)
    return pd.to_numeric(frame[col], errors="coerce").astype(float)


def _is_binary(values: pd.Series) -> bool:
    present = pd.to_numeric(values, errors="coerce").dropna()
    return bool(len(present)) and bool(present.isin([0.0, 1.0]).all())


def _crc(value: Any) -> int:
    # A stable per-name seed component (hash() of a str changes between processes).
    return zlib.crc32(str(value).encode())
