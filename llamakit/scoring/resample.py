"""Resampling for the statistics: the item-clustered bootstrap, its percentile interval, and
the paired sign-flip permutation test. Vectorised with numpy, in blocks that bound memory."""

from __future__ import annotations

import numpy as np

from ..errors import ValidationError

CI_LEVEL = 0.95
# Up to 2**16 sign patterns are enumerated (an exact p-value); more items use Monte Carlo.
EXACT_PERMUTATION_MAX_ITEMS = 16
# Resamples are drawn in blocks of at most this many index draws, which bounds memory (~32 MB).
_BLOCK_ELEMENTS = 4_000_000


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


def percentile_ci(
    boot: np.ndarray, estimate: float, *, level: float = CI_LEVEL
) -> tuple[float, float]:
    """The ``level`` (default 95%) percentile interval of ``boot``.

    Resampled means are summed in a different order from the estimate, so with constant data a
    bound can land an ulp on the wrong side of it; such rounding is snapped back to the estimate.
    """
    if not 0 < level < 1:
        raise ValidationError(
            f"a confidence level is between 0 and 1, got {level!r}", field="level"
        )
    alpha = (1 - level) / 2
    low, high = (float(x) for x in np.quantile(boot, [alpha, 1 - alpha]))
    slack = 1e-12 * max(1.0, abs(estimate))
    if estimate < low <= estimate + slack:
        low = estimate
    if estimate - slack <= high < estimate:
        high = estimate
    return low, high


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
