"""An experiment's grid of cells (variant x item x params x repeat x model) and its fingerprint.

Split from ``experiment`` to keep each module readable at once.
"""

from __future__ import annotations

import hashlib
from dataclasses import replace
from typing import Any

from .cells import Cell, CellKeys, canonical_json
from .models import model_list


def cells(exp: Any, model: str, source: str = "") -> list[Cell]:
    """Every cell, in a stable order: variant, item, params, repeat (computed once per model
    and source: an experiment does not change after it is built). ``source`` is who answers
    (``Client.source``); it keys the response cache. ``model`` is a model key (see
    ``resolve_model``): with several models their cells interleave (each cell of model 1,
    then the same cell of model 2), so a run stopped early still holds paired cells."""
    cached: list[Cell] | None = exp._cells_by_model.get((model, source))
    if cached is None:
        per_model = [_build_cells(exp, m, source) for m in model_list(model)]
        if len(per_model) == 1:
            cached = per_model[0]
        else:
            cached = [
                replace(cell, ordinal=i)
                for i, cell in enumerate(c for group in zip(*per_model, strict=True) for c in group)
            ]
        exp._cells_by_model[(model, source)] = cached
    return cached


def _build_cells(exp: Any, model: str, source: str) -> list[Cell]:
    out: list[Cell] = []
    keys = CellKeys(model, source)
    for template in exp.templates:
        param_sets = [(p, canonical_json(p)) for p in exp.variant_params[template.variant]]
        for item, messages in zip(exp.items, exp._rendered[template.variant], strict=True):
            prompt_json = canonical_json(messages)
            for params, params_json in param_sets:
                request = keys.request(prompt_json, params_json)
                place = keys.place(template.variant, item.id, params_json)
                for repeat in range(exp.repeats):
                    out.append(
                        Cell(
                            cell_id=keys.cell_id(place, repeat),
                            cell_key=keys.cell_key(request, repeat),
                            variant=template.variant,
                            item_id=item.id,
                            params=params,
                            params_json=params_json,
                            repeat=repeat,
                            model=model,
                            messages=messages,
                            row=item.row,
                            ordinal=len(out),
                        )
                    )
    return out


def fingerprint(exp: Any, model: str, source: str = "") -> str:
    """Same fingerprint -> an unfinished run is resumed. It covers everything that changes a
    request or its row in the table: each cell's place (variant, item, params, repeat) and
    its request key (rendered messages, params, model, source), the dataset rows and the
    scorers. An edited prompt, another server or another scorer starts a new run (whose
    unchanged cells still come from the cache), so a run never mixes two versions."""
    digest = hashlib.sha256()
    for part in (exp.name, model, source, canonical_json(exp._scorer_identity())):
        digest.update(part.encode("utf-8", "surrogatepass") + b"\0")
    rows = {}
    for item in exp.items:  # a row's JSON once per item, not once per cell
        rows[item.id] = canonical_json(item.row).encode("utf-8", "surrogatepass") + b"\0"
    for c in sorted(cells(exp, model, source), key=lambda c: c.cell_id):
        digest.update(f"{c.cell_id}:{c.cell_key}:".encode())
        digest.update(rows[c.item_id])
    return digest.hexdigest()[:32]
