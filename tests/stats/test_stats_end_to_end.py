"""Scorers and statistics on a real run: Experiment -> scripted local server over HTTP -> results
-> summarize / paired_compare, with a judge whose grading calls go to the same server."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

import llamakit as lk
from llamakit import scoring
from llamakit.scoring import stats

# The scripted backend answers "17 + 25 = 42", or just "42" when the system message asks for
# only the number. The judge's grading request quotes the response, so these rules grade a bare
# number PASS and anything else FAIL, in the verdict protocol's final line.
JUDGE_RULES = [
    {
        "pattern": r"<response-\w+>\s*-?\d+\s*</response-\w+>",
        "reply": "Just the number.\nVERDICT: PASS",
    },
    {"pattern": r"Response to grade", "reply": "Too wordy.\nVERDICT: FAIL"},
]
ITEMS = 8


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    # Module scope runs before the autouse isolated home: give the run a store of its own.
    store = lk.Store(tmp_path_factory.mktemp("stats-e2e") / "llamakit.db")
    with lk.local_server(backend="scripted", credits=100.0, rules=JUDGE_RULES) as server:
        experiment = lk.Experiment(
            "stats-e2e",
            prompts={
                "terse": [
                    {"role": "system", "content": "Reply with only the number."},
                    {"role": "user", "content": "What is {{ a }} + {{ b }}?"},
                ],
                "worded": "What is {{ a }} + {{ b }}?",
            },
            dataset=[
                {"id": f"q{i}", "a": i, "b": 10 * i, "expected": str(11 * i)} for i in range(ITEMS)
            ],
            repeats=2,
            scorers=[
                scoring.exact(),
                scoring.numeric_close(),
                scoring.length_between(1, 3, name="short"),
                scoring.as_scorer(lambda text, row: len(text) / 100, name="len_frac"),
                scoring.judge(None, "The reply must be only the number {{ expected }}.", scale=1),
            ],
        )
        yield experiment.run(server.client(), progress=False, store=store)


def test_summary_of_a_real_run(run) -> None:
    assert run.status == "finished"
    summary = stats.summarize(run.results)
    assert list(summary.index) == ["terse", "worded"]
    terse, worded = summary.loc["terse"], summary.loc["worded"]
    assert (terse["n"], terse["items"], terse["k"], terse["errors"]) == (2 * ITEMS, ITEMS, 2, 0)
    assert terse["score_exact_mean"] == 1.0 and worded["score_exact_mean"] == 0.0
    assert terse["score_numeric_close_mean"] == worded["score_numeric_close_mean"] == 1.0
    assert terse["score_judge_mean"] == 1.0 and worded["score_judge_mean"] == 0.0
    assert terse["score_exact_pass@k"] == 1.0 and worded["score_exact_pass^k"] == 0.0
    assert terse["score_exact_consistency"] == 1.0  # the scripted backend is deterministic
    assert "score_len_frac_pass@k" not in summary.columns  # not a pass/fail score
    assert terse["latency_p50"] > 0 and terse["credits"] > 0 and terse["completion_tokens"] > 0


def test_paired_comparison_of_a_real_run(run) -> None:
    c = run.compare("terse", "worded", "exact")
    assert isinstance(c, stats.Comparison)
    assert (c.n_items, c.diff, c.wins, c.losses) == (ITEMS, 1.0, ITEMS, 0)
    assert c.p_value == pytest.approx(2 / 2**ITEMS)
    judged = stats.paired_compare(run.results, "worded", "terse", "judge")
    assert judged.diff == -1.0
