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
    """Draws one decision per inference request. Thread-safe; settings can change at runtime."""

    def __init__(self, settings: FaultSettings | None = None) -> None:
        self._lock = threading.Lock()
        self._settings = settings or FaultSettings()
        self._rng = random.Random(self._settings.seed)

    @property
    def settings(self) -> FaultSettings:
        return self._settings

    def update(self, changes: Mapping[str, Any]) -> FaultSettings:
        with self._lock:
            self._settings = self._settings.updated(changes)
            if "seed" in changes:
                self._rng = random.Random(self._settings.seed)
            return self._settings

    def decide(self) -> FaultDecision:
        with self._lock:
            s = self._settings
            # Always draw the same number of values so a seed gives one fixed sequence of outcomes.
            roll, jitter_roll = self._rng.random(), self._rng.random()
        latency = s.latency_ms + s.latency_jitter_ms * (2 * jitter_roll - 1)
        outcome: FaultOutcome = "ok"
        if roll < s.drop_rate:
            outcome = "drop"
        elif roll < s.drop_rate + s.fail_rate:
            outcome = "fail"
        elif roll < s.drop_rate + s.fail_rate + s.rate_429:
            outcome = "rate_429"
        return FaultDecision(outcome, max(latency, 0.0) / 1000.0, s.slow_body_s, s.retry_after_s)
