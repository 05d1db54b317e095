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


def _spec(condition: Any, field: str) -> tuple[str | None, str | None, dict[str, Any] | None]:
    """(model, variant, params) a user named; None for a part left out."""
    if isinstance(condition, tuple) and len(condition) == 2 and isinstance(condition[1], Mapping):
        return None, str(condition[0]), dict(condition[1])
    if isinstance(condition, str):
        return None, condition, None
    if isinstance(condition, Mapping) and condition and set(condition) <= set(CONDITION_COLUMNS):
        params = condition.get("params")
        if params is not None and not isinstance(params, Mapping):
            params = _params(params)
        model, variant = condition.get("model"), condition.get("variant")
        return (
            None if model is None else str(model),
            None if variant is None else str(variant),
            None if params is None else dict(params),
        )
    raise ValidationError(
        f"a condition is a variant name, (variant, {{param: value}}) or "
        f"{{'model': slug, 'variant': name, 'params': {{...}}}}, got {condition!r}",
        field=field,
    )


def select(results: pd.DataFrame, condition: Any, *, field: str) -> tuple[pd.Series, str]:
    """The rows of ``condition`` and its label. A condition is a variant name; or
    ``(variant, {param: value})`` where the params need only name what tells the variant's
    settings apart; or a mapping naming any of ``model``, ``variant``, ``params``. A bare name
    that is no variant but a model of the results selects that model.

    Raises ValidationError for an unknown model, variant or params, and for a condition that
    still spans several models or param settings (which ones are listed, with the fix)."""
    model, variant, wanted = _spec(condition, field)
    has_models = "model" in results.columns
    models = sorted(map(str, results["model"].dropna().unique())) if has_models else []
    variants = sorted(map(str, results["variant"].dropna().unique()))
    if model is None and variant is not None and variant not in variants and variant in models:
        model, variant = variant, None
    rows = pd.Series(True, index=results.index)
    if model is not None:
        if model not in models:
            raise ValidationError(
                f"unknown model {model!r}; the results have {models}", field=field
            )
        rows &= results["model"] == model
    if variant is not None:
        if variant not in variants:
            raise ValidationError(
                f"unknown variant {variant!r}; the results have {variants}", field=field
            )
        rows &= results["variant"] == variant
    parts = []
    if model is not None or len(models) > 1:
        in_rows = sorted(map(str, results.loc[rows, "model"].dropna().unique()))
        if len(in_rows) > 1:
            raise ValidationError(
                f"condition {condition!r} ran on {len(in_rows)} models ({', '.join(in_rows)}); "
                f"pick one as {{'model': {in_rows[0]!r}, 'variant': ...}}",
                field=field,
            )
        parts.append(in_rows[0] if in_rows else str(model))
    if variant is None:
        in_rows = sorted(map(str, results.loc[rows, "variant"].dropna().unique()))
        if len(in_rows) > 1:
            raise ValidationError(
                f"condition {condition!r} holds {len(in_rows)} variants ({', '.join(in_rows)}); "
                "name one as {'variant': ...}",
                field=field,
            )
        if len(variants) > 1 and in_rows:
            parts.append(in_rows[0])
    else:
        parts.append(variant)
    named = " ".join(parts) if parts else str(variant)
    settings = list(dict.fromkeys(results.loc[rows, "params"])) if "params" in results else []
    if wanted is None:
        if len(settings) > 1:
            shown = ", ".join(str(s) for s in settings)
            raise ValidationError(
                f"{named!r} ran with {len(settings)} param settings ({shown}); pick one "
                f"as ({named!r}, {{param: value}}) or {{'params': {{param: value}}}}",
                field=field,
            )
        return rows, named
    matching = [s for s in settings if _matches(_params(s), wanted)]
    if len(matching) != 1:
        what = "no" if not matching else f"{len(matching)}"
        raise ValidationError(
            f"params {wanted} match {what} setting(s) of {named!r}; its settings: "
            f"{', '.join(map(str, settings))}",
            field=field,
        )
    params = _params(matching[0])
    return rows & (results["params"] == matching[0]), label((named, params))


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
