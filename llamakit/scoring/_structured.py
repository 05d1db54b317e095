"""Scorers that parse the response: is_json, json_field, numeric_close."""

from __future__ import annotations

import json
import math
import numbers
import re
from collections.abc import Mapping
from typing import Any

from ..errors import ValidationError
from ._base import FunctionScorer, expected_value

# Models often wrap JSON in a Markdown code fence; the fence is presentation, not content.
_FENCE = re.compile(r"^```[A-Za-z0-9_-]*[ \t]*\n(.*?)\n?```$", re.DOTALL)

# A number as people write it: optional sign (ASCII or Unicode minus) and currency sign, thousands
# separators, decimals, exponent. The lookbehind stops "x2", "H2O" or the "5" of "3.4.5" from
# counting, and reads "3-5" as 3 and 5 rather than 3 and -5.
_NUMBER = re.compile(
    r"""
    (?<![\w.])
    (?P<sign>[-\u2212])?
    [$\u20ac\u00a3]?
    (?P<body>
        (?:[0-9]{1,3}(?:,[0-9]{3})+|[0-9]+)(?:\.[0-9]+)?
        | \.[0-9]+
    )
    (?P<exp>[eE][-+]?[0-9]+)?
    """,
    re.VERBOSE,
)
_UNSET = object()


def parse_json(text: str) -> Any:
    """Parse the response as JSON (surrounding whitespace and a code fence ignored)."""
    body = text.strip()
    fenced = _FENCE.match(body)
    if fenced:
        body = fenced.group(1).strip()
    return json.loads(body)


def last_number(text: str) -> float | None:
    """The last number written in ``text`` ("1,234.5", "-3", "$12", "1e-3"), or None."""
    matches = list(_NUMBER.finditer(text))
    if not matches:
        return None
    m = matches[-1]
    value = float(m.group("body").replace(",", "") + (m.group("exp") or ""))
    return -value if m.group("sign") else value


def is_json(*, name: str = "is_json") -> FunctionScorer:
    """True when the response parses as JSON (any JSON value; a Markdown code fence is allowed)."""

    def score(text: str, row: Mapping[str, Any]) -> bool:
        try:
            parse_json(text)
        except ValueError:
            return False
        return True

    return FunctionScorer(name, score, bounds=(0.0, 1.0))


def _parse_path(path: str) -> list[str]:
    if not isinstance(path, str) or not path:
        raise ValidationError(
            f"json path must be a non-empty string like 'a.b.0', got {path!r}", field="path"
        )
    parts = path.split(".")
    if any(part == "" for part in parts):
        raise ValidationError(f"json path {path!r} has an empty segment", field="path")
    return parts


def _walk(value: Any, parts: list[str]) -> Any:
    for part in parts:
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return _UNSET
    return value


def _as_number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, numbers.Real):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip().replace(",", ""))
        except ValueError:
            return None
    return None


def _same(got: Any, want: Any, *, ignore_case: bool) -> bool:
    # The reference usually comes from a CSV (a string); the response value is typed JSON.
    if isinstance(got, bool) or got is None or isinstance(got, dict | list):
        if isinstance(want, str):
            try:
                want = json.loads(want.strip())
            except ValueError:
                # A CSV cell reads "True", which is not JSON but clearly means true.
                return isinstance(got, bool) and want.strip().casefold() == str(got).casefold()
        if isinstance(got, bool) or isinstance(want, bool):
            return isinstance(got, bool) and isinstance(want, bool) and got == want
        return bool(got == want)
    if isinstance(got, numbers.Real):
        want_number = _as_number(want)
        return want_number is not None and math.isclose(
            float(got), want_number, rel_tol=1e-9, abs_tol=0.0
        )
    got_text, want_text = str(got).strip(), str(want).strip()
    if ignore_case:
        got_text, want_text = got_text.casefold(), want_text.casefold()
    return got_text == want_text


def json_field(
    path: str,
    field: str = "expected",
    *,
    ignore_case: bool = True,
    name: str = "json_field",
) -> FunctionScorer:
    """True when the response is JSON and the value at ``path`` equals ``row[field]``.

    ``path`` is dot-separated: keys for objects, indexes for arrays ("answer.items.0"). A response
    that is not JSON or lacks the path scores False. Numbers compare numerically ("42" == 42.0),
    strings after stripping (casefolded when ``ignore_case``), objects/arrays/booleans/null against
    the reference parsed as JSON.
    """
    parts = _parse_path(path)

    def score(text: str, row: Mapping[str, Any]) -> bool:
        want = expected_value(row, field)
        try:
            document = parse_json(text)
        except ValueError:
            return False
        got = _walk(document, parts)
        return got is not _UNSET and _same(got, want, ignore_case=ignore_case)

    return FunctionScorer(name, score, reads={field: "field"}, bounds=(0.0, 1.0))


def numeric_close(
    field: str = "expected",
    *,
    rel_tol: float = 1e-6,
    abs_tol: float = 1e-9,
    name: str = "numeric_close",
) -> FunctionScorer:
    """True when the last number in the response is close to ``row[field]`` (``math.isclose``).

    "The total is $1,234.50." reads as 1234.5; a response with no number scores False. The
    reference may be a number or a string holding one ("1,234").
    """
    for label, tol in (("rel_tol", rel_tol), ("abs_tol", abs_tol)):
        if isinstance(tol, bool) or not isinstance(tol, numbers.Real) or not tol >= 0:
            raise ValidationError(
                f"{label} must be a non-negative number, got {tol!r}", field=label
            )

    def score(text: str, row: Mapping[str, Any]) -> bool:
        raw = expected_value(row, field)
        want = _as_number(raw)
        if want is None and isinstance(raw, str):
            want = last_number(raw)
        if want is None:
            raise ValidationError(f"the row's {field!r} value {raw!r} is not a number", field=field)
        got = last_number(text)
        return got is not None and math.isclose(got, want, rel_tol=rel_tol, abs_tol=abs_tol)

    return FunctionScorer(name, score, reads={field: "field"}, bounds=(0.0, 1.0))
