"""Sequential stopping, proved by simulation (issue 19), and one run through the real local server.

    python benchmarks/sequential.py [--runs 200] [--items 1000] [--quick]

Part 1 simulates paired 0/1 scores of two variants on a dataset of ``--items`` items, visited in a
random order and checked every 10 items, ``--runs`` times per setting, for two methods:

- ``betting``: llamakit's rule (``llamakit.scoring.sequential``: the hedged betting confidence
  sequence of Waudby-Smith and Ramdas 2023, items treated as a sample, as the runner does);
- ``PrPl-EB``: the reference from the issue, the plain predictable-plug-in empirical-Bernstein
  confidence sequence (Waudby-Smith and Ramdas 2023, Theorem 2), with replacement.

Settings: no true difference; differences of 0.05, 0.10 and 0.20 in accuracy when the variants
disagree on 20% of items (they mostly fail the same items) and when their errors are
independent (accuracies 0.6 +- d/2). Columns: the fraction of runs that declared a difference
(under no difference: must be at most alpha), the median and 90th percentile of credits used as
a fraction of the full grid, and the fraction of correct decisions. Then ``best()`` with 5
variants. Part 2 runs one sequential comparison through the stand-in server (scripted backend)
and reads what was paid from the server's own ledger.
"""

from __future__ import annotations

import argparse
import math
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from llamakit.experiment.plan import (  # noqa: E402
    paired_differences,
    simulate_best,
    simulate_compare,
)

ALPHA = 0.05
CHECK_EVERY = 10


# -- data and llamakit's rule (the same code as Experiment.plan) ------------------------------------
def paired(rng: np.random.Generator, runs: int, items: int, diff: float, mode: str) -> np.ndarray:
    """Per-item differences a - b in {-1, 0, 1}, shape (runs, items)."""
    if mode == "20% disagree":
        return paired_differences(rng, runs, items, diff, 0.2)
    a = rng.random((runs, items)) < 0.6 + diff / 2
    b = rng.random((runs, items)) < 0.6 - diff / 2
    return a.astype(float) - b.astype(float)


def run_betting(d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return simulate_compare(d, ALPHA, CHECK_EVERY)


def prpl_eb(x: np.ndarray, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """Running-intersection PrPl-EB confidence sequence for x in [0, 1], shape (runs, T)."""
    _, items = x.shape
    t = np.arange(1, items + 1)
    mu = (0.5 + np.cumsum(x, axis=1)) / (t + 1)
    sigma2 = (0.25 + np.cumsum((x - mu) ** 2, axis=1)) / (t + 1)
    sigma2_prev = np.concatenate([np.full((x.shape[0], 1), 0.25), sigma2[:, :-1]], axis=1)
    mu_prev = np.concatenate([np.full((x.shape[0], 1), 0.5), mu[:, :-1]], axis=1)
    lam = np.minimum(np.sqrt(2 * math.log(2 / alpha) / (sigma2_prev * t * np.log1p(t))), 0.5)
    psi = (-np.log1p(-lam) - lam) / 4
    v = 4 * (x - mu_prev) ** 2
    lam_sum = np.cumsum(lam, axis=1)
    center = np.cumsum(lam * x, axis=1) / lam_sum
    width = (math.log(2 / alpha) + np.cumsum(v * psi, axis=1)) / lam_sum
    return np.maximum.accumulate(center - width, axis=1), np.minimum.accumulate(
        center + width, axis=1
    )


def run_prpl_eb(d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    _, items = d.shape
    lo, hi = prpl_eb((d + 1) / 2, ALPHA)
    checks = np.arange(CHECK_EVERY - 1, items, CHECK_EVERY)
    lo, hi = 2 * lo[:, checks] - 1, 2 * hi[:, checks] - 1
    decided = (lo > 0) | (hi < 0)
    first = np.where(decided.any(axis=1), decided.argmax(axis=1), len(checks) - 1)
    rows = np.arange(d.shape[0])
    sign = np.where(decided.any(axis=1), np.where(lo[rows, first] > 0, 1, -1), 0)
    return (checks[first] + 1).astype(float), sign.astype(float)


def best_of(acc: list[float], runs: int, items: int, rng: np.random.Generator) -> tuple[Any, ...]:
    """``lk.stop.best`` by simulation: (fraction of grid, correct, best dropped) per run."""
    k = len(acc)
    scores = (rng.random((runs, k, items)) < np.array(acc)[None, :, None]).astype(float)
    cells, winner = simulate_best(scores, ALPHA, CHECK_EVERY)
    best = int(np.argmax(acc))
    return cells / (k * items), winner == best, (winner != best) & (winner >= 0)


# -- the table -----------------------------------------------------------------------------------
def row(label: str, method: str, used: np.ndarray, sign: np.ndarray, truth: int, items: int) -> str:
    frac = used / items
    declared = float(np.mean(sign != 0))
    correct = float(np.mean(sign == truth)) if truth else 1 - declared
    wrong = float(np.mean((sign != 0) & (sign != truth))) if truth else declared
    return (
        f"{label:<26} {method:<8} {declared:>9.3f} {wrong:>7.3f} {np.median(frac):>7.0%} "
        f"{np.quantile(frac, 0.9):>7.0%} {correct:>8.3f}"
    )


def simulate(runs: int, items: int, seed: int) -> dict[tuple[str, float, str], tuple[float, ...]]:
    rng = np.random.default_rng(seed)
    print(
        f"Part 1: {runs} simulated experiments per setting, {items} items, checked every "
        f"{CHECK_EVERY} items, alpha {ALPHA}"
    )
    header = f"{'setting':<26} {'method':<8} {'declared':>9} {'wrong':>7} {'median':>7} {'p90':>7} {'correct':>8}"
    print(header)
    print("-" * len(header))
    figures: dict[tuple[str, float, str], tuple[float, ...]] = {}
    for mode in ("20% disagree", "independent"):
        for diff in (0.0, 0.05, 0.10, 0.20):
            d = paired(rng, runs, items, diff, mode)
            label = f"{mode}, diff {diff:.2f}"
            for method, fn in (("betting", run_betting), ("PrPl-EB", run_prpl_eb)):
                used, sign = fn(d)
                print(row(label, method, used, sign, 1 if diff else 0, items))
                wrong = float(np.mean((sign != 0) & (sign != (1 if diff else 0))))
                figures[(mode, diff, method)] = (
                    float(np.median(used / items)),
                    float(np.quantile(used / items, 0.9)),
                    wrong,
                )
    acc = [0.55, 0.6, 0.65, 0.7, 0.8]
    frac, correct, dropped = best_of(acc, runs, items, rng)
    print(
        f"{'best() of 5, acc ' + '/'.join(f'{a:g}' for a in acc):<26} betting  "
        f"{np.mean(correct | dropped):>9.3f} {np.mean(dropped):>7.3f} {np.median(frac):>7.0%} "
        f"{np.quantile(frac, 0.9):>7.0%} {np.mean(correct):>8.3f}"
    )
    print("declared: runs that declared a difference; wrong: declared the wrong way (or any,")
    print("under no difference: must be <= alpha); median/p90: credits used as a fraction of the")
    print("full grid; correct: decided the true direction (under no difference: declared none).")
    print("best(): declared = one variant left; wrong = that variant is not the best.")
    figures[("best of 5", 0.0, "betting")] = (
        float(np.median(frac)),
        float(np.quantile(frac, 0.9)),
        float(np.mean(dropped)),
    )
    return figures


def print_figures(figures: dict[tuple[str, float, str], tuple[float, ...]], runs: int) -> None:
    """FIGURE lines for ``make bench`` (benchmarks/run_all.py)."""
    worst = max(v[2] for (_, diff, method), v in figures.items() if method == "betting")
    print(
        f"FIGURE sequential worst wrong-decision rate: {worst:.3f} fraction (alpha 0.05, {runs} runs)"
    )
    for mode in ("20% disagree", "independent"):
        for diff in (0.10, 0.20):
            ours = figures[(mode, diff, "betting")]
            ref = figures[(mode, diff, "PrPl-EB")]
            print(
                f"FIGURE sequential grid used, diff {diff:.2f} {mode}: {ours[0]:.0%} median "
                f"(p90 {ours[1]:.0%}; PrPl-EB {ref[0]:.0%}, p90 {ref[1]:.0%})"
            )
    b = figures[("best of 5", 0.0, "betting")]
    print(f"FIGURE sequential best() of 5 grid used: {b[0]:.0%} median (p90 {b[1]:.0%})")


# -- part 2: the real local server ---------------------------------------------------------------
def end_to_end(items: int) -> None:
    import llamakit as lk
    from llamakit import scoring

    rules = [{"pattern": "tag right", "reply": "yes"}, {"pattern": "tag wrong", "reply": "no"}]
    rng = random.Random(19)
    rows = []
    for i in range(items):  # 20% disagreement, A right on 0.70, B on 0.60
        u = rng.random()
        a, b = (True, False) if u < 0.15 else (False, True) if u < 0.20 else (u < 0.65,) * 2
        rows.append(
            {
                "id": f"q{i:04d}",
                "expected": "yes",
                "a_tag": "right" if a else "wrong",
                "b_tag": "right" if b else "wrong",
            }
        )
    exp = lk.Experiment(
        "sequential-bench",
        {"A": "A: item {{ id }} tag {{ a_tag }}", "B": "B: item {{ id }} tag {{ b_tag }}"},
        rows,
        scorers=[scoring.contains()],
    )
    with (
        tempfile.TemporaryDirectory() as tmp,
        lk.local_server(backend="scripted", credits=1000.0, rules=rules) as server,
    ):
        store = lk.Store(Path(tmp) / "bench.db")
        started = time.perf_counter()
        run = exp.run(
            server.client(),
            stop=lk.stop.compare("A", "B", "contains", seed=19),
            store=store,
            progress=False,
            concurrency=8,
        )
        seconds = time.perf_counter() - started
        stats = server.stats()
        report = run.sequential
    grid = 2 * items
    print(
        f"\nPart 2: one sequential run through the local server ({items} items, 2 variants, "
        "true difference 0.10, 20% disagreement)"
    )
    print(f"  decision: {report.decision}  ({seconds:.1f} s)")
    print(
        f"FIGURE sequential end-to-end ledger: {int(stats['billed_calls']) / grid:.0%} of the grid "
        f"({stats['billed_calls']} of {grid} calls billed by the stand-in)"
    )
    print(
        f"  server ledger: {stats['billed_calls']} billed calls of a {grid}-call grid "
        f"({int(stats['billed_calls']) / grid:.0%}); run spent {report.credits_spent} of "
        f"{report.credits_full_grid} credits projected for the full grid"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--items", type=int, default=1000)
    parser.add_argument("--quick", action="store_true", help="50 runs of 400 items")
    args = parser.parse_args()
    runs, items = (50, 400) if args.quick else (args.runs, args.items)
    started = time.perf_counter()
    figures = simulate(runs, items, seed=19)
    end_to_end(items)
    print()
    print_figures(figures, runs)
    print(f"\n({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
