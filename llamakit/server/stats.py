"""Admin figures: requests by status, billed calls, credits spent, per key label (never the key).

Credit figures (``credits_spent``, ``balance``) are the ledger's exact Decimals written as decimal
strings, in the plain notation of the ``x-remaining-credits`` header (``"0.0044208657040903978"``,
never a JSON float, which kept ~17 digits of them): a reader parses them with ``Decimal(...)``."""

from __future__ import annotations

import threading
from collections import Counter
from decimal import Decimal
from typing import Any

from .ledger import Ledger, format_credits


class Stats:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: Counter[str] = Counter()
        self._per_key: dict[str, Counter[str]] = {}
        self._billed: Counter[str] = Counter()
        self._spent: dict[str, Decimal] = {}
        self._dropped: Counter[str] = Counter()

    def record(self, status: int, label: str | None) -> None:
        with self._lock:
            self._requests[str(status)] += 1
            if label is not None:
                self._per_key.setdefault(label, Counter())[str(status)] += 1

    def record_billed(self, label: str, cost: Decimal) -> None:
        with self._lock:
            self._billed[label] += 1
            self._spent[label] = self._spent.get(label, Decimal(0)) + cost

    def record_drop(self, label: str | None) -> None:
        with self._lock:
            self._dropped[label or ""] += 1

    def as_dict_for(self, ledger: Ledger, label: str) -> dict[str, Any]:
        """One key's figures, as `as_dict` would give them if that key were the only one."""
        own = self._per_key_dict(ledger, [label])
        return {
            **{k: v for k, v in own[label].items() if k != "balance"},
            "per_key": own,
        }

    def _per_key_dict(self, ledger: Ledger, labels: list[str]) -> dict[str, dict[str, Any]]:
        accounts = ledger.snapshot()
        with self._lock:
            return {
                label: {
                    "requests": dict(self._per_key.get(label, {})),
                    "billed_calls": self._billed[label],
                    "credits_spent": format_credits(self._spent.get(label, Decimal(0))),
                    "dropped": self._dropped[label],
                    "balance": (
                        format_credits(accounts[label].balance) if label in accounts else None
                    ),
                }
                for label in labels
            }

    def as_dict(self, ledger: Ledger, labels: list[str]) -> dict[str, Any]:
        per_key = self._per_key_dict(ledger, labels)
        with self._lock:
            return {
                "requests": dict(self._requests),
                "billed_calls": sum(self._billed.values()),
                "credits_spent": format_credits(sum(self._spent.values(), Decimal(0))),
                "dropped": sum(self._dropped.values()),
                "per_key": per_key,
            }
