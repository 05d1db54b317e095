"""Whether a path can hold the store, checked before the store opens it.

SQLite's own answers to a wrong path ("unable to open database file", "file is not a database") name
neither the path nor where it came from, and arrive as tracebacks from deep inside a run. This names
both and says what to do.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from .._defaults import ENV_HOME
from ..errors import StoreError
from ._problems import FIX_DAMAGED


def _is_not_a_database(path: Path) -> bool:
    """SQLite itself finds no database in ``path`` (an empty file is a new database to it).

    Read through SQLite, never with ``open()``: closing any descriptor of a file drops every POSIX
    lock this process holds on it, including those of the store's own open connections. A process
    writing the store then thinks it is the file's last user, deletes the write-ahead log's index
    under them, and they read pages that are not there ("database disk image is malformed").
    SQLite keeps its own descriptors open while it holds locks, so a connection is safe.
    https://www.sqlite.org/howtocorrupt.html#_posix_advisory_locks_canceled_by_a_separate_thread_doing_close_
    """
    try:
        conn = sqlite3.connect(path.resolve().as_uri() + "?mode=ro", uri=True, timeout=0)
    except sqlite3.Error:
        return False  # opening it for real says what is wrong
    try:
        conn.execute("PRAGMA schema_version").fetchone()
    except sqlite3.DatabaseError as exc:
        code = getattr(exc, "sqlite_errorcode", None)  # Python 3.11+
        if code is not None:
            return bool(code & 0xFF == sqlite3.SQLITE_NOTADB)
        return "not a database" in str(exc)
    finally:
        conn.close()
    return False


def check_store_path(path: Path, *, from_home: bool = False) -> None:
    """Raise StoreError if ``path`` cannot be the store: it is a folder, a
    file that is not an SQLite database, or lies under something that is not a folder.

    ``from_home``: the path was derived from ``$LLAMAKIT_HOME``, so the message names the variable.
    """
    origin = f"{ENV_HOME}={os.environ.get(ENV_HOME, '')} " if from_home else ""
    if path.is_dir():
        fix = (
            f"point {ENV_HOME} at a folder"
            if from_home
            else f"give a file such as {path}/llamakit.db"
        )
        raise StoreError(path, "missing", f"{origin}it is a folder, not a store file", fix)
    if path.exists() and not path.is_file():
        raise StoreError(
            path,
            "missing",
            f"{origin}it is not a regular file (a device, pipe or socket)",
            "give a file name such as ./llamakit.db",
        )
    if path.is_file():
        if _is_not_a_database(path):
            raise StoreError(
                path,
                "damaged",
                f"{origin}it is not an SQLite database",
                f"{FIX_DAMAGED} (or, if it is some other file, give the store another name)",
            )
        return
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                what = f"{ENV_HOME} must name a folder" if from_home else "choose another path"
                raise StoreError(
                    path,
                    "missing",
                    f"{origin}cannot create it: {parent} is a file, not a folder",
                    what,
                )
            return
