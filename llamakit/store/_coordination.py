"""The store's part in "each cell paid for once, whatever happens", as a mixin of ``Store``:
processes joining one run atomically, claims on requests (``_claims``), a session's end written
so no run stays "running", and the spill file (``_spill``) applied when the store opens."""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from ..errors import StoreError
from . import _spill
from ._claims import Busy, Lease, claim_alive, pid_alive, try_claim

if TYPE_CHECKING:
    from pathlib import Path

    from ._connection import Database, Transaction


# A fully cached rerun of a complete run records no cells of its own: its config names the run
# whose cells it shares (``Store.cells_run``), and its results are those cells, marked cached.
RERUN_OF = "rerun_of"


class Coordination:
    path: Path
    _db: Database

    def _dumps(self, value: Any) -> str:  # overridden by Store
        raise NotImplementedError

    def _write_call(
        self, tx: Transaction, response: dict[str, Any] | None, cells: Sequence[Mapping[str, Any]]
    ) -> None:
        raise NotImplementedError

    # -- runs: one run per fingerprint, joined by every process that starts it ---------------
    def join_run(
        self,
        fingerprint: str,
        row: Mapping[str, Any],
        *,
        share: bool = True,
        share_scored: str | None = None,
    ) -> tuple[str, bool]:
        """The unfinished run with this fingerprint, else ``row`` inserted as a new run; in one
        transaction, so processes starting the same experiment at once share one run.

        A new run repeating a complete one shares its cells (``rerun_of``) unless ``share`` is
        False (a sequential run replays its procedure), when it has no scorers or when
        ``share_scored`` names that run: the caller scored its replies again and got its scores.
        Returns (run_id, created)."""
        with self._db.write("starting a run") as tx:
            latest = tx.execute(
                "SELECT run_id, status FROM runs WHERE fingerprint = ? "
                "ORDER BY started_at DESC LIMIT 1",
                (fingerprint,),
            ).fetchone()
            if latest is not None and latest["status"] != "finished":
                return str(latest["run_id"]), False
            config = dict(row["config"])
            # Scores depend on more than the fingerprint holds (a scorer's code, a built-in's
            # arguments, a judge's passing failure): with scorers, only a base whose scores the
            # caller re-computed is shared; otherwise the rerun scores in rows of its own.
            if latest is not None and share:
                base = _complete_base(tx, str(latest["run_id"]), int(row["cells_total"]))
                if config.get("scorers") and base != share_scored:
                    base = None
                if base is not None:  # a rerun of a complete run: share its cells, add no rows
                    config[RERUN_OF] = base
            values = {**row, "config": self._dumps(config)}
            names = ", ".join(values)
            marks = ", ".join(f":{c}" for c in values)
            tx.execute(f"INSERT INTO runs ({names}) VALUES ({marks})", values)
        return str(row["run_id"]), True

    def end_session(
        self, run_id: str, session: int, *, status: str, balance_after: Decimal | None
    ) -> str:
        """Close this process's session; the run takes ``status`` unless another live process
        still works on it (then the last one to finish sets it). Returns the run's status. If
        the store cannot take it, the end goes to the spill file and the error is raised."""
        now = time.time()
        try:
            with self._db.write("ending a session") as tx:
                _end_session(tx, run_id, session, status, balance_after, now)
                others = tx.execute(
                    "SELECT pid FROM run_sessions WHERE run_id = ? AND session != ? "
                    "AND finished_at IS NULL",
                    (run_id, session),
                ).fetchall()
                if any(o["pid"] != os.getpid() and pid_alive(o["pid"]) for o in others):
                    return "running"
                tx.execute(
                    "UPDATE runs SET status = ?, finished_at = ? WHERE run_id = ?",
                    (status, now, run_id),
                )
            return status
        except StoreError:
            _spill.append(
                self.path,
                {"kind": "session_end", "run_id": run_id, "session": session, "status": status,
                 "balance_after": balance_after, "finished_at": now},
            )  # fmt: skip
            raise

    # -- claims -------------------------------------------------------------------------------
    def claim(self, key: str, lease: Lease, columns: str) -> dict[str, Any] | Busy | None:
        """The stored reply for ``key`` (send nothing), ``Busy`` (another live process is paying
        for it), or None: the claim is now ``lease``'s and the request may be sent."""
        return self.claim_many([key], lease, columns)[key]

    def claim_many(
        self, keys: Sequence[str], lease: Lease, columns: str
    ) -> dict[str, dict[str, Any] | Busy | None]:
        """``claim`` for each of ``keys``, in one transaction (one wait for the write lock)."""
        if _spill.spill_path(self.path).exists():
            self.reconcile_spill()  # a dead owner's replies may be there: never pay for them again
        with self._db.write("claiming cells") as tx:
            return {key: try_claim(tx, key, lease, columns) for key in keys}

    def release_claim(self, key: str, lease: Lease) -> None:
        with self._db.write("releasing a claim") as tx:
            tx.execute("DELETE FROM claims WHERE cell_key = ? AND owner = ?", (key, lease.owner))

    def release_claims(self, owner: str) -> None:
        with self._db.write("releasing claims") as tx:
            tx.execute("DELETE FROM claims WHERE owner = ?", (owner,))

    def heartbeat(self, owner: str) -> None:
        with self._db.write("refreshing claims") as tx:
            tx.execute("UPDATE claims SET heartbeat = ? WHERE owner = ?", (time.time(), owner))

    def live_claims(self) -> list[dict[str, Any]]:
        """Claims whose owner is alive (for inspection and tests)."""
        now = time.time()
        rows = self._db.query("SELECT * FROM claims")
        return [dict(r) for r in rows if claim_alive(r, now)]

    # -- the spill file -----------------------------------------------------------------------
    def reconcile_spill(self) -> int:
        """Apply the spill file (replies, and session ends, the store could not take) and remove
        it. Returns the records applied. Raises StoreError if the store still cannot take them."""
        records = list(_spill.records(self.path))
        if not records:
            _spill.remove(self.path)
            return 0
        with self._db.write(f"storing the replies kept in {_spill.spill_path(self.path)}") as tx:
            for record in records:
                if record.get("kind") == "call":
                    self._write_call(tx, record.get("response"), record.get("cells") or [])
                elif record.get("kind") == "chat_turn":
                    row = record["row"]
                    names = ", ".join(row)
                    marks = ", ".join(f":{c}" for c in row)
                    tx.execute(  # once, even if a crash kept the file after applying it
                        f"INSERT INTO chat_turns ({names}) SELECT {marks} WHERE NOT EXISTS "
                        "(SELECT 1 FROM chat_turns WHERE conversation_id = :conversation_id "
                        "AND idx = :idx AND created_at = :created_at)",
                        row,
                    )
                elif record.get("kind") == "session_end":
                    _end_session(
                        tx,
                        record["run_id"],
                        record["session"],
                        record["status"],
                        record.get("balance_after"),
                        record["finished_at"],
                    )
                    tx.execute(
                        "UPDATE runs SET status = ?, finished_at = ? "
                        "WHERE run_id = ? AND status = 'running'",
                        (record["status"], record["finished_at"], record["run_id"]),
                    )
            tx.execute("DELETE FROM claims WHERE cell_key IN (SELECT cell_key FROM responses)")
        _spill.remove(self.path)
        return len(records)

    def spill_call(
        self, response: dict[str, Any] | None, cells: Sequence[Mapping[str, Any]]
    ) -> Path | None:
        record = {"kind": "call", "response": response, "cells": [dict(c) for c in cells]}
        return _spill.append(self.path, record)

    def spill_record(self, record: dict[str, Any]) -> Path | None:
        return _spill.append(self.path, record)


def _complete_base(tx: Transaction, run_id: str, total: int) -> str | None:
    """The run whose cells a rerun of the finished run ``run_id`` (same fingerprint) can share:
    ``run_id``, or the run it already shares, when all ``total`` of its cells are done (then
    every reply is in the cache and the rerun would only copy them). None otherwise."""
    found = tx.execute(
        f"SELECT json_extract(config, '$.{RERUN_OF}') AS base FROM runs WHERE run_id = ?",
        (run_id,),
    ).fetchone()
    base = str(found["base"]) if found is not None and found["base"] else run_id
    done, cells = tx.execute(
        "SELECT COALESCE(SUM(status = 'done'), 0), COUNT(*) FROM run_cells WHERE run_id = ?",
        (base,),
    ).fetchone()
    return base if done == cells == total else None


def _end_session(
    tx: Transaction,
    run_id: str,
    session: int,
    status: str,
    balance_after: Decimal | None,
    now: float,
) -> None:
    tx.execute(
        "UPDATE run_sessions SET status = ?, finished_at = ?, balance_after = ? "
        "WHERE run_id = ? AND session = ? AND finished_at IS NULL",
        (status, now, balance_after, run_id, session),
    )
