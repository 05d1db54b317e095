"""What is wrong with a store, in words a user can act on: every ``sqlite3`` or ``OSError`` the store
meets becomes a ``StoreError`` naming the path, the problem and the fix.

Also how text that UTF-8 cannot hold (a lone surrogate such as ``"\\ud800"``, which a JSON reply may
legally contain) is kept: as a BLOB of its ``surrogatepass`` bytes, turned back into the same ``str``
on read, so a paid reply is stored whatever it contains.
"""

from __future__ import annotations

import errno
import sqlite3
from pathlib import Path
from typing import Any

from ..errors import StoreError

FIX_FULL = "Free disk space (or raise the quota / file-size limit), then run again"
FIX_READ_ONLY = (
    "Make the file and its folder writable, or pass another store path; reading it "
    "(llamakit runs, lk.runs(Store(path, readonly=True))) works as it is"
)
FIX_DAMAGED = (
    "Restore it from a backup; if a PATH-wal file sits beside it, copy both together. "
    "Or move it aside and start a fresh store"
)
FIX_NEWER = "It was written by a newer llamakit: upgrade (pip install -U llamakit) to use it"


def _is_readonly_path(path: Path) -> bool:
    target = path if path.exists() else path.parent
    while not target.exists() and target != target.parent:
        target = target.parent
    import os

    return not os.access(target, os.W_OK) or (path.exists() and not os.access(path, os.W_OK))


def _is_damage(name: str, text: str) -> bool:
    """SQLite found the file itself broken. Only its own codes say so (the text is the fallback
    before Python 3.11): "malformed JSON" is one bad value in a healthy file, not damage."""
    if name:
        return name.startswith(("SQLITE_CORRUPT", "SQLITE_NOTADB"))
    return "not a database" in text or "database disk image is malformed" in text


def store_error(path: Path, exc: BaseException, *, doing: str) -> StoreError:
    """The StoreError for ``exc``, raised while ``doing`` (e.g. "opening it", "saving a reply")."""
    text = str(exc)
    if path.is_dir():
        return StoreError(
            path, "missing", "it is a folder, not a store file", "Pass the path of a .db file"
        )
    name = getattr(exc, "sqlite_errorname", "") or ""
    os_errno = getattr(exc, "errno", None)
    if "FULL" in name or "full" in text or os_errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT):
        return StoreError(path, "full", f"the disk is full while {doing} ({text})", FIX_FULL)
    if "IOERR" in name or "disk I/O error" in text:
        return StoreError(
            path,
            "full",
            f"the disk refused a write while {doing} ({text}): full, over quota or over the "
            "file-size limit (ulimit -f)",
            FIX_FULL,
        )
    if "BUSY" in name or "LOCKED" in name or "database is locked" in text:
        return StoreError(
            path,
            "locked",
            "another process (or a thread of this one) held its write lock for longer than the "
            f"store waits for it (a minute) while {doing} ({text})",
            f"Find what holds it (fuser {path} or lsof {path}), let it finish or stop it, then "
            "run again",
        )
    if "READONLY" in name or "readonly" in text or os_errno in (errno.EROFS, errno.EACCES):
        return StoreError(path, "read-only", f"it is read-only ({text})", FIX_READ_ONLY)
    if _is_damage(name, text):
        return StoreError(path, "damaged", f"it is damaged ({text})", FIX_DAMAGED)
    if "CANTOPEN" in name or "unable to open" in text:
        if _is_readonly_path(path):
            return StoreError(
                path, "read-only", f"it cannot be created or written ({text})", FIX_READ_ONLY
            )
        return StoreError(
            path, "missing", f"it cannot be opened ({text})", "Check the path and its folder"
        )
    return StoreError(
        path,
        "write-failed",
        f"{type(exc).__name__} while {doing}: {text}",
        "Check the file and the disk",
    )


def storable(value: Any) -> Any:
    """``value`` as SQLite can hold it: a ``str`` UTF-8 cannot encode becomes its surrogatepass
    bytes (restored by ``restore``); everything else is unchanged."""
    if type(value) is str and not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return value.encode("utf-8", "surrogatepass")
    return value


def storable_params(params: Any) -> Any:
    if isinstance(params, dict):
        return {k: storable(v) for k, v in params.items()}
    return tuple(storable(v) for v in params)


def restore(value: Any) -> Any:
    """The inverse of ``storable``: no column is declared BLOB, so every bytes value is text."""
    if type(value) is bytes:
        return value.decode("utf-8", "surrogatepass")
    return value


def row_factory(cursor: sqlite3.Cursor, row: tuple[Any, ...]) -> sqlite3.Row:
    if any(type(v) is bytes for v in row):
        row = tuple(restore(v) for v in row)
    return sqlite3.Row(cursor, row)
