"""Synthetic ``run.results`` frames with the columns PLAN.md fixes, for the statistics tests."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pandas as pd
import pytest

Scores = Mapping[str, Mapping[Any, Sequence[float | None]]]


def make_results(
    scores: Scores,
    *,
    metric: str = "score_exact",
    errors: Mapping[tuple[str, Any, int], str] | None = None,
    latency: float = 0.5,
) -> pd.DataFrame:
    """One row per (variant, item, repeat); ``scores[variant][item]`` lists the repeats' scores.

    ``errors[(variant, item, repeat)] = "ServerError"`` marks a cell as failed (its score stays
    whatever was given, so tests can check that failed cells are ignored even with a score).
    """
    errors = errors or {}
    rows = []
    for variant, items in scores.items():
        for item_id, repeats in items.items():
            for repeat, score in enumerate(repeats):
                error = errors.get((variant, item_id, repeat))
                rows.append(
                    {
                        "run_id": "run-1",
                        "cell_key": f"{variant}/{item_id}/{repeat}",
                        "variant": variant,
                        "item_id": item_id,
                        "params": "{}",
                        "repeat": repeat,
                        "model": "llama-v3-8b-instruct",
                        "prompt": "[]",
                        "response": None if error else "text",
                        "finish_reason": None if error else "stop",
                        "prompt_tokens": None if error else 10,
                        "completion_tokens": None if error else 4,
                        "local_prompt_tokens": 10,
                        "latency_s": latency,
                        "credits": 0.0 if error else 0.001,
                        "credits_precision": None if error else "exact",
                        "error": error,
                        "error_message": "boom" if error else None,
                        "attempts": 1,
                        "started_at": 0.0,
                        "finished_at": 1.0,
                        "expected": "x",
                        metric: math.nan if score is None else float(score),
                    }
                )
    return pd.DataFrame(rows)


@pytest.fixture
def results_factory() -> Callable[..., pd.DataFrame]:
    return make_results
