"""Scoring one cell's response: plain scorers are called in place, judges make a grading call
of their own through the runner (so it is cached, budgeted and costed like any cell)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from ._cells import Cell
from ._runner_calls import Stop, describe
from .errors import ReplayMissError

# (judge scorer, cell, response text) -> (the judge's reply, the grading call's cell key)
Judge = Callable[[Any, Cell, str], Awaitable[tuple[str, str]]]


def is_judge(scorer: Any) -> bool:
    return hasattr(scorer, "grading_messages")


async def score_cell(
    scorers: Sequence[Any], cell: Cell, text: str, judge: Judge
) -> tuple[dict, dict, dict]:
    """Scores, per-scorer errors and judge keys for one response."""
    scores: dict[str, float] = {}
    errors: dict[str, str] = {}
    judge_keys: dict[str, str] = {}
    for scorer in scorers:
        try:
            if is_judge(scorer):
                reply, judge_keys[scorer.name] = await judge(scorer, cell, text)
                value = scorer.parse(reply)
            else:
                value = scorer(text, cell.row)
            scores[scorer.name] = float(value)
        except (Stop, ReplayMissError):
            raise
        except Exception as exc:  # a scorer's failure is recorded on its cell, not fatal
            errors[scorer.name] = describe(exc)
    return scores, errors, judge_keys


async def _no_judge(scorer: Any, cell: Cell, text: str) -> tuple[str, str]:
    raise RuntimeError("scoring awaited without judges")


def score_without_judges(scorers: Sequence[Any], cell: Cell, text: str) -> tuple[dict, dict, dict]:
    """``score_cell`` run synchronously, for the bulk of cached cells recorded before any await."""
    coro = score_cell(scorers, cell, text, _no_judge)
    try:
        coro.send(None)  # no judges: the coroutine never awaits, so it finishes here
    except StopIteration as done:
        return done.value
    coro.close()
    raise RuntimeError("scoring awaited without judges")
