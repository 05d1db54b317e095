"""Retries, rate limits, timeouts and credit bookkeeping against the local server's faults."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

import pytest
from client_helpers import settled_stats

import llamakit
from llamakit import APITimeoutError, Attempt, RateLimitError
from llamakit._defaults import LOCAL_COST_PER_CALL
from llamakit.client.ratelimit import AdaptiveRate
from llamakit.client.retry import RetryPolicy

PATIENT = RetryPolicy(max_retries=10, base_delay=0.002, max_delay=0.02)

COST = LOCAL_COST_PER_CALL


async def gather_chats(client: Any, n: int, **params: Any) -> list[Any]:
    async with client:
        return await asyncio.gather(*(client.chat(f"question {i}", **params) for i in range(n)))


def test_30_percent_500s_every_call_succeeds_and_is_billed_once(server: Any) -> None:
    server.set_faults(fail_rate=0.3, seed=11)
    seen: list[Attempt] = []
    n = 40
    replies = asyncio.run(
        gather_chats(server.async_client(retry_policy=PATIENT, on_attempt=seen.append), n)
    )
    assert len(replies) == n and all(r.text for r in replies)
    failures = [a for a in seen if a.status == 500]
    assert failures, "the fault never fired: this test would prove nothing"
    assert sum(r.attempts for r in replies) == len(seen) == n + len(failures)
    stats = settled_stats(server, lambda s: s["requests"].get("500") == len(failures))
    assert stats["billed_calls"] == n and stats["requests"]["500"] == len(failures)
    # Attempts of one call share its call_id and count up from 1.
    by_call: dict[str, list[int]] = {}
    for a in seen:
        by_call.setdefault(a.call_id, []).append(a.attempt)
    assert sorted(by_call) == sorted(r.call_id for r in replies)
    assert all(nums == list(range(1, len(nums) + 1)) for nums in by_call.values())


def test_dropped_connections_are_retried(server: Any) -> None:
    server.set_faults(drop_rate=0.4, seed=3)
    seen: list[Attempt] = []
    client = server.client(retry_policy=PATIENT, on_attempt=seen.append)
    replies = [client.chat(f"q{i}") for i in range(10)]
    assert all(r.text for r in replies)
    drops = [a for a in seen if a.error == "APIConnectionError"]
    assert drops and all(a.status is None for a in drops)


def test_retry_after_is_honoured(server: Any) -> None:
    server.set_faults(rate_429=1.0, retry_after_s=0.6)
    seen: list[Attempt] = []

    def on_attempt(a: Attempt) -> None:
        seen.append(a)
        if a.status == 429:
            server.set_faults(rate_429=0.0)  # the next attempt is let through

    reply = server.client(on_attempt=on_attempt).chat("hi")
    assert reply.attempts == 2 and [a.status for a in seen] == [429, 200]
    assert seen[1].started_at - seen[0].finished_at >= 0.6


def test_retry_after_beyond_the_cap_is_raised(server: Any) -> None:
    server.set_faults(rate_429=1.0, retry_after_s=5)
    client = server.client(retry_policy=RetryPolicy(max_retry_after=1.0))
    with pytest.raises(RateLimitError) as info:
        client.chat("hi")
    assert info.value.retry_after == 5


def test_read_timeouts_of_paid_calls_are_not_retried_by_default(server: Any) -> None:
    # A 1.5 s server and timeout=0.2: the request was sent, the server bills it when it finishes.
    server.set_faults(latency_ms=1500)
    seen: list[Attempt] = []
    client = server.client(timeout=0.2, retry_policy=RetryPolicy(4, 0.001), on_attempt=seen.append)
    with pytest.raises(APITimeoutError, match="may have been billed") as info:
        client.chat("hi")
    assert info.value.may_be_billed and 'api="v2"' in str(info.value)
    assert [(a.status, a.error) for a in seen] == [(None, "APITimeoutError")]
    assert seen[0].latency_s < 1.0
    # The server's ledger: one call billed, not five.
    stats = settled_stats(server, lambda s: s["billed_calls"] >= 1, timeout=5.0)
    assert stats["billed_calls"] == 1


def test_read_timeouts_are_retried_when_the_policy_says_so(server: Any) -> None:
    server.set_faults(latency_ms=1500)
    seen: list[Attempt] = []
    policy = RetryPolicy(1, 0.001, retry_maybe_billed=True)
    client = server.client(timeout=0.2, retry_policy=policy, on_attempt=seen.append)
    with pytest.raises(APITimeoutError, match="timeout"):
        client.chat("hi")
    assert [(a.status, a.error) for a in seen] == [(None, "APITimeoutError")] * 2
    assert all(a.latency_s < 1.0 for a in seen)
    # ... and each retry is a second bill: the reason this is not the default.
    assert settled_stats(server, lambda s: s["billed_calls"] >= 2, 5.0)["billed_calls"] == 2


def test_slow_body_times_out_too(server: Any) -> None:
    server.set_faults(slow_body_s=1.5)
    client = server.client(timeout=0.2, max_retries=0)
    with pytest.raises(APITimeoutError):
        client.chat("hi")


def test_rpm_means_no_429() -> None:
    # 8 requests per 1-second window = 480 per minute; 24 concurrent calls need three windows.
    # The client counts the same window; a slot frees a window after its call ended, so neither
    # network time nor a loaded machine waking a sleeper late can make the server see a 9th.
    with llamakit.local_server(backend="scripted", rpm=8, rpm_window_s=1.0) as srv:
        seen: list[Attempt] = []
        client = srv.async_client(rpm=480, rpm_window_s=1.0, max_retries=0, on_attempt=seen.append)
        replies = asyncio.run(gather_chats(client, 24))
        assert len(replies) == 24
        stats = settled_stats(srv, lambda s: s["billed_calls"] == 24)
        assert "429" not in stats["requests"] and stats["billed_calls"] == 24
        # Bursts, not spacing: the three windows' calls start in three clumps.
        starts = sorted(a.started_at for a in seen)
        assert starts[7] - starts[0] < 0.5 and starts[8] - starts[0] >= 1.0
        # The same burst without rpm= is refused: the limit is real.
        with pytest.raises(RateLimitError):
            asyncio.run(gather_chats(srv.async_client(max_retries=0), 24))


def test_adaptive_mode_converges() -> None:
    # 20 per 1-second window (1200/min). The client starts 4x too fast and must find the rate.
    with llamakit.local_server(backend="scripted", rpm=20, rpm_window_s=1.0) as srv:
        seen: list[Attempt] = []
        adaptive = AdaptiveRate(start=4800, cooldown_s=0.5)
        client = srv.async_client(
            adaptive=adaptive, rpm_window_s=1.0, retry_policy=PATIENT, on_attempt=seen.append
        )
        replies = asyncio.run(gather_chats(client, 100))
    assert len(replies) == 100
    statuses = [a.status for a in sorted(seen, key=lambda a: a.started_at)]
    first, last = statuses[:30], statuses[-40:]
    assert first.count(429) > 0, "the client never hit the limit: nothing was learned"
    # The opening burst (80 allowed per window, 20 accepted) is refused in part (60); until the
    # first cut takes effect, retries of refused calls can be refused again (the faster the
    # server answers, the more of them: 6-22 more on CI). After that the learned rate holds:
    # AIMD keeps probing upward, so an occasional 429 late is by design.
    assert statuses.count(429) <= 60 + 30 and last.count(429) <= 4
    assert client.rpm is not None and 0.75 * 1200 <= client.rpm <= 1.3 * 1200
    assert client._core.limiter.history[0][3] == "rate_limit"


def test_credits_and_spent_are_exact(server: Any) -> None:
    client = server.client()
    assert client.credits() == 10 and client.credits_start == 10
    for i in range(3):
        client.chat(f"q{i}")
    replies = asyncio.run(gather_chats(server.async_client(), 12))
    assert client.spent == 3 * COST  # exact Decimals, not approx
    assert client.credits_last == 10 - 3 * COST
    # Concurrent replies arrive out of order; the balance seen last is still the lowest.
    lowest = min(r.credits_remaining for r in replies)
    assert lowest == 10 - 15 * COST
    # The server's stats carry the ledger's exact figures, as decimal strings.
    assert Decimal(server.stats()["credits_spent"]) == 15 * LOCAL_COST_PER_CALL


def test_spent_counts_from_before_the_first_call(server: Any) -> None:
    client = server.client()
    assert client.spent is None and client.credits_start is None
    client.chat("one")
    assert client.credits_start == 10  # read before the first call was billed
    assert client.spent == COST
    assert client.credits() == 10 - COST
