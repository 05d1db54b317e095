"""Fixtures for the plots and widgets: results tables in the shape PLAN.md fixes, closed figures."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest


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


# --- real runs in a store of their own, against the scripted local server --------------------------

DATA = Path(__file__).resolve().parents[2] / "data"
CAPITAL_PROMPTS = {
    "bare": "What is the capital of {{ country }}?",
    "terse": [
        {"role": "system", "content": "Answer with one word only."},
        {"role": "user", "content": "What is the capital of {{ country }}?"},
    ],
    "tutor": [
        {"role": "system", "content": "You are a careful geography tutor."},
        {"role": "user", "content": "Which city is the capital of {{ country }}?"},
    ],
}


@pytest.fixture(scope="session")
def run_store(tmp_path_factory: pytest.TempPathFactory) -> Any:
    import llamakit as lk

    return lk.Store(tmp_path_factory.mktemp("runs") / "llamakit.db")


@pytest.fixture(scope="session")
def rules_server() -> Iterator[Any]:
    """Scripted replies that depend on the prompt, so variants really differ."""
    import llamakit as lk

    with lk.local_server(
        backend="scripted", credits=1000.0, rules=DATA / "scripted_rules.yaml"
    ) as srv:
        yield srv


@pytest.fixture(scope="session")
def capitals_run(rules_server: Any, run_store: Any) -> Any:
    """Three variants x 8 countries x 2 repeats, scored by `contains` and `exact`."""
    import pandas as pd

    import llamakit as lk
    from llamakit import scoring

    exp = lk.Experiment(
        "capitals",
        prompts=CAPITAL_PROMPTS,
        dataset=pd.read_csv(DATA / "capitals.csv").head(8),
        params={"max_tokens": 32, "temperature": 0.7},
        repeats=2,
        scorers=[scoring.contains(), scoring.exact()],
    )
    return exp.run(rules_server.client(), store=run_store, progress=False)


@pytest.fixture(scope="session")
def failed_run(run_store: Any) -> Any:
    """A run whose every cell failed (the server answers 500 to everything, no retries)."""
    import llamakit as lk
    from llamakit import scoring

    exp = lk.Experiment(
        "all-500",
        prompts={"a": "What is 2 + {{ x }}?", "b": "2 + {{ x }} = ?"},
        dataset=[{"x": i, "expected": str(2 + i)} for i in range(3)],
        scorers=[scoring.exact()],
    )
    with lk.local_server(backend="scripted", credits=1.0, fail_rate=1.0) as srv:
        return exp.run(srv.client(max_retries=0), store=run_store, progress=False)
