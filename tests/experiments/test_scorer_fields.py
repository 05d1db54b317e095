"""Scorers declare the dataset columns they read; a missing one is caught when the experiment is
built, before any cell is paid for (issue 13, point 6)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from exp_helpers import client_of, requests_total

import llamakit as lk
from llamakit import scoring
from llamakit.cli import main

ROWS = [
    {"id": "fr", "country": "France", "answer": "Paris"},
    {"id": "jp", "country": "Japan", "answer": "Tokyo"},
]


def build(scorers: list[Any], rows: list[dict[str, Any]] = ROWS) -> lk.Experiment:
    return lk.Experiment(
        "fields", prompts="Capital of {{ country }}?", dataset=rows, scorers=scorers
    )


@pytest.mark.parametrize(
    "scorer",
    [
        scoring.contains(),
        scoring.exact(),
        scoring.numeric_close(),
        scoring.json_field("city"),
    ],
    ids=["contains", "exact", "numeric_close", "json_field"],
)
def test_a_scorer_reading_a_column_the_dataset_lacks_fails_at_build(scorer: Any) -> None:
    with pytest.raises(lk.ValidationError) as info:
        build([scorer])
    text = str(info.value)
    assert f"scorer {scorer.name!r} reads 'expected'" in text  # the scorer and the field
    assert "['id', 'country', 'answer']" in text  # the dataset's columns
    assert "pass field=" in text  # the argument that picks another column
    assert info.value.field == f"scorers.{scorer.name}.field"


def test_pointing_the_scorer_at_another_column_builds_and_scores(server: Any) -> None:
    exp = build([scoring.contains(field="answer")])
    run = exp.run(client_of(server), progress=False)
    assert run.status == "finished" and run.results["score_contains"].notna().all()


def test_nothing_is_sent_when_the_check_fails(server: Any) -> None:
    with pytest.raises(lk.ValidationError):
        build([scoring.contains()]).run(client_of(server), progress=False)
    assert requests_total(server) == 0


def test_a_judge_rubric_naming_a_missing_field_fails_at_build() -> None:
    grader = scoring.judge(None, "The reply must name {{ capital }}.", scale=1)
    assert grader.reads == {"capital": "rubric"}
    with pytest.raises(
        lk.ValidationError,
        match=r"scorer 'judge' reads 'capital'.*the rubric's \{\{ capital \}\} must name a dataset",
    ):
        build([grader])
    build([scoring.judge(None, "The reply must name {{ answer }}.", scale=1)])


def test_a_custom_scorer_can_declare_what_it_reads() -> None:
    def gold(text: str, row: dict) -> bool:
        return row["gold"] in text

    with pytest.raises(lk.ValidationError, match=r"scorer 'gold' reads 'gold'.*no 'gold' column"):
        build([scoring.as_scorer(gold, reads=["gold"])])
    build([scoring.as_scorer(gold)])  # undeclared: not checked (as before)


def test_rows_missing_the_value_are_named_by_id() -> None:
    rows = [
        *ROWS,
        {"id": "xx", "country": "Atlantis"},
        {"id": "yy", "country": "Mu", "answer": None},
    ]
    with pytest.raises(
        lk.ValidationError, match=r"2 of 4 dataset rows have no 'answer' value"
    ) as e:
        build([scoring.exact(field="answer")], rows)
    assert "'xx', 'yy'" in str(e.value)


def test_a_close_column_name_is_suggested() -> None:
    rows = [{"q": "2+2", "expected_answer": "4"}]
    with pytest.raises(lk.ValidationError, match=r"pass field='expected_answer'"):
        lk.Experiment("x", prompts="{{ q }}", dataset=rows, scorers=[scoring.contains()])


def test_the_cli_refuses_a_spec_whose_scorer_lacks_its_column(
    server: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: Any
) -> None:
    monkeypatch.setenv("SEGMIND_API_KEY", server.api_key)
    monkeypatch.setenv("SEGMIND_BASE_URL", server.url + "/v1")
    data = tmp_path / "d.csv"
    data.write_text("id,country,answer\nfr,France,Paris\n")
    spec = tmp_path / "s.yaml"
    spec.write_text(
        f"name: x\ndataset: {data}\nprompts: 'Capital of {{{{ country }}}}?'\nscorers: [contains]\n"
    )
    assert main(["run", str(spec), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "scorer 'contains' reads 'expected'" in err and "'answer'" in err
    assert requests_total(server) == 0


def test_a_column_present_but_empty_everywhere_is_named_as_empty() -> None:
    rows = [{"country": "France", "expected": None}, {"country": "Japan", "expected": None}]
    with pytest.raises(lk.ValidationError, match=r"every dataset row's 'expected' value is empty"):
        build([scoring.contains()], rows)
