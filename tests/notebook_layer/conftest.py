"""Fixtures for the plots and widgets: results tables in the shape PLAN.md fixes, closed figures."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("matplotlib")
pytest.importorskip("ipywidgets")


@pytest.fixture(autouse=True)
def _close_figures() -> Iterator[None]:
    """Figures made with pyplot stay open until closed; a long test session would pile them up."""
    import matplotlib

    matplotlib.use("Agg")
    yield
    import matplotlib.pyplot as plt

    plt.close("all")


def make_results(
    scores: dict[str, list[float]],
    *,
    credits: float = 0.00063,
    errors: dict[tuple[str, int], str] | None = None,
    repeats: int = 1,
) -> Any:
    """A ``run.results`` table: ``scores[variant][item]`` is the 0/1 score of that cell.

    ``errors[(variant, item)] = "ClassName"`` makes that cell an error (no response, no score).
    """
    import pandas as pd

    errors = errors or {}
    rows = []
    for variant, per_item in scores.items():
        for item, score in enumerate(per_item):
            for repeat in range(repeats):
                error = errors.get((variant, item))
                rows.append(
                    {
                        "run_id": "run-test",
                        "cell_key": f"{variant}-{item}-{repeat}",
                        "variant": variant,
                        "item_id": f"q{item}",
                        "params": json.dumps({"temperature": 0}),
                        "repeat": repeat,
                        "model": "llama-v3-8b-instruct",
                        "prompt": json.dumps([{"role": "user", "content": f"q{item}"}]),
                        "response": None if error else f"{variant} answer {item} **bold**",
                        "finish_reason": None if error else "stop",
                        "prompt_tokens": None if error else 12,
                        "completion_tokens": None if error else 5,
                        "local_prompt_tokens": 12,
                        "latency_s": 0.01 * (1 + item % 3),
                        "credits": None if error else credits,
                        "credits_precision": None if error else "exact",
                        "error": error,
                        "error_message": f"{error} happened" if error else None,
                        "attempts": 1,
                        "started_at": 1_700_000_000.0 + item,
                        "finished_at": 1_700_000_000.5 + item,
                        "expected": "yes",
                        "score_exact": float("nan") if error else float(score),
                    }
                )
    return pd.DataFrame(rows)


def make_runs(spent: list[float], *, balance_start: float = 1.0) -> Any:
    """A ``llamakit.runs()`` table with one finished run per entry of ``spent``."""
    import pandas as pd

    rows = []
    balance = balance_start
    for i, s in enumerate(spent):
        start = pd.Timestamp("2026-01-01T00:00:00Z") + pd.Timedelta(minutes=10 * i)
        rows.append(
            {
                "run_id": f"r{i}",
                "name": f"run {i}",
                "model": "llama-v3-8b-instruct",
                "status": "finished",
                "started_at": start,
                "finished_at": start + pd.Timedelta(minutes=2),
                "cells_total": 10,
                "cells_done": 10,
                "errors": 0,
                "credits_spent": s,
                "balance_before": balance,
                "balance_after": balance - s,
                "spend_source": "balance",
            }
        )
        balance -= s
    return pd.DataFrame(rows)


@pytest.fixture
def results_frame() -> Any:
    """The factory :func:`make_results` (fixtures keep test modules free of sys.path games)."""
    return make_results


@pytest.fixture
def runs_frame() -> Any:
    """The factory :func:`make_runs`."""
    return make_runs
