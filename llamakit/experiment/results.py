"""Stored runs -> pandas tables: ``run.results`` (one row per cell) and ``llamakit.runs()``.

This is the only place that knows both the SQLite rows and the DataFrame contract that scoring,
plots and widgets rely on (PLAN.md "run.results columns"). Credit columns (``credits``,
``credits_spent``, ``balance_*``) hold exact ``Decimal`` objects: ``sum()`` is exact and the CSV
shows the provider's figures digit for digit; ``pd.to_numeric`` gives floats for plotting.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal
from typing import Any

from ..client.credits import to_credits

_ZERO = Decimal(0)

RESULT_COLUMNS = [
    "run_id",
    "cell_key",
    "variant",
    "item_id",
    "params",
    "repeat",
    "model",
    "source",
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
    "judge_credits",
    "balance_before",
    "balance_after",
    "spend_source",
    "credits_by_model",
]


def _score(value: Any) -> float:
    if value is None:
        return math.nan
    return float(value)


def judge_keys(cell: Mapping[str, Any]) -> dict[str, list[str]]:
    """A stored cell's grading-call keys per judge (two keys when the judge was re-asked)."""
    raw = json.loads(cell["judge_keys"]) if cell.get("judge_keys") else {}
    return {name: [str(k) for k in (v if isinstance(v, list) else [v])] for name, v in raw.items()}


def local_prompt_tokens(prompts: Iterable[str | None]) -> dict[str, int | None]:
    """Llama 3 tokens of each stored prompt (the canonical JSON of its messages), by prompt.

    Counted when results are read, not during the run: a run then never loads the tokenizer
    (0.38 s CPU, ~100 MB), and each distinct prompt is counted once, all in one batch.
    Informative only, so any failure gives None rather than an error."""
    distinct = [p for p in dict.fromkeys(prompts) if p]
    if not distinct:
        return {}
    try:
        from ..tokens import count_messages_many

        counted = count_messages_many([json.loads(p) for p in distinct])
        return dict(zip(distinct, counted, strict=True))
    except Exception:
        return {}


def results_frame(
    rows: Sequence[Mapping[str, Any]],
    scorer_names: Sequence[str],
    *,
    judge_replies: Mapping[str, Mapping[str, Any]] | None = None,
    judge_names: Sequence[str] = (),
    source: str | None = None,
    credited: set[str] | None = None,
    expected_columns: Sequence[str] | None = None,
) -> Any:
    """The results DataFrame: contract columns, expected* columns (sorted by name; a chunk of a
    larger table gets the table's, ``expected_columns``), ``score_<name>`` columns, then
    ``<name>_reason`` per scorer, ``scorer_errors`` and (with judges) ``judge_credits``. Each
    column's dtype depends on the column, not on the rows (text columns are pandas strings,
    expected* columns objects holding the dataset's values), so chunks concatenate to the table.

    ``judge_replies``: the stored responses (text, credits, run_id) of the cells' grading calls,
    by key. A grading call is credited to the first cell that made it, and only when this run
    paid for it (its response's ``run_id``), so ``credits + judge_credits`` sums to what the run
    paid for its calls.

    ``source`` (who answered: the hosted API's URL or ``llamakit-local/<backend>``) fills the column
    next to ``model``, which names only the model asked for."""
    import pandas as pd

    replies = judge_replies or {}
    credited = set() if credited is None else credited  # shared by the chunks of one table
    records = []
    expected_cols: dict[str, None] = {}
    counts = local_prompt_tokens(r["prompt"] for r in rows if r["local_prompt_tokens"] is None)
    for r in rows:
        row = json.loads(r["row"])
        done = r["status"] != "error"
        scores = json.loads(r["scores"]) if r["scores"] else {}
        errors = json.loads(r["score_errors"]) if r["score_errors"] else {}
        keys = judge_keys(r)
        record = {
            "run_id": r["run_id"],
            "cell_key": r["cell_key"],
            "variant": r["variant"],
            "item_id": r["item_id"],
            "params": r["params"],
            "repeat": r["repeat"],
            "model": r["model"],
            "source": source,
            "prompt": r["prompt"],
            "response": r["text"] if done else None,
            "finish_reason": r["finish_reason"] if done else None,
            "prompt_tokens": r["prompt_tokens"] if done else None,
            "completion_tokens": r["completion_tokens"] if done else None,
            "local_prompt_tokens": (
                r["local_prompt_tokens"]
                if r["local_prompt_tokens"] is not None
                else counts.get(r["prompt"])
            ),
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
        for name in scorer_names:
            texts = [replies[k]["text"] for k in keys.get(name, []) if k in replies]
            record[f"{name}_reason"] = _reason(r, scores, errors.get(name), name, texts)
        record["scorer_errors"] = json.dumps(errors, sort_keys=True) if errors else None
        if judge_names:
            record["judge_credits"] = _judge_credits(keys, replies, r["run_id"], credited)
        records.append(record)
    expected = sorted(expected_cols) if expected_columns is None else list(expected_columns)
    columns = [
        *RESULT_COLUMNS,
        *expected,
        *(f"score_{n}" for n in scorer_names),
        *(f"{n}_reason" for n in scorer_names),
        "scorer_errors",
        *(["judge_credits"] if judge_names else []),
    ]
    frame = text_frame(records, columns)
    for col in ("prompt_tokens", "completion_tokens", "local_prompt_tokens", "attempts"):
        frame[col] = frame[col].astype("Int64")
    frame["latency_s"] = frame["latency_s"].astype("float64")
    # Credits stay exact Decimals (object dtype), so sums and the CSV show the provider's figures.
    frame["repeat"] = frame["repeat"].astype("int64")
    for col in ("started_at", "finished_at"):
        frame[col] = pd.to_datetime(frame[col], unit="s", utc=True)
    for name in scorer_names:
        frame[f"score_{name}"] = frame[f"score_{name}"].astype("float64")
    text = pd.StringDtype("python", na_value=math.nan)
    for col in (*_TEXT_COLUMNS, *(f"{n}_reason" for n in scorer_names), "scorer_errors"):
        frame[col] = frame[col].astype(text)
    for col in expected:
        frame[col] = frame[col].astype("object")
    return frame


# Text whatever the rows hold: a chunk where every reply is missing is still a text column.
_TEXT_COLUMNS = (
    "run_id", "cell_key", "variant", "item_id", "params", "model", "source", "prompt",
    "response", "finish_reason", "credits_precision", "error", "error_message",
)  # fmt: skip


def _reason(
    cell: Mapping[str, Any],
    scores: Mapping[str, Any],
    error: str | None,
    name: str,
    replies: list[str],
) -> str | None:
    """Why a scorer gave this cell its score: the judge's full reply (both replies when it was
    re-asked), and for a cell left unscored, why."""
    if cell["status"] == "error":
        return f"not scored: the call failed ({cell['error']}: {cell['error_message']})"
    if cell["status"] != "done" and name not in scores and error is None:
        return "not scored yet: the run stopped while scoring this cell; run it again to finish"
    said = "\n\n[asked again for the verdict line]\n".join(replies) if replies else None
    if error is not None:
        return f"unscored: {error}" + (f"\n\n{said}" if said else "")
    return said


def _judge_credits(
    keys: Mapping[str, list[str]],
    replies: Mapping[str, Mapping[str, Any]],
    run_id: str,
    credited: set[str],
) -> Decimal:
    total = _ZERO
    for key in (k for ks in keys.values() for k in ks):
        reply = replies.get(key)
        if reply is None or key in credited or reply.get("run_id") != run_id:
            continue  # unknown, already credited to an earlier cell, or paid by another run
        credited.add(key)
        total += to_credits(reply.get("credits")) or _ZERO
    return total


def text_frame(records: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> Any:
    """A DataFrame whose text columns hold any Python string. pandas 3 stores inferred text in
    pyarrow when pyarrow is installed, and pyarrow refuses strings UTF-8 cannot hold (a reply
    with a lone surrogate, which the store keeps): so text is kept in Python storage, the same
    with or without pyarrow."""
    import pandas as pd

    with pd.option_context("mode.string_storage", "python"):
        return pd.DataFrame.from_records(list(records), columns=list(columns))


def runs_frame(rows: Sequence[Mapping[str, Any]]) -> Any:
    import pandas as pd

    frame = text_frame(rows, RUNS_COLUMNS)
    for col in ("started_at", "finished_at"):
        frame[col] = pd.to_datetime(frame[col].astype("float64"), unit="s", utc=True)
    for col in ("cells_total", "cells_done", "errors"):
        frame[col] = frame[col].astype("int64")
    for col in ("credits_spent", "judge_credits", "balance_before", "balance_after"):
        frame[col] = frame[col].astype("object")  # exact Decimals (None when unknown)
    return frame
