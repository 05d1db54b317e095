"""Stored runs -> pandas tables: ``run.results`` (one row per cell) and ``llamakit.runs()``.

This is the only place that knows both the SQLite rows and the DataFrame contract that scoring,
plots and widgets rely on (PLAN.md "run.results columns"). Credit columns (``credits``,
``credits_spent``, ``balance_*``) hold exact ``Decimal`` objects: ``sum()`` is exact and the CSV
shows the provider's figures digit for digit; ``pd.to_numeric`` gives floats for plotting.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

_ZERO = Decimal(0)

RESULT_COLUMNS = [
    "run_id",
    "cell_key",
    "variant",
    "item_id",
    "params",
    "repeat",
    "model",
    "prompt",
    "response",
    "finish_reason",
    "prompt_tokens",
    "completion_tokens",
    "local_prompt_tokens",
    "latency_s",
    "credits",
    "credits_precision",
    "error",
    "error_message",
    "attempts",
    "started_at",
    "finished_at",
    "cached",
]

RUNS_COLUMNS = [
    "run_id",
    "name",
    "model",
    "source",
    "status",
    "started_at",
    "finished_at",
    "cells_total",
    "cells_done",
    "errors",
    "credits_spent",
    "balance_before",
    "balance_after",
    "spend_source",
]


def _score(value: Any) -> float:
    if value is None:
        return math.nan
    return float(value)


def results_frame(rows: Sequence[Mapping[str, Any]], scorer_names: Sequence[str]) -> Any:
    """The results DataFrame: contract columns, expected* columns, then ``score_<name>`` columns."""
    import pandas as pd

    records = []
    expected_cols: dict[str, None] = {}
    for r in rows:
        row = json.loads(r["row"])
        done = r["status"] != "error"
        scores = json.loads(r["scores"]) if r["scores"] else {}
        errors = json.loads(r["score_errors"]) if r["score_errors"] else {}
        record = {
            "run_id": r["run_id"],
            "cell_key": r["cell_key"],
            "variant": r["variant"],
            "item_id": r["item_id"],
            "params": r["params"],
            "repeat": r["repeat"],
            "model": r["model"],
            "prompt": r["prompt"],
            "response": r["text"] if done else None,
            "finish_reason": r["finish_reason"] if done else None,
            "prompt_tokens": r["prompt_tokens"] if done else None,
            "completion_tokens": r["completion_tokens"] if done else None,
            "local_prompt_tokens": r["local_prompt_tokens"],
            "latency_s": r["latency_s"],
            "credits": r["credits"] if done else _ZERO,
            "credits_precision": r["credits_precision"] if done else None,
            "error": r["error"],
            "error_message": r["error_message"],
            "attempts": r["attempts"],
            "started_at": r["started_at"],
            "finished_at": r["finished_at"],
            "cached": bool(r["cached"]),
        }
        for key, value in row.items():
            if key == "expected" or key.startswith("expected_"):
                expected_cols[key] = None
                record[key] = value
        for name in scorer_names:
            record[f"score_{name}"] = _score(scores.get(name)) if done else math.nan
        record["scorer_errors"] = json.dumps(errors, sort_keys=True) if errors else None
        records.append(record)
    columns = [
        *RESULT_COLUMNS,
        *expected_cols,
        *(f"score_{n}" for n in scorer_names),
        "scorer_errors",
    ]
    frame = pd.DataFrame.from_records(records, columns=columns)
    for col in ("prompt_tokens", "completion_tokens", "local_prompt_tokens", "attempts"):
        frame[col] = frame[col].astype("Int64")
    frame["latency_s"] = frame["latency_s"].astype("float64")
    # Credits stay exact Decimals (object dtype), so sums and the CSV show the provider's figures.
    frame["repeat"] = frame["repeat"].astype("int64")
    for col in ("started_at", "finished_at"):
        frame[col] = pd.to_datetime(frame[col], unit="s", utc=True)
    for name in scorer_names:
        frame[f"score_{name}"] = frame[f"score_{name}"].astype("float64")
    return frame


def runs_frame(rows: Sequence[Mapping[str, Any]]) -> Any:
    import pandas as pd

    frame = pd.DataFrame.from_records(list(rows), columns=RUNS_COLUMNS)
    for col in ("started_at", "finished_at"):
        frame[col] = pd.to_datetime(frame[col].astype("float64"), unit="s", utc=True)
    for col in ("cells_total", "cells_done", "errors"):
        frame[col] = frame[col].astype("int64")
    for col in ("credits_spent", "balance_before", "balance_after"):
        frame[col] = frame[col].astype("object")  # exact Decimals (None when unknown)
    return frame
