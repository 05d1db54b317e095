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
import io
import json
import math
import os
import random
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from ..errors import ValidationError


@dataclass(frozen=True, slots=True)  # slots: one per dataset row, so 50,000 rows cost less
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
    if isinstance(value, (float, Decimal)) and value != value:  # NaN, also Decimal('NaN')
        return None
    return value


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object, refusing a key given twice (json.loads would keep the last silently)."""
    out = dict(pairs)
    if len(out) != len(pairs):
        twice = sorted(k for k, n in Counter(k for k, _ in pairs).items() if n > 1)
        raise json.JSONDecodeError(f"key {twice[0]!r} appears twice in one object", "", 0)
    return out


def _csv_rows(path: Path, text: str) -> list[dict[str, Any]]:
    """Rows of a CSV file; a header naming a column twice, a row with more cells than the
    header (an unquoted comma in a value), or a quote never closed (it would swallow every later
    row into one value) or followed by text is refused: each would change values silently."""
    # strict: an unclosed quote is an error at the end of the file, not one long last value.
    reader = csv.DictReader(io.StringIO(text, newline=""), strict=True)
    start = 1
    try:
        header = reader.fieldnames or []
        twice = sorted(k for k, n in Counter(header).items() if n > 1)
        if twice:
            raise ValidationError(
                f"{path.name}: the header names column {twice[0]!r} twice", field="dataset"
            )
        rows = []
        start = reader.line_num + 1
        for row in reader:
            rows.append(_csv_row(path, reader, header, row))
            start = reader.line_num + 1
    except csv.Error as exc:
        raise ValidationError(
            f'{path.name} line {start}: {exc}: a quoted value ("...") in this row is not '
            "closed where the CSV format expects, so it would swallow the lines after it. Close "
            'the quote, and write a quote inside a quoted value as two ("")',
            field="dataset",
        ) from None
    return rows


def _csv_row(
    path: Path, reader: csv.DictReader[str], header: Sequence[str], row: dict[Any, Any]
) -> dict[str, Any]:
    if None in row:
        raise ValidationError(
            f"{path.name} line {reader.line_num}: {len(header) + len(row[None])} cells for "
            f"{len(header)} columns; quote values that contain commas",
            field="dataset",
        )
    return dict(row)


def _read_path(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        raise ValidationError(f"dataset file not found: {path}", field="dataset")
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return _csv_rows(path, _text(path).removeprefix("\ufeff"))
    if suffix in (".jsonl", ".ndjson"):
        rows = []
        for n, line in enumerate(_text(path).split("\n"), 1):
            if line.strip():
                try:
                    rows.append(_json(line))
                except (json.JSONDecodeError, _NotJSON) as exc:
                    raise ValidationError(
                        f"{path.name} line {n} is not JSON: {getattr(exc, 'msg', exc)}",
                        field="dataset",
                    ) from None
        return rows
    if suffix == ".json":
        try:
            data = _json(_text(path))
        except json.JSONDecodeError as exc:
            raise ValidationError(
                f"{path.name} is not JSON: {exc.msg} (line {exc.lineno})", field="dataset"
            ) from None
        except _NotJSON as exc:
            raise ValidationError(f"{path.name} is not JSON: {exc}", field="dataset") from None
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


def _text(path: Path) -> str:
    """The file as text; ValidationError naming the line of the first byte that is not UTF-8."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise ValidationError(
            f"{path.name} line {line} is not UTF-8 text (byte {data[exc.start : exc.start + 1]!r}"
            f" at offset {exc.start}; the file was probably saved as Windows-1252 or Latin-1). "
            "Re-save it as UTF-8 (in Excel: CSV UTF-8; in pandas: to_csv(..., encoding='utf-8'))",
            field="dataset",
        ) from None


class _NotJSON(ValueError):
    """A JSON number that would not come back as written: NaN, Infinity or an overflow."""


class JsonNumber(float):
    """A JSON number with a fraction or exponent, printed as the file wrote it (``1.10``,
    ``1E2``): Python's float would print ``1.1`` and ``100.0`` and so change the prompt."""

    text: str

    def __new__(cls, text: str) -> JsonNumber:
        value = float.__new__(cls, text)
        if not math.isfinite(value):
            raise _NotJSON(f"the number {text} does not fit a float; write it as a string")
        value.text = text
        return value

    def __str__(self) -> str:
        return self.text

    __repr__ = __str__

    def __getnewargs__(self) -> tuple[str]:  # type: ignore[override]  # copies keep the text
        return (self.text,)


def _constant(name: str) -> Any:
    raise _NotJSON(f"{name} is not a JSON value; write null, a number or a string")


def _json(text: str) -> Any:
    return json.loads(
        text, object_pairs_hook=_unique_keys, parse_float=JsonNumber, parse_constant=_constant
    )


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
