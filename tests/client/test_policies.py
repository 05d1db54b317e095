"""The retry policy and the rate limiter as pure decisions (no sleeping, a fake clock)."""

from __future__ import annotations

import random
from collections import deque

import pytest

from llamakit import (
    APIConnectionError,
    APIResponseError,
    APITimeoutError,
    AuthenticationError,
    InsufficientCreditsError,
    MethodNotAllowedError,
    NotFoundError,
    RateLimitError,
    ServerError,
    UnprocessableRequestError,
)
from llamakit._ratelimit import AdaptiveRate, RateLimiter
from llamakit._retry import RetryPolicy

POLICY = RetryPolicy(max_retries=3, base_delay=1.0, max_delay=4.0, max_retry_after=10.0)


@pytest.mark.parametrize(
    "error",
    [
        AuthenticationError("x"),
        NotFoundError("x"),
        MethodNotAllowedError("x"),
        InsufficientCreditsError("x", balance=0.0),
        UnprocessableRequestError("x"),
        ServerError("x", status=501),
        APIResponseError("x"),
    ],
)
def test_final_errors_are_never_retried(error: Exception) -> None:
    assert POLICY.delay(error, 0) is None  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "error",
    [
        ServerError("x", status=500),
        ServerError("x", status=502),
        ServerError("x", status=503),
        ServerError("x", status=504),
        APIConnectionError("x"),
        APITimeoutError("x"),
        RateLimitError("x"),
    ],
)
def test_transient_errors_back_off_exponentially_with_jitter(error: Exception) -> None:
    rng = random.Random(0)
    for retries_done, (low, high) in enumerate([(0.5, 1.0), (1.0, 2.0), (2.0, 4.0)]):
        delay = POLICY.delay(error, retries_done, rng)  # type: ignore[arg-type]
        assert delay is not None and low <= delay <= high
    assert POLICY.delay(error, 3, rng) is None  # type: ignore[arg-type]


def test_backoff_is_capped_and_jittered() -> None:
    delays = {RetryPolicy(max_retries=99, base_delay=1, max_delay=4).backoff(20) for _ in range(20)}
    assert all(2.0 <= d <= 4.0 for d in delays) and len(delays) > 1


def test_retry_after_is_honoured_up_to_the_cap() -> None:
    assert POLICY.delay(RateLimitError("x", retry_after=7.0), 0) == 7.0
    assert POLICY.delay(RateLimitError("x", retry_after=11.0), 0) is None
    assert POLICY.delay(RateLimitError("x", retry_after=0.0), 2) == 0.0


def test_policy_rejects_negative_values() -> None:
    with pytest.raises(ValueError):
        RetryPolicy(max_retries=-1)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_unpaced_limiter_never_waits_until_a_429() -> None:
    clock = FakeClock()
    limiter = RateLimiter(clock=clock)
    assert [limiter.reserve()[0] for _ in range(5)] == [0.0] * 5
    booked = limiter.reserve()
    limiter.on_rate_limited(2.5)
    assert not limiter.current(booked[1])  # a booking made before the 429 is void
    assert limiter.reserve()[0] == pytest.approx(2.5)  # everyone waits out the Retry-After
    clock.now += 3
    assert limiter.reserve()[0] == 0.0


def test_rpm_spaces_starts_evenly() -> None:
    clock = FakeClock()
    limiter = RateLimiter(rpm=120, clock=clock)
    waits = [limiter.reserve()[0] for _ in range(4)]
    assert waits[0] == 0.0
    gaps = [b - a for a, b in zip(waits, waits[1:], strict=False)]
    assert all(g == pytest.approx(0.5 * 1.01) for g in gaps)
    clock.now += 10  # idle time is not banked into a burst
    assert limiter.reserve()[0] == 0.0 and limiter.reserve()[0] == pytest.approx(0.505)


def test_a_late_sender_pushes_the_next_one_back() -> None:
    clock = FakeClock()
    limiter = RateLimiter(rpm=60, clock=clock)  # one per ~1.01 s
    first, _ = limiter.reserve()
    second, _ = limiter.reserve()
    clock.now += 0.5  # the first caller was woken half a second late
    assert limiter.confirm() == 0.0
    clock.now += second - 0.5  # the second wakes exactly on its booked slot ...
    gap = limiter.confirm()
    assert gap == pytest.approx(0.5)  # ... and must still keep its distance from the first
    clock.now += gap
    assert limiter.confirm() == 0.0
    assert RateLimiter(clock=clock).confirm() == 0.0  # unpaced: always go


def test_rpm_must_be_positive() -> None:
    with pytest.raises(ValueError):
        RateLimiter(rpm=0)
    with pytest.raises(ValueError):
        AdaptiveRate(start=10, max=5)


def simulate(
    limiter: RateLimiter, clock: FakeClock, limit: int, window: float, seconds: float
) -> list[tuple[float, bool]]:
    """A sliding-window server (``limit`` per ``window`` s) and one eager sequential caller."""
    accepted: deque[float] = deque()
    log: list[tuple[float, bool]] = []
    end = clock.now + seconds
    while clock.now < end:
        clock.now += limiter.reserve()[0]
        clock.now += limiter.confirm()
        clock.now += 0.001  # a millisecond of network
        while accepted and accepted[0] <= clock.now - window:
            accepted.popleft()
        if len(accepted) < limit:
            accepted.append(clock.now)
            limiter.on_success()
            log.append((clock.now, True))
        else:
            limiter.on_rate_limited(accepted[0] + window - clock.now)
            log.append((clock.now, False))
    return log


def test_adaptive_mode_converges_under_a_sliding_window_limit() -> None:
    clock = FakeClock()
    limiter = RateLimiter(adaptive=AdaptiveRate(start=60, cooldown_s=15), clock=clock)
    start = clock.now
    log = simulate(limiter, clock, limit=100, window=60.0, seconds=1800)
    reasons = [h[3] for h in limiter.history]
    assert reasons[0] == "slow_start" and "rate_limit" in reasons and "steady_up" in reasons
    late = [ok for t, ok in log if t > start + 600]
    # After ten minutes the limiter holds the rate near the server's 100/min: rare 429s ...
    assert late.count(False) / len(late) < 0.05
    # ... and it does not starve either: at least 70% of the allowed throughput.
    assert late.count(True) / (1200 / 60 * 100) > 0.7
    assert 50 <= limiter.rpm <= 130  # type: ignore[operator]


def test_adaptive_respects_its_bounds_and_cooldown() -> None:
    clock = FakeClock()
    limiter = RateLimiter(
        adaptive=AdaptiveRate(start=100, min=40, max=200, cooldown_s=10), clock=clock
    )
    for _ in range(100):
        limiter.on_success()
    assert limiter.rpm == 200
    limiter.on_rate_limited(1.0)
    limiter.on_rate_limited(1.0)  # same episode: debounced
    assert limiter.rpm == 100
    clock.now += 11
    limiter.on_rate_limited(1.0)
    assert limiter.rpm == 80
    for _ in range(4):
        clock.now += 11
        limiter.on_rate_limited(1.0)
    assert limiter.rpm == 40  # never below min
