"""Whether a path can hold the store, checked before SQLite touches it.

SQLite's own answers to a wrong path ("unable to open database file", "file is not a database") name
neither the path nor where it came from, and arrive as tracebacks from deep inside a run. This names
both and says what to do.
"""

from __future__ import annotations

import os
from pathlib import Path

from .._defaults import ENV_HOME
from ..errors import StoreError
from ._problems import FIX_DAMAGED

# Every SQLite 3 database file starts with these 16 bytes (https://www.sqlite.org/fileformat.html).
SQLITE_HEADER = b"SQLite format 3\x00"


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
        with path.open("rb") as handle:
            head = handle.read(len(SQLITE_HEADER))
        if head and head != SQLITE_HEADER:  # an empty file is a new database to SQLite
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
