"""Text scorers: exact, contains, regex, length_between."""

from __future__ import annotations

import numbers
import re
from collections.abc import Mapping
from typing import Any, Literal

from ..errors import ValidationError
from ._base import FunctionScorer, expected_value


def _as_text(value: Any) -> str:
    # pandas reads an integer column with a gap as float: 42.0 must still match "42".
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return str(int(value))
    return str(value)


def _references(row: Mapping[str, Any], field: str) -> list[str]:
    # A list or tuple of references means "any of these is right".
    value = expected_value(row, field)
    values = value if isinstance(value, list | tuple) else [value]
    return [_as_text(v) for v in values]


def exact(
    field: str = "expected",
    *,
    ignore_case: bool = True,
    strip: bool = True,
    name: str = "exact",
) -> FunctionScorer:
    """True when the response equals ``row[field]`` (any of them, if it is a list).

    ``strip`` trims surrounding whitespace on both sides; ``ignore_case`` compares casefolded.
    """

    def norm(s: str) -> str:
        s = s.strip() if strip else s
        return s.casefold() if ignore_case else s

    def score(text: str, row: Mapping[str, Any]) -> bool:
        got = norm(text)
        return any(got == norm(ref) for ref in _references(row, field))

    return FunctionScorer(name, score, reads={field: "field"}, bounds=(0.0, 1.0))


def contains(
    field: str = "expected",
    *,
    ignore_case: bool = True,
    name: str = "contains",
) -> FunctionScorer:
    """True when ``row[field]`` (stripped; any of them, if a list) occurs in the response."""

    def norm(s: str) -> str:
        return s.casefold() if ignore_case else s

    def score(text: str, row: Mapping[str, Any]) -> bool:
        got = norm(text)
        return any(norm(ref.strip()) in got for ref in _references(row, field))

    return FunctionScorer(name, score, reads={field: "field"}, bounds=(0.0, 1.0))


def regex(pattern: str, *, flags: int = 0, name: str = "regex") -> FunctionScorer:
    """True when ``pattern`` matches anywhere in the response (``re.search``)."""
    if not isinstance(pattern, str):
        raise ValidationError(
            f"regex pattern must be a string, got {type(pattern).__name__}", field="pattern"
        )
    try:
        compiled = re.compile(pattern, flags)
    except re.error as exc:
        raise ValidationError(
            f"regex {pattern!r} does not compile: {exc}", field="pattern"
        ) from None

    def score(text: str, row: Mapping[str, Any]) -> bool:
        return compiled.search(text) is not None

    return FunctionScorer(name, score, bounds=(0.0, 1.0))


def length_between(
    lo: int,
    hi: int | None,
    *,
    unit: Literal["chars", "words"] = "chars",
    name: str = "length_between",
) -> FunctionScorer:
    """True when the stripped response has between ``lo`` and ``hi`` chars or words (inclusive).

    ``hi=None`` means no upper bound.
    """
    for label, bound in (("lo", lo), ("hi", hi)):
        if bound is None and label == "hi":
            continue
        if isinstance(bound, bool) or not isinstance(bound, numbers.Integral) or bound < 0:
            raise ValidationError(
                f"{label} must be a non-negative integer, got {bound!r}", field=label
            )
    if hi is not None and lo > hi:
        raise ValidationError(f"lo ({lo}) is greater than hi ({hi})", field="lo")
    if unit not in ("chars", "words"):
        raise ValidationError(f"unit must be 'chars' or 'words', got {unit!r}", field="unit")

    def score(text: str, row: Mapping[str, Any]) -> bool:
        body = text.strip()
        size = len(body.split()) if unit == "words" else len(body)
        return lo <= size and (hi is None or size <= hi)

    return FunctionScorer(name, score, bounds=(0.0, 1.0))
