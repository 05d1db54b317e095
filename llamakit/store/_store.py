"""`Store`: the one SQLite database behind llamakit (runs, cells, every attempt, chat turns, cache).

Rows hold requests (messages and sampling params), responses, statuses and credit figures. The API key
is never passed in here, so it cannot be written.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

from .._defaults import ENV_HOME
from ..errors import StoreError
from ._claims import Busy, Lease
from ._connection import WAL_AUTOCHECKPOINT, Database, Transaction
from ._coordination import RERUN_OF, Coordination
from ._migrations import check_not_newer, migrate
from ._paths import check_store_path
from ._problems import FIX_READ_ONLY
from ._rows import (
    _ATTEMPT_COLUMNS,
    _CACHE_COLUMNS,
    _CELL_COLUMNS,
    _RESPONSE_COLUMNS,
    _dumps,
    _insert_sql,
    response_fields,
)
from ._spill import spill_path

DB_FILENAME = "llamakit.db"
# Rows of a run's cells read at a time by ``iter_run_cells``.
RUN_CELLS_CHUNK = 2000  # rows: a chunk of 5,000 raised the peak of a 50,000-cell walk by 9 MB
# A run's cells with their replies; ``iter_run_cells`` appends the keyset condition and order.
_CELL_AND_REPLY_COLUMNS = """c.*, r.text, r.finish_reason, r.prompt_tokens, r.completion_tokens,
    r.credits, r.credits_precision, r.credits_remaining, r.latency_s AS response_latency_s"""
_CELLS_WITH_REPLIES = """SELECT {columns}, c.ordinal AS _ordinal, c.rowid AS _rowid
    FROM run_cells c LEFT JOIN responses r ON c.cell_key = r.cell_key AND c.status = 'done'
    WHERE c.run_id = ? AND """


def _as_shared(row: dict[str, Any], run_id: str) -> None:
    """A base run's cell row, read for the cached rerun ``run_id`` that shares it."""
    row.update({k: v for k, v in (("run_id", run_id), ("cached", 1)) if k in row})


def _balances_json(balances: Mapping[str, Sequence[Decimal | None]] | None) -> str | None:
    """Other accounts' balances as JSON text, each figure as its exact decimal text."""
    if not balances:
        return None
    return json.dumps(
        {a: [None if b is None else format(b, "f") for b in pair] for a, pair in balances.items()},
        sort_keys=True,
    )


def account_balances(session: Mapping[str, Any]) -> dict[str, tuple[Decimal | None, ...]]:
    """A session row's other accounts' balances: {account: (before, after)}, exact Decimals."""
    text = session.get("account_balances")
    if not text:
        return {}
    pairs = json.loads(text)
    return {a: tuple(None if b is None else Decimal(b) for b in pair) for a, pair in pairs.items()}


def _replies(n: int) -> str:
    return "the paid reply was" if n == 1 else f"{n} paid replies were"


def default_path() -> Path:
    """``$LLAMAKIT_HOME/llamakit.db``, else ``./.llamakit/llamakit.db`` (read now, not at import)."""
    home = os.environ.get(ENV_HOME)
    root = Path(home).expanduser() if home else Path.cwd() / ".llamakit"
    return root / DB_FILENAME


class Store(Coordination):
    """The SQLite store. ``Store()`` opens the default path; ``Store(path)`` any file.

    ``create=False`` refuses a path with no store instead of creating one there. ``readonly``:
    True opens for reading only; None (the default) opens for writing and falls back to reading
    when the file or its folder is read-only (writes then raise ``StoreError``).

    Raises ``StoreError`` (naming the path, the problem and the fix) for a missing store with
    ``create=False``, a damaged file, a full disk, or a store written by a newer llamakit.
    Opening for writing also stores any replies kept in the spill file beside it.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        create: bool = True,
        readonly: bool | None = None,
    ) -> None:
        self.path = Path(path).expanduser() if path is not None else default_path()
        check_store_path(self.path, from_home=path is None and bool(os.environ.get(ENV_HOME)))
        if not create and not self.path.exists():
            raise StoreError(
                self.path,
                "missing",
                "there is no store at this path",
                "Check the path (llamakit writes its store at .llamakit/llamakit.db, or under "
                "$LLAMAKIT_HOME)",
            )
        if readonly is None:
            try:
                self._open(readonly=False)
            except StoreError as exc:
                if exc.problem != "read-only" or not self.path.exists():
                    raise
                self._open(readonly=True)
        else:
            self._open(readonly=readonly)

    def _open(self, *, readonly: bool) -> None:
        self._bases: dict[str, str] = {}
        self._db = Database(self.path, readonly=readonly)
        try:
            if readonly:
                check_not_newer(self._db)
            else:
                migrate(self._db)
                self._probe_write()
                self.reconcile_spill()
        except BaseException:
            self._db.close()
            raise

    def _probe_write(self) -> None:
        # SQLite opens a write-protected file read-only without a word, and a full disk shows
        # only at the first write: rewrite one header field now, so both surface at open.
        (version,) = self._db.query("PRAGMA user_version")[0]
        with self._db.write("opening it for writing") as tx:
            tx.execute(f"PRAGMA user_version = {int(version)}")

    @property
    def readonly(self) -> bool:
        return self._db.readonly

    def require_writable(self) -> None:
        """StoreError unless this store can be written (checked before a run spends anything)."""
        if self.readonly:
            raise StoreError(self.path, "read-only", "it is read-only", FIX_READ_ONLY)

    @staticmethod
    def _dumps(value: Any) -> str:
        return _dumps(value)

    def __repr__(self) -> str:
        return f"Store({str(self.path)!r})"

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def query(self, sql: str, args: tuple[Any, ...] | dict[str, Any] = ()) -> list[dict[str, Any]]:
        """Read-only SQL for inspection and tests; rows as dicts."""
        return [dict(r) for r in self._db.query(sql, args)]

    def migrations(self) -> list[str]:
        return [r["name"] for r in self.query("SELECT name FROM _migrations ORDER BY rowid")]

    # -- chat -------------------------------------------------------------------------------
    def record_chat_turn(
        self,
        *,
        conversation_id: str,
        index: int,
        messages: list[dict[str, Any]],
        response: Any | None,
        error: str | None,
    ) -> None:
        fields = response_fields(response) if response is not None else {}
        row = {
            "conversation_id": conversation_id,
            "idx": index,
            "messages": _dumps(messages),
            "response": fields.get("text"),
            "finish_reason": fields.get("finish_reason"),
            "model": fields.get("model"),
            "prompt_tokens": fields.get("prompt_tokens"),
            "completion_tokens": fields.get("completion_tokens"),
            "latency_s": fields.get("latency_s"),
            "credits_remaining": fields.get("credits_remaining"),
            "request_id": fields.get("request_id"),
            "error": error,
            "created_at": time.time(),
        }
        try:
            with self._db.write("saving a chat turn") as tx:
                tx.execute(_insert_sql("chat_turns", list(row)), row)
        except StoreError as exc:
            kept = self.spill_record({"kind": "chat_turn", "row": row})
            self._raise_spilled(exc, kept=int(kept is not None), lost=int(kept is None))

    def chat_turns(self, conversation_id: str | None = None) -> list[dict[str, Any]]:
        if conversation_id is None:
            return self.query("SELECT * FROM chat_turns ORDER BY id")
        sql = "SELECT * FROM chat_turns WHERE conversation_id = ? ORDER BY id"
        return self.query(sql, (conversation_id,))

    # -- runs and sessions ------------------------------------------------------------------
    def create_run(self, row: Mapping[str, Any]) -> None:
        row = {**row, "config": _dumps(row["config"])}
        with self._db.write() as db:
            db.execute(_insert_sql("runs", list(row)), row)

    def run_row(self, run_id: str) -> dict[str, Any] | None:
        rows = self.query("SELECT * FROM runs WHERE run_id = ?", (run_id,))
        return rows[0] if rows else None

    def latest_run(self, fingerprint: str) -> dict[str, Any] | None:
        sql = "SELECT * FROM runs WHERE fingerprint = ? ORDER BY started_at DESC LIMIT 1"
        rows = self.query(sql, (fingerprint,))
        return rows[0] if rows else None

    def set_run_status(self, run_id: str, status: str, *, finished_at: float | None = None) -> None:
        with self._db.write() as db:
            db.execute(
                "UPDATE runs SET status = ?, finished_at = ? WHERE run_id = ?",
                (status, finished_at, run_id),
            )

    def start_session(
        self,
        run_id: str,
        *,
        balance_before: Decimal | None,
        started_at: float | None = None,
        account: str | None = None,
        account_balances: Mapping[str, Sequence[Decimal | None]] | None = None,
    ) -> int:
        """Open this process's session of the run. ``started_at``: when ``balance_before`` was
        read (default now); the session's time span must cover that reading, because credit
        accounting groups the sessions whose spans overlap (``experiment/spans.py``).
        ``account``: whose balance ``balance_before`` is; ``account_balances``: other accounts'
        (a judge's own client's) opening and closing balances, {account: [before, after]}."""
        started = time.time() if started_at is None else started_at
        with self._db.write() as db:
            (last,) = db.execute(
                "SELECT COALESCE(MAX(session), 0) FROM run_sessions WHERE run_id = ?", (run_id,)
            ).fetchone()
            db.execute(
                "INSERT INTO run_sessions (run_id, session, pid, started_at, status, "
                "balance_before, account, account_balances) "
                "VALUES (?, ?, ?, ?, 'running', ?, ?, ?)",
                (
                    run_id, last + 1, os.getpid(), started, balance_before, account,
                    _balances_json(account_balances),
                ),
            )  # fmt: skip
            db.execute(
                "UPDATE runs SET status = 'running', finished_at = NULL WHERE run_id = ?", (run_id,)
            )
        return int(last + 1)

    def finish_session(
        self, run_id: str, session: int, *, status: str, balance_after: Decimal | None
    ) -> None:
        with self._db.write() as db:
            db.execute(
                "UPDATE run_sessions SET status = ?, finished_at = ?, balance_after = ? "
                "WHERE run_id = ? AND session = ?",
                (status, time.time(), balance_after, run_id, session),
            )

    def set_account_balances(
        self, run_id: str, session: int, balances: Mapping[str, Sequence[Decimal | None]]
    ) -> None:
        """Replace a session's other accounts' [before, after] balances (see ``start_session``)."""
        with self._db.write() as db:
            db.execute(
                "UPDATE run_sessions SET account_balances = ? WHERE run_id = ? AND session = ?",
                (_balances_json(balances), run_id, session),
            )

    def sessions(self, run_id: str) -> list[dict[str, Any]]:
        sql = "SELECT * FROM run_sessions WHERE run_id = ? ORDER BY session"
        return self.query(sql, (run_id,))

    # -- cells ------------------------------------------------------------------------------
    def cached_responses(
        self, keys: Iterable[str], *, columns: str = _CACHE_COLUMNS
    ) -> dict[str, dict[str, Any]]:
        """Successful responses for these cell keys (the cache), keyed by cell key.

        Only the columns a run needs are read (not the stored request), which keeps a fully
        cached rerun of thousands of cells fast."""
        keys = list(dict.fromkeys(keys))
        found: dict[str, dict[str, Any]] = {}
        for start in range(0, len(keys), 500):  # stay under SQLite's bound-parameter limit
            chunk = keys[start : start + 500]
            marks = ",".join("?" * len(chunk))
            sql = f"SELECT {columns} FROM responses WHERE cell_key IN ({marks})"
            for row in self.query(sql, tuple(chunk)):
                found[row["cell_key"]] = row
        return found

    def known_responses(self, keys: Sequence[str]) -> set[str]:
        """The cell keys among ``keys`` that have a successful response (reads no reply)."""
        found: set[str] = set()
        for start in range(0, len(keys), 500):  # stay under SQLite's bound-parameter limit
            chunk = tuple(keys[start : start + 500])
            sql = f"SELECT cell_key FROM responses WHERE cell_key IN ({','.join('?' * len(chunk))})"
            found |= self._db.column(sql, chunk)
        return found

    def record_call(
        self, response: Mapping[str, Any] | None, cells: Sequence[Mapping[str, Any]] = ()
    ) -> None:
        """Commit a paid response (to the cache), the run cells it answers, and drop its claim, in
        one transaction.

        ``INSERT OR IGNORE`` on the response: if another process already paid for the same key,
        its row stays the cache entry; this call's cost still shows in its session's balance.
        If the store cannot take them, they go to the spill file beside it (stored when the store
        next opens) and StoreError is raised: the run stops, the reply is not lost.
        """
        response = dict(response) if response is not None else None
        try:
            with self._db.write("saving a paid reply") as tx:
                self._write_call(tx, response, cells)
        except StoreError as exc:
            if response is None:
                raise
            kept = self.spill_call(response, cells)
            self._raise_spilled(exc, kept=int(kept is not None), lost=int(kept is None))

    def record_calls(
        self,
        calls: Sequence[tuple[Mapping[str, Any] | None, Sequence[Mapping[str, Any]]]],
        *,
        wait: bool = True,
    ) -> None:
        """``record_call`` for several calls in one transaction (group commit): one commit, and
        one wait for the write lock, instead of one per call. All or none are stored; if the
        store cannot take them, every paid reply among them goes to the spill file and
        StoreError is raised, as for ``record_call``.

        ``wait=False``: if the write lock is not free this instant, raise ``WouldWait`` having
        stored nothing (the caller still holds the replies and hands them on)."""
        pending = [(dict(r) if r is not None else None, cells) for r, cells in calls]
        if not pending:
            return
        try:
            with self._db.write("saving paid replies", wait=wait) as tx:
                for response, cells in pending:
                    # _write_call pops "_attempts": pass copies, so a spill keeps them.
                    self._write_call(tx, dict(response) if response else None, cells)
        except StoreError as exc:
            paid = [(r, cells) for r, cells in pending if r is not None]
            if not paid:
                raise
            kept = sum(self.spill_call(response, cells) is not None for response, cells in paid)
            self._raise_spilled(exc, kept=kept, lost=len(paid) - kept)

    def version(self, *, wait: bool = True) -> tuple[int, int]:
        """(commits by other connections or processes, this connection's changed rows): differs
        once anything was committed to the store (for caches of what was read from it).
        ``wait=False``: WouldWait instead of waiting for another thread of this process."""
        return self._db.version(wait=wait)

    def checkpoint(self, mode: str = "TRUNCATE") -> None:
        """Move the write-ahead log into the database file: ``TRUNCATE`` (the default, for
        measuring its size) waits for other connections; ``PASSIVE`` copies what it can now."""
        if mode not in ("PASSIVE", "FULL", "RESTART", "TRUNCATE"):
            raise ValueError(f"checkpoint mode {mode!r}: one of PASSIVE, FULL, RESTART, TRUNCATE")
        self._db.query(f"PRAGMA wal_checkpoint({mode})")

    def autocheckpoint(self, pages: int | None) -> None:
        """Checkpoint on commit once the log holds ``pages`` pages (SQLite's default, 1000, when
        None), or never (0): for a writer that checkpoints on a thread of its own instead."""
        self._db.query(
            f"PRAGMA wal_autocheckpoint = {WAL_AUTOCHECKPOINT if pages is None else int(pages)}"
        )

    def _raise_spilled(self, exc: StoreError, *, kept: int, lost: int) -> None:
        """``exc``, saying where the paid replies it could not store went: ``kept`` of them into
        the spill file (stored when the store next opens, never paid again), ``lost`` only to
        stderr, because the disk refused the spill file too (a rerun pays those again unless
        their lines are saved into the spill file)."""
        spill = spill_path(self.path)
        where = []
        if kept:
            where.append(f"{_replies(kept)} kept in {spill} and stored when the store next opens")
        if lost:
            where.append(
                f"{_replies(lost)} could not be written to {spill} either and went to stderr "
                "only: a rerun pays for them again unless you save their lines (after 'the "
                f"unsaved record follows:') into {spill}"
            )
        raise StoreError(
            self.path, exc.problem, f"{exc.detail}; " + "; ".join(where), exc.fix
        ) from exc

    def _write_call(
        self, tx: Transaction, response: dict[str, Any] | None, cells: Sequence[Mapping[str, Any]]
    ) -> None:
        if response is not None:
            attempts = response.pop("_attempts", None)
            if attempts:
                tx.executemany(_insert_sql("attempts", _ATTEMPT_COLUMNS), attempts)
            tx.execute("DELETE FROM inflight WHERE cell_key = ?", (response["cell_key"],))
            tx.execute("DELETE FROM claims WHERE cell_key = ?", (response["cell_key"],))
            row = {c: response.get(c) for c in _RESPONSE_COLUMNS}
            row["created_at"] = row["created_at"] or time.time()
            for key in ("messages", "params"):
                if not isinstance(row[key], str):
                    row[key] = _dumps(row[key])
            tx.execute(_insert_sql("responses", _RESPONSE_COLUMNS, "INSERT OR IGNORE"), row)
        if cells:
            tx.executemany(
                _insert_sql("run_cells", _CELL_COLUMNS, "INSERT OR REPLACE"),
                [self._cell_row(c) for c in cells],
            )

    def claim_cell(self, key: str, lease: Lease) -> dict[str, Any] | Busy | None:
        """``claim`` returning the cache columns a run reads."""
        return self.claim(key, lease, _CACHE_COLUMNS)

    def claim_cells(
        self, keys: Sequence[str], lease: Lease
    ) -> dict[str, dict[str, Any] | Busy | None]:
        """``claim_many`` returning the cache columns a run reads."""
        return self.claim_many(keys, lease, _CACHE_COLUMNS)

    def record_inflight(self, row: Mapping[str, Any]) -> None:
        """Journal a submitted v2 job (cell_key, run_id, session, request_id, status_url,
        response_url, call_id, submitted_at) before waiting on it."""
        with self._db.write() as db:
            db.execute(_insert_sql("inflight", list(row), "INSERT OR REPLACE"), dict(row))

    def inflight(self, cell_key: str) -> dict[str, Any] | None:
        rows = self.query("SELECT * FROM inflight WHERE cell_key = ?", (cell_key,))
        return rows[0] if rows else None

    def drop_inflight(self, cell_key: str) -> None:
        with self._db.write() as db:
            db.execute("DELETE FROM inflight WHERE cell_key = ?", (cell_key,))

    def record_cells(self, cells: Sequence[Mapping[str, Any]]) -> None:
        self.record_call(None, cells)

    @staticmethod
    def _cell_row(cell: Mapping[str, Any]) -> dict[str, Any]:
        row = {c: cell.get(c) for c in _CELL_COLUMNS}
        for key in ("params", "prompt", "row", "scores", "score_errors", "judge_keys"):
            if row[key] is not None and not isinstance(row[key], str):
                row[key] = _dumps(row[key])
        row["cached"] = int(bool(row["cached"]))
        return row

    def cells_run(self, run_id: str) -> str:
        """The run whose ``run_cells`` rows are this run's cells: itself, or for a fully cached
        rerun of a complete run, that run (the rerun stores no rows of its own)."""
        base = self._bases.get(run_id)
        if base is None:
            # A base that is not in this store (a rerun imported from a run file without it)
            # cannot hold the rerun's cells: then they are its own.
            sql = f"""SELECT b.run_id AS base FROM runs r
                      LEFT JOIN runs b ON b.run_id = json_extract(r.config, '$.{RERUN_OF}')
                      WHERE r.run_id = ?"""
            rows = self.query(sql, (run_id,))
            base = str(rows[0]["base"]) if rows and rows[0]["base"] else run_id
            if rows:  # a run's base never changes once the run exists
                self._bases[run_id] = base
        return base

    def cell_rows(
        self, run_id: str, where: str = "", args: tuple[Any, ...] = (), *, columns: str = "*"
    ) -> list[dict[str, Any]]:
        """Run ``run_id``'s ``run_cells`` rows: ``SELECT columns FROM run_cells WHERE run_id = ?
        AND where``. The one way to read a run's cells by its id: a fully cached rerun stores
        none of its own and shares those of the run it repeats (``cells_run``); its rows come
        back with its own ``run_id`` and ``cached`` set (when those columns are read)."""
        base = self.cells_run(run_id)
        sql = f"SELECT {columns} FROM run_cells WHERE run_id = ?" + (
            f" AND {where}" if where else ""
        )
        rows = self.query(sql, (base, *args))
        if base != run_id:
            for row in rows:
                _as_shared(row, run_id)
        return rows

    def row_keys(self, run_id: str, name: str) -> list[str]:
        """The dataset fields ``name`` and ``name_*`` in any of run ``run_id``'s cells, sorted
        (read in SQLite, without loading the rows; the rare row SQLite cannot parse, one with
        an infinite number written ``Infinity``, is read in Python)."""
        base = self.cells_run(run_id)
        sql = """SELECT DISTINCT j.key FROM run_cells c, json_each(c.row) j
                 WHERE c.run_id = ? AND json_valid(c.row) AND json_type(c.row) = 'object'
                   AND (j.key = ? OR substr(j.key, 1, ?) = ?)"""
        keys = self._db.column(sql, (base, name, len(name) + 1, name + "_"))
        odd = "SELECT row FROM run_cells WHERE run_id = ? AND NOT json_valid(row)"
        for text in self._db.column(odd, (base,)):
            with contextlib.suppress(TypeError, ValueError):
                row = json.loads(text)
                if isinstance(row, dict):
                    keys.update(k for k in row if k == name or k.startswith(name + "_"))
        return sorted(keys)

    def run_cells(self, run_id: str) -> list[dict[str, Any]]:
        """A run's cells joined with their cached responses (None columns for errored cells);
        a rerun that shares another run's cells gets them with its own run_id, marked cached."""
        return [row for chunk in self.iter_run_cells(run_id, chunk=2**62) for row in chunk]

    def iter_run_cells(
        self, run_id: str, chunk: int = RUN_CELLS_CHUNK, *, columns: str = _CELL_AND_REPLY_COLUMNS
    ) -> Iterator[list[dict[str, Any]]]:
        """``run_cells`` in lists of at most ``chunk`` rows, in order, read one list at a time,
        so a caller walking a large run never holds all of it. Rows without an ordinal (stores
        older than it) come first, in the order they were written; then by ordinal. Each chunk
        seeks past the last (keyset on the ``run_cells_order`` index), so a walk is linear.
        ``columns``: SQL over ``c`` (the cell) and ``r`` (its reply); by default all of both."""
        base = self.cells_run(run_id)
        select = _CELLS_WITH_REPLIES.format(columns=columns)
        unordered = "c.ordinal IS NULL AND c.rowid > ? ORDER BY c.rowid"
        ordered = "(c.ordinal, c.rowid) > (?, ?) ORDER BY c.ordinal, c.rowid"
        after: tuple[int, ...] = (-1,)
        for by_ordinal, where in ((False, unordered), (True, ordered)):
            while True:
                rows = self._db.query(select + where + " LIMIT ?", (base, *after, chunk))
                if not rows:
                    break
                out = []
                for raw in rows:
                    row = dict(raw)
                    rowid, ordinal = row.pop("_rowid"), row.pop("_ordinal")
                    after = (ordinal, rowid) if by_ordinal else (rowid,)
                    if base != run_id:
                        _as_shared(row, run_id)
                    out.append(row)
                yield out
                if len(rows) < chunk:
                    break
            after = (-(2**63), -1)  # before any ordinal

    def cell_done(self, run_id: str, cell_id: str) -> bool:
        sql = "SELECT 1 FROM run_cells WHERE run_id = ? AND cell_id = ? AND status = 'done'"
        return bool(self.query(sql, (self.cells_run(run_id), cell_id)))

    def done_cell_ids(self, run_id: str) -> set[str]:
        sql = "SELECT cell_id FROM run_cells WHERE run_id = ? AND status = 'done'"
        return self._db.column(sql, (self.cells_run(run_id),))

    def record_attempts(self, rows: Sequence[Mapping[str, Any]]) -> None:
        if not rows:
            return
        with self._db.write() as db:
            db.executemany(_insert_sql("attempts", _ATTEMPT_COLUMNS), [dict(r) for r in rows])

    def attempts(self, run_id: str) -> list[dict[str, Any]]:
        return self.query("SELECT * FROM attempts WHERE run_id = ? ORDER BY id", (run_id,))

    # -- credits ----------------------------------------------------------------------------
    def session_responses(self, run_id: str, session: int) -> list[dict[str, Any]]:
        sql = """SELECT cell_key, model, started_at, finished_at, credits_remaining, credits,
                 account FROM responses WHERE run_id = ? AND session = ? ORDER BY finished_at"""
        return self.query(sql, (run_id, session))

    def set_response_credits(
        self, updates: Iterable[tuple[Decimal | None, str | None, str]]
    ) -> None:
        """(credits, precision, cell_key) triples from the attribution pass."""
        with self._db.write() as db:
            db.executemany(
                "UPDATE responses SET credits = ?, credits_precision = ? WHERE cell_key = ?",
                list(updates),
            )

    def observed_cost_per_call(self, model: str | None) -> Decimal | None:
        """Mean attributed cost (USD) of this model's calls in the store (every model's for
        ``None``), or None if none is known.

        An exact Decimal: the sum of the stored figures over their count, which is exact whenever
        the division ends within Decimal's 28 significant digits (one flat price always does)."""
        # SQLite's AVG would read the decimal text as binary floats, so the sum is taken here.
        # Equal figures are counted in SQL: a run at a flat price reads one row, not one per call.
        # The filter compares numerically (as text, "0.0" > "0" would hold).
        sql = "SELECT credits, COUNT(*) AS n FROM responses WHERE CAST(credits AS REAL) > 0"
        args: tuple[Any, ...] = ()
        if model is not None:
            sql += " AND model = ?"
            args = (model,)
        rows = self.query(sql + " GROUP BY credits", args)
        calls: int = sum(r["n"] for r in rows)
        if not calls:
            return None
        # The column reads back as Decimal (DECIMAL_TEXT, see _connection), also when grouped.
        total: Decimal = sum((r["credits"] * r["n"] for r in rows), Decimal(0))
        return total / calls

    def import_run(
        self,
        run: Mapping[str, Any],
        *,
        sessions: Sequence[Mapping[str, Any]],
        cells: Sequence[Mapping[str, Any]],
        responses: Sequence[Mapping[str, Any]],
        attempts: Sequence[Mapping[str, Any]] = (),
    ) -> bool:
        """Write a run read from a run file, in one transaction; True if it was new here (a
        second import adds nothing). See ``_import``."""
        from ._import import import_run_rows

        return import_run_rows(
            self, run, sessions=sessions, cells=cells, responses=responses, attempts=attempts
        )

    def run_rows(self) -> list[dict[str, Any]]:
        """Every run with its cell counts, for ``llamakit.runs()``."""
        # Each run's cells are those of ``cells_run``: the base it shares, when in this store.
        sql = f"""SELECT r.*,
                   (SELECT COUNT(*) FROM run_cells c WHERE c.run_id = COALESCE(b.run_id, r.run_id)
                      AND c.status = 'done') AS cells_done,
                   (SELECT COUNT(*) FROM run_cells c WHERE c.run_id = COALESCE(b.run_id, r.run_id)
                      AND c.status = 'error') AS errors
                 FROM runs r LEFT JOIN runs b ON b.run_id = json_extract(r.config, '$.{RERUN_OF}')
                 ORDER BY r.started_at"""
        return self.query(sql)

    # -- sequential runs (issue 19) ---------------------------------------------------------
    def record_sequential_step(self, run_id: str, rule: str, step: int, record: Any) -> None:
        """One step of a sequential run's record (``experiment.sequential``); a step already
        recorded (a resumed run replaying it) is kept as first written."""
        with self._db.write() as db:
            db.execute(
                "INSERT OR IGNORE INTO sequential_steps VALUES (?, ?, ?, ?, ?)",
                (run_id, rule, step, _dumps(record), time.time()),
            )

    def sequential_steps(self, run_id: str, rule: str | None = None) -> list[dict[str, Any]]:
        """A run's sequential steps (all rules, or one), oldest first; ``record`` is JSON text."""
        sql = "SELECT * FROM sequential_steps WHERE run_id = ?"
        args: tuple[Any, ...] = (run_id,)
        if rule is not None:
            sql += " AND rule = ?"
            args = (run_id, rule)
        return self.query(sql + " ORDER BY rowid", args)
