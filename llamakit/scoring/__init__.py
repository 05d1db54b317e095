"""Scorers: turn a response (and its dataset row) into a score.

A scorer has a ``name`` (its results column is ``score_<name>``) and is called as
``scorer(response_text, row) -> float | bool``. Deterministic scorers::

    exact, contains, regex, is_json, json_field, length_between, numeric_close

any Python function via ``as_scorer(fn, name=None)``, and a model-graded ``judge(client, rubric)``
whose replies are read by the one verdict parser, ``read_verdict`` (protocol in ``_verdict``).
Bad configuration (a regex that does not compile, lo > hi) raises ValidationError when the scorer
is built; a scorer that raises while scoring a cell is recorded on that cell by the runner.

Layer: scorers and ``llamakit.scoring.stats`` (summaries and paired comparisons of
``run.results``) may import only errors and _defaults. The runner calls them (judges too, through
their ``grading_messages``), so they never import the runner.
"""

from __future__ import annotations

from ._base import (
    SCORE_PREFIX,
    FunctionScorer,
    Scorer,
    as_scorer,
    check_name,
    check_reads,
    check_unique_names,
    score_value,
)
from ._judge import DEFAULT_JUDGE_MAX_TOKENS, JudgeScorer, UnscoredReply, judge, response_tag
from ._match import contains, exact, length_between, regex
from ._structured import is_json, json_field, last_number, numeric_close, parse_json
from ._verdict import Verdict, read_verdict

__all__ = [
    "DEFAULT_JUDGE_MAX_TOKENS",
    "SCORE_PREFIX",
    "FunctionScorer",
    "JudgeScorer",
    "Scorer",
    "UnscoredReply",
    "Verdict",
    "as_scorer",
    "check_name",
    "check_reads",
    "check_unique_names",
    "contains",
    "exact",
    "is_json",
    "json_field",
    "judge",
    "last_number",
    "length_between",
    "numeric_close",
    "parse_json",
    "read_verdict",
    "regex",
    "response_tag",
    "score_value",
]
