"""Loading an experiment's dataset: a DataFrame, a CSV / JSONL / JSON path, or a list of dicts.

Each row supplies template variables, an optional ``id`` and optional expected values
(``expected``, ``expected_*``). Ids are strings; without an ``id`` column a row's id is its
position. CSV cells stay strings (no type guessing: "NA" is Namibia, "007" keeps its zeros).
"""

from __future__ import annotations

import contextlib
import csv
import json
import math
import os
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ValidationError


@dataclass(frozen=True)
class Item:
    id: str
    row: dict[str, Any]


def _clean(value: Any) -> Any:
    """numpy scalars -> Python, NaN (and pandas' NA, NaT) -> None, so rows serialise to JSON and
    compare simply."""
    if type(value).__name__ in ("NAType", "NaTType"):
        return None
    if hasattr(value, "item") and callable(value.item) and not isinstance(value, (str, bytes)):
        with contextlib.suppress(ValueError, TypeError):
            value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object, refusing a key given twice (json.loads would keep the last silently)."""
    out = dict(pairs)
    if len(out) != len(pairs):
        twice = sorted(k for k, n in Counter(k for k, _ in pairs).items() if n > 1)
        raise json.JSONDecodeError(f"key {twice[0]!r} appears twice in one object", "", 0)
    return out


def _csv_rows(path: Path, reader: csv.DictReader[str]) -> list[dict[str, Any]]:
    """Rows of a CSV file; a header naming a column twice, or a row with more cells than the
    header (an unquoted comma in a value), is refused: either would shift values silently."""
    header = reader.fieldnames or []
    twice = sorted(k for k, n in Counter(header).items() if n > 1)
    if twice:
        raise ValidationError(
            f"{path.name}: the header names column {twice[0]!r} twice", field="dataset"
        )
    rows = []
    for row in reader:
        if None in row:
            raise ValidationError(
                f"{path.name} line {reader.line_num}: {len(header) + len(row[None])} cells for "
                f"{len(header)} columns; quote values that contain commas",
                field="dataset",
            )
        rows.append(dict(row))
    return rows


def _read_path(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        raise ValidationError(f"dataset file not found: {path}", field="dataset")
    suffix = path.suffix.lower()
    if suffix == ".csv":
        with path.open(newline="", encoding="utf-8-sig") as f:
            return _csv_rows(path, csv.DictReader(f))
    if suffix in (".jsonl", ".ndjson"):
        rows = []
        with path.open(encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                if line.strip():
                    try:
                        rows.append(json.loads(line, object_pairs_hook=_unique_keys))
                    except json.JSONDecodeError as exc:
                        raise ValidationError(
                            f"{path.name} line {n} is not JSON: {exc.msg}", field="dataset"
                        ) from None
        return rows
    if suffix == ".json":
        try:
            data = json.loads(path.read_text(encoding="utf-8"), object_pairs_hook=_unique_keys)
        except json.JSONDecodeError as exc:
            raise ValidationError(f"{path.name} is not JSON: {exc.msg}", field="dataset") from None
        if not isinstance(data, list):
            raise ValidationError(f"{path.name} must hold a JSON list of objects", field="dataset")
        return data
    raise ValidationError(
        f"dataset file must be .csv, .jsonl or .json, got {path.name!r}", field="dataset"
    )


def _rows(source: Any) -> list[Any]:
    if isinstance(source, (str, os.PathLike)):
        return _read_path(Path(source))
    if hasattr(source, "to_dict") and hasattr(source, "columns"):  # a pandas DataFrame
        return list(source.to_dict(orient="records"))
    if isinstance(source, Sequence) and not isinstance(source, (str, bytes)):
        return list(source)
    raise ValidationError(
        "dataset must be a DataFrame, a path to a CSV/JSONL/JSON file, or a list of dicts; "
        f"got {type(source).__name__}",
        field="dataset",
    )


def load_dataset(source: Any) -> list[Item]:
    """Rows with string ids; raises ValidationError for an empty set, non-dict rows or duplicate ids."""
    rows = _rows(source)
    if not rows:
        raise ValidationError(
            "dataset is empty: an experiment needs at least one row", field="dataset"
        )
    items = []
    for i, row in enumerate(rows):
        if not isinstance(row, Mapping):
            raise ValidationError(
                f"dataset row {i} must be a dict of column -> value, got {type(row).__name__}",
                field=f"dataset[{i}]",
            )
        clean = {str(k): _clean(v) for k, v in row.items()}
        raw_id = clean.get("id")
        item_id = str(i) if raw_id is None or raw_id == "" else str(raw_id)
        items.append(Item(item_id, clean))
    dupes = sorted(k for k, n in Counter(item.id for item in items).items() if n > 1)
    if dupes:
        shown = ", ".join(repr(d) for d in dupes[:5]) + (" ..." if len(dupes) > 5 else "")
        raise ValidationError(
            f"dataset has duplicate item ids: {shown}; ids must be unique", field="dataset.id"
        )
    return items
