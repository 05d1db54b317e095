"""A judge's grading requests: the call that grades one reply (its request key, as the runner
sends and caches it) and which gradings of stored replies the store still lacks, the one answer
the estimate's count of grading calls and the replay check both read."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .cells import Cell, cell_key
from .pricing import judge_slug
from .sources import source_of


@dataclass(frozen=True)
class JudgeCall:
    """A judge's grading request for one reply, and its cache key."""

    client: Any
    model: str
    messages: list[dict[str, str]]
    params: dict[str, Any]
    key: str


def judge_call(
    scorer: Any,
    text: str,
    row: Mapping[str, Any],
    *,
    client: Any,
    model: str,
    source: str,
    messages: list[dict[str, str]] | None = None,
) -> JudgeCall:
    """The grading call for ``text`` (or the follow-up ``messages`` of a re-ask): through the
    judge's own client (model, source) if it has one, else the run's."""
    judge_client = scorer.client if scorer.client is not None else client
    judge_model = judge_slug(scorer, client, model)
    if messages is None:
        messages = scorer.grading_messages(text, row)
    params = dict(scorer.params)
    key = cell_key(judge_model, messages, params, 0, source=source_of(scorer.client) or source)
    return JudgeCall(judge_client, judge_model, messages, params, key)


def missing_gradings(
    store: Any,
    replies: Sequence[tuple[Cell, str]],
    judges: Sequence[Any],
    *,
    client: Any,
    model: str,
    source: str,
) -> list[tuple[Cell, Any, JudgeCall]]:
    """The grading calls a run would send to score ``replies`` (a cell and its stored reply's
    text) that the store has no reply for: per reply and judge, the grading itself, or, when a
    stored grading has no verdict and the judge re-asks (``reask``), the re-ask. Each as (cell,
    judge, call), in the order of the replies, then of the judges. A request asked for twice is
    listed twice (the run sends it once: callers count distinct keys). Two queries whatever the
    number of replies, so a chunk of cells is checked at once."""
    on: dict[str, Any] = {"client": client, "model": model, "source": source}
    asked = [
        ((i, j), cell, text, scorer, judge_call(scorer, text, cell.row, **on))
        for i, (cell, text) in enumerate(replies)
        for j, scorer in enumerate(judges)
    ]
    graded = store.cached_responses([a[-1].key for a in asked], columns="cell_key, text")
    missing: list[tuple[tuple[int, int], Cell, Any, JudgeCall]] = []
    reasks: list[tuple[tuple[int, int], Cell, Any, JudgeCall]] = []
    for at, cell, text, scorer, call in asked:
        reply = graded.get(call.key)
        if reply is None:
            missing.append((at, cell, scorer, call))
        elif getattr(scorer, "reask", False) and not scorer.verdict(reply["text"], text).scored:
            follow = scorer.reask_messages(text, cell.row, reply["text"])
            reasks.append(
                (at, cell, scorer, judge_call(scorer, text, cell.row, **on, messages=follow))
            )
    known = store.known_responses([r[-1].key for r in reasks])
    missing += [r for r in reasks if r[-1].key not in known]
    missing.sort(key=lambda m: m[0])
    return [(cell, scorer, call) for _, cell, scorer, call in missing]
