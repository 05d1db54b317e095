"""A timeout is a deadline: ``timeout=`` bounds each attempt as a whole, ``deadline=`` a call
across its retries, and a paid request that timed out after it was sent is not resent."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from client_helpers import settled_stats
from raw_servers import raw_server, trickle_body, trickle_headers, url_of

from llamakit import APITimeoutError, AsyncClient, Attempt, Client, ServerError
from llamakit.client.retry import RetryPolicy

KEY = "SG_deadline_test_key_1"


def timed(fn: Any) -> tuple[BaseException | None, float]:
    start = time.monotonic()
    try:
        fn()
    except Exception as exc:
        return exc, time.monotonic() - start
    return None, time.monotonic() - start


@pytest.mark.parametrize(
    "respond", [trickle_body(0.5), trickle_headers(0.5)], ids=["body", "headers"]
)
def test_a_trickling_server_is_cut_off_at_the_timeout(respond: Any) -> None:
    # One byte every 0.5 s never trips a per-read timeout; the attempt's timeout still holds.
    with raw_server(respond) as srv:
        client = Client(KEY, base_url=url_of(srv) + "/v1", timeout=2, check_context=False)
        err, elapsed = timed(lambda: client.chat("hi"))
    assert isinstance(err, APITimeoutError), err
    assert 1.9 <= elapsed < 3.5, elapsed
    assert len(srv.seen) == 2  # the balance read, then one chat attempt: a paid call not resent
    assert err.may_be_billed and "timeout=2s" in str(err)


def test_the_async_client_is_cut_off_too() -> None:
    async def call(url: str) -> None:
        async with AsyncClient(KEY, base_url=url, timeout=1.5, check_context=False) as client:
            await client.chat("hi")

    with raw_server(trickle_body(0.3)) as srv:
        err, elapsed = timed(lambda: asyncio.run(call(url_of(srv) + "/v1")))
    assert isinstance(err, APITimeoutError) and 1.4 <= elapsed < 3.0, (err, elapsed)


def test_a_paid_call_cut_off_mid_body_is_billed_once_and_not_resent(server: Any) -> None:
    server.set_faults(slow_body_s=1.5)  # 200 and its headers at once, the body 1.5 s later
    seen: list[Attempt] = []
    client = server.client(timeout=0.3, retry_policy=RetryPolicy(4, 0.001), on_attempt=seen.append)
    with pytest.raises(APITimeoutError, match="HTTP 200.*probably billed") as info:
        client.chat("hi")
    assert info.value.may_be_billed and len(seen) == 1 and seen[0].status == 200
    assert settled_stats(server, lambda s: s["billed_calls"] >= 1)["billed_calls"] == 1


def test_free_requests_are_retried_after_a_read_timeout() -> None:
    # The balance endpoint is free: resending it cannot cost anything.
    with raw_server(trickle_body(0.5), balance_ok=False) as srv:
        client = Client(
            KEY,
            base_url=url_of(srv) + "/v1",
            timeout=0.4,
            retry_policy=RetryPolicy(2, 0.001),
        )
        with pytest.raises(APITimeoutError):
            client.credits()
    assert len(srv.seen) == 3


def test_deadline_bounds_a_call_across_its_retries(server: Any) -> None:
    server.set_faults(fail_rate=1.0)
    slow = RetryPolicy(max_retries=50, base_delay=0.2, max_delay=0.2)
    client = server.client(retry_policy=slow, deadline=1.0)
    err, elapsed = timed(lambda: client.chat("hi"))
    assert isinstance(err, ServerError) and elapsed < 1.5, (err, elapsed)
    calls = server.stats()["requests"]["500"]
    assert 2 <= calls <= 8  # a few retries, then the deadline: not 51 attempts
    # A per-call deadline overrides the client's.
    err, elapsed = timed(lambda: client.chat("hi", deadline=0.3))
    assert isinstance(err, ServerError) and elapsed < 0.8


def test_a_retry_that_would_have_only_ms_left_is_not_sent(server: Any) -> None:
    # The backoff ends a few ms before the deadline: a retry then could only time out, and that
    # timeout would hide the 500 (a rare CI failure, made certain here by the deadlines chosen).
    server.set_faults(fail_rate=1.0)
    client = server.client(retry_policy=RetryPolicy(max_retries=5, base_delay=0.2, max_delay=0.2))
    for deadline in [0.2 + i / 1000 for i in range(1, 31)]:  # 1 ms steps: some land in the gap
        err, elapsed = timed(lambda d=deadline: client.chat("hi", deadline=d))
        assert isinstance(err, ServerError), (deadline, err)
        assert elapsed < deadline, (deadline, elapsed)  # given up at the 500, not at the deadline


def test_the_last_attempt_gets_only_the_time_left(server: Any) -> None:
    server.set_faults(latency_ms=3000)
    client = server.client(timeout=10, deadline=0.5)
    err, elapsed = timed(lambda: client.chat("hi"))
    assert isinstance(err, APITimeoutError) and elapsed < 1.2, (err, elapsed)


def test_a_rate_limit_slot_beyond_the_deadline_sends_nothing(server: Any) -> None:
    client = server.client(rpm=1)
    client.chat("first")
    err, elapsed = timed(lambda: client.chat("second", deadline=0.5))
    assert isinstance(err, APITimeoutError) and "nothing was sent" in str(err)
    assert elapsed < 0.3 and server.stats()["billed_calls"] == 1


@pytest.mark.parametrize("value", [0, -1, float("nan"), float("inf"), "2", True])
def test_bad_deadlines_and_timeouts_are_refused_before_any_call(value: Any) -> None:
    from llamakit import ValidationError

    with pytest.raises(ValidationError, match="deadline"):
        Client(KEY, deadline=value)
    with pytest.raises(ValidationError, match="timeout"):
        Client(KEY, timeout=value)
    client = Client(KEY, base_url="http://127.0.0.1:9/v1", check_context=False)
    with pytest.raises(ValidationError, match="deadline"):
        client.chat("hi", deadline=value)


def test_a_retry_after_pause_beyond_the_deadline_sends_nothing_without_rpm(
    mock_client: Any,
) -> None:
    # Without rpm= the limiter's wait is the server's Retry-After pause: the error must say so
    # (its message once formatted rpm=None and raised TypeError, which escapes `except APIError`).
    from client_helpers import CHAT_OK, json_reply

    from llamakit import RateLimitError

    calls: list[int] = []

    def chat(request: Any) -> Any:
        calls.append(1)
        if len(calls) == 1:
            return json_reply({"error": "slow down"}, 429, **{"retry-after": "5"})
        return json_reply(CHAT_OK)

    client = mock_client(chat, retry_policy=RetryPolicy(max_retries=2, max_retry_after=1))
    with pytest.raises(RateLimitError):
        client.chat("first")
    err, elapsed = timed(lambda: client.chat("second", deadline=2))
    assert isinstance(err, APITimeoutError), err
    assert "Retry-After" in str(err) and "nothing was sent" in str(err)
    assert elapsed < 0.5 and len(calls) == 1
