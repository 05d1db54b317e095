"""Models as an axis of an experiment: the slugs of ``models=`` and the run's model key.

A run over several models is keyed (runs table, sources, estimate) by its slugs joined with
``MODEL_SEPARATOR``; a model slug is one URL path segment of letters, digits, ``.``, ``_`` and
``-``, so it never holds the separator and ``model_list`` splits the key back.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..errors import ValidationError

# Joins the slugs of a multi-model run into its model key (slugs never contain it).
MODEL_SEPARATOR = ","


def model_list(model: str) -> list[str]:
    """The slugs of a model key: ``"a,b"`` -> ``["a", "b"]``; one slug -> ``[slug]``."""
    return model.split(MODEL_SEPARATOR)


def check_models(models: Any, model: str | None) -> list[str] | None:
    """``models`` as a list of distinct slugs (None when not given)."""
    if models is None:
        return None
    if model is not None:
        raise ValidationError(
            "give model= (one slug) or models= (several), not both", field="models"
        )
    if isinstance(models, str) or not isinstance(models, Sequence) or not models:
        raise ValidationError(
            f"models must be a non-empty list of model slugs, got {models!r}", field="models"
        )
    from ..client.core import check_slug

    out: list[str] = []
    for slug in models:
        try:
            check_slug(slug)
        except ValidationError:
            raise ValidationError(
                f"models: {slug!r} is not a model slug (like 'llama-v3p1-8b-instruct')",
                field="models",
            ) from None
        if slug in out:
            raise ValidationError(f"models: {slug!r} is listed twice", field="models")
        out.append(slug)
    return out
