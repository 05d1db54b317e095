"""Run files: one portable file per run, to commit, send, import into any store and replay.

A run file holds the run's row (name, fingerprint, config), its sessions, every cell (request,
row, scores, score errors, judge keys, timings), every response those cells and their judges got
(reply text, usage, credits as exact decimal text, timings), the call attempts, and
reproducibility metadata (``runfile_meta``). Two encodings of the same records:

- ``.jsonl`` (the default): line 1 is the header ``{"format": "llamakit-run", "version": 1,
  "meta": ..., "run": ..., "sessions": [...]}``, then one ``{"cell": ...}``, ``{"response": ...}``
  or ``{"attempt": ...}`` object per line, then ``{"end": {"cells": n, "responses": n,
  "attempts": n, "sha256": ...}}`` with the SHA-256 of the record lines, so a truncated or edited
  file is refused instead of read as a smaller run.
- ``.parquet`` (needs pyarrow: ``pip install 'llamakit[parquet]'``): one row per record
  (``kind``, ``record`` as the same JSON text), header and end in the schema's metadata.

``VERSION`` is bumped when a reader of the old version would misread a new file; readers refuse a
newer version in one line. New columns are not a new version: import matches columns by name.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from ..errors import ValidationError
from ..store._coordination import RERUN_OF
from .results import judge_keys
from .runfile_meta import reproducibility

if TYPE_CHECKING:
    from ..store import Store

FORMAT = "llamakit-run"
VERSION = 1
Format = Literal["jsonl", "parquet"]
FORMATS: tuple[str, ...] = ("jsonl", "parquet")

# The run's config is held as a JSON value, readable as such. Other JSON columns (messages,
# params, prompt, row, scores, ...) are kept as the exact text the store holds: the results table
# shows some of it verbatim, and re-encoding could change spacing.
_JSON = {"config"}
# Credit columns (exact decimal text in the file, Decimal in Python and the store), per table.
_CREDITS = {
    "run": ("budget",),
    "sessions": ("balance_before", "balance_after"),
    "response": ("credits_remaining", "credits"),
    "attempt": ("credits_remaining",),
}
_KINDS = ("cell", "response", "attempt")
_FIX_COPY = "copy the file again, or write it anew with `llamakit export RUN --format jsonl`"


@dataclass
class RunFile:
    """A run file's contents: ``header`` (format, version, meta, run, sessions) and the records."""

    path: Path
    header: dict[str, Any]
    cells: list[dict[str, Any]] = field(default_factory=list)
    responses: list[dict[str, Any]] = field(default_factory=list)
    attempts: list[dict[str, Any]] = field(default_factory=list)

    @property
    def run(self) -> dict[str, Any]:
        return dict(self.header["run"])

    @property
    def meta(self) -> dict[str, Any]:
        return dict(self.header.get("meta") or {})


def file_format(path: str | os.PathLike[str], format: str | None = None) -> Format:
    """``format`` if given, else from the suffix (.parquet -> parquet, anything else -> jsonl)."""
    chosen = format or ("parquet" if Path(path).suffix.lower() == ".parquet" else "jsonl")
    if chosen not in FORMATS:
        raise ValidationError(
            f"run file format must be one of {list(FORMATS)}, got {chosen!r}", field="format"
        )
    return "parquet" if chosen == "parquet" else "jsonl"


def looks_like_run_file(ref: Any) -> bool:
    """True for a path object, or text naming an existing file or ending in .jsonl/.parquet
    (run ids such as ``20261130-113500-a1b2c3`` are neither)."""
    if isinstance(ref, os.PathLike):
        return True
    if not isinstance(ref, str):
        return False
    return Path(ref).suffix.lower() in (".jsonl", ".parquet") or Path(ref).is_file()


# -- writing ---------------------------------------------------------------------------------
def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, bytes):  # text the store kept as bytes because UTF-8 cannot hold it
        return value.decode("utf-8", "surrogateescape")
    raise TypeError(f"cannot write {type(value).__name__} to a run file")


def _dumps(record: Mapping[str, Any]) -> str:
    return json.dumps(record, ensure_ascii=False, sort_keys=True, default=_plain)


def _decoded(row: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(row)
    for key in _JSON & out.keys():
        if isinstance(out[key], str):
            with contextlib.suppress(ValueError):  # else kept as text, imported back as it is
                out[key] = json.loads(out[key])
    return out


def collect(store: Store, run_id: str) -> RunFile:
    """Everything of run ``run_id`` in ``store`` as a RunFile (path not yet chosen)."""
    run = store.run_row(run_id)
    if run is None:
        raise ValidationError(f"no run {run_id!r} in {store.path}", field="run_id")
    cells = store.cell_rows(run_id, "1 ORDER BY ordinal, rowid")
    keys = [c["cell_key"] for c in cells if c["status"] == "done"]
    for cell in cells:
        for found in judge_keys(cell).values():
            keys.extend(found)
    found_rows = []
    unique = list(dict.fromkeys(keys))
    for start in range(0, len(unique), 500):  # SQLite's bound-parameter limit
        chunk = unique[start : start + 500]
        marks = ",".join("?" * len(chunk))
        found_rows += store.query(
            f"SELECT * FROM responses WHERE cell_key IN ({marks})", tuple(chunk)
        )
    config = json.loads(run["config"]) if isinstance(run["config"], str) else run["config"]
    own = _decoded(run)
    if isinstance(own.get("config"), dict) and RERUN_OF in own["config"]:
        # The file carries the cells a cached rerun shares with the run it repeats.
        own["config"] = {k: v for k, v in own["config"].items() if k != RERUN_OF}
    header = {
        "format": FORMAT,
        "version": VERSION,
        "meta": reproducibility(config, run.get("model")),
        "run": own,
        "sessions": store.sessions(run_id),
    }
    return RunFile(
        Path(),
        header,
        cells=[_decoded(c) for c in cells],
        responses=[_decoded(r) for r in sorted(found_rows, key=lambda r: r["cell_key"])],
        attempts=store.attempts(run_id),
    )


def _records(run_file: RunFile) -> Iterator[tuple[str, dict[str, Any]]]:
    for kind, rows in (
        ("cell", run_file.cells),
        ("response", run_file.responses),
        ("attempt", run_file.attempts),
    ):
        for row in rows:
            yield kind, row


def write_run_file(
    store: Store, run_id: str, path: str | os.PathLike[str], format: str | None = None
) -> Path:
    """Write run ``run_id`` as a run file at ``path`` (see the module docstring); returns the
    path. The file is written beside its final name and renamed, so a reader never sees half."""
    chosen = file_format(path, format)
    run_file = collect(store, run_id)
    target = Path(path).expanduser()
    partial = target.with_name(target.name + ".partial")
    digest = hashlib.sha256()
    lines: list[tuple[str, str]] = []
    for kind, row in _records(run_file):
        text = _dumps({kind: row})
        digest.update(text.encode("utf-8", "surrogatepass") + b"\n")
        lines.append((kind, text))
    end = {
        "cells": len(run_file.cells),
        "responses": len(run_file.responses),
        "attempts": len(run_file.attempts),
        "sha256": digest.hexdigest(),
    }
    if chosen == "parquet":
        _write_parquet(partial, run_file.header, lines, end)
    else:
        with partial.open("w", encoding="utf-8", errors="surrogatepass", newline="\n") as f:
            f.write(_dumps(run_file.header) + "\n")
            for _, text in lines:
                f.write(text + "\n")
            f.write(_dumps({"end": end}) + "\n")
    os.replace(partial, target)
    return target


def _pyarrow() -> Any:
    try:
        import pyarrow  # type: ignore[import-untyped,import-not-found,unused-ignore]
        import pyarrow.parquet  # type: ignore[import-untyped,import-not-found,unused-ignore]
    except ImportError:
        raise ValidationError(
            "Parquet needs pyarrow: pip install 'llamakit[parquet]' (or use a .jsonl run file)",
            field="format",
        ) from None
    return pyarrow


def _write_parquet(
    path: Path, header: dict[str, Any], lines: list[tuple[str, str]], end: dict[str, Any]
) -> None:
    pa = _pyarrow()
    table = pa.table(
        {"kind": [k for k, _ in lines], "record": [t for _, t in lines]},
        schema=pa.schema(
            [("kind", pa.string()), ("record", pa.string())],
            metadata={b"llamakit_header": _dumps(header), b"llamakit_end": _dumps(end)},
        ),
    )
    pa.parquet.write_table(table, path, compression="zstd")


# -- reading ---------------------------------------------------------------------------------
def _refuse(path: Path, problem: str, fix: str) -> ValidationError:
    return ValidationError(f"run file {path}: {problem}; {fix}", field="run_file")


def _check_header(path: Path, header: Any) -> dict[str, Any]:
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise _refuse(
            path,
            'this is not a llamakit run file (its first record has no "format": "llamakit-run")',
            "write one with run.save(path) or `llamakit export RUN --format jsonl`",
        )
    version = header.get("version")
    if not isinstance(version, int) or version > VERSION:
        raise _refuse(
            path,
            f"it is format version {version}, newer than this llamakit reads ({VERSION})",
            "upgrade llamakit (pip install -U llamakit) to read it",
        )
    if not isinstance(header.get("run"), dict) or "run_id" not in header["run"]:
        raise _refuse(path, "its header names no run", _FIX_COPY)
    return header


def _credits(row: dict[str, Any], columns: tuple[str, ...]) -> dict[str, Any]:
    for column in columns:
        if row.get(column) is not None:
            row[column] = Decimal(str(row[column]))
    return row


def _assemble(path: Path, header: dict[str, Any], lines: list[str], end: Any) -> RunFile:
    if not isinstance(end, dict):
        raise _refuse(path, f"it is truncated: no end record after {len(lines)} records", _FIX_COPY)
    digest = hashlib.sha256()
    run_file = RunFile(path, header)
    for n, text in enumerate(lines, 2):
        digest.update(text.encode("utf-8", "surrogatepass") + b"\n")
        record = json.loads(text)
        kind = next(iter(record), None) if isinstance(record, dict) and len(record) == 1 else None
        if kind not in _KINDS:
            raise _refuse(path, f"record {n} is not a cell, response or attempt", _FIX_COPY)
        row = record[kind]
        if kind == "cell":
            run_file.cells.append(row)
        elif kind == "response":
            run_file.responses.append(_credits(row, _CREDITS["response"]))
        else:
            run_file.attempts.append(_credits(row, _CREDITS["attempt"]))
    counts = (len(run_file.cells), len(run_file.responses), len(run_file.attempts))
    expected = (end.get("cells"), end.get("responses"), end.get("attempts"))
    if counts != expected or digest.hexdigest() != end.get("sha256"):
        raise _refuse(
            path,
            f"its records do not match its end record (cells, responses, attempts: {counts} "
            f"read, {expected} written); it was cut or edited",
            _FIX_COPY,
        )
    _credits(header["run"], _CREDITS["run"])
    header["sessions"] = [_credits(dict(s), _CREDITS["sessions"]) for s in header["sessions"]]
    return run_file


def read_run_file(path: str | os.PathLike[str]) -> RunFile:
    """A run file's contents. Raises ValidationError (one line naming the file and the fix) for
    a missing file, a file that is not a run file, a newer format version, or a truncated or
    edited one."""
    where = Path(path).expanduser()
    if not where.is_file():
        raise _refuse(where, "there is no such file", "check the path")
    if file_format(where) == "parquet":
        return _read_parquet(where)
    header: Any = None
    lines: list[str] = []
    end: Any = None
    with where.open(encoding="utf-8", errors="surrogatepass") as f:
        for n, raw in enumerate(f, 1):
            text = raw.rstrip("\n")
            if not raw.endswith("\n") or not text:
                raise _refuse(where, f"it is truncated: line {n} is incomplete", _FIX_COPY)
            try:
                record = json.loads(text)
            except ValueError:
                if n == 1:
                    raise _refuse(
                        where,
                        "this is not a llamakit run file (line 1 is not JSON)",
                        "write one with run.save(path) or `llamakit export RUN --format jsonl`",
                    ) from None
                raise _refuse(where, f"line {n} is not JSON", _FIX_COPY) from None
            if n == 1:
                header = _check_header(where, record)
            elif end is not None:
                raise _refuse(where, f"line {n} follows the end record", _FIX_COPY)
            elif isinstance(record, dict) and set(record) == {"end"}:
                end = record["end"]
            else:
                lines.append(text)
    if header is None:
        raise _refuse(where, "it is empty", _FIX_COPY)
    return _assemble(where, header, lines, end)


def _read_parquet(path: Path) -> RunFile:
    pa = _pyarrow()
    try:
        table = pa.parquet.read_table(path)
    except (pa.ArrowException, OSError) as exc:
        problem = f"it cannot be read as Parquet ({exc}); it may be truncated"
        raise _refuse(path, problem, _FIX_COPY) from None
    metadata = table.schema.metadata or {}
    try:
        header = json.loads(metadata.get(b"llamakit_header", b"null"))
        end = json.loads(metadata.get(b"llamakit_end", b"null"))
    except ValueError:
        header, end = None, None
    header = _check_header(path, header)
    return _assemble(path, header, [str(t) for t in table.column("record").to_pylist()], end)


def import_run_file(path: str | os.PathLike[str], store: Store) -> tuple[str, bool]:
    """Read a run file into ``store``; returns (run_id, created). Importing the same file again
    adds nothing (created is False); a run id taken by another run raises StoreError."""
    run_file = read_run_file(path)
    store.require_writable()
    created = store.import_run(
        run_file.run,
        sessions=run_file.header["sessions"],
        cells=run_file.cells,
        responses=run_file.responses,
        attempts=run_file.attempts,
    )
    return str(run_file.run["run_id"]), created
