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
from llamakit.client.ratelimit import AdaptiveRate, RateLimiter
from llamakit.client.retry import RetryPolicy

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


def test_maybe_billed_timeouts_are_final_unless_the_policy_allows_them() -> None:
    billed = APITimeoutError("x", may_be_billed=True)
    assert POLICY.delay(billed, 0) is None
    assert POLICY.delay(APIConnectionError("cut", may_be_billed=True), 0) is None
    assert POLICY.delay(APITimeoutError("connect"), 0) is not None  # never sent: safe
    allow = RetryPolicy(max_retries=1, retry_maybe_billed=True)
    assert allow.delay(billed, 0) is not None and allow.delay(billed, 1) is None


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
    assert [limiter.acquire(object()) for _ in range(5)] == [0.0] * 5
    limiter.on_rate_limited(2.5)
    assert limiter.acquire(object()) == pytest.approx(2.5)  # everyone waits out the Retry-After
    clock.now += 3
    assert limiter.acquire(object()) == 0.0


def test_a_burst_up_to_the_window_goes_at_once() -> None:
    clock = FakeClock()
    limiter = RateLimiter(rpm=120, clock=clock)  # 120 per any 60 s
    tickets = [object() for _ in range(121)]
    assert [limiter.acquire(t) for t in tickets[:120]] == [0.0] * 120
    assert limiter.acquire(tickets[120]) > 59  # the 121st waits for a slot to free
    clock.now += 0.2
    for t in tickets[:120]:
        limiter.release(t)
    # A slot frees a window (+1%) after its call *ended*, not after it started.
    assert limiter.acquire(tickets[120]) == pytest.approx(60.6)
    clock.now += 60.6
    assert limiter.acquire(tickets[120]) == 0.0


def test_a_small_window_scales_the_burst() -> None:
    clock = FakeClock()
    limiter = RateLimiter(rpm=120, window_s=2.0, clock=clock)  # 4 per any 2 s
    assert limiter.capacity == 4 and limiter.rpm == pytest.approx(120)
    grants = [limiter.acquire(object()) for _ in range(5)]
    assert grants[:4] == [0.0] * 4 and grants[4] > 0


def test_waiters_are_served_in_order_and_abandoned_waits_free_their_place() -> None:
    clock = FakeClock()
    limiter = RateLimiter(rpm=1, clock=clock)
    first, second, third = object(), object(), object()
    assert limiter.acquire(first) == 0.0
    wait_second, wait_third = limiter.acquire(second), limiter.acquire(third)
    assert wait_second > 0 and wait_third > 0
    limiter.release(first)
    clock.now += 61
    assert limiter.acquire(third) > 0  # second is ahead of it
    limiter.release(second)  # second gave up (a deadline, a cancelled task)
    assert limiter.acquire(third) == 0.0


def test_below_one_call_per_window_the_window_stretches() -> None:
    clock = FakeClock()
    limiter = RateLimiter(rpm=0.5, clock=clock)  # one call per two minutes
    one, two = object(), object()
    assert limiter.acquire(one) == 0.0
    limiter.release(one)
    assert limiter.acquire(two) == pytest.approx(120 * 1.01)


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
        ticket = object()
        while (wait := limiter.acquire(ticket)) > 0:
            clock.now += wait
        clock.now += 0.001  # a millisecond of network
        while accepted and accepted[0] <= clock.now - window:
            accepted.popleft()
        if len(accepted) < limit:
            accepted.append(clock.now)
            limiter.release(ticket)
            limiter.on_success()
            log.append((clock.now, True))
        else:
            limiter.release(ticket)
            limiter.on_rate_limited(accepted[0] + window - clock.now)
            log.append((clock.now, False))
    return log


@pytest.mark.parametrize("limit", [20, 100, 500])
def test_adaptive_mode_converges_under_a_sliding_window_limit(limit: int) -> None:
    clock = FakeClock()
    limiter = RateLimiter(adaptive=AdaptiveRate(start=60, cooldown_s=15), clock=clock)
    start = clock.now
    log = simulate(limiter, clock, limit=limit, window=60.0, seconds=1800)
    reasons = [h[3] for h in limiter.history]
    assert "rate_limit" in reasons
    late = [ok for t, ok in log if t > start + 600]
    # After ten minutes the limiter holds the rate near the server's limit: rare 429s ...
    assert late.count(False) / len(late) < 0.05
    # ... and it does not starve either: at least 80% of the allowed throughput.
    assert late.count(True) / (1200 / 60 * limit) > 0.8
    assert 0.8 * limit <= limiter.rpm <= 1.25 * limit  # type: ignore[operator]


def test_adaptive_does_not_climb_while_the_limit_does_not_bind() -> None:
    clock = FakeClock()
    limiter = RateLimiter(adaptive=AdaptiveRate(start=60), clock=clock)
    for _ in range(100):  # one call every 10 s: far below 60 per minute
        ticket = object()
        assert limiter.acquire(ticket) == 0.0
        limiter.release(ticket)
        limiter.on_success()
        clock.now += 10
    assert limiter.rpm == 60 and limiter.history == []


def test_adaptive_respects_its_bounds_and_cooldown() -> None:
    clock = FakeClock()
    limiter = RateLimiter(
        adaptive=AdaptiveRate(start=100, min=40, max=200, cooldown_s=10), clock=clock
    )
    for _ in range(400):  # a binding limit, clean windows: slow start doubles up to max
        ticket = object()
        while (wait := limiter.acquire(ticket)) > 0:
            clock.now += wait
        limiter.release(ticket)
        limiter.on_success()
    assert limiter.rpm == 200
    limiter.on_rate_limited(1.0)
    limiter.on_rate_limited(1.0)  # same episode: debounced
    after_first = limiter.rpm
    assert after_first is not None and 100 <= after_first < 200
    for _ in range(6):
        clock.now += 61  # no successes in the window: each cut is capped at half
        limiter.on_rate_limited(1.0)
    assert limiter.rpm == 40  # never below min
