"""Dataset rows that would be rendered wrong, refused when the experiment is built.

- A value a template reads but the row does not have (an empty CSV cell, ``None``/``NaN`` in a
  DataFrame, ``null`` or an absent key in one JSONL line while other lines have it) would render
  as ``None``, ``nan`` or nothing and silently change the prompt. It is a ValidationError naming
  the row id, the column and the template, unless the experiment says ``missing="empty"``: then
  such values are the empty string, for the templates and for the judges' rubrics alike.
- A None or NaN inside a list or dict (``meta.note``, ``tags[1]``) that a template prints is
  refused by the sandbox naming the row and the path; ``missing="empty"`` turns those into ""
  here too.
- Text that cannot be encoded as UTF-8 (a lone surrogate such as ``"\\ud83d"`` from a JSON escape)
  cannot be sent or stored; it is refused naming the row and the field.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

from ..errors import ValidationError
from .dataset import Item

Missing = Literal["error", "empty"]
MISSING_POLICIES = ("error", "empty")


def is_missing(value: Any) -> bool:
    """None, NaN (loaded datasets already hold it as None) and the empty string."""
    return value is None or value == "" or (isinstance(value, float) and value != value)


def _unencodable(value: Any, path: str) -> str | None:
    """The path of the first string inside ``value`` that is not valid UTF-8 text, if any."""
    stack: list[tuple[Any, str]] = [(value, path)]
    while stack:
        item, where = stack.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return where
        elif isinstance(item, Mapping):
            for key, inner in item.items():
                stack.append((key, f"{where} (a key)"))
                stack.append((inner, f"{where}.{key}"))
        elif isinstance(item, (list, tuple)):
            stack.extend((inner, f"{where}[{i}]") for i, inner in enumerate(item))
    return None


def check_text(items: Sequence[Item], dataset: str = "dataset") -> None:
    """ValidationError for the first row holding text that is not valid UTF-8."""
    for item in items:
        for column, value in item.row.items():
            bad = _unencodable(column, "a column name") or _unencodable(value, column)
            if bad:
                raise ValidationError(
                    f"{dataset} row {item.id!r}, field {bad}: the text is not valid UTF-8 (it holds "
                    "a lone surrogate such as '\\ud83d', often half of an emoji split by a JSON "
                    "escape); fix the text in the dataset",
                    field=f"dataset[{item.id}].{bad}",
                )


def check_missing(
    items: Sequence[Item],
    readers: Mapping[str, frozenset[str]],
    missing: Any,
    dataset: str = "dataset",
) -> list[Item]:
    """Rows checked against the columns each template reads (``readers``: template description
    -> variables). With ``missing="error"``: ValidationError at the first missing value;
    with ``"empty"``: the rows, with those values turned into ""."""
    if missing not in MISSING_POLICIES:
        raise ValidationError(
            f"missing must be one of {list(MISSING_POLICIES)}, got {missing!r}", field="missing"
        )
    columns = {column for item in items for column in item.row}
    read = {name for variables in readers.values() for name in variables} & columns
    out = []
    for item in items:
        empty = sorted(c for c in read if is_missing(item.row.get(c)))
        if empty and missing == "error":
            column = empty[0]
            who = next(r for r, variables in readers.items() if column in variables)
            shown = "is absent" if column not in item.row else f"is {item.row[column]!r}"
            raise ValidationError(
                f"{dataset} row {item.id!r}: column {column!r} {shown}, but {who} reads it, so "
                "the prompt would say None, nan or nothing there. Fill the value, drop the row, "
                "or pass missing='empty' (spec: `missing: empty`) if an empty value is intended",
                field=f"dataset[{item.id}].{column}",
            )
        if missing == "empty":
            inside = {c: _emptied(item.row[c]) for c in read if c in item.row}
            changed = {c: v for c, v in inside.items() if v is not item.row[c]}
            empty_row = {**item.row, **changed, **dict.fromkeys(empty, "")}
            out.append(Item(item.id, empty_row) if empty or changed else item)
        else:
            out.append(item)
    return out


def _emptied(value: Any) -> Any:
    """``value`` with None/NaN inside its lists and dicts turned into "" (``missing="empty"``);
    the same object when there is none, so that rows without gaps are not copied."""
    if isinstance(value, Mapping):
        inner = {k: _emptied(v) for k, v in value.items()}
        if any(inner[k] is not v for k, v in value.items()):
            return inner
        return value
    if isinstance(value, (list, tuple)):
        items = [_emptied(v) for v in value]
        if any(a is not b for a, b in zip(items, value, strict=True)):
            return type(value)(items)
        return value
    return "" if value is None or (isinstance(value, float) and value != value) else value
