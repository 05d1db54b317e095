"""The per-key credit ledger: exact decimal balances, holds for calls in flight, optional SQLite.

A call first *reserves* its worst-case cost (so concurrent calls can never overdraw: the check and
the hold happen under one lock), then either *commits* (HTTP 200: the balance drops by the actual
cost) or *releases* the hold (any failure: nothing is billed). Keys are known here only by label.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from .costs import to_decimal

ZERO = Decimal(0)


class InsufficientCredits(Exception):
    def __init__(self, balance: Decimal, needed: Decimal) -> None:
        super().__init__(f"balance {balance} is below the cost of the call ({needed})")
        self.balance = balance
        self.needed = needed


@dataclass
class Account:
    balance: Decimal
    held: Decimal = ZERO
    billed_calls: int = 0
    spent: Decimal = ZERO


@dataclass(frozen=True)
class Hold:
    label: str
    amount: Decimal
    hold_id: int


def format_credits(amount: Decimal) -> str:
    """Plain decimal notation (never `1E-5`), as the `x-remaining-credits` header carries it."""
    return format(amount.normalize(), "f") if amount else "0"


class Ledger:
    def __init__(self, balances: Mapping[str, float | Decimal], db: Path | str | None = None):
        self._lock = threading.Lock()
        self._accounts: dict[str, Account] = {}
        self._open_holds: dict[int, Hold] = {}
        self._next_hold = 0
        self._db = _open_db(Path(db)) if db is not None else None
        stored = self._load() if self._db is not None else {}
        for label, amount in balances.items():
            # A restart with the same db keeps the stored balance, not the starting one.
            kept = stored.pop(label, None)
            self._accounts[label] = kept or Account(to_decimal(amount))
            self._save(label)
        self._accounts.update(stored)  # keys of earlier runs stay readable, though not accepted

    # -- reads ---------------------------------------------------------------------------------
    def balance(self, label: str) -> Decimal:
        with self._lock:
            return self._accounts[label].balance

    def snapshot(self) -> dict[str, Account]:
        with self._lock:
            return {
                k: Account(a.balance, a.held, a.billed_calls, a.spent)
                for k, a in self._accounts.items()
            }

    # -- writes --------------------------------------------------------------------------------
    def add_account(self, label: str, amount: float | Decimal) -> None:
        with self._lock:
            if label not in self._accounts:
                self._accounts[label] = Account(to_decimal(amount))
                self._save(label)

    def set_balance(self, label: str, amount: float | Decimal) -> Decimal:
        value = to_decimal(amount)
        if value < 0:
            raise ValueError("credits must be >= 0")
        with self._lock:
            self._accounts[label].balance = value
            self._save(label)
            return value

    def reserve(self, label: str, amount: Decimal) -> Hold:
        """Hold `amount` for a call, or raise InsufficientCredits (the 406 case)."""
        with self._lock:
            account = self._accounts[label]
            available = account.balance - account.held
            if account.balance <= ZERO or available < amount:
                raise InsufficientCredits(account.balance, amount)
            account.held += amount
            self._next_hold += 1
            hold = Hold(label, amount, self._next_hold)
            self._open_holds[hold.hold_id] = hold
            return hold

    def commit(self, hold: Hold, cost: Decimal) -> Decimal:
        """Bill a finished call (at most its hold) and return the balance after it."""
        with self._lock:
            if self._open_holds.pop(hold.hold_id, None) is None:
                raise RuntimeError("hold already settled")
            account = self._accounts[hold.label]
            account.held -= hold.amount
            # An admin may have lowered the balance while the call ran; the balance never goes
            # below zero, so the call is billed at most what is left.
            cost = max(min(cost, hold.amount, account.balance), ZERO)
            account.balance -= cost
            account.billed_calls += 1
            account.spent += cost
            self._save(hold.label)
            return account.balance

    def release(self, hold: Hold) -> None:
        with self._lock:
            if self._open_holds.pop(hold.hold_id, None) is not None:
                self._accounts[hold.label].held -= hold.amount

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    # -- persistence ---------------------------------------------------------------------------
    def _load(self) -> dict[str, Account]:
        assert self._db is not None
        rows = self._db.execute("SELECT label, balance, billed_calls, spent FROM accounts")
        return {r[0]: Account(Decimal(r[1]), ZERO, int(r[2]), Decimal(r[3])) for r in rows}

    def _save(self, label: str) -> None:
        if self._db is None:
            return
        a = self._accounts[label]
        self._db.execute(
            "INSERT INTO accounts (label, balance, billed_calls, spent) VALUES (?, ?, ?, ?) "
            "ON CONFLICT(label) DO UPDATE SET balance=excluded.balance, "
            "billed_calls=excluded.billed_calls, spent=excluded.spent",
            (label, str(a.balance), a.billed_calls, str(a.spent)),
        )
        self._db.commit()


def _open_db(path: Path) -> sqlite3.Connection:
    path.parent.mkdir(parents=True, exist_ok=True)
    # One connection shared by the event loop and handle threads; every use is under Ledger._lock.
    conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    # Labels, never keys, are stored. Amounts are decimal strings so no float rounding creeps in.
    conn.execute(
        "CREATE TABLE IF NOT EXISTS accounts (label TEXT PRIMARY KEY, balance TEXT NOT NULL, "
        "billed_calls INTEGER NOT NULL DEFAULT 0, spent TEXT NOT NULL DEFAULT '0')"
    )
    return conn
