"""The spill file: where a paid reply goes when the store cannot take it (disk full, I/O error),
so that it is never lost and never paid for again.

``PATH.spill.jsonl`` sits beside the store ``PATH``. Each line is one JSON record, written with
``ensure_ascii`` (so any text survives, lone surrogates included) and fsynced before the run
reports the failure. When the store is next opened for writing, every record is applied in one
transaction and the file is removed; a line cut short by a crash is skipped (its reply was never
confirmed stored, and the run that wrote it had already failed).

Records: ``{"kind": "call", "response": {...}, "cells": [...]}`` (``Store.record_call``'s
arguments), ``{"kind": "chat_turn", "row": {...}}`` and ``{"kind": "session_end", "run_id", "session", "status", "balance_after",
"finished_at"}`` (a session whose end could not be written, so its run is not left "running").
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

SUFFIX = ".spill.jsonl"


def spill_path(store_path: Path) -> Path:
    return store_path.with_name(store_path.name + SUFFIX)


def append(store_path: Path, record: dict[str, Any]) -> Path | None:
    """Append ``record`` durably; returns the spill path, or None if even that failed (then the
    record is printed to stderr as the last place it can survive)."""
    path = spill_path(store_path)
    line = json.dumps(record, ensure_ascii=True, sort_keys=True, default=str) + "\n"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            data = line.encode("ascii")
            if os.write(fd, data) != len(data):
                raise OSError("short write")
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        print(
            f"llamakit: could not write {path} ({exc}); the unsaved record follows:\n{line}",
            file=sys.stderr,
            end="",
        )
        return None
    return path


def records(store_path: Path) -> Iterator[dict[str, Any]]:
    path = spill_path(store_path)
    if not path.exists():
        return
    with open(path, encoding="ascii", errors="replace") as fh:
        for line in fh:
            try:
                yield json.loads(line)
            except ValueError:  # a line cut short by a crash mid-write
                continue


def remove(store_path: Path) -> None:
    spill_path(store_path).unlink(missing_ok=True)
