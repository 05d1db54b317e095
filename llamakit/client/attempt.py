"""The retry loop, written once as a generator ("sans-IO") that ``Client`` and ``AsyncClient``
drive: it yields ``Request`` (send this, then send me back the ``httpx.Response`` or the
``Failure``) and ``Sleep`` (wait this long), and returns the parsed result or raises a llamakit
error. Per attempt: a rate-limit slot, the time left before the call's deadline, the origin check
that attaches the key (``Core._authorize``), the reply's status, body and credits header, and the
retry policy's decision.

When the call's deadline ends the retries, the call raises the last real failure (an error status
the server answered, or a failure that may have been billed), not a timeout that would hide it; a
timeout is raised when no attempt got an answer, or when the attempt the deadline cut off may have
been billed. A retry starts only with ``RETRY_MIN_TIME_LEFT`` left, and at least as long as the
attempt before it took: a shorter one could not finish, and a paid one cut off after it was sent
may be billed with no reply.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Generator
from decimal import Decimal
from typing import Any

import httpx

from .._defaults import RETRY_MIN_TIME_LEFT
from ..errors import (
    APIConnectionError,
    APIError,
    APIStatusError,
    APITimeoutError,
    InsufficientCreditsError,
    RateLimitError,
    ServerError,
    error_class_for_status,
)
from .headers import parse_retry_after
from .origin import display_url
from .parse import cause_of, error_message, failure_error, json_or_none, request_id
from .plan import Request, Sleep, T
from .retry import RETRYABLE_STATUSES, RetryPolicy
from .secrets import redact
from .transport import Failure


def attempts(
    core: Any,  # a Core (core.py imports this module, so the type is not imported here)
    request: Request,
    parse: Callable[[httpx.Response], T],
    call_id: str | None,
    *,
    paced: bool = True,
    deadline_at: float | None = None,
) -> Generator[Request | Sleep, Any, tuple[T, int]]:
    retries = 0
    # What is raised if the deadline ends the retries, rather than a timeout that would hide it:
    # the latest error status the server answered, or failure that may have been billed.
    real: APIError | None = None
    need = 0.0  # the time left an attempt needs to be started (none for the first)
    while True:
        ticket = object()
        try:
            while paced and (wait := core.limiter.acquire(ticket)) > 0:
                if deadline_at is not None and time.monotonic() + wait + need > deadline_at:
                    raise _deadline_ends(
                        real,
                        retries,
                        f"the rate limit (rpm={core.limiter.rpm:g}) leaves no free slot for "
                        f"attempt {retries + 1} before the call's deadline=",
                    )
                yield Sleep(wait)
            timeout, by_deadline = _time_for(core.timeout, deadline_at, need, real, retries)
            send = core._authorize(request, timeout)
            started = time.time()
            clock = time.perf_counter()
            reply = yield send
            latency = time.perf_counter() - clock
        finally:
            if paced:
                core.limiter.release(ticket)
        status: int | None = None
        credits: Decimal | None = None
        try:
            if isinstance(reply, Failure):
                status = reply.status
                raise failure_error(
                    reply,
                    request.url,
                    timeout=timeout,
                    billable=request.billable,
                    by_deadline=by_deadline,
                ) from cause_of(reply.error)
            assert isinstance(reply, httpx.Response), reply
            status = reply.status_code
            if status >= 300:
                credits = core._observe_credits(reply, strict=False)
                raise status_error(core, reply)
            result = parse(reply)
            if isinstance(result, dict) and "latency_s" in result:  # a chat reply
                result["latency_s"] = latency
            credits = core._observe_credits(reply, strict=True)
        except APIError as err:
            core._report(call_id, retries + 1, status, err, latency, credits, started)
            if isinstance(err, RateLimitError) and paced:
                core.limiter.on_rate_limited(err.retry_after)
            # A retry needs at least as long as this attempt took, and never less than the floor.
            need = max(RETRY_MIN_TIME_LEFT, latency)
            if (
                by_deadline
                and deadline_at is not None
                and time.monotonic() + need > deadline_at
                and isinstance(err, APITimeoutError)
                and real is not None
            ):
                cut = (
                    f"attempt {retries + 1} was cut off by the call's deadline= before it got "
                    "an answer"
                )
                if err.may_be_billed:
                    # Its request was sent, so it may be billed: its own error must say that.
                    err.add_outcome(f"{cut}; the attempt before it got {_summary(real)}")
                    raise
                real.add_outcome(f"{_sent(retries)}; then {cut}")
                # Chained to this attempt's timeout; a transport failure keeps its own cause.
                raise real from (real.__cause__ or err)
            delay = core.retry.delay(err, retries)
            if delay is None or (
                deadline_at is not None and time.monotonic() + delay + need > deadline_at
            ):
                if isinstance(err, APIStatusError):
                    err.add_outcome(_outcome(core.retry, err, retries, cut=delay is not None))
                raise
            if isinstance(err, APIStatusError) or _may_be_billed(err):
                real = err
            retries += 1
            if delay > 0:
                yield Sleep(delay)
            continue
        if paced:
            core.limiter.on_success()
        core._report(call_id, retries + 1, status, None, latency, credits, started)
        if isinstance(result, dict) and "credits_remaining" in result:
            result["credits_remaining"] = credits
        return result, retries + 1


def _time_for(
    timeout: float, deadline_at: float | None, need: float, real: APIError | None, retries: int
) -> tuple[float, bool]:
    """The time attempt ``retries + 1`` may take and whether the call's deadline (not timeout=)
    set it; raises what ends the call when the deadline leaves the attempt less than ``need``."""
    if deadline_at is None:
        return timeout, False
    left = deadline_at - time.monotonic()
    if left <= 0:
        why = f"the call's deadline= passed before attempt {retries + 1} could start"
        raise _deadline_ends(real, retries, why)
    if left < need:
        why = (
            f"only {left:.3g}s of the call's deadline= was left for attempt {retries + 1}, less "
            f"than the {need:.3g}s it would need"
        )
        raise _deadline_ends(real, retries, why)
    return min(timeout, left), left < timeout


def _deadline_ends(real: APIError | None, retries: int, why: str) -> APIError:
    """The error of a call whose deadline leaves no time for attempt ``retries + 1``: ``real``
    (the server's last error status, or a failure that may have been billed) when there is one,
    since the deadline only ended the retries; else an APITimeoutError."""
    if real is not None:
        real.add_outcome(f"{_sent(retries)}; not retried again: {why}")
        return real
    unsent = "nothing was sent" if retries == 0 else "no attempt before it got an answer"
    return APITimeoutError(f"{why}; {unsent}. Pass a larger deadline= to give the call more time")


def _may_be_billed(err: APIError) -> bool:
    return isinstance(err, APIConnectionError) and err.may_be_billed


def _sent(attempts: int) -> str:
    return "sent once" if attempts == 1 else f"sent {attempts} times"


def _summary(err: APIError) -> str:
    if isinstance(err, APIStatusError):
        return f"HTTP {err.status}" + (f": {err.server_message}" if err.server_message else "")
    return f"{type(err).__name__}, which may have been billed too"


def _outcome(policy: RetryPolicy, err: APIStatusError, retries: int, *, cut: bool) -> str:
    """What the loop did about the error it is about to raise, for its message."""
    sent = _sent(retries + 1)
    if cut:
        return (
            f"{sent}; not retried again: the wait would leave too little of the call's "
            "deadline= for another attempt"
        )
    if policy.retries(err):
        return f"{sent}, gave up at max_retries={policy.max_retries}"
    if isinstance(err, RateLimitError):
        return (
            f"{sent}; not retried: Retry-After exceeds max_retry_after={policy.max_retry_after:g}s"
        )
    if isinstance(err, ServerError):
        codes = ", ".join(str(c) for c in sorted(RETRYABLE_STATUSES))
        return f"{sent}; not retried: llamakit retries only HTTP {codes}"
    return f"{sent}; not retried: resending the same request cannot change this answer"


def status_error(core: Any, resp: httpx.Response) -> APIStatusError:
    status = resp.status_code
    body = json_or_none(resp)
    message = error_message(resp, body)
    rid = request_id(resp, body)
    cls = error_class_for_status(status)
    if cls is RateLimitError:
        retry_after = parse_retry_after(resp.headers.get("retry-after"))
        return RateLimitError(message, retry_after=retry_after, status=status, request_id=rid)
    if cls is InsufficientCreditsError:
        return InsufficientCreditsError(
            message, balance=core.credits_last, status=status, request_id=rid
        )
    if 300 <= status < 400:
        where = display_url(resp.headers.get("location", "elsewhere"))
        message = (
            f"the server redirects to {redact(where)[:200]}; llamakit does not follow "
            "redirects (they could carry the key to another origin): use the final URL as "
            "base_url"
        )
    return cls(message, status=status, request_id=rid)
