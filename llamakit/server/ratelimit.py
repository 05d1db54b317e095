"""Per-key requests-per-minute limit (Segmind tiers: Free 5 RPM, Pro 50 RPM), sliding window."""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable


class RpmLimiter:
    def __init__(
        self,
        rpm: int | None,
        window_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if rpm is not None and rpm < 1:
            raise ValueError("rpm must be >= 1 (or None for no limit)")
        self.rpm = rpm
        self.window_s = window_s
        self._clock = clock
        self._lock = threading.Lock()
        self._calls: dict[str, deque[float]] = {}

    def acquire(self, label: str) -> float | None:
        """Count a request for `label`; return None if allowed, else seconds until a slot frees."""
        if self.rpm is None:
            return None
        now = self._clock()
        with self._lock:
            calls = self._calls.setdefault(label, deque())
            while calls and calls[0] <= now - self.window_s:
                calls.popleft()
            if len(calls) >= self.rpm:
                return max(calls[0] + self.window_s - now, 0.0)
            calls.append(now)
            return None

    def remaining(self, label: str) -> int | None:
        if self.rpm is None:
            return None
        now = self._clock()
        with self._lock:
            calls = self._calls.get(label, deque())
            return self.rpm - sum(1 for t in calls if t > now - self.window_s)


def retry_after_header(seconds: float) -> str:
    """Retry-After is whole seconds (RFC 9110); round up so a client that obeys it succeeds."""
    return str(max(1, math.ceil(seconds)))
