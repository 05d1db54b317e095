"""Fuzzing untrusted input (issue 11, point 6): templates, dataset rows and replies generated from
hostile alphabets (lone surrogates, control characters, CSV and prompt delimiters, Jinja syntax
inside values, amplifiers such as ``range(100000)`` and ``'x' * 999999``).

Properties: nothing runs code (a canary file is never written), nothing hangs past the render
bound, and every input either renders faithfully or fails with a ValidationError; every reply
survives a CSV round trip exactly, and the spreadsheet-safe export never starts a cell with a
formula character.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reliability_helpers import FUZZED

import llamakit as lk
from llamakit.experiment.csv_export import FORMULA_STARTS, write_csv
from llamakit.experiment.templates import parse_prompts
from llamakit.templating.sandbox import MAX_PROMPT_CHARS, RENDER_DEADLINE_S

FUZZ = settings(
    max_examples=200,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
# The render bound is RENDER_DEADLINE_S; a loaded 2-core CI machine gets generous slack on top.
SLOW = RENDER_DEADLINE_S + 2.5
CANARY = "PWNED_BY_FUZZ"

HOSTILE_CHARS = st.one_of(
    st.characters(codec=None, exclude_categories=()),
    st.sampled_from(
        [
            "\ud800",
            "\udfff",
            "\ud83d",
            "\x00",
            "\r",
            "\r\n",
            "\n",
            "\t",
            "\x1b",
            "\u2028",
            "\u202e",
            "\ufeff",
            '"',
            "'",
            ",",
            ";",
            "=",
            "+",
            "-",
            "@",
            "{{",
            "}}",
            "{%",
            "%}",
            "{#",
            "</response>",
            "<|eot_id|>",
            "<|start_header_id|>",
        ]
    ),
)
HOSTILE_TEXT = st.lists(HOSTILE_CHARS, max_size=24).map("".join)
CLEAN_TEXT = HOSTILE_TEXT.filter(lambda s: _utf8(s))

AMPLIFIERS = st.sampled_from(
    [
        "{{ q }}",
        "{{ q * 999999 }}",
        "{{ 'x' * 999999 }}",
        "{{ range(100000) | join('x' * 999999) }}",
        "{{ range(100000) | map('string') | join(q) }}",
        "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
        "{% for i in range(100000) %}{{ q }}{% endfor %}",
        "{% set s = q ~ q %}{% set s = s ~ s %}{% set s = s ~ s %}{{ s }}",
        "{{ q | indent(999999) }}",
        "{{ q | indent('x' * 99999) }}",
        "{{ q | center(999999) }}",
        "{{ ('{0}' * 99999).format(q * 999) }}",
        "{{ ([q * 9999] * 999) }}",
        "{{ lipsum(99999) }}",
        "{{ [1] | batch(99999999, 'x') | list }}",
        "{% macro f() %}{{ f() }}{{ f() }}{% endmacro %}{{ f() }}",
        "{{ cycler.__init__.__globals__.os.system('touch " + CANARY + "') }}",
        "{{ joiner.__init__.__globals__ }}",
        "{{ namespace.__init__.__globals__ }}",
        "{{ self }}",
        "{{ q.__class__.__mro__ }}",
        "{{ q | attr('__class__') }}",
        "{{ '%s' % q }}",
        "{% for x in a %}{{ x }}{% endfor %}",
        "{{ a | join(q) }}",
        "{{ missing }}",
        "{% if q %}",
    ]
)
TEMPLATE = st.lists(st.one_of(AMPLIFIERS, HOSTILE_TEXT), min_size=1, max_size=4).map("".join)
VALUE = st.one_of(
    HOSTILE_TEXT,
    st.none(),
    st.just(float("nan")),
    st.integers(),
    st.lists(HOSTILE_TEXT, max_size=3),
    st.just("x" * 999_999),
)
ROW = st.fixed_dictionaries({"q": VALUE, "a": VALUE})


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


@FUZZ
@given(template=TEMPLATE, row=ROW)
def test_hostile_templates_render_within_bounds_or_fail_with_a_validation_error(
    in_tmp: Path, template: str, row: dict[str, Any]
) -> None:
    FUZZED["hostile templates"] += 1
    started = time.perf_counter()
    try:
        (prompt,) = parse_prompts({"v": template})
        (message,) = prompt.render(row, item_id="r")
    except lk.ValidationError as exc:
        assert exc.field and str(exc).startswith("prompt 'v' message 0")
    else:
        assert isinstance(message["content"], str) and _utf8(message["content"])
        assert len(message["content"]) <= MAX_PROMPT_CHARS
    assert time.perf_counter() - started < SLOW
    assert not os.path.exists(in_tmp / CANARY)


@FUZZ
@given(rubric=TEMPLATE, row=ROW)
def test_hostile_judge_rubrics_are_held_to_the_same_bounds(
    in_tmp: Path, rubric: str, row: dict[str, Any]
) -> None:
    FUZZED["hostile rubrics"] += 1
    started = time.perf_counter()
    try:
        judge = lk.scoring.judge(None, rubric if rubric.strip() else "x" + rubric)
        messages = judge.grading_messages("reply", row)
    except lk.ValidationError as exc:
        assert exc.field == "rubric" and "rubric of judge 'judge'" in str(exc)
    else:
        assert all(len(m["content"]) <= MAX_PROMPT_CHARS + 1000 for m in messages)
    assert time.perf_counter() - started < SLOW
    assert not os.path.exists(in_tmp / CANARY)


@FUZZ
@given(values=st.lists(HOSTILE_TEXT, min_size=1, max_size=4), prefix=CLEAN_TEXT)
def test_row_values_render_verbatim_or_are_refused_at_build(values: list[str], prefix: str) -> None:
    """Jinja syntax, delimiters and control characters in a value are text; a value that is
    missing ("") or not UTF-8 is refused naming its row and column."""
    FUZZED["hostile rows"] += 1
    rows = [{"id": f"r{i}", "v": v} for i, v in enumerate(values)]
    source = prefix.replace("{", "(").replace("}", ")").replace("%", "") + "[{{ v }}]"
    try:
        exp = lk.Experiment("fuzz", prompts={"p": source}, dataset=rows)
    except lk.ValidationError as exc:
        bad = [r for r in rows if r["v"] == "" or not _utf8(r["v"])]
        assert bad, str(exc)
        assert any(f"row '{r['id']}'" in str(exc) for r in bad), str(exc)
        return
    rendered = [c.messages[0]["content"] for c in exp.cells("m")]
    # Jinja reads a template's own line breaks as \n (as YAML does); a value's are kept.
    expected_prefix = source[: -len("[{{ v }}]")].replace("\r\n", "\n").replace("\r", "\n")
    assert rendered == [f"{expected_prefix}[{v}]" for v in values]


@FUZZ
@given(replies=st.lists(CLEAN_TEXT, min_size=1, max_size=6))
def test_every_reply_survives_the_csv_round_trip(tmp_path: Path, replies: list[str]) -> None:
    FUZZED["hostile replies (csv)"] += 1
    frame = pd.DataFrame(
        {"item_id": [f"i{n}" for n in range(len(replies))], "response": replies, "n": 1.5}
    )
    write_csv(frame, tmp_path / "exact.csv")
    back = pd.read_csv(tmp_path / "exact.csv", dtype={"response": str}, keep_default_na=False)
    assert (
        back["response"].tolist() == replies
        and back["item_id"].tolist() == frame["item_id"].tolist()
    )
    write_csv(frame, tmp_path / "excel.csv", excel=True)
    safe = pd.read_csv(
        tmp_path / "excel.csv", dtype={"response": str}, keep_default_na=False, encoding="utf-8-sig"
    )
    for original, shown in zip(replies, safe["response"], strict=True):
        assert not shown.startswith(FORMULA_STARTS)
        assert shown == ("'" + original if original.startswith(FORMULA_STARTS) else original)
