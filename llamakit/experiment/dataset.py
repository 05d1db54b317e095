"""Loading an experiment's dataset: a DataFrame, a CSV / JSONL / JSON / Parquet path, a Hugging
Face ``datasets.Dataset`` (or any object with ``.to_pandas()``), or a list or iterable of dicts.

Each row supplies template variables, an optional ``id`` and optional expected values
(``expected``, ``expected_*``). Ids are strings; without an ``id`` column a row's id is its
position. CSV cells stay strings (no type guessing: "NA" is Namibia, "007" keeps its zeros).
Parquet and ``datasets`` rows keep their column types; every source obeys the same id rules.
"""

from __future__ import annotations

import contextlib
import csv
import json
import math
import os
import random
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
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
    if suffix == ".parquet":
        return _read_parquet(path)
    raise ValidationError(
        f"dataset file must be .csv, .jsonl, .json or .parquet, got {path.name!r}",
        field="dataset",
    )


def _read_parquet(path: Path) -> list[dict[str, Any]]:
    try:
        import pyarrow.parquet  # type: ignore[import-untyped,import-not-found,unused-ignore]
    except ImportError:
        raise ValidationError(
            f"{path.name}: reading Parquet needs pyarrow: pip install 'llamakit[parquet]' (or "
            "save the dataset as CSV or JSONL)",
            field="dataset",
        ) from None
    try:
        table = pyarrow.parquet.read_table(path)
    except Exception as exc:  # pyarrow's errors: a damaged, truncated or non-Parquet file
        raise ValidationError(
            f"{path.name} cannot be read as Parquet: {exc}", field="dataset"
        ) from None
    rows: list[dict[str, Any]] = table.to_pylist()
    return rows


def _rows(source: Any) -> list[Any]:
    if isinstance(source, (str, os.PathLike)):
        return _read_path(Path(source))
    if hasattr(source, "to_dict") and hasattr(source, "columns"):  # a pandas DataFrame
        return list(source.to_dict(orient="records"))
    if isinstance(source, Sequence) and not isinstance(source, (str, bytes)):
        return list(source)
    if callable(getattr(source, "to_pandas", None)):  # datasets.Dataset, a pyarrow Table, ...
        frame = source.to_pandas()
        if hasattr(frame, "to_dict") and hasattr(frame, "columns"):
            records: list[Any] = frame.to_dict(orient="records")
            return records
    if isinstance(source, Iterable) and not isinstance(source, (str, bytes, Mapping)):
        return list(source)  # a generator or an IterableDataset of dicts
    raise ValidationError(
        "dataset must be a DataFrame, a path to a CSV/JSONL/JSON/Parquet file, a "
        "datasets.Dataset (or an object with .to_pandas()), or a list or iterable of dicts; "
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


def subset(
    items: list[Item], *, limit: Any = None, sample: Any = None, seed: Any = 0
) -> list[Item]:
    """A pilot's items: the first ``limit`` rows, or ``sample`` rows drawn without replacement
    by ``random.Random(seed)`` (kept in dataset order, the same for the same seed and data).
    Their cells are the full run's cells, so the full run later gets them from the cache, free.
    Raises ValidationError for a non-positive count, both given, or a sample larger than the set.
    """
    for name, value in (("limit", limit), ("sample", sample)):
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int) or value < 1
        ):
            raise ValidationError(f"{name} must be a whole number >= 1, got {value!r}", field=name)
    if limit is not None and sample is not None:
        raise ValidationError(
            "pass limit (the first N rows) or sample (N random rows), not both", field="sample"
        )
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValidationError(f"seed must be a whole number, got {seed!r}", field="seed")
    if limit is not None:
        return items[:limit]
    if sample is None:
        return items
    if sample > len(items):
        raise ValidationError(
            f"sample={sample} is more than the dataset's {len(items)} rows; use a smaller sample "
            "or none",
            field="sample",
        )
    chosen = set(random.Random(seed).sample(range(len(items)), sample))
    return [item for i, item in enumerate(items) if i in chosen]
