"""Anytime-valid confidence sequences for the mean of bounded scores, by betting.

Method: Waudby-Smith and Ramdas, "Estimating means of bounded random variables by betting",
JRSS-B 86(1), 2023 (arXiv:2010.09686). For every candidate mean ``m`` two gamblers bet against
``m``; the *hedged capital process* (Section 4, Theorem 3)::

    K_t(m) = max(theta * prod_i (1 + lam_i^+(m) (x_i - m)), (1 - theta) * prod_i (1 - lam_i^-(m) (x_i - m)))

is a nonnegative martingale with initial value 1 when ``m`` is the true mean, so by Ville's
inequality ``P(exists t: K_t(mu) >= 1/alpha) <= alpha`` and ``{m : K_t(m) < 1/alpha}`` is a
(1 - alpha) confidence sequence: it covers ``mu`` at every time at once, which is what makes it
honest to look after every batch and stop. Bets are the *predictable plug-in* ones of the same
section::

    lam_t = sqrt(2 log(2/alpha) / (sigma2_{t-1} * t * log(1 + t)))
    lam_t^+(m) = min(lam_t, c / m),   lam_t^-(m) = min(lam_t, c / (1 - m)),   c = 1/2
    mu_t = (1/2 + sum_{i<=t} x_i) / (t + 1),   sigma2_t = (1/4 + sum_{i<=t} (x_i - mu_i)^2) / (t + 1)

For a finite dataset of ``N`` items visited without replacement (Section 6 of the same paper;
Waudby-Smith and Ramdas, NeurIPS 2020) each bet is placed against the mean of the items *not yet
seen*, ``m_t = (N m - sum_{i<t} x_i) / (N - t + 1)``; a candidate ``m`` for which that leaves
[0, 1] is impossible and is excluded. The sequence then shrinks to the exact mean at ``t = N``.

Batches: bets inside one batch use the estimates from before the batch (still predictable, so the
guarantee holds); the runner sends a batch, then updates.

Implementation: ``m`` runs over a grid of ``grid`` points of [0, 1]; the reported interval is the
hull of the surviving grid points widened by one grid step on each side (so rounding never cuts
the true mean out), intersected with the previous interval (the running intersection, valid
because the guarantee holds at all times at once). Arrays carry a leading "runs" axis so the
benchmarks simulate hundreds of experiments at once. Scores in declared bounds ``[lo, hi]`` are
mapped to [0, 1] linearly; bounds are reported back in the caller's units.

Only errors may be imported here (scoring layer).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from ..errors import ValidationError

FloatArray = npt.NDArray[np.float64]

DEFAULT_GRID = 401  # 0.0025 steps of [0, 1]; benchmarks/sequential.py measures this grid
_THETA = 0.5
_TRUNCATION = 0.5


def check_alpha(alpha: Any) -> float:
    """``alpha`` as a float in (0, 1), else ValidationError."""
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 < alpha < 1:
        raise ValidationError(
            f"alpha must be a number strictly between 0 and 1 (e.g. 0.05), got {alpha!r}"
        )
    return float(alpha)


def check_bounds(bounds: Any) -> tuple[float, float]:
    """``(lo, hi)`` finite with lo < hi, else ValidationError."""
    try:
        lo, hi = (float(b) for b in bounds)
    except (TypeError, ValueError):
        raise ValidationError(
            f"bounds must be a pair (lo, hi) of numbers, got {bounds!r}; "
            "sequential stopping needs scores in known bounds, e.g. (0, 1)"
        ) from None
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise ValidationError(
            f"bounds must be finite with lo < hi, got {bounds!r}; "
            "sequential stopping needs scores in known bounds, e.g. (0, 1)"
        )
    return lo, hi


class BettingState:
    """The hedged betting confidence sequence for ``runs`` independent streams at once.

    ``update(x)`` takes a batch ``x`` of shape (runs, batch) of values in [0, 1] (NaN = no
    observation for that run in this batch position; a run's NaNs must come after its values).
    ``lower``/``upper`` have shape (runs,), in [0, 1] units.
    """

    def __init__(
        self,
        runs: int,
        alpha: float,
        *,
        population: int | None = None,
        grid: int = DEFAULT_GRID,
    ) -> None:
        self.alpha = check_alpha(alpha)
        if population is not None and population < 1:
            raise ValidationError(f"population must be a positive item count, got {population}")
        self.population = population
        self.m: FloatArray = np.linspace(0.0, 1.0, grid)
        self.step = 1.0 / (grid - 1)
        self.t = np.zeros(runs)  # observations so far per run
        self.total = np.zeros(runs)  # sum of x
        self.mu = np.full(runs, 0.5)  # mu_t (regularised running mean)
        self.dev2 = np.full(runs, 0.25)  # 1/4 + sum (x_i - mu_i)^2
        self.log_plus = np.zeros((runs, grid))
        self.log_minus = np.zeros((runs, grid))
        self.alive = np.ones((runs, grid), dtype=bool)
        self.lower: FloatArray = np.zeros(runs)
        self.upper: FloatArray = np.ones(runs)
        with np.errstate(divide="ignore"):
            self._cap_plus = _TRUNCATION / self.m
            self._cap_minus = _TRUNCATION / (1 - self.m)
        self._threshold = math.log(1.0 / self.alpha)
        self._log_scale = math.log(2.0 / self.alpha)

    def update(self, x: npt.ArrayLike) -> None:
        xs = np.asarray(x, dtype=float)
        if xs.ndim == 1:
            xs = xs[:, None]
        present = ~np.isnan(xs)
        if np.any((xs[present] < 0) | (xs[present] > 1)):
            raise ValidationError("observations must lie in [0, 1] after scaling to the bounds")
        counts = present.sum(axis=1)
        t_idx = self.t[:, None] + np.arange(1, xs.shape[1] + 1)[None, :]  # (R, B): 1-based index
        sigma2 = self.dev2 / (self.t + 1)
        lam = np.sqrt(2 * self._log_scale / (sigma2[:, None] * t_idx * np.log1p(t_idx)))
        lam = np.where(present, lam, 0.0)[:, :, None]  # no observation: no bet, factor 1
        filled = np.where(present, xs, 0.0)[:, :, None]
        if self.population is None:
            # the caps c/m and c/(1-m) depend only on the grid: computed once
            lam_plus = np.minimum(lam, self._cap_plus)
            lam_minus = np.minimum(lam, self._cap_minus)
            diff = filled - self.m
        else:
            m = self.m[None, None, :]
            before = self.total[:, None] + np.cumsum(filled[:, :, 0], axis=1) - filled[:, :, 0]
            left = self.population - t_idx + 1
            with np.errstate(divide="ignore", invalid="ignore"):
                m_eff = (self.population * m - before[:, :, None]) / left[:, :, None]
            impossible = ((m_eff < 0) | (m_eff > 1)) & present[:, :, None] & (left[:, :, None] > 0)
            self.alive &= ~impossible.any(axis=1)
            m_eff = np.clip(m_eff, 0.0, 1.0)
            with np.errstate(divide="ignore"):
                lam_plus = np.minimum(lam, _TRUNCATION / m_eff)
                lam_minus = np.minimum(lam, _TRUNCATION / (1 - m_eff))
            diff = filled - m_eff
        self.log_plus += np.log1p(lam_plus * diff).sum(axis=1)
        self.log_minus += np.log1p(-lam_minus * diff).sum(axis=1)
        hedged = np.maximum(math.log(_THETA) + self.log_plus, math.log(1 - _THETA) + self.log_minus)
        self.alive &= hedged < self._threshold
        # running statistics, item by item (mu_i includes x_i)
        for j in range(xs.shape[1]):
            col = present[:, j]
            xj = np.where(col, xs[:, j], 0.0)
            self.t = self.t + col
            self.total = self.total + xj
            self.mu = np.where(col, (0.5 + self.total) / (self.t + 1), self.mu)
            self.dev2 = self.dev2 + np.where(col, (xj - self.mu) ** 2, 0.0)
        self._interval(counts > 0)

    def _interval(self, touched: npt.NDArray[np.bool_]) -> None:
        grid = self.m.size
        any_alive: npt.NDArray[np.bool_] = np.asarray(self.alive.any(axis=1))
        first = np.argmax(self.alive, axis=1)
        last = grid - 1 - np.argmax(self.alive[:, ::-1], axis=1)
        lo = np.maximum(self.m[first] - self.step, 0.0)
        hi = np.minimum(self.m[last] + self.step, 1.0)
        # An empty set only comes from grid rounding (or the alpha event); keep the last interval.
        ok = touched & any_alive
        self.lower = np.where(ok, np.maximum(self.lower, lo), self.lower)
        self.upper = np.where(ok, np.minimum(self.upper, hi), self.upper)
        # the grid may not cut the interval again after an empty step: restore what is reported
        self.alive |= (
            ~any_alive[:, None] & (self.m >= self.lower[:, None]) & (self.m <= self.upper[:, None])
        )


class ConfidenceSequence:
    """A (1 - alpha) anytime-valid confidence sequence for the mean of scores in ``bounds``.

    ``update(scores)`` adds one batch (a sequence of floats in ``bounds``); ``lower``/``upper``
    are the current bounds in the scores' units; ``history`` holds ``(n, lower, upper)`` after
    each batch. ``population``: the number of items when they are drawn without replacement from
    a finite dataset (tighter; exact at the end). Raises ValidationError for alpha outside (0, 1),
    bad bounds, or a score outside the bounds.
    """

    def __init__(
        self,
        alpha: float = 0.05,
        bounds: tuple[float, float] = (0.0, 1.0),
        *,
        population: int | None = None,
        grid: int = DEFAULT_GRID,
    ) -> None:
        self.alpha = check_alpha(alpha)
        self.bounds = check_bounds(bounds)
        self._state = BettingState(1, self.alpha, population=population, grid=grid)
        self.history: list[tuple[int, float, float]] = []

    def _scale(self, value: float) -> float:
        lo, hi = self.bounds
        return lo + (hi - lo) * value

    @property
    def n(self) -> int:
        return int(self._state.t[0])

    @property
    def lower(self) -> float:
        return self._scale(float(self._state.lower[0]))

    @property
    def upper(self) -> float:
        return self._scale(float(self._state.upper[0]))

    def update(self, scores: Sequence[float]) -> None:
        lo, hi = self.bounds
        values = [float(s) for s in scores]
        bad = [v for v in values if not (lo <= v <= hi)]
        if bad:
            raise ValidationError(
                f"score {bad[0]!r} is outside the declared bounds [{lo}, {hi}]; declare the "
                "metric's true bounds"
            )
        if not values:
            return
        self._state.update(np.array([[(v - lo) / (hi - lo) for v in values]]))
        self.history.append((self.n, self.lower, self.upper))

    def __repr__(self) -> str:
        return (
            f"ConfidenceSequence(n={self.n}, [{self.lower:.4f}, {self.upper:.4f}], "
            f"alpha={self.alpha})"
        )
