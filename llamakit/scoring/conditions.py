"""Conditions: what one set of repeats samples. A condition is (model, variant, params).

Statistics group by condition, and only repeats of one condition on one item are samples of the
same thing (pass@k, pass^k, consistency). This module names the condition columns of a results
frame and turns what a user writes (``"terse"`` or ``("terse", {"temperature": 0.7})``) into the
rows of one condition.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import pandas as pd

from ..errors import ValidationError

# The columns that together identify a condition, in the order a summary's index shows them.
CONDITION_COLUMNS = ("model", "variant", "params")


def condition_columns(results: pd.DataFrame) -> list[str]:
    """The columns a summary groups by by default: ``variant``, plus ``params`` (and ``model``)
    when the results hold more than one value of it, so one setting keeps a plain index."""
    return [
        col
        for col in CONDITION_COLUMNS
        if col == "variant" or (col in results.columns and results[col].nunique(dropna=False) > 1)
    ]


def unit_columns(results: pd.DataFrame) -> list[str]:
    """Columns whose values identify one condition on one item: the repeats of a unit are
    samples of one thing, whatever the summary groups by."""
    return ["item_id", *(c for c in CONDITION_COLUMNS if c in results.columns)]


def _params(value: Any) -> dict[str, Any]:
    if isinstance(value, Mapping):
        return dict(value)
    try:
        parsed = json.loads(value) if isinstance(value, str) else None
    except ValueError:
        parsed = None
    return parsed if isinstance(parsed, dict) else {}


def label(condition: Any) -> str:
    """A short name for a condition: ``terse`` or ``terse {"temperature":0.7}``."""
    if isinstance(condition, tuple) and len(condition) == 2:
        params = json.dumps(dict(condition[1]), sort_keys=True, separators=(",", ":"))
        return f"{condition[0]} {params}"
    return str(condition)


def select(results: pd.DataFrame, condition: Any, *, field: str) -> tuple[pd.Series, str]:
    """The rows of ``condition`` (a variant name, or ``(variant, {param: value})`` where the
    params need only name what tells the variant's settings apart) and its label.

    Raises ValidationError for an unknown variant, params that match no setting or several, and
    a bare variant name that ran with several param settings (the settings are listed)."""
    if isinstance(condition, tuple) and len(condition) == 2 and isinstance(condition[1], Mapping):
        variant, wanted = condition[0], dict(condition[1])
    elif isinstance(condition, str):
        variant, wanted = condition, None
    else:
        raise ValidationError(
            f"a condition is a variant name or (variant, {{param: value}}), got {condition!r}",
            field=field,
        )
    variants = sorted(map(str, results["variant"].dropna().unique()))
    if variant not in variants:
        raise ValidationError(
            f"unknown variant {variant!r}; the results have {variants}", field=field
        )
    rows = results["variant"] == variant
    settings = list(dict.fromkeys(results.loc[rows, "params"])) if "params" in results else []
    if wanted is None:
        if len(settings) > 1:
            shown = ", ".join(str(s) for s in settings)
            raise ValidationError(
                f"variant {variant!r} ran with {len(settings)} param settings ({shown}); pick one "
                f"as ({variant!r}, {{param: value}})",
                field=field,
            )
        return rows, variant
    matching = [s for s in settings if _matches(_params(s), wanted)]
    if len(matching) != 1:
        what = "no" if not matching else f"{len(matching)}"
        raise ValidationError(
            f"params {wanted} match {what} setting(s) of variant {variant!r}; its settings: "
            f"{', '.join(map(str, settings))}",
            field=field,
        )
    return rows & (results["params"] == matching[0]), label((variant, _params(matching[0])))


def _matches(params: Mapping[str, Any], wanted: Mapping[str, Any]) -> bool:
    for name, value in wanted.items():
        if name not in params:
            return False
        have = params[name]
        # 0 and 0.0 are one temperature; JSON keeps whichever the user typed.
        if isinstance(have, (int, float)) and isinstance(value, (int, float)):
            if float(have) != float(value):
                return False
        elif have != value:
            return False
    return True
