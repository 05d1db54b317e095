"""Opening the SQLite file: WAL so readers never block the writer, a busy timeout so two processes
writing at once wait for each other instead of failing, and explicit write transactions."""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from decimal import Decimal
from pathlib import Path
from typing import Any

from ..errors import StoreError
from ._problems import row_factory, storable_params, store_error

# Credits are exact: a Decimal is written as its plain decimal text and a column declared
# DECIMAL_TEXT reads back as a Decimal (the registrations are process-wide but touch only Decimal
# values and that declared type, which only llamakit's store uses).
sqlite3.register_adapter(Decimal, lambda d: format(d, "f"))
sqlite3.register_converter("DECIMAL_TEXT", lambda raw: Decimal(raw.decode()))

# Long enough to outlast another process's burst of commits; a lock held longer than this is a bug.
BUSY_TIMEOUT_S = 60.0
# SQLite's own default: checkpoint on the commit that takes the write-ahead log past this many pages.
WAL_AUTOCHECKPOINT = 1000


def connect(path: Path, *, readonly: bool = False) -> sqlite3.Connection:
    """A connection in autocommit mode: every write goes through `write()`, which opens
    ``BEGIN IMMEDIATE`` so the write lock is taken up front (no upgrade deadlock between processes).

    ``readonly`` opens an existing file for reading only, never creating or changing it."""
    if readonly:
        conn = _connect_readonly(path)
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(
            str(path),
            timeout=BUSY_TIMEOUT_S,
            isolation_level=None,
            check_same_thread=False,
            detect_types=sqlite3.PARSE_DECLTYPES,
        )
    conn.row_factory = row_factory
    conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
    if readonly:
        conn.execute("PRAGMA query_only = ON")
        conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()  # a damaged file fails here
        return conn
    _enable_wal(conn)
    # NORMAL in WAL mode survives a killed process (the WAL is in the OS cache); only power loss can
    # drop the last commits. FULL would fsync every cell and halve throughput for no gain here.
    conn.execute("PRAGMA synchronous = NORMAL")
    return conn


def _connect_readonly(path: Path) -> sqlite3.Connection:
    uri = path.resolve().as_uri()
    try:
        conn = sqlite3.connect(
            uri + "?mode=ro", uri=True, timeout=BUSY_TIMEOUT_S, isolation_level=None,
            check_same_thread=False, detect_types=sqlite3.PARSE_DECLTYPES,
        )  # fmt: skip
        conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
        return conn
    except sqlite3.OperationalError as exc:
        if not _unchangeable(path, exc):
            raise  # locked, busy or missing: store_error names it
        # A WAL file in a folder nobody can write: SQLite cannot create the shared-memory index
        # it needs, so read the file as immutable (true here: nobody can be writing it).
        return sqlite3.connect(
            uri + "?immutable=1",
            uri=True,
            isolation_level=None,
            check_same_thread=False,
            detect_types=sqlite3.PARSE_DECLTYPES,
        )


def _unchangeable(path: Path, exc: sqlite3.OperationalError) -> bool:
    """``exc`` says SQLite could not make the WAL index beside ``path``, and nobody can be writing
    the file: it is on a read-only filesystem, or in a folder this process cannot write with no
    index file in it (a process writing in WAL mode keeps one there). Anything else, such as a
    lock another process holds, is no reason to read as immutable: SQLite would then read pages
    while they are rewritten and call a healthy store malformed."""
    code = getattr(exc, "sqlite_errorcode", None)  # Python 3.11+
    if code is not None:
        if code & 0xFF not in (sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_READONLY):
            return False
    elif "unable to open" not in str(exc) and "readonly" not in str(exc):
        return False
    folder = path.resolve().parent
    if hasattr(os, "statvfs"):  # not on Windows
        with suppress(OSError):
            if os.statvfs(folder).f_flag & os.ST_RDONLY:
                return True
    shm = folder / (path.name + "-shm")
    return not os.access(folder, os.W_OK) and not shm.exists()


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


class WouldWait(Exception):
    """``Database.write(wait=False)`` found the write lock held (by another thread of this process
    or by another process) and wrote nothing."""


class Transaction:
    """The connection inside ``Database.write()``: every parameter passes ``storable`` first, so
    text UTF-8 cannot hold is kept (as bytes) instead of failing the transaction."""

    __slots__ = ("_conn",)

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    @property
    def connection(self) -> sqlite3.Connection:
        """The raw connection, for migrations (DDL only, no parameters to convert)."""
        return self._conn

    def execute(self, sql: str, params: Any = ()) -> sqlite3.Cursor:
        return self._conn.execute(sql, storable_params(params))

    def executemany(self, sql: str, rows: Iterable[Any]) -> sqlite3.Cursor:
        return self._conn.executemany(sql, (storable_params(r) for r in rows))


# Errors that describe the store rather than a bug in the SQL: they become StoreError.
_STORE_FAULTS = (sqlite3.OperationalError, sqlite3.DatabaseError, OSError)
_BUGS = (sqlite3.IntegrityError, sqlite3.ProgrammingError, sqlite3.InterfaceError)


class Database:
    """One connection shared by the threads of this process, serialised by a lock. Every failure
    of the file or the disk surfaces as ``StoreError`` naming the path and what to do."""

    def __init__(self, path: Path, *, readonly: bool = False) -> None:
        self.path = path
        self.readonly = readonly
        try:
            self._conn = connect(path, readonly=readonly)
        except _BUGS:
            raise
        except _STORE_FAULTS as exc:
            raise store_error(path, exc, doing="opening it") from exc
        self._lock = threading.RLock()

    @contextmanager
    def write(self, doing: str = "writing to it", *, wait: bool = True) -> Iterator[Transaction]:
        """A write transaction (``BEGIN IMMEDIATE`` ... ``COMMIT``, rolled back on any error).

        ``wait=False`` takes the write lock only if it is free this instant, else raises
        ``WouldWait`` having done nothing: for a caller on an event loop, which must not sit out
        another writer's transaction (up to ``BUSY_TIMEOUT_S``)."""
        if self.readonly:
            raise StoreError(
                self.path, "read-only", "it was opened read-only", "Open it with readonly=False"
            )
        if not self._lock.acquire(blocking=wait):
            raise WouldWait
        try:
            try:
                self._begin(wait)
                try:
                    yield Transaction(self._conn)
                except BaseException:
                    if self._conn.in_transaction:
                        self._conn.execute("ROLLBACK")
                    raise
                self._conn.execute("COMMIT")
            except _BUGS:
                raise
            except _STORE_FAULTS as exc:
                if self._conn.in_transaction:
                    with suppress(sqlite3.Error):
                        self._conn.execute("ROLLBACK")
                raise store_error(self.path, exc, doing=doing) from exc
        finally:
            self._lock.release()

    def _begin(self, wait: bool) -> None:
        if wait:
            self._conn.execute("BEGIN IMMEDIATE")
            return
        self._conn.execute("PRAGMA busy_timeout = 0")
        try:
            self._conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode & 0xFF == sqlite3.SQLITE_BUSY:  # BUSY_RECOVERY etc. too
                raise WouldWait from exc
            raise
        finally:
            self._conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")

    def query(self, sql: str, args: tuple[Any, ...] | dict[str, Any] = ()) -> list[sqlite3.Row]:
        with self._lock:
            try:
                return self._conn.execute(sql, storable_params(args)).fetchall()
            except _BUGS:
                raise
            except _STORE_FAULTS as exc:
                raise store_error(self.path, exc, doing="reading it") from exc

    def version(self, *, wait: bool = True) -> tuple[int, int]:
        """Changes any connection committed to the file since an earlier call differ from it:
        SQLite's ``data_version`` counts other connections' commits (this process's or another's),
        ``total_changes`` this connection's own rows. ``wait=False``: WouldWait if another thread
        holds the connection this instant."""
        if not self._lock.acquire(blocking=wait):
            raise WouldWait
        try:
            (other,) = self._conn.execute("PRAGMA data_version").fetchone()
            return int(other), self._conn.total_changes
        except _STORE_FAULTS as exc:
            raise store_error(self.path, exc, doing="reading it") from exc
        finally:
            self._lock.release()

    def column(self, sql: str, args: tuple[Any, ...] = ()) -> set[Any]:
        """The first column's distinct values, read row by row (no list of rows in between:
        a run's 200,000 cell ids stay one set)."""
        with self._lock:
            try:
                return {r[0] for r in self._conn.execute(sql, storable_params(args))}
            except _BUGS:
                raise
            except _STORE_FAULTS as exc:
                raise store_error(self.path, exc, doing="reading it") from exc

    def close(self) -> None:
        with self._lock:
            self._conn.close()
