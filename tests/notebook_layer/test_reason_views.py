"""The reason beside the score: CompareView shows each score's reason (a judge's reply, why a
scorer gave none) and RunView, once a run ends, which scorers left cells unscored and why."""

from __future__ import annotations

from typing import Any

import pytest

import llamakit as lk
from llamakit import scoring
from llamakit.widgets import CompareView, RunView

RULES = [
    {"pattern": r"<response-\w+>\s*7\s*</response-\w+>", "reply": "Right.\nGRADE: 5/5"},
    {"pattern": "Response to grade", "reply": "GRADE: 1/5\nToo long."},
]


def _picky(text: str, row: dict) -> float:
    if not text.strip().isdigit():
        raise ValueError("not a bare number")
    return 1.0


@pytest.fixture
def judged_run(run_store: Any) -> Any:
    exp = lk.Experiment(
        "reasons",
        prompts={
            "terse": [
                {"role": "system", "content": "Reply with only the number."},
                {"role": "user", "content": "What is 3 + {{ x }}?"},
            ],
            "worded": "What is 3 + {{ x }}?",
        },
        dataset=[{"id": "q1", "x": 4}],
        scorers=[scoring.judge(None, "Is it {{ x + 3 }}?", reask=False), scoring.as_scorer(_picky)],
    )
    with lk.local_server(backend="scripted", credits=1.0, rules=RULES) as srv:
        return exp.run(srv.client(), store=run_store, progress=False)


def test_compareview_shows_each_reason_beside_its_score(judged_run) -> None:
    view = CompareView(judged_run)
    view.show("q1")
    terse, worded = view.shown["terse"], view.shown["worded"]
    assert terse["scores"] == {"judge": 1.0, "_picky": 1.0}
    assert terse["reasons"] == {"judge": "Right.\nGRADE: 5/5", "_picky": None}
    assert worded["scores"]["judge"] is None and worded["scores"]["_picky"] is None
    assert worded["reasons"]["judge"].startswith("unscored: UnscoredReply")
    assert worded["reasons"]["_picky"] == "unscored: ValueError: not a bare number"
    card = view.cards.children[1].value
    assert "llamakit-compare-reason" in card and "Too long." in card
    assert "not a bare number" in card


def test_runview_lists_unscored_cells_with_their_reason(judged_run) -> None:
    view = RunView(judged_run)
    assert view.unscored["judge"][0] == 1 and "Too long." in view.unscored["judge"][1]
    assert view.unscored["_picky"] == (1, "unscored: ValueError: not a bare number")
    assert "Unscored" in view.unscored_label.value
    assert "not a bare number" in view.unscored_label.value
