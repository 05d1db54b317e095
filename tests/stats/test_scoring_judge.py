"""The model-graded scorer: reading replies, building the grading request, bad config."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from llamakit import scoring
from llamakit.errors import ValidationError


@pytest.mark.parametrize(
    "reply, expected",
    [
        ("Score: 4/5", 0.8),
        ("The answer names the city.\n**Score:** 5 out of 5", 1.0),
        ("final score is 2", 0.4),  # a bare labelled number is on the judge's scale
        ("Score (0-5): 3", 0.6),
        ("A score of 5/5 would need sources. Score: 3/5", 0.6),  # the last score wins
        ("PASS", 1.0),
        ("Reasoning... FAIL", 0.0),
        ("pass.", 1.0),
        ("Correct", 1.0),
        ("4", 0.8),
        ("Mostly right.\n\n3/5", 0.6),
        ('{"score": 4, "reason": "ok"}', 0.8),
        ('Here you go: {"score": "2/4"}', 0.5),
        ('{"grade": "PASS"}', 1.0),
        ('{"score": true}', 1.0),
    ],
)
def test_parse(reply, expected):
    assert scoring.judge(None, "r").parse(reply) == pytest.approx(expected)


@pytest.mark.parametrize("reply", ["", "I am not sure.", "Score: 7/5", "Score: -1", "6"])
def test_unreadable_or_out_of_range_replies_raise(reply):
    with pytest.raises(ValueError):
        scoring.judge(None, "r").parse(reply)


def test_pass_fail_judge_asks_for_a_verdict():
    j = scoring.judge(None, "Is it polite?", scale=1, name="polite")
    messages = j.grading_messages("Thanks!", {})
    assert "PASS or FAIL" in messages[0]["content"]
    assert j.parse("0") == 0.0 and j.parse("1") == 1.0


def test_grading_messages_render_the_rubric_with_the_row():
    j = scoring.judge(None, "The answer must name {{ expected }}.")
    messages = j.grading_messages("It is Paris.", {"expected": "Paris", "id": 3})
    assert [m["role"] for m in messages] == ["system", "user"]
    assert "Score: N/5" in messages[0]["content"]
    assert "The answer must name Paris." in messages[1]["content"]
    assert "<response>\nIt is Paris.\n</response>" in messages[1]["content"]
    assert j.params == {"max_tokens": scoring.DEFAULT_JUDGE_MAX_TOKENS, "temperature": 0.0}
    with pytest.raises(ValidationError, match="missing field") as info:
        j.grading_messages("x", {"question": "q"})
    assert info.value.field == "rubric"


@dataclass
class _Reply:
    text: str


class _RecordingClient:
    """Stands in for llamakit.Client.chat(messages, **params) -> ChatResponse (.text)."""

    def __init__(self, reply: str) -> None:
        self.reply = reply
        self.calls: list[tuple[list[dict], dict]] = []

    def chat(self, messages, **params):
        self.calls.append((messages, params))
        return _Reply(self.reply)


def test_calling_a_judge_directly_asks_its_client():
    client = _RecordingClient("Score: 3/5")
    j = scoring.judge(client, "Grade it.", max_tokens=64)
    assert j("answer", {}) == pytest.approx(0.6)
    ((messages, params),) = client.calls
    assert params == {"max_tokens": 64, "temperature": 0.0}
    assert messages == j.grading_messages("answer", {})
    with pytest.raises(ValidationError, match="no client"):
        scoring.judge(None, "Grade it.")("answer", {})


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"rubric": "  "}, "rubric"),
        ({"rubric": "{% if %}"}, "rubric"),
        ({"scale": 0}, "scale"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"temperature": "hot"}, "temperature"),
        ({"name": "two words"}, "name"),
    ],
)
def test_bad_config_fails_at_construction(kwargs, field):
    args = {"rubric": "Grade it."} | kwargs
    with pytest.raises(ValidationError) as info:
        scoring.judge(None, **args)
    assert info.value.field == field


def test_judges_join_the_name_check_and_keep_clients_out_of_repr():
    j = scoring.judge(_RecordingClient("PASS"), "r", name="judge")
    assert repr(j) == "JudgeScorer(name='judge', scale=5, max_tokens=256)"
    with pytest.raises(ValidationError, match="both named 'judge'"):
        scoring.check_unique_names([j, scoring.as_scorer(lambda t, r: 1, name="judge")])
    with pytest.raises(ValidationError, match="judge\\(..., name=...\\)"):
        scoring.as_scorer(j, name="other")
