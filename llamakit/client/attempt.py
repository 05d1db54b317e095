"""The retry loop, written once as a generator ("sans-IO") that ``Client`` and ``AsyncClient``
drive: it yields ``Request`` (send this, then send me back the ``httpx.Response`` or the
``Failure``) and ``Sleep`` (wait this long), and returns the parsed result or raises a llamakit
error. Per attempt: a rate-limit slot, the time left before the call's deadline, the origin check
that attaches the key (``Core._authorize``), the reply's status, body and credits header, and the
retry policy's decision.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Generator
from decimal import Decimal
from typing import Any

import httpx

from ..errors import (
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
from .scope import check_halted, scopes_of
from .secrets import redact
from .transport import Failure

# The least time before a call's deadline= for which a retry is still sent (s): less is not a
# round trip to any real server.
MIN_ATTEMPT_S = 0.05


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
    while True:
        ticket = object()
        try:
            while paced and (wait := core.limiter.acquire(ticket)) > 0:
                if deadline_at is not None and time.monotonic() + wait > deadline_at:
                    # Without rpm= the wait is the server's Retry-After pause, not a pace.
                    rpm = core.limiter.rpm
                    limit = f"the rate limit (rpm={rpm:g})" if rpm else "the server's Retry-After"
                    raise APITimeoutError(
                        f"{limit} leaves no free slot before the call's deadline= "
                        f"({wait:.3g} s to wait); nothing was sent"
                    )
                if request.billable:
                    check_halted(core)  # an interrupted run waits for no slot
                yield Sleep(wait, stoppable=request.billable)
            timeout = core.timeout
            if deadline_at is not None:
                timeout = min(timeout, deadline_at - time.monotonic())
                if timeout <= 0:
                    raise APITimeoutError(
                        f"the call's deadline= passed before attempt {retries + 1} was sent"
                    )
            if request.billable:
                check_halted(core)  # an interrupted run's calls send no further paid attempt
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
                    reply, request.url, timeout=timeout, billable=request.billable
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
            delay = core.retry.delay(err, retries)
            # Every scope's breaker counts the failure (a list, not any(): no short cut).
            if any([s.give_up(err, retries + 1) for s in scopes_of(core) if s.give_up]):
                delay = None  # the run's breaker has tripped: this call ends now
            # A retry is sent only with time for a round trip like the last one (at least
            # MIN_ATTEMPT_S): sent with a few ms left it could only time out, hiding the real
            # error (a 500) behind a "may have been billed" timeout. Polls (unpaced) keep the
            # edge: wait() reports a poll cut short as "call wait() again".
            headroom = max(MIN_ATTEMPT_S, latency) if paced else 0.0
            if delay is None or (
                deadline_at is not None and time.monotonic() + delay + headroom >= deadline_at
            ):
                if isinstance(err, APIStatusError):
                    err.add_outcome(_outcome(core.retry, err, retries, cut=delay is not None))
                raise
            retries += 1
            if delay > 0:
                yield Sleep(delay, stoppable=request.billable)
            continue
        if paced:
            core.limiter.on_success()
        core._report(call_id, retries + 1, status, None, latency, credits, started)
        if isinstance(result, dict) and "credits_remaining" in result:
            result["credits_remaining"] = credits
        return result, retries + 1


def _outcome(policy: RetryPolicy, err: APIStatusError, retries: int, *, cut: bool) -> str:
    """What the loop did about the error it is about to raise, for its message."""
    sent = "sent once" if retries == 0 else f"sent {retries + 1} times"
    if cut:
        return f"{sent}; not retried again: the wait would pass the call's deadline="
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
