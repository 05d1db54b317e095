"""Schema changes as an append-only list of named functions (after simonw/llm's migrations.py).

Never edit or reorder a migration that has shipped: add a new one. Each is recorded in
``_migrations`` when applied, so an old store upgrades itself the next time it is opened, and two
processes opening a fresh store at once apply each migration exactly once (the check and the change
share one ``BEGIN IMMEDIATE`` transaction).
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from decimal import Decimal, InvalidOperation

from ..errors import StoreError
from ._connection import Database
from ._problems import FIX_NEWER

Migration = Callable[[sqlite3.Connection], None]
MIGRATIONS: list[Migration] = []


def migration(fn: Migration) -> Migration:
    MIGRATIONS.append(fn)
    return fn


@migration
def m001_initial(db: sqlite3.Connection) -> None:
    db.execute(
        """CREATE TABLE runs (
            run_id TEXT PRIMARY KEY, name TEXT NOT NULL, fingerprint TEXT NOT NULL,
            model TEXT, status TEXT NOT NULL, mode TEXT NOT NULL,
            started_at REAL NOT NULL, finished_at REAL, cells_total INTEGER NOT NULL,
            budget REAL, config TEXT NOT NULL)"""
    )
    db.execute("CREATE INDEX runs_fingerprint ON runs (fingerprint, started_at)")
    # One row per process that worked on a run: a resumed run has several, and a top-up between
    # them is why a run's spend is the sum of per-session balance deltas, not first minus last.
    db.execute(
        """CREATE TABLE run_sessions (
            run_id TEXT NOT NULL, session INTEGER NOT NULL, pid INTEGER,
            started_at REAL NOT NULL, finished_at REAL, status TEXT,
            balance_before REAL, balance_after REAL,
            PRIMARY KEY (run_id, session))"""
    )
    # The response cache: one successful call per cell key, whichever run paid for it.
    db.execute(
        """CREATE TABLE responses (
            cell_key TEXT PRIMARY KEY, model TEXT, endpoint TEXT, messages TEXT NOT NULL,
            params TEXT NOT NULL, repeat INTEGER NOT NULL, text TEXT, finish_reason TEXT,
            prompt_tokens INTEGER, completion_tokens INTEGER, total_tokens INTEGER, usage TEXT,
            request_id TEXT, latency_s REAL, attempts INTEGER, started_at REAL, finished_at REAL,
            credits_remaining REAL, credits REAL, credits_precision TEXT,
            run_id TEXT, session INTEGER, created_at REAL NOT NULL)"""
    )
    db.execute("CREATE INDEX responses_session ON responses (run_id, session)")
    db.execute("CREATE INDEX responses_model ON responses (model)")
    db.execute(
        """CREATE TABLE run_cells (
            run_id TEXT NOT NULL, cell_id TEXT NOT NULL, cell_key TEXT NOT NULL, ordinal INTEGER,
            variant TEXT NOT NULL, item_id TEXT NOT NULL, params TEXT NOT NULL,
            repeat INTEGER NOT NULL, model TEXT, prompt TEXT NOT NULL, row TEXT NOT NULL,
            status TEXT NOT NULL, cached INTEGER NOT NULL DEFAULT 0,
            error TEXT, error_message TEXT, attempts INTEGER, latency_s REAL,
            started_at REAL, finished_at REAL, local_prompt_tokens INTEGER,
            scores TEXT, score_errors TEXT, judge_keys TEXT,
            PRIMARY KEY (run_id, cell_id))"""
    )
    db.execute(
        """CREATE TABLE attempts (
            id INTEGER PRIMARY KEY AUTOINCREMENT, run_id TEXT, session INTEGER,
            cell_key TEXT, call_id TEXT, attempt INTEGER, status INTEGER, error TEXT,
            message TEXT, latency_s REAL, credits_remaining REAL,
            started_at REAL, finished_at REAL)"""
    )
    db.execute("CREATE INDEX attempts_run ON attempts (run_id, session)")
    db.execute(
        """CREATE TABLE chat_turns (
            id INTEGER PRIMARY KEY AUTOINCREMENT, conversation_id TEXT NOT NULL,
            idx INTEGER NOT NULL, messages TEXT NOT NULL, response TEXT, finish_reason TEXT,
            model TEXT, prompt_tokens INTEGER, completion_tokens INTEGER, latency_s REAL,
            credits_remaining REAL, request_id TEXT, error TEXT, created_at REAL NOT NULL)"""
    )
    db.execute("CREATE INDEX chat_turns_conversation ON chat_turns (conversation_id, idx)")


@migration
def m002_inflight(db: sqlite3.Connection) -> None:
    # v2 jobs submitted but not yet collected. Written before waiting on the job and deleted in
    # the transaction that stores its response, so a killed runner's resume collects the jobs it
    # had paid for instead of submitting them again.
    db.execute(
        """CREATE TABLE inflight (
            cell_key TEXT PRIMARY KEY, run_id TEXT, session INTEGER, request_id TEXT NOT NULL,
            status_url TEXT NOT NULL, response_url TEXT NOT NULL, call_id TEXT,
            submitted_at REAL NOT NULL)"""
    )


@migration
def m003_claims(db: sqlite3.Connection) -> None:
    # Who is paying for a request right now. A process claims a cell key in the transaction that
    # checks the cache, and drops the claim in the one that stores the reply, so two processes on
    # one store never send the same request. A claim whose owner died (its pid is gone on this
    # host, or its heartbeat is stale) is taken over.
    db.execute(
        """CREATE TABLE claims (
            cell_key TEXT PRIMARY KEY, owner TEXT NOT NULL, host TEXT NOT NULL,
            pid INTEGER NOT NULL, run_id TEXT, claimed_at REAL NOT NULL, heartbeat REAL NOT NULL)"""
    )
    db.execute("CREATE INDEX claims_owner ON claims (owner)")


def check_not_newer(database: Database) -> None:
    """StoreError if the store records a migration this llamakit does not know (a newer release
    wrote it: its schema may mean things this code would get wrong)."""
    known = {fn.__name__ for fn in MIGRATIONS}
    tables = database.query("SELECT name FROM sqlite_master WHERE name = '_migrations'")
    if not tables:
        return
    unknown = [r["name"] for r in database.query("SELECT name FROM _migrations")]
    unknown = [n for n in unknown if n not in known]
    if unknown:
        raise StoreError(
            database.path,
            "newer-schema",
            f"its schema is newer than this llamakit (unknown migrations: {', '.join(unknown)})",
            FIX_NEWER,
        )


# Every credit figure, as exact decimal text (see ``_connection``: written from ``Decimal``, read
# back as ``Decimal``). The declared type contains TEXT so SQLite keeps the text as given; a REAL
# column would turn "0.00063" into the nearest binary float.
CREDIT_COLUMNS = (
    ("runs", "budget"),
    ("run_sessions", "balance_before"),
    ("run_sessions", "balance_after"),
    ("responses", "credits_remaining"),
    ("responses", "credits"),
    ("attempts", "credits_remaining"),
    ("chat_turns", "credits_remaining"),
)


@migration
def m004_credits_as_decimal_text(db: sqlite3.Connection) -> None:
    # Credits were REAL: move each column to DECIMAL_TEXT in place (rename, add, copy, drop), so
    # the change needs no knowledge of the tables' other columns. Old floats are read at the 15
    # significant digits a double holds reliably: 0.0006300000000000001 was meant as 0.00063.
    for table, column in CREDIT_COLUMNS:
        old = f"{column}__real"
        db.execute(f"ALTER TABLE {table} RENAME COLUMN {column} TO {old}")
        db.execute(f"ALTER TABLE {table} ADD COLUMN {column} DECIMAL_TEXT")
        rows = db.execute(f"SELECT rowid, {old} FROM {table} WHERE {old} IS NOT NULL").fetchall()
        db.executemany(
            f"UPDATE {table} SET {column} = ? WHERE rowid = ?",
            [(_legacy_decimal_text(r[1]), r[0]) for r in rows],
        )
        db.execute(f"ALTER TABLE {table} DROP COLUMN {old}")


@migration
def m005_sequential_steps(db: sqlite3.Connection) -> None:
    # A sequential run's own record (issue 19): step 0 holds the seeded item order and the batch
    # size, each later step the items observed, the confidence bounds and the decision after one
    # batch. Keyed by the stop rule too, so two rules on one run keep separate sequences.
    db.execute(
        """CREATE TABLE sequential_steps (
            run_id TEXT NOT NULL, rule TEXT NOT NULL, step INTEGER NOT NULL,
            record TEXT NOT NULL, created_at REAL NOT NULL,
            PRIMARY KEY (run_id, rule, step))"""
    )


@migration
def m006_run_cells_order(db: sqlite3.Connection) -> None:
    # Results are read in chunks by (ordinal, rowid) (issue 17): with this index each chunk seeks
    # to where the last ended, instead of SQLite sorting the whole run again for every chunk.
    db.execute("CREATE INDEX run_cells_order ON run_cells (run_id, ordinal)")


@migration
def m007_accounts(db: sqlite3.Connection) -> None:
    # Which account paid each call (origin and key digest, ``client.credits.account_of``), and the
    # session's: a judge with its own client pays from another account, whose balance figures
    # must never be subtracted from the run's. ``account_balances``: the opening and closing
    # balances the session read of those other accounts, as JSON {account: [before, after]}.
    db.execute("ALTER TABLE responses ADD COLUMN account TEXT")
    db.execute("ALTER TABLE run_sessions ADD COLUMN account TEXT")
    db.execute("ALTER TABLE run_sessions ADD COLUMN account_balances TEXT")


def _legacy_decimal_text(value: object) -> str | None:
    try:
        number = Decimal(f"{value:.15g}" if isinstance(value, float) else str(value))
    except (InvalidOperation, ValueError):
        return None
    return format(number, "f") if number.is_finite() else None


def migrate(database: Database) -> list[str]:
    """Apply every migration not yet recorded; returns the names applied now. Raises StoreError
    for a store from a newer llamakit (checked first, so nothing is changed in it)."""
    check_not_newer(database)
    applied_now: list[str] = []
    with database.write() as db:
        db.execute(
            "CREATE TABLE IF NOT EXISTS _migrations (name TEXT PRIMARY KEY, applied_at REAL)"
        )
    for fn in MIGRATIONS:
        with database.write() as db:
            done = db.execute("SELECT 1 FROM _migrations WHERE name = ?", (fn.__name__,))
            if done.fetchone():
                continue
            fn(db.connection)
            db.execute("INSERT INTO _migrations VALUES (?, ?)", (fn.__name__, time.time()))
            applied_now.append(fn.__name__)
    return applied_now
