"""The columns of the store's tables and how Python values become rows."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any


def _dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)


def response_fields(response: Any) -> dict[str, Any]:
    """The columns a ChatResponse fills (duck-typed, so the store does not import the client)."""
    usage = getattr(response, "usage", None)
    return {
        "text": response.text,
        "finish_reason": response.finish_reason,
        "prompt_tokens": getattr(usage, "prompt_tokens", None),
        "completion_tokens": getattr(usage, "completion_tokens", None),
        "total_tokens": getattr(usage, "total_tokens", None),
        "usage": _dumps(getattr(usage, "extras", None) or {}),
        "request_id": response.request_id,
        "latency_s": response.latency_s,
        "attempts": getattr(response, "attempts", 1),
        "started_at": getattr(response, "started_at", None),
        "finished_at": getattr(response, "finished_at", None),
        "credits_remaining": response.credits_remaining,
        "model": getattr(response, "model", None),
    }


_RESPONSE_COLUMNS = [
    "cell_key",
    "model",
    "endpoint",
    "messages",
    "params",
    "repeat",
    "text",
    "finish_reason",
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "usage",
    "request_id",
    "latency_s",
    "attempts",
    "started_at",
    "finished_at",
    "credits_remaining",
    "credits",
    "credits_precision",
    "account",
    "run_id",
    "session",
    "created_at",
]

_ATTEMPT_COLUMNS = [
    "run_id",
    "session",
    "cell_key",
    "call_id",
    "attempt",
    "status",
    "error",
    "message",
    "latency_s",
    "credits_remaining",
    "started_at",
    "finished_at",
]

_CACHE_COLUMNS = "cell_key, text, attempts, latency_s, started_at, finished_at, credits_remaining, run_id, session"

_CELL_COLUMNS = [
    "run_id",
    "cell_id",
    "cell_key",
    "ordinal",
    "variant",
    "item_id",
    "params",
    "repeat",
    "model",
    "prompt",
    "row",
    "status",
    "cached",
    "error",
    "error_message",
    "attempts",
    "latency_s",
    "started_at",
    "finished_at",
    "local_prompt_tokens",
    "scores",
    "score_errors",
    "judge_keys",
]


def _insert_sql(table: str, columns: Sequence[str], verb: str = "INSERT") -> str:
    names = ", ".join(columns)
    marks = ", ".join(f":{c}" for c in columns)
    return f"{verb} INTO {table} ({names}) VALUES ({marks})"
