"""The betting confidence sequence: its error-rate guarantee under monitoring after every batch,
its narrowing, and its bad input. Pure statistics, no HTTP."""

from __future__ import annotations

import math

import numpy as np
import pytest

from llamakit.errors import ValidationError
from llamakit.scoring.sequential import DEFAULT_GRID, BettingState, ConfidenceSequence

RUNS = 300
ALPHA = 0.05
# The guarantee is P(ever miss) <= alpha; allow three binomial standard errors of simulation noise.
TOLERANCE = 3 * math.sqrt(ALPHA * (1 - ALPHA) / RUNS)


def _ever_missed(x: np.ndarray, truth: np.ndarray, population: int | None) -> float:
    state = BettingState(x.shape[0], ALPHA, population=population, grid=201)
    missed = np.zeros(x.shape[0], dtype=bool)
    for start in range(0, x.shape[1], 10):  # look after every batch of 10
        state.update(x[:, start : start + 10])
        missed |= (state.lower > truth) | (state.upper < truth)
    return float(missed.mean())


@pytest.mark.parametrize("p", [0.5, 0.15])
def test_time_uniform_coverage_iid(p: float) -> None:
    rng = np.random.default_rng(19)
    x = (rng.random((RUNS, 300)) < p).astype(float)
    assert _ever_missed(x, np.full(RUNS, p), None) <= ALPHA + TOLERANCE


def test_time_uniform_coverage_of_a_paired_difference_without_replacement() -> None:
    # Paired differences a - b in {-1, 0, 1} scaled to [0, 1]: 20% disagreement, no true effect.
    rng = np.random.default_rng(7)
    u = rng.random((RUNS, 300))
    d = np.where(u < 0.1, 1.0, np.where(u < 0.2, -1.0, 0.0))
    x = (d + 1) / 2
    # without replacement the target is the finite dataset's own mean
    assert _ever_missed(x, x.mean(axis=1), 300) <= ALPHA + TOLERANCE


def test_the_sequence_narrows_and_without_replacement_ends_at_the_exact_mean() -> None:
    rng = np.random.default_rng(3)
    scores = (rng.random(400) < 0.7).astype(float)
    iid = ConfidenceSequence(0.05)
    wor = ConfidenceSequence(0.05, population=400)
    for start in range(0, 400, 20):
        iid.update(list(scores[start : start + 20]))
        wor.update(list(scores[start : start + 20]))
    widths = [hi - lo for _, lo, hi in iid.history]
    assert all(b <= a for a, b in zip(widths, widths[1:], strict=False))
    assert widths[0] > 0.4 and widths[-1] < 0.2
    assert iid.lower <= 0.7 <= iid.upper
    assert wor.lower <= scores.mean() <= wor.upper
    assert wor.upper - wor.lower <= 5 / (DEFAULT_GRID - 1)  # a few grid steps around the mean


def test_declared_bounds_are_reported_in_their_own_units() -> None:
    cs = ConfidenceSequence(0.05, bounds=(-1, 1))
    cs.update([1.0] * 200)
    assert 0.8 < cs.lower <= 1.0 and cs.upper == 1.0
    assert cs.n == 200


@pytest.mark.parametrize("alpha", [0, 1, -0.1, 1.5, "0.05", True, float("nan")])
def test_alpha_outside_the_open_unit_interval_is_refused(alpha: object) -> None:
    with pytest.raises(ValidationError, match="alpha"):
        ConfidenceSequence(alpha)  # type: ignore[arg-type]


@pytest.mark.parametrize("bounds", [(1, 0), (0, float("inf")), (0, 0), "ab", None])
def test_bad_bounds_are_refused(bounds: object) -> None:
    with pytest.raises(ValidationError, match="bounds"):
        ConfidenceSequence(0.05, bounds=bounds)  # type: ignore[arg-type]


def test_a_score_outside_the_bounds_is_refused() -> None:
    cs = ConfidenceSequence(0.05)
    with pytest.raises(ValidationError, match="outside the declared bounds"):
        cs.update([0.5, 1.5])
    assert cs.n == 0
