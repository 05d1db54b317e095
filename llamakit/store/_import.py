"""Writing a run read from a run file (``llamakit.experiment.runfile``) into a store.

Rows are matched to the store's tables by column name, so a file written before a schema
migration still imports after it: a column the file lacks is left to its default, and a column the
store no longer has is dropped. Importing the same run twice adds nothing: the run, its sessions,
cells and cached responses are keyed, and its attempts are written only with a new run.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..errors import StoreError
from ._connection import Transaction
from ._coordination import RERUN_OF
from ._problems import FIX_READ_ONLY
from ._rows import _dumps

# Columns the store keeps as JSON text that a run file may hold as JSON values.
_JSON_COLUMNS = {"config"}


def _columns(tx: Transaction, table: str) -> list[str]:
    return [r[1] for r in tx.execute(f"PRAGMA table_info({table})").fetchall()]


def _insert(tx: Transaction, table: str, rows: Sequence[Mapping[str, Any]], verb: str) -> None:
    known = _columns(tx, table)
    for row in rows:
        values = {
            c: (_dumps(v) if c in _JSON_COLUMNS and v is not None and not isinstance(v, str) else v)
            for c, v in row.items()
            if c in known and not (table == "attempts" and c == "id")
        }
        names = ", ".join(values)
        marks = ", ".join(f":{c}" for c in values)
        tx.execute(f"{verb} INTO {table} ({names}) VALUES ({marks})", values)


def import_run_rows(
    store: Any,
    run: Mapping[str, Any],
    *,
    sessions: Sequence[Mapping[str, Any]],
    cells: Sequence[Mapping[str, Any]],
    responses: Sequence[Mapping[str, Any]],
    attempts: Sequence[Mapping[str, Any]],
) -> bool:
    """Write one run's rows in one transaction; True if the run was new to this store.

    Raises StoreError when the store is read-only, or already holds a different run (another
    fingerprint) under the same run id."""
    if store.readonly:
        raise StoreError(store.path, "read-only", "it is read-only", FIX_READ_ONLY)
    with store._db.write("importing a run") as tx:
        found = tx.execute(
            "SELECT fingerprint FROM runs WHERE run_id = ?", (run["run_id"],)
        ).fetchone()
        if found is not None and found[0] != run["fingerprint"]:
            raise StoreError(
                store.path,
                "conflict",
                f"it already holds a different run with id {run['run_id']!r}",
                "Import into another store (--store PATH)",
            )
        _insert(tx, "runs", [run], "INSERT OR IGNORE")
        _insert(tx, "run_sessions", sessions, "INSERT OR IGNORE")
        _insert(tx, "responses", responses, "INSERT OR IGNORE")
        if found is None or not _shares_cells(tx, str(run["run_id"])):
            _insert(tx, "run_cells", cells, "INSERT OR IGNORE")
        if found is None:
            _insert(tx, "attempts", attempts, "INSERT")
    return found is None


def _shares_cells(tx: Any, run_id: str) -> bool:
    """Whether the store's run ``run_id`` is a cached rerun reading another run's cells (a run
    file of it carries those cells; stored again under its id they would never be read)."""
    found = tx.execute(
        f"""SELECT b.run_id FROM runs r
            JOIN runs b ON b.run_id = json_extract(r.config, '$.{RERUN_OF}')
            WHERE r.run_id = ?""",
        (run_id,),
    ).fetchone()
    return found is not None
