"""Cells of an experiment: the sampling-params grid, and the keys that make "never pay twice" work.

A cell is (variant, item, params, repeat index, model). Two hashes identify it:

- ``cell_key``: the rendered request (model, messages, params) plus the repeat index. This is the
  cache key: the same request at the same repeat index is the same sample, whichever experiment
  asks for it; a different repeat index is an independent sample.
- ``cell_id``: where the cell sits in a run (variant, item id, params, repeat, model), so two
  variants that happen to render the same request still get a results row each.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import ValidationError

# Params whose value is itself a list: a list of strings is one value, a list of lists is a grid.
_LIST_VALUED = {"stop"}


# One encoder for every call: json.dumps with options builds a new encoder each time, which a
# cached rerun of 10,000 cells would pay 25,000 times.
_CANONICAL = json.JSONEncoder(
    sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str
).encode


def canonical_json(value: Any) -> str:
    """JSON with sorted keys and no spaces: equal values give equal text (and equal hashes)."""
    return _CANONICAL(value)


def _digest(value: Any) -> str:
    return hashlib.sha256(canonical_json(value).encode("utf-8")).hexdigest()[:32]


def cell_key(
    model: str,
    messages: Sequence[Mapping[str, str]],
    params: Mapping[str, Any],
    repeat: int,
    *,
    source: str,
) -> str:
    """The response cache's key: the request, and who answers it (see ``sources``)."""
    return _digest(
        {
            "model": model,
            "source": source,
            "messages": list(messages),
            "params": dict(params),
            "repeat": repeat,
        }
    )


def cell_id(variant: str, item_id: str, params_json: str, repeat: int, model: str) -> str:
    return _digest([variant, item_id, params_json, repeat, model])


class CellKeys:
    """``cell_key`` and ``cell_id`` for many cells of one model and source, equal to theirs but
    cheaper: the canonical JSON of a request is assembled from the canonical JSON of its parts
    (computed once per prompt and per params set, not once per cell), and the hash of the part
    shared by every repeat is computed once and copied.

    It relies on ``canonical_json`` sorting keys: a request is
    ``{"messages":…,"model":…,"params":…,"repeat":…,"source":…}`` in that order, and a place is
    ``[variant,item_id,params_json,repeat,model]``."""

    def __init__(self, model: str, source: str) -> None:
        self._model = canonical_json(model)
        self._source_tail = ',"source":' + canonical_json(source) + "}"
        self._model_tail = "," + self._model + "]"
        self._encoded: dict[str, str] = {}  # variants and params sets repeat across items

    def _once(self, text: str) -> str:
        encoded = self._encoded.get(text)
        if encoded is None:
            encoded = self._encoded[text] = canonical_json(text)
        return encoded

    def request(self, prompt_json: str, params_json: str) -> Any:
        """The hash state of a request up to its repeat index (``prompt_json`` and
        ``params_json``: canonical JSON of the messages and of the params)."""
        head = f'{{"messages":{prompt_json},"model":{self._model},"params":{params_json},"repeat":'
        return hashlib.sha256(head.encode("utf-8"))

    def cell_key(self, request: Any, repeat: int) -> str:
        digest = request.copy()
        digest.update(f"{int(repeat)}{self._source_tail}".encode())
        return str(digest.hexdigest()[:32])

    def place(self, variant: str, item_id: str, params_json: str) -> Any:
        head = f"[{self._once(variant)},{canonical_json(item_id)},{self._once(params_json)},"
        return hashlib.sha256(head.encode("utf-8"))

    def cell_id(self, place: Any, repeat: int) -> str:
        digest = place.copy()
        digest.update(f"{int(repeat)}{self._model_tail}".encode())
        return str(digest.hexdigest()[:32])


def _is_grid_axis(name: str, value: Any) -> bool:
    if isinstance(value, (list, tuple)):
        if name in _LIST_VALUED:
            return any(isinstance(v, (list, tuple)) for v in value)
        return True
    return False


def expand_params(params: Any) -> list[dict[str, Any]]:
    """Fixed params, a grid (list values expand to a cartesian product), or a list of param dicts.

    ``{"temperature": [0, 0.7], "max_tokens": 64}`` -> two param sets. ``stop`` takes a list of
    strings as one value; a list of such lists is a grid axis.
    """
    if params is None:
        return [{}]
    if isinstance(params, Sequence) and not isinstance(params, (str, bytes)):
        if not params or not all(isinstance(p, Mapping) for p in params):
            raise ValidationError(
                "params must be a dict (fixed values or lists to grid over) or a non-empty list "
                "of dicts",
                field="params",
            )
        sets = [dict(p) for p in params]
    elif isinstance(params, Mapping):
        axes = []
        for name, value in params.items():
            if not isinstance(name, str):
                raise ValidationError(f"param names must be strings: {name!r}", field="params")
            if _is_grid_axis(name, value):
                if not value:
                    raise ValidationError(f"params.{name} is an empty list", field=f"params.{name}")
                axes.append([(name, v) for v in value])
            else:
                axes.append([(name, value)])
        sets = [dict(combo) for combo in itertools.product(*axes)]
    else:
        raise ValidationError(f"params must be a dict, got {type(params).__name__}", field="params")
    try:
        from ..client.messages import validate_params
    except ImportError:  # the client's validation is optional here; the server validates too
        return sets
    return [validate_params(p) for p in sets]


@dataclass(frozen=True, slots=True)  # slots: the cells in flight and queued are many
class Cell:
    """One cell of a run. ``prompt`` is the canonical JSON of its rendered messages (shared by
    the cells of one item and variant, and written as is to the store); ``messages`` decodes it."""

    cell_id: str
    cell_key: str
    variant: str
    item_id: str
    params: dict[str, Any]
    params_json: str
    repeat: int
    model: str
    prompt: str
    row: dict[str, Any]
    ordinal: int = 0

    @property
    def messages(self) -> list[dict[str, str]]:
        """The chat messages to send (a new list at each read)."""
        messages: list[dict[str, str]] = json.loads(self.prompt)
        return messages

    def record(self, **fields: Any) -> dict[str, Any]:
        """The run_cells row for this cell, with the outcome fields given."""
        return {
            "cell_id": self.cell_id,
            "cell_key": self.cell_key,
            "ordinal": self.ordinal,
            "variant": self.variant,
            "item_id": self.item_id,
            "params": self.params_json,
            "repeat": self.repeat,
            "model": self.model,
            "prompt": self.prompt,
            # Encoded here, not kept on the cell: rows are shared by the cells of an item.
            "row": canonical_json(self.row),
            **fields,
        }
