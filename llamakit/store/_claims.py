"""Claims on requests: the one mechanism that stops two processes on one store paying for the same
cell. Whoever is about to send a request calls ``claim()``, which, in one ``BEGIN IMMEDIATE``
transaction, looks for a stored reply (then nothing is sent), for a live claim by someone else
(then this process leaves the cell to them and comes back later), and otherwise records its own
claim. The reply is stored, and the claim dropped, in one transaction (``Store.record_call``).

A claim belongs to a ``Lease``: one per running session, with the owner's host and pid and a
heartbeat refreshed every ``HEARTBEAT_S``. A claim is dead, and is taken over, when its owner's
pid no longer exists on this host, when its owner is a finished lease of this very process, or
when its heartbeat is older than ``LEASE_S`` (a hung process, or one on another host).
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
import time
from typing import TYPE_CHECKING, Any

from ..errors import StoreError

if TYPE_CHECKING:
    from ._connection import Transaction

log = logging.getLogger("llamakit.store")

HEARTBEAT_S = 5.0
# Long enough that a heartbeat delayed by a busy machine does not hand a live claim over.
LEASE_S = 60.0
HOST = socket.gethostname()

# Leases of this process that are still running: a claim with our pid but another owner is dead.
_LIVE_OWNERS: set[str] = set()
_LIVE_LOCK = threading.Lock()


class Busy:
    """``claim()``'s answer when another live process holds the request."""

    def __init__(self, owner: str) -> None:
        self.owner = owner

    def __repr__(self) -> str:
        return f"Busy({self.owner!r})"


def pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def claim_alive(row: Any, now: float) -> bool:
    if now - row["heartbeat"] > LEASE_S:
        return False
    if row["host"] != HOST:
        return True
    if row["pid"] == os.getpid():
        with _LIVE_LOCK:
            return row["owner"] in _LIVE_OWNERS
    return pid_alive(row["pid"])


def try_claim(
    tx: Transaction, key: str, lease: Lease, columns: str
) -> dict[str, Any] | Busy | None:
    """Inside a write transaction: the stored reply for ``key``, or Busy, or None once the claim is
    ours."""
    found = tx.execute(f"SELECT {columns} FROM responses WHERE cell_key = ?", (key,)).fetchone()
    if found is not None:
        return dict(found)
    now = time.time()
    held = tx.execute("SELECT * FROM claims WHERE cell_key = ?", (key,)).fetchone()
    if held is not None and held["owner"] != lease.owner and claim_alive(held, now):
        return Busy(held["owner"])
    tx.execute(
        "INSERT OR REPLACE INTO claims (cell_key, owner, host, pid, run_id, claimed_at, heartbeat) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)",
        (key, lease.owner, HOST, os.getpid(), lease.run_id, now, now),
    )
    return None


class Lease:
    """The claims of one running session, kept alive by a heartbeat thread until ``close()``."""

    def __init__(self, store: Any, run_id: str | None) -> None:
        self.store = store
        self.run_id = run_id
        self.owner = f"{HOST}:{os.getpid()}:{secrets.token_hex(4)}"
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        with _LIVE_LOCK:
            _LIVE_OWNERS.add(self.owner)

    def start(self) -> Lease:
        self._thread = threading.Thread(
            target=self._beat, name=f"llamakit-lease-{self.run_id}", daemon=True
        )
        self._thread.start()
        return self

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            try:
                self.store.heartbeat(self.owner)
            except StoreError:  # a failing store stops the run elsewhere; keep trying meanwhile
                log.warning("llamakit: could not refresh the claims of %s", self.owner)

    def close(self) -> None:
        """Stop the heartbeat and drop every claim still held (cells left unsent)."""
        self._stop.set()
        with _LIVE_LOCK:
            _LIVE_OWNERS.discard(self.owner)
        try:
            self.store.release_claims(self.owner)
        except StoreError:  # dead from now on: another process takes them over
            log.warning("llamakit: could not release the claims of %s", self.owner)
