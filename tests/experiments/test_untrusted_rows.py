"""Values that would be rendered wrong are refused when the experiment is built (issue 11, point 3):
a missing value a template reads (empty CSV cell, NaN/None/pd.NA in a DataFrame, null or an
absent key in a JSONL line) and text that is not UTF-8 (a lone surrogate). Nothing is sent."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from exp_helpers import client_of, requests_total

import llamakit as lk
from llamakit import scoring
from llamakit.experiment.spec import load_spec

PROMPT = "Capital of {{ country }}?"


def _refused(dataset: Any, match: str, **kw: Any) -> lk.ValidationError:
    with pytest.raises(lk.ValidationError, match=match) as info:
        lk.Experiment("e", prompts={"v": PROMPT}, dataset=dataset, **kw)
    return info.value


def test_an_empty_csv_cell_is_refused_naming_row_column_and_file(tmp_path: Path) -> None:
    path = tmp_path / "countries.csv"
    path.write_text("id,country\nfr,France\nxx,\nde,Germany\n", encoding="utf-8")
    error = _refused(path, "countries.csv row 'xx': column 'country' is ''")
    assert "prompt 'v' reads it" in str(error) and "missing='empty'" in str(error)
    assert error.field == "dataset[xx].country"


@pytest.mark.parametrize("hole", [None, math.nan, pd.NA, pd.NaT], ids=repr)
def test_a_dataframe_hole_is_refused(hole: Any) -> None:
    frame = pd.DataFrame({"id": ["a", "b"], "country": ["France", "x"]}, dtype=object)
    frame.loc[1, "country"] = hole
    _refused(frame, "row 'b': column 'country' is None")


def test_null_and_absent_keys_in_jsonl_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "rows.jsonl"
    lines = [{"id": "1", "country": "Peru"}, {"id": "2", "country": None}, {"id": "3"}]
    path.write_text("\n".join(json.dumps(r) for r in lines), encoding="utf-8")
    _refused(path, "rows.jsonl row '2': column 'country' is None")
    path.write_text("\n".join(json.dumps(r) for r in [lines[0], lines[2]]), encoding="utf-8")
    _refused(path, "rows.jsonl row '3': column 'country' is absent")


def test_a_column_no_row_has_is_still_a_typo_error() -> None:
    _refused([{"id": "1", "nation": "Peru"}], "'country' is undefined.*has columns")


def test_missing_empty_renders_missing_values_as_empty_text(server: Any) -> None:
    rows = [{"id": "a", "country": "Peru", "hint": "Andes"}, {"id": "b", "country": "Chad"}]
    rows.append({"id": "c", "country": "Mali", "hint": math.nan})
    prompt = "{{ country }}{% if hint %} ({{ hint }}){% endif %}|{{ hint }}"
    with pytest.raises(lk.ValidationError, match="row 'b': column 'hint' is absent"):
        lk.Experiment("e", prompts=prompt, dataset=rows)
    exp = lk.Experiment("e", prompts=prompt, dataset=rows, missing="empty")
    assert [c.messages[0]["content"] for c in exp.cells("m")] == [
        "Peru (Andes)|Andes",
        "Chad|",
        "Mali|",
    ]
    run = exp.run(client_of(server), progress=False)
    assert run.status == "finished" and len(run.results) == 3


def test_values_no_template_reads_may_be_missing() -> None:
    rows = [{"id": "a", "country": "Peru", "note": None, "expected": "Lima"}]
    exp = lk.Experiment("e", prompts=PROMPT, dataset=rows, scorers=[scoring.contains()])
    assert exp.items[0].row["note"] is None


def test_a_judge_rubric_reading_a_missing_value_is_refused() -> None:
    judge = scoring.judge(None, "The answer must be {{ expected }}.")
    rows = [{"id": "a", "country": "Peru", "expected": "Lima"}, {"id": "b", "country": "Chad"}]
    with pytest.raises(lk.ValidationError, match="row 'b'.*'expected'.*rubric of judge 'judge'"):
        lk.Experiment("e", prompts=PROMPT, dataset=rows, scorers=[judge])
    exp = lk.Experiment("e", prompts=PROMPT, dataset=rows, scorers=[judge], missing="empty")
    rubric = judge.grading_messages("x", exp.items[1].row)[1]["content"]
    assert "The answer must be ." in rubric and "None" not in rubric


def test_the_missing_policy_is_checked_and_readable_from_a_spec(tmp_path: Path) -> None:
    _refused([{"country": "Peru"}], "missing must be one of", missing="skip")
    (tmp_path / "rows.csv").write_text("country,hint\nPeru,\n", encoding="utf-8")
    spec = tmp_path / "s.yaml"
    spec.write_text("name: s\ndataset: rows.csv\nprompts: '{{ country }} {{ hint }}'\n")
    with pytest.raises(lk.ValidationError, match="row '0': column 'hint' is ''"):
        load_spec(spec).experiment()
    spec.write_text(spec.read_text() + "missing: empty\n")
    assert load_spec(spec).experiment().cells("m")[0].messages[0]["content"] == "Peru "


@pytest.mark.parametrize(
    "row,field",
    [
        ({"country": "\ud83d"}, "country"),
        ({"country": "ok \udfff ok"}, "country"),
        ({"country": "Peru", "tags": ["fine", "bad \ud800"]}, "tags[1]"),
        ({"country": "Peru", "meta": {"k": "\udc80"}}, "meta.k"),
        ({"country": "Peru", "\ud83d": "x"}, "a column name"),
    ],
    ids=["value", "middle", "in a list", "in a dict", "column name"],
)
def test_text_that_is_not_utf8_is_refused_naming_row_and_field(
    server: Any, row: dict[str, Any], field: str
) -> None:
    error = _refused([{"id": "r1", **row}], "row 'r1', field .*not valid UTF-8")
    assert field in str(error)
    assert requests_total(server) == 0


def test_a_lone_surrogate_from_a_jsonl_escape_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "rows.jsonl"
    path.write_text('{"id": "smile", "country": "\\ud83d"}\n', encoding="utf-8")
    _refused(path, "rows.jsonl row 'smile', field country: the text is not valid UTF-8")


def test_a_template_producing_a_surrogate_is_refused() -> None:
    with pytest.raises(lk.ValidationError, match="prompt 'v' message 0 renders text that is not"):
        lk.Experiment("e", prompts={"v": "{{ country }} \ud83d"}, dataset=[{"country": "Peru"}])


def test_nothing_is_sent_or_stored_when_a_row_is_refused(server: Any, tmp_path: Path) -> None:
    store = lk.Store(tmp_path / "s.db")
    with pytest.raises(lk.ValidationError):
        lk.Experiment("e", prompts=PROMPT, dataset=[{"country": None}]).run(
            client_of(server), store=store, progress=False
        )
    assert requests_total(server) == 0 and len(lk.runs(store)) == 0


@pytest.mark.parametrize(
    "text,match",
    [
        ("id,capital\nus,Washington, D.C.\n", r"line 2: 3 cells for 2 columns; quote values"),
        ("id,country,country\nfr,France,Spain\n", "names column 'country' twice"),
    ],
    ids=["unquoted comma", "duplicate header"],
)
def test_a_csv_that_would_shift_values_is_refused(tmp_path: Path, text: str, match: str) -> None:
    path = tmp_path / "rows.csv"
    path.write_text(text, encoding="utf-8")
    _refused(path, f"rows.csv.*{match}")


def test_a_jsonl_object_giving_a_key_twice_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "rows.jsonl"
    path.write_text('{"id": "1", "country": "Peru", "country": "Chad"}\n', encoding="utf-8")
    _refused(path, "rows.jsonl line 1 is not JSON: key 'country' appears twice")
