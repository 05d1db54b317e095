"""Client-side pacing, so a run stays under the provider's requests-per-minute limit.

``RateLimiter.reserve()`` hands out start times spaced ``60 / rpm`` seconds apart (plus a 1% margin
for network jitter): with ``rpm`` at or below the server's limit the server never needs to answer
429. It is thread-safe and never blocks: callers sleep the returned delay themselves, with
``time.sleep`` or ``asyncio.sleep``, so one limiter serves the sync and the async client.

Every 429 pauses all callers until its ``Retry-After`` has passed, not only the one that got it.
Slots are handed out ahead of time (fifty concurrent calls reserve fifty future slots at once), so
a 429 or a rate cut also voids the outstanding reservations: ``reserve`` returns an epoch with the
delay, and a caller whose epoch is no longer ``current`` after its sleep reserves again. Without
this, calls that booked slots at the old, too-fast rate keep hitting the server after a 429.
A booking is a plan; ``confirm()`` right before sending enforces the spacing on *actual* send
times, so a caller woken late by a busy machine cannot end up too close to the next one.

Adaptive mode learns the rate, after Inspect AI's adaptive connections (slow start, then AIMD),
applied to request *rate* because the provider limits requests per minute, not connections:
- slow start: after each clean round of successes, double the rate, up to ``max``;
- on a 429: cut the rate (halve the first time, which ends slow start; x0.8 after), at most once
  per cooldown, because one overload episode produces a burst of 429s from in-flight calls;
- steady state: after each clean round, +5%. Successes during a cooldown are ignored: they were
  in flight before the cut and say nothing about whether the new rate is sustainable.
A round is ``max(4, rate / 12)`` successes, about five seconds of traffic.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

JITTER_MARGIN = 1.01
DEFAULT_RETRY_AFTER = 1.0


@dataclass(frozen=True)
class AdaptiveRate:
    """Bounds of adaptive mode, in requests per minute, and the minimum gap between two cuts."""

    start: float = 60.0
    min: float = 1.0
    max: float = 10_000.0
    cooldown_s: float = 15.0

    def __post_init__(self) -> None:
        if not 0 < self.min <= self.start <= self.max:
            raise ValueError("AdaptiveRate needs 0 < min <= start <= max")
        if self.cooldown_s < 0:
            raise ValueError("AdaptiveRate.cooldown_s must be >= 0")


class RateLimiter:
    """Paces request starts; see the module docstring. ``rpm=None`` and not adaptive: no pacing."""

    FIRST_CUT = 0.5
    CUT = 0.8
    STEP_UP = 1.05
    ROUND_FLOOR = 4

    def __init__(
        self,
        rpm: float | None = None,
        *,
        adaptive: AdaptiveRate | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if rpm is not None and not rpm > 0:
            raise ValueError("rpm must be a positive number")
        self._clock = clock
        self._adaptive = adaptive
        self._rpm: float | None = adaptive.start if adaptive else rpm
        self._next = 0.0
        self._pause_until = 0.0
        self._cooldown_until = 0.0
        self._round = 0
        self._slow_start = True
        self._epoch = 0
        self._last_sent = float("-inf")
        self._lock = threading.Lock()
        # (clock time, old rpm, new rpm, reason) of every adaptive change, for tests and plots.
        self.history: list[tuple[float, float | None, float | None, str]] = []

    @property
    def rpm(self) -> float | None:
        """The rate currently enforced (requests per minute), None when unpaced."""
        return self._rpm

    @property
    def adaptive(self) -> bool:
        return self._adaptive is not None

    def reserve(self) -> tuple[float, int]:
        """Claim the next start slot: (seconds to wait before sending, epoch of the booking)."""
        with self._lock:
            now = self._clock()
            start = max(now, self._pause_until)
            if self._rpm is not None:
                start = max(start, self._next)
                self._next = start + 60.0 / self._rpm * JITTER_MARGIN
            return start - now, self._epoch

    def confirm(self) -> float:
        """Call right before sending: 0.0 means go (the send is recorded); a positive number is
        how long to wait before confirming again, because the previous send went out late."""
        with self._lock:
            if self._rpm is None:
                return 0.0
            now = self._clock()
            interval = 60.0 / self._rpm * JITTER_MARGIN
            gap = self._last_sent + interval - now
            if gap > 0:
                return gap
            self._last_sent = now
            self._next = max(self._next, now + interval)
            return 0.0

    def current(self, epoch: int) -> bool:
        """False when a 429 or a rate cut since that booking voided it: reserve again."""
        return epoch == self._epoch

    def on_success(self) -> None:
        cfg = self._adaptive
        if cfg is None or self._rpm is None:
            return
        with self._lock:
            if self._clock() < self._cooldown_until:
                return
            self._round += 1
            if self._round < max(self.ROUND_FLOOR, self._rpm / 12):
                return
            self._round = 0
            old = self._rpm
            if self._slow_start:
                new, reason = min(old * 2, cfg.max), "slow_start"
            else:
                new, reason = min(max(old * self.STEP_UP, old + 1), cfg.max), "steady_up"
            self._set(old, new, reason)

    def on_rate_limited(self, retry_after: float | None) -> None:
        """A 429 arrived: everyone waits ``retry_after``; adaptive mode also cuts the rate."""
        with self._lock:
            now = self._clock()
            wait = DEFAULT_RETRY_AFTER if retry_after is None else max(0.0, retry_after)
            self._pause_until = max(self._pause_until, now + wait)
            cfg = self._adaptive
            if cfg is not None and self._rpm is not None:
                self._round = 0
                if now >= self._cooldown_until:
                    old = self._rpm
                    factor = self.FIRST_CUT if self._slow_start else self.CUT
                    self._slow_start = False
                    self._cooldown_until = now + max(cfg.cooldown_s, wait)
                    self._set(old, max(cfg.min, old * factor), "rate_limit")
            # Void outstanding bookings; they are re-spaced from the end of the pause, and never
            # closer than one interval after the request that was just refused.
            self._epoch += 1
            self._next = self._pause_until
            if self._rpm is not None:
                self._next = max(self._next, now + 60.0 / self._rpm * JITTER_MARGIN)

    def _set(self, old: float, new: float, reason: str) -> None:
        if new != old:
            self._rpm = new
            self.history.append((self._clock(), old, new, reason))
