"""Scoring one cell's response: plain scorers are called in place, judges make a grading call
of their own through the runner (so it is cached, budgeted and costed like any cell)."""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from ..errors import ReplayMissError
from .cells import Cell
from .runner_calls import Stop, describe

# (judge scorer, cell, response text, messages or None for the first grading call)
#   -> (the judge's reply, the grading call's cell key)
Judge = Callable[[Any, Cell, str, "list[dict[str, str]] | None"], Awaitable[tuple[str, str]]]


def is_judge(scorer: Any) -> bool:
    return hasattr(scorer, "grading_messages")


async def _grade(scorer: Any, cell: Cell, text: str, judge: Judge) -> float:
    """A judge's score for ``text``: one grading call, and one re-ask when its reply has no
    verdict. Raises UnscoredReply (recorded on the cell, score NaN) when neither had one."""
    reply, _ = await judge(scorer, cell, text, None)
    if not scorer.verdict(reply, text).scored and getattr(scorer, "reask", False):
        reply, _ = await judge(scorer, cell, text, scorer.reask_messages(text, cell.row, reply))
    return float(scorer.parse(reply, text))


Outcome = tuple[dict[str, float], dict[str, str], dict[str, "str | list[str]"]]


async def score_cell(scorers: Sequence[Any], cell: Cell, text: str, judge: Judge) -> Outcome:
    """Scores, per-scorer errors (why a scorer gave no score) and judge keys for one response.

    ``judge_keys[name]`` is the key of the judge's grading call, or a list of two keys when the
    judge was re-asked; the replies stored under them are the judge's reasons."""
    scores: dict[str, float] = {}
    errors: dict[str, str] = {}
    judge_keys: dict[str, str | list[str]] = {}
    for scorer in scorers:
        try:
            if is_judge(scorer):
                value = await _grade(scorer, cell, text, _keeping(judge, judge_keys, scorer))
            else:
                value = plain_score(scorer, text, cell.row)
            scores[scorer.name] = float(value)
        except (Stop, ReplayMissError):
            raise
        except Exception as exc:  # a scorer's failure is recorded on its cell, not fatal
            errors[scorer.name] = describe(exc)
    return scores, errors, judge_keys


def _keeping(judge: Judge, judge_keys: dict[str, str | list[str]], scorer: Any) -> Judge:
    # An unscored reply raises after its calls were paid: keep their keys (and so the replies,
    # the reason the cell is unscored) whatever happens next.
    async def call(s: Any, cell: Cell, text: str, messages: Any) -> tuple[str, str]:
        reply, key = await judge(s, cell, text, messages)
        held = judge_keys.get(scorer.name)
        judge_keys[scorer.name] = key if held is None else [*_as_list(held), key]
        return reply, key

    return call


def judge_key_list(value: Any) -> list[str]:
    """The grading-call keys stored for one judge on a cell (a key, or a list when re-asked)."""
    return _as_list(value) if value else []


def _as_list(value: Any) -> list[str]:
    return [str(v) for v in value] if isinstance(value, list) else [str(value)]


async def _no_judge(scorer: Any, cell: Cell, text: str, messages: Any) -> tuple[str, str]:
    raise RuntimeError("scoring awaited without judges")


def plain_score(scorer: Any, text: str, row: Mapping[str, Any]) -> Any:
    """A scorer that is not a judge, called on its own copy of ``row``: the row is shared by
    the item's cells and the other scorers, recorded and fingerprinted after scoring, and a
    scorer is user code that may change what it is given. A row of plain values (the usual
    dataset row) needs only a shallow copy; one holding lists or dicts is copied deeply."""
    flat = all(v is None or isinstance(v, (str, int, float)) for v in row.values())
    return scorer(text, dict(row) if flat else copy.deepcopy(row))


def same_scores(scorers: Sequence[Any], text: str, row: Mapping[str, Any], cell: Any) -> bool:
    """Whether scoring ``text`` again as a live run would (``scorers``, no judges, each on its
    own copy of the item's ``row``) gives a stored cell's scores and scorer errors exactly
    (``cell``: its ``scores`` and ``score_errors`` JSON; a NaN score matches a NaN)."""
    scores: dict[str, float] = {}
    errors: dict[str, str] = {}
    for scorer in scorers:
        try:
            scores[scorer.name] = float(plain_score(scorer, text, row))
        except Exception as exc:  # as score_cell records it
            errors[scorer.name] = describe(exc)
    stored = json.loads(cell["scores"]) if cell["scores"] else {}
    stored_errors = json.loads(cell["score_errors"]) if cell["score_errors"] else {}
    return (
        errors == stored_errors
        and scores.keys() == stored.keys()
        and all(_same_number(scores[k], stored[k]) for k in scores)
    )


def _same_number(a: float, b: Any) -> bool:
    if isinstance(b, bool) or not isinstance(b, (int, float)):
        return False
    return a == b or (math.isnan(a) and math.isnan(b))


def score_without_judges(scorers: Sequence[Any], cell: Cell, text: str) -> Outcome:
    """``score_cell`` run synchronously, for the bulk of cached cells recorded before any await."""
    coro = score_cell(scorers, cell, text, _no_judge)
    try:
        coro.send(None)  # no judges: the coroutine never awaits, so it finishes here
    except StopIteration as done:
        result: Outcome = done.value
        return result
    coro.close()
    raise RuntimeError("scoring awaited without judges")
