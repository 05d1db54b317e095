"""Client-side pacing, so a run stays under the provider's requests-per-minute limit, fast.

A sliding window, the shape of the limit itself: ``rpm`` calls per minute means at most
``capacity = rpm x window_s / 60`` calls may occupy any ``window_s`` (default 60 s, Segmind's
limits are per minute). A burst up to ``capacity`` goes out at once, as the provider allows, so
60 calls under ``rpm=120`` take as long as the calls themselves, not 30 s of spacing.

A call occupies its slot from the moment it is sent until ``window_s`` (+1%) after its attempt
*ended*. The server counts a call when it arrives, which is somewhere between the two, so however
long the network or a busy server took, the server's window has moved past a call before its slot
is reused: with ``rpm`` at or below the server's limit the server never needs to answer 429.

``acquire(ticket)`` is non-blocking and thread-safe: it grants the slot (0.0) or says how long to
wait before asking again, and callers sleep themselves (``time.sleep`` or ``asyncio.sleep``), so
one limiter serves the sync and the async client. Waiters are served first come, first served;
``release(ticket)`` ends an attempt (or a wait that was abandoned). Every 429 pauses all callers
until its ``Retry-After`` has passed, not only the one that got it.

Adaptive mode learns the capacity (after Inspect AI's adaptive connections: slow start, then
additive increase, multiplicative decrease), with one addition that makes it converge on the real
limit instead of oscillating around it: on a 429 the server has just told us its limit, which is
about the number of calls it accepted from us in the last window. So a 429 sets the capacity to
that count (never cutting more than half at once, in case the 429 had another cause), at most
once per cooldown (one overload produces a burst of 429s from calls already in flight). After a
full window without a 429 in which the limit was binding (a caller had to wait), the capacity
doubles during slow start and grows by 10% (at least one call) after it. A window in which the
limit did not bind says nothing about a higher rate, so it does not raise it.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable
from dataclasses import dataclass

from .._defaults import DEFAULT_RPM_WINDOW_S

JITTER_MARGIN = 1.01
DEFAULT_RETRY_AFTER = 1.0
_MIN_WAIT = 0.001


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
    """Paces request starts; see the module docstring. ``rpm=None`` and not adaptive: no pacing
    (but 429 pauses still apply)."""

    CUT = 0.8  # when the server accepted as many calls as we allowed and still said 429
    MAX_CUT = 0.5
    STEP_UP = 0.1

    def __init__(
        self,
        rpm: float | None = None,
        *,
        adaptive: AdaptiveRate | None = None,
        window_s: float = DEFAULT_RPM_WINDOW_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if rpm is not None and not rpm > 0:
            raise ValueError("rpm must be a positive number")
        if not window_s > 0:
            raise ValueError("window_s must be a positive number of seconds")
        self._clock = clock
        self._adaptive = adaptive
        self._window = window_s
        start = adaptive.start if adaptive else rpm
        self._per_window: float | None = None if start is None else start * window_s / 60.0
        self._lock = threading.Lock()
        self._inflight: dict[Hashable, float] = {}
        self._ended: deque[float] = deque()  # end times of attempts whose slot is still held
        self._queue: deque[Hashable] = deque()
        self._ok: deque[float] = deque()  # times of recent successes (adaptive mode's evidence)
        self._pause_until = float("-inf")
        self._cooldown_until = float("-inf")
        self._changed_at = clock()
        self._binding = False
        self._slow_start = True
        # (clock time, old rpm, new rpm, reason) of every adaptive change, for tests and plots.
        self.history: list[tuple[float, float | None, float | None, str]] = []

    @property
    def rpm(self) -> float | None:
        """The rate currently enforced (requests per minute), None when unpaced."""
        return None if self._per_window is None else self._per_window * 60.0 / self._window

    @property
    def adaptive(self) -> bool:
        return self._adaptive is not None

    @property
    def capacity(self) -> int | None:
        """Calls allowed in one window (at least one), None when unpaced."""
        return None if self._per_window is None else max(1, math.floor(self._per_window + 1e-9))

    def _hold(self) -> float:
        """How long after its attempt ended a call keeps its slot."""
        assert self._per_window is not None
        # Below one call per window, the window stretches so the average rate is still rpm.
        return max(self._window, self._window / self._per_window) * JITTER_MARGIN

    def acquire(self, ticket: Hashable) -> float:
        """0.0: send now (the slot is ``ticket``'s until ``release``); else seconds to wait
        before asking again."""
        with self._lock:
            now = self._clock()
            if self._per_window is None:
                return max(0.0, self._pause_until - now)
            hold = self._hold()
            while self._ended and self._ended[0] + hold <= now:
                self._ended.popleft()
            if ticket not in self._queue:
                self._queue.append(ticket)
            if now < self._pause_until:
                return self._pause_until - now
            capacity = self.capacity or 1
            free = capacity - len(self._inflight) - len(self._ended)
            position = self._queue.index(ticket)
            if position < free:
                self._queue.remove(ticket)
                self._inflight[ticket] = now
                return 0.0
            self._binding = True
            # The slots to free next: those of ended calls, then those still in flight (which
            # free a window after they end, so not before now + hold).
            frees = [end + hold for end in self._ended] + [now + hold] * len(self._inflight)
            ahead = position - max(free, 0)
            wait = frees[ahead] - now if ahead < len(frees) else hold
            return max(wait, _MIN_WAIT)

    def release(self, ticket: Hashable) -> None:
        """The attempt holding ``ticket`` ended (any outcome), or its caller stopped waiting."""
        with self._lock:
            if ticket in self._inflight:
                del self._inflight[ticket]
                if self._per_window is not None:
                    self._ended.append(self._clock())
            elif ticket in self._queue:
                self._queue.remove(ticket)

    def on_success(self) -> None:
        cfg = self._adaptive
        if cfg is None or self._per_window is None:
            return
        with self._lock:
            now = self._clock()
            self._ok.append(now)
            if now < self._cooldown_until:
                return
            if not self._binding or now - self._changed_at < self._hold():
                return
            old = self._per_window
            if self._slow_start:
                new, reason = old * 2, "slow_start"
            else:
                new, reason = old + max(1.0, old * self.STEP_UP), "steady_up"
            self._set(old, min(new, cfg.max * self._window / 60.0), reason, now)

    def on_rate_limited(self, retry_after: float | None) -> None:
        """A 429 arrived: everyone waits ``retry_after``; adaptive mode also cuts the rate."""
        with self._lock:
            now = self._clock()
            wait = DEFAULT_RETRY_AFTER if retry_after is None else max(0.0, retry_after)
            self._pause_until = max(self._pause_until, now + wait)
            cfg = self._adaptive
            if cfg is None or self._per_window is None:
                return
            if now < self._cooldown_until:
                return  # the same overload episode: calls that were already in flight
            hold = self._hold()
            while self._ok and self._ok[0] + hold <= now:
                self._ok.popleft()
            old, accepted = self._per_window, float(len(self._ok))
            # What the server accepted in the last window is its limit (see the docstring).
            new = max(accepted, old * self.MAX_CUT) if accepted < old else old * self.CUT
            self._slow_start = False
            self._cooldown_until = now + max(cfg.cooldown_s, wait)
            self._set(old, max(new, cfg.min * self._window / 60.0), "rate_limit", now)

    def _set(self, old: float, new: float, reason: str, now: float) -> None:
        self._changed_at = now
        self._binding = False
        if new != old:
            self._per_window = new
            factor = 60.0 / self._window
            self.history.append((now, old * factor, new * factor, reason))
