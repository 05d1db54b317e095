"""`Store`: the one SQLite database behind llamakit (runs, cells, every attempt, chat turns, cache).

Rows hold requests (messages and sampling params), responses, statuses and credit figures. The API key
is never passed in here, so it cannot be written.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

from .._defaults import ENV_HOME
from ._connection import Database
from ._migrations import migrate

DB_FILENAME = "llamakit.db"


def default_path() -> Path:
    """``$LLAMAKIT_HOME/llamakit.db``, else ``./.llamakit/llamakit.db`` (read now, not at import)."""
    home = os.environ.get(ENV_HOME)
    root = Path(home).expanduser() if home else Path.cwd() / ".llamakit"
    return root / DB_FILENAME


def _dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)


def response_fields(response: Any) -> dict[str, Any]:
    """The columns a ChatResponse fills (duck-typed, so the store does not import the client)."""
    usage = getattr(response, "usage", None)
    return {
        "text": response.text,
        "finish_reason": response.finish_reason,
        "prompt_tokens": getattr(usage, "prompt_tokens", None),
        "completion_tokens": getattr(usage, "completion_tokens", None),
        "total_tokens": getattr(usage, "total_tokens", None),
        "usage": _dumps(getattr(usage, "extras", None) or {}),
        "request_id": response.request_id,
        "latency_s": response.latency_s,
        "attempts": getattr(response, "attempts", 1),
        "started_at": getattr(response, "started_at", None),
        "finished_at": getattr(response, "finished_at", None),
        "credits_remaining": response.credits_remaining,
        "model": getattr(response, "model", None),
    }


_RESPONSE_COLUMNS = [
    "cell_key",
    "model",
    "endpoint",
    "messages",
    "params",
    "repeat",
    "text",
    "finish_reason",
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "usage",
    "request_id",
    "latency_s",
    "attempts",
    "started_at",
    "finished_at",
    "credits_remaining",
    "credits",
    "credits_precision",
    "run_id",
    "session",
    "created_at",
]

_ATTEMPT_COLUMNS = [
    "run_id",
    "session",
    "cell_key",
    "call_id",
    "attempt",
    "status",
    "error",
    "message",
    "latency_s",
    "credits_remaining",
    "started_at",
    "finished_at",
]

_CACHE_COLUMNS = "cell_key, text, attempts, latency_s, started_at, finished_at, credits_remaining, run_id, session"

_CELL_COLUMNS = [
    "run_id",
    "cell_id",
    "cell_key",
    "ordinal",
    "variant",
    "item_id",
    "params",
    "repeat",
    "model",
    "prompt",
    "row",
    "status",
    "cached",
    "error",
    "error_message",
    "attempts",
    "latency_s",
    "started_at",
    "finished_at",
    "local_prompt_tokens",
    "scores",
    "score_errors",
    "judge_keys",
]


def _insert_sql(table: str, columns: Sequence[str], verb: str = "INSERT") -> str:
    names = ", ".join(columns)
    marks = ", ".join(f":{c}" for c in columns)
    return f"{verb} INTO {table} ({names}) VALUES ({marks})"


class Store:
    """The SQLite store. ``Store()`` opens the default path; ``Store(path)`` any file."""

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        self.path = Path(path).expanduser() if path is not None else default_path()
        self._db = Database(self.path)
        migrate(self._db)

    def __repr__(self) -> str:
        return f"Store({str(self.path)!r})"

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def query(self, sql: str, args: tuple | dict = ()) -> list[dict[str, Any]]:
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
        messages: list[dict],
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
        with self._db.write() as db:
            db.execute(_insert_sql("chat_turns", list(row)), row)

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

    def start_session(self, run_id: str, *, balance_before: Decimal | None) -> int:
        with self._db.write() as db:
            (last,) = db.execute(
                "SELECT COALESCE(MAX(session), 0) FROM run_sessions WHERE run_id = ?", (run_id,)
            ).fetchone()
            db.execute(
                "INSERT INTO run_sessions (run_id, session, pid, started_at, status, "
                "balance_before) VALUES (?, ?, ?, ?, 'running', ?)",
                (run_id, last + 1, os.getpid(), time.time(), balance_before),
            )
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

    def record_call(
        self, response: Mapping[str, Any] | None, cells: Sequence[Mapping[str, Any]] = ()
    ) -> None:
        """Commit a paid response (to the cache) and the run cells it answers, in one transaction.

        ``INSERT OR IGNORE`` on the response: if another process already paid for the same key,
        its row stays the cache entry; this call's cost still shows in its session's balance.
        """
        with self._db.write() as db:
            if response is not None:
                attempts = response.pop("_attempts", None) if isinstance(response, dict) else None
                if attempts:
                    db.executemany(_insert_sql("attempts", _ATTEMPT_COLUMNS), attempts)
                db.execute("DELETE FROM inflight WHERE cell_key = ?", (response["cell_key"],))
                row = {c: response.get(c) for c in _RESPONSE_COLUMNS}
                row["created_at"] = row["created_at"] or time.time()
                for key in ("messages", "params"):
                    if not isinstance(row[key], str):
                        row[key] = _dumps(row[key])
                db.execute(_insert_sql("responses", _RESPONSE_COLUMNS, "INSERT OR IGNORE"), row)
            if cells:
                db.executemany(
                    _insert_sql("run_cells", _CELL_COLUMNS, "INSERT OR REPLACE"),
                    [self._cell_row(c) for c in cells],
                )

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

    def run_cells(self, run_id: str) -> list[dict[str, Any]]:
        """A run's cells joined with their cached responses (None columns for errored cells)."""
        sql = """SELECT c.*, r.text, r.finish_reason, r.prompt_tokens, r.completion_tokens,
                        r.credits, r.credits_precision, r.credits_remaining,
                        r.latency_s AS response_latency_s
                 FROM run_cells c LEFT JOIN responses r
                   ON c.cell_key = r.cell_key AND c.status = 'done'
                 WHERE c.run_id = ? ORDER BY c.ordinal, c.rowid"""
        return self.query(sql, (run_id,))

    def done_cell_ids(self, run_id: str) -> set[str]:
        sql = "SELECT cell_id FROM run_cells WHERE run_id = ? AND status = 'done'"
        return {r["cell_id"] for r in self.query(sql, (run_id,))}

    def set_local_tokens(self, updates: Sequence[tuple[int, str, str]]) -> None:
        """(local_prompt_tokens, run_id, cell_id) for cells recorded before their count was ready."""
        with self._db.write() as db:
            db.executemany(
                "UPDATE run_cells SET local_prompt_tokens = ? "
                "WHERE run_id = ? AND cell_id = ? AND local_prompt_tokens IS NULL",
                list(updates),
            )

    def record_attempts(self, rows: Sequence[Mapping[str, Any]]) -> None:
        if not rows:
            return
        with self._db.write() as db:
            db.executemany(_insert_sql("attempts", _ATTEMPT_COLUMNS), [dict(r) for r in rows])

    def attempts(self, run_id: str) -> list[dict[str, Any]]:
        return self.query("SELECT * FROM attempts WHERE run_id = ? ORDER BY id", (run_id,))

    # -- credits ----------------------------------------------------------------------------
    def session_responses(self, run_id: str, session: int) -> list[dict[str, Any]]:
        sql = """SELECT cell_key, started_at, finished_at, credits_remaining, credits
                 FROM responses WHERE run_id = ? AND session = ? ORDER BY finished_at"""
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

    def observed_cost_per_call(self, model: str | None) -> float | None:
        """Mean attributed cost of this model's calls in the store, or None if none is known."""
        # An estimate, so a float average is fine; the comparison must be numeric, not textual.
        sql = "SELECT AVG(credits) AS c FROM responses WHERE CAST(credits AS REAL) > 0"
        args: tuple = ()
        if model is not None:
            sql += " AND model = ?"
            args = (model,)
        value = self.query(sql, args)[0]["c"]
        return None if value is None else float(value)

    def run_rows(self) -> list[dict[str, Any]]:
        """Every run with its cell counts, for ``llamakit.runs()``."""
        sql = """SELECT r.*,
                   (SELECT COUNT(*) FROM run_cells c WHERE c.run_id = r.run_id
                      AND c.status = 'done') AS cells_done,
                   (SELECT COUNT(*) FROM run_cells c WHERE c.run_id = r.run_id
                      AND c.status = 'error') AS errors
                 FROM runs r ORDER BY r.started_at"""
        return self.query(sql)
