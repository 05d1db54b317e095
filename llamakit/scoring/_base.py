"""The scorer protocol, the wrapper every built-in scorer shares, and name checks.

A scorer is anything with a ``name`` and ``__call__(text, row) -> float | bool``. Its name becomes
the results column ``score_<name>``, so names are short identifiers and must be unique in a run.

A scorer may also declare ``reads``: the dataset columns it needs, each mapped to the argument of
its factory that picks another column (``contains()`` reads ``{"expected": "field"}``). An
experiment checks them against its dataset when it is built (:func:`check_reads`), so a column
the dataset lacks is a ValidationError before any cell is paid for, not a missing score after.
"""

from __future__ import annotations

import difflib
import inspect
import math
import numbers
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

from ..errors import ValidationError

SCORE_PREFIX = "score_"

# Names end up as column names (score_<name>) in DataFrames, CSV headers and SQLite.
_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,63}$")


@runtime_checkable
class Scorer(Protocol):
    """What the runner needs from a scorer: a column name and a grading function."""

    name: str

    def __call__(self, text: str, row: Mapping[str, Any]) -> float | bool: ...


ScoreFn = Callable[[str, Mapping[str, Any]], "float | bool"]


class FunctionScorer:
    """A named scorer around a plain ``(text, row) -> float | bool`` function.

    The result is checked so that a scorer returning, say, a string fails loudly on the cell it
    scored (the runner records the error) rather than landing in a score column as garbage.
    """

    __slots__ = ("name", "fn", "reads", "bounds")

    def __init__(
        self,
        name: str,
        fn: ScoreFn,
        *,
        reads: Mapping[str, str] | None = None,
        bounds: tuple[float, float] | None = None,
    ) -> None:
        self.name = check_name(name)
        self.fn = fn
        self.reads: dict[str, str] = dict(reads or {})
        # The scores' declared range, which sequential stopping needs; None = not declared.
        self.bounds = bounds

    def __call__(self, text: str, row: Mapping[str, Any]) -> float | bool:
        value = score_value(self.fn(text, row), scorer=self.name)
        if self.bounds is not None and not self.bounds[0] <= value <= self.bounds[1]:
            raise ValueError(
                f"scorer {self.name!r} returned {value!r}, outside its declared bounds "
                f"[{self.bounds[0]}, {self.bounds[1]}]"
            )
        return value

    def __repr__(self) -> str:
        return f"Scorer(name={self.name!r})"


def check_name(name: object, *, field: str = "name") -> str:
    """Return ``name`` if it can be a column suffix, else raise ValidationError."""
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise ValidationError(
            f"scorer name {name!r} is not usable as a column name: use 1-64 letters, digits, "
            "'_', '.' or '-' (the results column is score_<name>)",
            field=field,
        )
    return name


def score_value(value: object, *, scorer: str = "scorer") -> float | bool:
    """Check a scorer's return value: bools stay bools, other real numbers become floats."""
    if isinstance(value, bool):
        return value
    if getattr(getattr(value, "dtype", None), "kind", None) == "b":  # numpy's bool isn't a bool
        return bool(value)
    if isinstance(value, numbers.Real):
        return float(value)
    raise TypeError(
        f"scorer {scorer!r} returned {type(value).__name__} {value!r}; expected a float or bool"
    )


def as_scorer(
    fn: Callable[..., Any],
    name: str | None = None,
    *,
    reads: Iterable[str] = (),
    bounds: tuple[float, float] | None = None,
) -> Scorer:
    """Turn any ``(response_text, row) -> float | bool`` callable into a named scorer.

    ``name`` defaults to the function's ``__name__``; lambdas need an explicit name. An object that
    already has a ``name`` (a scorer) is returned as is unless ``name`` renames it. ``reads`` names
    the dataset columns ``fn`` uses, checked when the experiment is built. ``bounds=(lo, hi)``
    declares the scores' range (sequential stopping needs it); a score outside it is recorded as
    that cell's scoring error.
    """
    if bounds is not None:
        lo, hi = _checked_bounds(bounds)
        bounds = (lo, hi)
    if not callable(fn):
        raise ValidationError(f"a scorer must be callable, got {type(fn).__name__}", field="fn")
    existing = getattr(fn, "name", None)
    if isinstance(existing, str) and name is None:
        check_name(existing)
        return fn  # type: ignore[return-value]
    if hasattr(fn, "grading_messages"):
        # Wrapping would hide the judge from the runner, which sends its grading calls as cells.
        raise ValidationError("name a judge with judge(..., name=...)", field="name")
    if name is None:
        name = getattr(fn, "__name__", None)
        if name is None or not _NAME_RE.match(name):
            raise ValidationError(
                f"cannot name the scorer {fn!r} from its function name; "
                "pass as_scorer(fn, name='...')",
                field="name",
            )
    _check_arity(fn, name)
    if isinstance(reads, str):
        reads = [reads]
    return FunctionScorer(name, fn, reads={str(column): "" for column in reads}, bounds=bounds)


def _checked_bounds(bounds: Any) -> tuple[float, float]:
    try:
        lo, hi = (float(b) for b in bounds)
    except (TypeError, ValueError):
        raise ValidationError(
            f"bounds must be a pair (lo, hi) of numbers, got {bounds!r}", field="bounds"
        ) from None
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise ValidationError(f"bounds must be finite with lo < hi, got {bounds!r}", field="bounds")
    return lo, hi


def _check_arity(fn: Callable[..., Any], name: str) -> None:
    # Catch a scorer written as f(text) at construction, not on the first cell of a paid run.
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):  # some builtins have no introspectable signature
        return
    try:
        signature.bind("", {})
    except TypeError as exc:
        raise ValidationError(
            f"scorer {name!r} must accept (response_text, row): {exc}", field="fn"
        ) from None


def check_unique_names(scorers: Iterable[Any]) -> None:
    """Raise ValidationError if two scorers share a name (they would share a results column)."""
    seen: dict[str, int] = {}
    for index, scorer in enumerate(scorers):
        name = check_name(getattr(scorer, "name", None), field=f"scorers[{index}].name")
        if not callable(scorer):
            raise ValidationError(f"scorer {name!r} is not callable", field=f"scorers[{index}]")
        if name in seen:
            raise ValidationError(
                f"scorers[{seen[name]}] and scorers[{index}] are both named {name!r}; "
                "give one a different name (every factory takes name=...)",
                field=f"scorers[{index}].name",
            )
        seen[name] = index


def check_reads(scorers: Iterable[Any], rows: Sequence[tuple[str, Mapping[str, Any]]]) -> None:
    """Raise ValidationError if a scorer reads a column that some dataset row lacks or leaves empty.

    ``rows`` are ``(item_id, row)`` pairs. The message names the scorer, the column, the
    dataset's columns and the argument that points the scorer at another column.
    """
    columns = list(dict.fromkeys(str(k) for _, row in rows for k in row))
    for scorer in scorers:
        reads = getattr(scorer, "reads", None) or {}
        for column, argument in reads.items():
            if argument == "rubric":
                continue  # a judge rubric's fields render as a template: rows.py checks them,
                # honouring the experiment's missing= policy
            # A blank reference is no reference: contains("") would pass every reply.
            absent = [item_id for item_id, row in rows if _no_reference(row.get(column))]
            if not absent:
                continue
            name = getattr(scorer, "name", "?")
            if column not in columns:
                problem = f"the dataset has no {column!r} column (its columns: {columns})"
            elif len(absent) == len(rows):
                problem = f"every dataset row's {column!r} value is empty; fill the column"
            else:
                shown = ", ".join(repr(i) for i in absent[:5]) + (" ..." if len(absent) > 5 else "")
                problem = (
                    f"{len(absent)} of {len(rows)} dataset rows have no {column!r} value "
                    f"(item ids {shown}); fill them or drop those rows"
                )
            others = [c for c in columns if c != column]
            close = difflib.get_close_matches(column, others, n=1, cutoff=0.3)
            how = _how_to_fix(column, argument, columns, close)
            raise ValidationError(
                f"scorer {name!r} reads {column!r}, but {problem}{how}",
                field=f"scorers.{name}.{argument or column}",
            )


def _no_reference(value: object) -> bool:
    return is_missing(value) or (isinstance(value, str) and not value.strip())


def _how_to_fix(column: str, argument: str, columns: list[str], close: list[str]) -> str:
    """The fix for a column a scorer reads but the rows lack, pointing at what to change."""
    if column in columns:
        return ""  # the column is the one asked for; its values are what is missing
    if not argument:
        return ""
    example = repr(close[0]) if close else "'<column>'"
    return f"; pass {argument}={example} to read another column"


def is_missing(value: object) -> bool:
    """None, NaN, pandas.NA and NaT: an absent dataset value (checked without importing pandas)."""
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return type(value).__name__ in {"NAType", "NaTType"}


def expected_value(row: Mapping[str, Any], field: str) -> Any:
    """The row's reference value; a clear error (recorded per cell) when the row has none."""
    try:
        value = row[field]
    except (KeyError, IndexError):
        raise ValidationError(
            f"the dataset row has no {field!r} column to score against", field=field
        ) from None
    if is_missing(value):
        raise ValidationError(f"the dataset row's {field!r} value is empty", field=field)
    return value
