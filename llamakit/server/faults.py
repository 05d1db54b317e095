"""Fault injection: the failures a flaky provider produces, on demand and reproducibly (seeded).

Faults hit the inference routes only (`/v1/{slug}`, `/v2/{slug}`, `/v1/chat/completions`).
Balance, polling and admin routes are never faulted, so a test can always observe the server's state.
"""

from __future__ import annotations

import math
import random
import threading
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any, Literal

FaultOutcome = Literal["ok", "fail", "rate_429", "drop"]

_PROBABILITIES = ("fail_rate", "rate_429", "drop_rate")


@dataclass(frozen=True)
class FaultSettings:
    latency_ms: float = 0.0
    latency_jitter_ms: float = 0.0  # uniform +- around latency_ms, never below 0
    fail_rate: float = 0.0  # P(500)
    rate_429: float = 0.0  # P(429 with Retry-After)
    retry_after_s: float = 1.0
    drop_rate: float = 0.0  # P(connection closed without a response)
    slow_body_s: float = 0.0  # delay between the response headers and its body
    seed: int | None = None

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))

    def updated(self, changes: Mapping[str, Any]) -> FaultSettings:
        """A copy with `changes` applied, validated; raises ValueError naming the bad field."""
        clean: dict[str, Any] = {}
        for name, value in changes.items():
            if name not in self.names():
                raise ValueError(f"{name}: unknown fault (known: {', '.join(self.names())})")
            if name == "seed":
                if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                    raise ValueError("seed: must be an integer or null")
                clean[name] = value
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"{name}: must be a number")
            try:
                value = float(value)
            except OverflowError:  # an integer beyond float range
                raise ValueError(f"{name}: is too large") from None
            # NaN and infinity (JSON accepts both) would hang every call or break the stats JSON.
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"{name}: must be a finite number >= 0")
            if name in _PROBABILITIES and value > 1:
                raise ValueError(f"{name}: is a probability, must be between 0 and 1")
            clean[name] = value
        result = replace(self, **clean)
        if result.fail_rate + result.rate_429 + result.drop_rate > 1:
            raise ValueError("fail_rate + rate_429 + drop_rate must not exceed 1")
        return result

    def as_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True)
class FaultDecision:
    outcome: FaultOutcome
    latency_s: float
    slow_body_s: float
    retry_after_s: float


class FaultInjector:
    """Draws one decision per inference request. Thread-safe; settings can change at runtime.

    The operator's settings apply to every key. A key may override them for itself only (through
    `POST /_llamakit/faults`), so one caller can never change what another caller gets; each key
    also draws from its own seeded generator, so one key's traffic never shifts another key's
    sequence of outcomes.
    """

    def __init__(self, settings: FaultSettings | None = None) -> None:
        self._lock = threading.Lock()
        self._settings = settings or FaultSettings()
        self._per_key: dict[str, FaultSettings] = {}
        self._rngs: dict[str | None, random.Random] = {}

    @property
    def settings(self) -> FaultSettings:
        return self._settings

    def settings_for(self, label: str | None) -> FaultSettings:
        """What requests of `label` get (the operator's settings unless the key changed its own)."""
        with self._lock:
            return self._per_key.get(label, self._settings) if label else self._settings

    def update(self, changes: Mapping[str, Any], *, label: str | None = None) -> FaultSettings:
        """Apply `changes` for one key (`label`), or for every key (None: the operator).
        Raises ValueError naming the bad field; nothing changes then."""
        with self._lock:
            if label is not None:
                current = self._per_key.get(label, self._settings)
                self._per_key[label] = current.updated(changes)
                if "seed" in changes:
                    self._rngs.pop(label, None)
                return self._per_key[label]
            self._settings = self._settings.updated(changes)
            for key, own in list(self._per_key.items()):
                try:
                    self._per_key[key] = own.updated(changes)
                except ValueError:  # the key's overrides no longer combine: it gets the new ones
                    self._per_key[key] = self._settings
            if "seed" in changes:
                self._rngs.clear()
            return self._settings

    def decide(self, label: str | None = None) -> FaultDecision:
        with self._lock:
            s = self._per_key.get(label, self._settings) if label else self._settings
            rng = self._rngs.get(label)
            if rng is None:
                rng = self._rngs[label] = random.Random(s.seed)
            # Always draw the same number of values so a seed gives one fixed sequence of outcomes.
            roll, jitter_roll = rng.random(), rng.random()
        latency = s.latency_ms + s.latency_jitter_ms * (2 * jitter_roll - 1)
        outcome: FaultOutcome = "ok"
        if roll < s.drop_rate:
            outcome = "drop"
        elif roll < s.drop_rate + s.fail_rate:
            outcome = "fail"
        elif roll < s.drop_rate + s.fail_rate + s.rate_429:
            outcome = "rate_429"
        return FaultDecision(outcome, max(latency, 0.0) / 1000.0, s.slow_body_s, s.retry_after_s)
