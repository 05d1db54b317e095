"""Opening the SQLite file: WAL so readers never block the writer, a busy timeout so two processes
writing at once wait for each other instead of failing, and explicit write transactions."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path

# Credits are exact: a Decimal is written as its plain decimal text and a column declared
# DECIMAL_TEXT reads back as a Decimal (the registrations are process-wide but touch only Decimal
# values and that declared type, which only llamakit's store uses).
sqlite3.register_adapter(Decimal, lambda d: format(d, "f"))
sqlite3.register_converter("DECIMAL_TEXT", lambda raw: Decimal(raw.decode()))

# Long enough to outlast another process's burst of commits; a lock held longer than this is a bug.
BUSY_TIMEOUT_S = 60.0


def connect(path: Path) -> sqlite3.Connection:
    """A connection in autocommit mode: every write goes through `write()`, which opens
    ``BEGIN IMMEDIATE`` so the write lock is taken up front (no upgrade deadlock between processes)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(
        str(path),
        timeout=BUSY_TIMEOUT_S,
        isolation_level=None,
        check_same_thread=False,
        detect_types=sqlite3.PARSE_DECLTYPES,
    )
    conn.row_factory = sqlite3.Row
    conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
    _enable_wal(conn)
    # NORMAL in WAL mode survives a killed process (the WAL is in the OS cache); only power loss can
    # drop the last commits. FULL would fsync every cell and halve throughput for no gain here.
    conn.execute("PRAGMA synchronous = NORMAL")
    return conn


def _enable_wal(conn: sqlite3.Connection) -> None:
    # WAL is recorded in the file, so only the connection that creates it has to switch. Switching
    # needs an exclusive lock, and when processes open a new file at the same moment SQLite can
    # answer "database is locked" at once rather than through the busy timeout: retry until then.
    deadline = time.monotonic() + BUSY_TIMEOUT_S
    while True:
        try:
            if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                conn.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.02)


class Database:
    """One connection shared by the threads of this process, serialised by a lock."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._conn = connect(path)
        self._lock = threading.RLock()

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def query(self, sql: str, args: tuple | dict = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._conn.execute(sql, args).fetchall()

    def close(self) -> None:
        with self._lock:
            self._conn.close()
