"""Deterministic scorers: table-driven cases and construction-time validation."""

from __future__ import annotations

import re

import pytest

from llamakit import scoring
from llamakit.errors import ValidationError


@pytest.mark.parametrize(
    "scorer, text, row, expected",
    [
        (scoring.exact(), "  Paris\n", {"expected": "paris"}, True),
        (scoring.exact(ignore_case=False), "Paris", {"expected": "paris"}, False),
        (scoring.exact(strip=False), "Paris ", {"expected": "Paris"}, False),
        (scoring.exact(), "Paris.", {"expected": "Paris"}, False),
        (scoring.exact(), "42", {"expected": 42.0}, True),  # pandas float column
        (scoring.exact(), "Lyon", {"expected": ["Paris", "Lyon"]}, True),
        (scoring.exact("answer"), "yes", {"answer": "YES", "expected": "no"}, True),
        (scoring.contains(), "The capital is PARIS.", {"expected": " Paris "}, True),
        (scoring.contains(ignore_case=False), "PARIS", {"expected": "Paris"}, False),
        (scoring.contains(), "Berlin", {"expected": ["Paris", "Berl"]}, True),
        (scoring.regex(r"\bfinal answer: \d+"), "so final answer: 12", {}, True),
        (scoring.regex(r"^yes$", flags=re.IGNORECASE | re.MULTILINE), "ok\nYES", {}, True),
        (scoring.regex(r"^yes$"), "ok\nYES", {}, False),
        (scoring.length_between(2, 5), "  abc  ", {}, True),
        (scoring.length_between(4, 5), "abc", {}, False),
        (scoring.length_between(0, 3, unit="words"), "one two three four", {}, False),
        (scoring.length_between(1, None, unit="words"), "one", {}, True),
    ],
)
def test_match_scorers(scorer, text, row, expected):
    assert scorer(text, row) is expected


@pytest.mark.parametrize(
    "text, expected",
    [
        ("The answer is 42.", 42),
        ("It costs $1,234.50 in total", 1234.5),
        ("x = -3.5", -3.5),
        ("a drop of \u22127 degrees", -7),
        ("first 10, then 20", 20),
        ("between 3-5 apples", 5),
        ("about .5 of it", 0.5),
        ("tiny: 1e-3", 0.001),
        ("1,000,000", 1_000_000),
        ("version v2 of H2O", None),
        ("no number here", None),
    ],
)
def test_last_number(text, expected):
    got = scoring.last_number(text)
    assert got == (None if expected is None else pytest.approx(expected))


@pytest.mark.parametrize(
    "text, row, expected",
    [
        ("So the total is 1,234.", {"expected": 1234}, True),
        ("So the total is 1,234.", {"expected": "1,234"}, True),
        ("-17", {"expected": "-17.0"}, True),
        ("3.14159", {"expected": 3.1416}, False),
        ("no idea", {"expected": 5}, False),
        ("It is 5, not 7", {"expected": 5}, False),  # the *last* number is the answer
    ],
)
def test_numeric_close(text, row, expected):
    assert scoring.numeric_close()(text, row) is expected
    assert scoring.numeric_close(rel_tol=1e-3)("3.14159", {"expected": 3.1416}) is True


def test_numeric_close_reference_must_be_a_number():
    with pytest.raises(ValidationError, match="not a number"):
        scoring.numeric_close()("5", {"expected": "five"})


@pytest.mark.parametrize(
    "text, expected",
    [
        ('{"a": 1}', True),
        ("```json\n[1, 2]\n```", True),
        ("42", True),
        ("{'a': 1}", False),
        ('Sure! {"a": 1}', False),
        ("", False),
    ],
)
def test_is_json(text, expected):
    assert scoring.is_json()(text, {}) is expected


@pytest.mark.parametrize(
    "path, text, want, expected",
    [
        ("a.b.0", '{"a": {"b": ["Paris", "Lyon"]}}', "paris", True),
        ("a.b.1", '{"a": {"b": ["Paris", "Lyon"]}}', "Paris", False),
        ("a.b.5", '{"a": {"b": ["Paris"]}}', "Paris", False),
        ("n", '{"n": 42}', "42", True),
        ("n", '{"n": 42.0}', 42, True),
        ("n", '{"n": "42"}', "42", True),
        ("ok", '{"ok": true}', "true", True),
        ("ok", '{"ok": true}', "True", True),
        ("ok", '{"ok": true}', 1, False),
        ("v", '{"v": null}', "null", True),
        ("v", '{"v": [1, 2]}', "[1, 2]", True),
        ("0.name", '[{"name": "x"}]', "x", True),
        ("a", "not json", "x", False),
        ("a", '["a"]', "a", False),
    ],
)
def test_json_field(path, text, want, expected):
    assert scoring.json_field(path)(text, {"expected": want}) is expected


def test_missing_reference_is_an_error_not_a_zero():
    for scorer in (scoring.exact(), scoring.contains(), scoring.json_field("a")):
        with pytest.raises(ValidationError, match="no 'expected' column"):
            scorer("x", {"question": "q"})
        with pytest.raises(ValidationError, match="empty"):
            scorer("x", {"expected": float("nan")})


@pytest.mark.parametrize(
    "build, field",
    [
        (lambda: scoring.regex("(unclosed"), "pattern"),
        (lambda: scoring.regex(b"bytes"), "pattern"),
        (lambda: scoring.length_between(5, 2), "lo"),
        (lambda: scoring.length_between(-1, 2), "lo"),
        (lambda: scoring.length_between(1, 2.5), "hi"),
        (lambda: scoring.length_between(1, 2, unit="tokens"), "unit"),
        (lambda: scoring.numeric_close(rel_tol=-1), "rel_tol"),
        (lambda: scoring.numeric_close(abs_tol=float("nan")), "abs_tol"),
        (lambda: scoring.json_field(""), "path"),
        (lambda: scoring.json_field("a..b"), "path"),
        (lambda: scoring.exact(name="has space"), "name"),
        (lambda: scoring.exact(name=""), "name"),
    ],
)
def test_bad_config_fails_at_construction(build, field):
    with pytest.raises(ValidationError) as info:
        build()
    assert info.value.field == field


def test_as_scorer_wraps_and_checks_callables():
    def shorter_than_ten(text, row):
        return len(text) < 10

    s = scoring.as_scorer(shorter_than_ten)
    assert s.name == "shorter_than_ten"
    assert s("short", {}) is True
    assert isinstance(s, scoring.Scorer)
    assert scoring.as_scorer(lambda t, r: 0.5, name="half")("x", {}) == 0.5
    assert scoring.as_scorer(s) is s
    assert scoring.as_scorer(s, name="renamed").name == "renamed"
    assert repr(s) == "Scorer(name='shorter_than_ten')"


def test_as_scorer_rejects_what_cannot_work():
    with pytest.raises(ValidationError, match="pass as_scorer"):
        scoring.as_scorer(lambda t, r: 1.0)
    with pytest.raises(ValidationError, match="callable"):
        scoring.as_scorer("exact")  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match=r"\(response_text, row\)"):
        scoring.as_scorer(lambda text: 1.0, name="one_arg")


def test_a_scorer_returning_garbage_fails_on_the_cell():
    s = scoring.as_scorer(lambda t, r: "yes", name="bad")
    with pytest.raises(TypeError, match="'bad' returned str"):
        s("x", {})
    np = pytest.importorskip("numpy")
    assert scoring.as_scorer(lambda t, r: np.bool_(True), name="nb")("x", {}) is True
    assert scoring.as_scorer(lambda t, r: np.float32(0.5), name="nf")("x", {}) == 0.5


def test_duplicate_names_are_detected():
    scorers = [scoring.exact(), scoring.contains(), scoring.exact("other")]
    with pytest.raises(ValidationError, match="scorers\\[0\\] and scorers\\[2\\]") as info:
        scoring.check_unique_names(scorers)
    assert info.value.field == "scorers[2].name"
    scoring.check_unique_names([scoring.exact(), scoring.exact("other", name="exact_other")])
    with pytest.raises(ValidationError):
        scoring.check_unique_names([object()])
