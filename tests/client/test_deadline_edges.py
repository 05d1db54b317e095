"""When deadline= ends a call during its retries, the call raises the server's last real error, not
a timeout that hides it: a retry is not started with too little time left, and a retry the
deadline cuts off gives way to the earlier error, unless its paid request may have been billed.

The retry loop is one sans-IO plan for both clients, so most tests drive it by hand on a clock
that moves only when the test moves it: a backoff that ends 6 ms before the deadline is then
certain, not a matter of CPU load. The rest check both real clients end to end.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import Callable, Generator
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from client_helpers import CHAT_OK, MOCK_KEY, MOCK_URL, settled_stats
from raw_servers import plain, raw_server, url_of

import llamakit.client.attempt
import llamakit.client.client
import llamakit.client.v2
from llamakit import APITimeoutError, AsyncClient, Client, ServerError
from llamakit.client.core import Core
from llamakit.client.plan import Request, Sleep
from llamakit.client.retry import RetryPolicy
from llamakit.client.transport import Failure
from llamakit.client.types import Job
from llamakit.client.v2 import wait_plan

BODY: dict[str, Any] = {"messages": [{"role": "user", "content": "hi"}]}
SLOW = RetryPolicy(max_retries=5, base_delay=0.2, max_delay=0.2)  # waits 0.1 to 0.2 s


class Clock:
    """Stands in for the ``time`` module of the retry loop: time moves only when a test moves it."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now

    def perf_counter(self) -> float:
        return self.now

    def time(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(llamakit.client.attempt, "time", fake)
    monkeypatch.setattr(llamakit.client.v2, "time", fake)
    return fake


@pytest.fixture
def core() -> Generator[Core, None, None]:
    client = Client(MOCK_KEY, base_url=MOCK_URL, retry_policy=SLOW, check_context=False)
    yield client._core
    client.close()


def status(code: int, after: float = 0.01) -> tuple[float, httpx.Response]:
    """An answer with HTTP ``code``, ``after`` seconds into the attempt."""
    body = CHAT_OK if code == 200 else {"error": f"boom {code}"}
    return after, httpx.Response(code, json=body)


def cut(error: type[httpx.TimeoutException]) -> tuple[None, Failure]:
    """No answer: the attempt takes all the time it was given, then fails with ``error``."""
    return None, Failure(error("the attempt's time budget is used up"))


def drive(
    plan: Generator[Any, Any, Any],
    clock: Clock,
    answers: list[tuple[float | None, Any]],
    sent: list[Request],
    *,
    wake: Callable[[float], float] | None = None,
) -> Any:
    """Run ``plan``: request n gets ``answers[n]``; a Sleep ends at ``wake(seconds)`` on the clock
    (a busy machine's sleep can end late), else on time. Requests sent go to ``sent``."""
    reply: Any = None
    while True:
        try:
            action = plan.send(reply)
        except StopIteration as done:
            return done.value
        if isinstance(action, Sleep):
            clock.now = wake(action.seconds) if wake else clock.now + action.seconds
            reply = None
            continue
        sent.append(action)
        took, reply = answers[len(sent) - 1]
        clock.now += action.timeout if took is None else took


# ---- a retry is started only with time for it --------------------------------------------------


def test_a_backoff_that_ends_6ms_before_the_deadline_raises_the_500(
    core: Core, clock: Clock
) -> None:
    deadline_at = clock.now + 1.0
    sent: list[Request] = []
    with pytest.raises(ServerError) as info:
        drive(
            core.chat_plan(BODY, deadline_at),
            clock,
            [status(500), status(200)],
            sent,
            wake=lambda seconds: deadline_at - 0.006,
        )
    assert len(sent) == 1  # attempt 2 was not sent: it could not have finished
    text = str(info.value)
    assert "HTTP 500: boom 500" in text and "sent once; not retried again" in text
    assert "only 0.006s of the call's deadline= was left for attempt 2" in text


def test_a_backoff_that_ends_past_the_deadline_raises_the_last_5xx(
    core: Core, clock: Clock
) -> None:
    deadline_at = clock.now + 1.0
    sent: list[Request] = []

    def wake(seconds: float) -> float:  # the first backoff is on time, the second ends late
        return clock.now + seconds if len(sent) == 1 else deadline_at + 0.01

    with pytest.raises(ServerError) as info:
        drive(core.chat_plan(BODY, deadline_at), clock, [status(500), status(503)], sent, wake=wake)
    assert info.value.status == 503 and len(sent) == 2
    assert "sent 2 times; not retried again: the call's deadline= passed before attempt 3" in str(
        info.value
    )


def test_a_retry_needs_as_long_as_the_attempt_before_it_took(core: Core, clock: Clock) -> None:
    deadline_at = clock.now + 2.0
    sent: list[Request] = []
    # The 504 took 0.8 s; 0.3 s left is more than the floor but too little for another such try.
    with pytest.raises(ServerError, match=r"only 0.3s .* less than the 0.8s it would need"):
        drive(
            core.chat_plan(BODY, deadline_at),
            clock,
            [status(504, after=0.8), status(200)],
            sent,
            wake=lambda seconds: deadline_at - 0.3,
        )
    assert len(sent) == 1


def test_a_retry_with_time_left_is_still_made(core: Core, clock: Clock) -> None:
    deadline_at = clock.now + 1.0
    sent: list[Request] = []
    reply = drive(core.chat_plan(BODY, deadline_at), clock, [status(500), status(200)], sent)
    assert reply.text == "hello" and reply.attempts == 2
    assert sent[1].timeout == pytest.approx(deadline_at - clock.now + 0.01)  # all that was left


def test_a_rate_limit_slot_past_the_deadline_raises_the_500_not_nothing_was_sent(
    clock: Clock,
) -> None:
    client = Client(MOCK_KEY, base_url=MOCK_URL, retry_policy=SLOW, rpm=1, check_context=False)
    sent: list[Request] = []
    with pytest.raises(ServerError, match="no free slot for attempt 2"):
        drive(client._core.chat_plan(BODY, clock.now + 1.0), clock, [status(500)], sent)
    client.close()
    assert len(sent) == 1


# ---- an attempt the deadline cut off ----------------------------------------------------------


def test_a_retry_cut_off_before_it_was_sent_gives_way_to_the_500(core: Core, clock: Clock) -> None:
    sent: list[Request] = []
    with pytest.raises(ServerError) as info:
        drive(
            core.chat_plan(BODY, clock.now + 1.0),
            clock,
            [status(500), cut(httpx.ConnectTimeout)],
            sent,
        )
    assert len(sent) == 2
    assert "sent once; then attempt 2 was cut off by the call's deadline=" in str(info.value)
    timeout = info.value.__cause__
    assert isinstance(timeout, APITimeoutError) and not timeout.may_be_billed
    assert "nothing was sent" in str(timeout) and "deadline=" in str(timeout)


def test_a_paid_retry_cut_off_after_it_was_sent_still_says_it_may_be_billed(
    core: Core, clock: Clock
) -> None:
    sent: list[Request] = []
    with pytest.raises(APITimeoutError) as info:
        drive(
            core.chat_plan(BODY, clock.now + 1.0),
            clock,
            [status(500), cut(httpx.ReadTimeout)],
            sent,
        )
    err = info.value
    assert err.may_be_billed and len(sent) == 2
    text = str(err)
    assert "may have been billed" in text and "Pass a larger deadline=" in text
    assert "timeout=" not in text  # it names the limit that cut it off
    assert "attempt 2 was cut off by the call's deadline=" in text
    assert "the attempt before it got HTTP 500: boom 500" in text


def test_a_free_request_cut_off_after_it_was_sent_gives_way_to_the_500(
    core: Core, clock: Clock
) -> None:
    sent: list[Request] = []
    with pytest.raises(ServerError, match="then attempt 2 was cut off"):
        drive(
            core.credits_plan(clock.now + 1.0),
            clock,
            [status(500), cut(httpx.ReadTimeout)],
            sent,
        )
    assert len(sent) == 2


def test_with_no_answer_ever_the_deadline_raises_a_timeout(core: Core, clock: Clock) -> None:
    sent: list[Request] = []
    dropped = (0.01, Failure(httpx.ConnectError("connection refused")))
    with pytest.raises(APITimeoutError, match="no attempt before it got an answer"):
        drive(
            core.credits_plan(clock.now + 1.0),
            clock,
            [dropped],
            sent,
            wake=lambda seconds: clock.now + 0.95,
        )
    assert len(sent) == 1


def test_wait_still_says_call_wait_again_when_its_deadline_cuts_a_retried_poll(
    core: Core, clock: Clock
) -> None:
    job = Job("req-1", f"{MOCK_URL}/status/1", f"{MOCK_URL}/result/1", "call-1", clock.now)
    sent: list[Request] = []
    with pytest.raises(APITimeoutError, match=r"call wait\(\) again") as info:
        drive(
            wait_plan(core, job, timeout=1.0, poll_interval=0.05),
            clock,
            [status(500), cut(httpx.ReadTimeout)],
            sent,
        )
    assert isinstance(info.value.__cause__, ServerError) and len(sent) == 2


# ---- both clients, end to end --------------------------------------------------------------


def late_sleeps(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make every backoff of both clients end 6 ms before the call's deadline."""
    deadlines: list[float] = []
    real = Core.deadline_at

    def recording(self: Core, deadline: float | None) -> float | None:
        at = real(self, deadline)
        deadlines.append(at or 0.0)
        return at

    def until(seconds: float) -> float:
        return max(seconds, deadlines[-1] - 0.006 - time.monotonic())

    async def async_sleep(seconds: float) -> None:
        await asyncio.sleep(until(seconds))

    monkeypatch.setattr(Core, "deadline_at", recording)
    sync_time = SimpleNamespace(sleep=lambda seconds: time.sleep(until(seconds)))
    monkeypatch.setattr(llamakit.client.client, "time", sync_time)
    monkeypatch.setattr(llamakit.client.client, "asyncio", SimpleNamespace(sleep=async_sleep))


def chat(kind: str, make: Callable[..., Any], **kw: Any) -> BaseException | None:
    async def go() -> None:
        async with make(**kw) as client:
            await client.chat("hi")

    try:
        if kind == "sync":
            with make(**kw) as client:
                client.chat("hi")
        else:
            asyncio.run(go())
    except Exception as exc:
        return exc
    return None


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_a_late_backoff_raises_the_500_on_both_clients(
    server: Any, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    # Each 500 takes 50 ms: a retry started with 6 ms left would be cut off after it was sent.
    server.set_faults(fail_rate=1.0, latency_ms=50)
    late_sleeps(monkeypatch)
    make = server.client if kind == "sync" else server.async_client
    err = chat(kind, make, retry_policy=SLOW, deadline=1.0)
    assert isinstance(err, ServerError), repr(err)
    assert "not retried again" in str(err) and "deadline=" in str(err)
    stats = settled_stats(server, lambda s: s["requests"].get("500", 0) >= 1)
    assert stats["requests"]["500"] == 1 and stats["billed_calls"] == 0


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_a_paid_retry_cut_off_by_the_deadline_on_both_clients(kind: str) -> None:
    posts: list[int] = []

    def respond(sock: socket.socket, head: bytes) -> None:
        posts.append(1)
        if len(posts) == 1:
            plain(500, json.dumps({"error": "boom"}).encode())(sock, head)
        else:
            time.sleep(3)  # the retry hangs until the deadline cuts it off

    cls = Client if kind == "sync" else AsyncClient
    with raw_server(respond) as srv:
        err = chat(
            kind,
            cls,
            api_key=MOCK_KEY,
            base_url=url_of(srv) + "/v1",
            retry_policy=RetryPolicy(3, 0.001),
            deadline=1.0,
            check_context=False,
        )
    assert isinstance(err, APITimeoutError) and err.may_be_billed, repr(err)
    assert "the attempt before it got HTTP 500: boom" in str(err) and len(posts) == 2
