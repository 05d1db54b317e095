"""Whose replies a run may reuse: the ``source`` part of cache keys and run fingerprints.

The response cache is shared by every run in a store. Keyed on the request alone, a run against the
hosted Llama 3 8B would be answered from replies the local stand-in (SmolLM2 or scripted) gave to
the same prompts, and an unfinished local run would be resumed against the hosted API: results
from two different models mixed under one label. Keying on the source as well keeps them apart.
"""

from __future__ import annotations

import json
from typing import Any


def source_of(client: Any) -> str | None:
    """The client's ``source`` (llamakit clients), else its base URL, else None."""
    source = getattr(client, "source", None)
    if isinstance(source, str) and source:
        return source
    url = getattr(client, "base_url", None)
    return str(url).rstrip("/") if url else None


def resolve_source(client: Any, store: Any, name: str, model: str) -> str:
    """The client's source; with no client (replay, estimates), the source of this experiment's
    latest recorded run of ``model``; else "" (under which nothing is ever cached)."""
    source = source_of(client)
    if source is not None:
        return source
    sql = "SELECT config FROM runs WHERE name = ? AND model = ? ORDER BY started_at DESC"
    for row in store.query(sql, (name, model)):
        recorded = recorded_source(row["config"])
        if recorded is not None:
            return recorded
    return ""


def recorded_source(config_json: str | None) -> str | None:
    """The source a run recorded in its config; None if it recorded none ("" = a replay of a
    store that never recorded one)."""
    try:
        source = json.loads(config_json or "{}").get("source")
    except (ValueError, AttributeError):
        return None
    return source if isinstance(source, str) and source else None
