"""The retry policy: which failures are worth another attempt, and how long to wait first.

A pure decision (error, retries so far) -> seconds or None, so the sync and async clients share it
and tests check it without sleeping. 401/404/405/406/422 are final: retrying cannot fix them and
some (406) would only burn time. 500/502/503/504, connections that failed before the request was
sent, and connections the server dropped without answering are retried with jittered exponential
backoff; 429 waits what ``Retry-After`` asks, unless that exceeds the cap. A 200 whose body is
malformed is not retried: the server already billed it. Neither is a paid request that was fully
sent and then timed out (``may_be_billed``): the server may still run and bill it, so a resend
could pay twice. Free requests (the balance, v2 polls) are retried on any transport fault.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from .._defaults import DEFAULT_MAX_RETRIES, DEFAULT_MAX_RETRY_AFTER
from ..errors import APIConnectionError, APIError, RateLimitError, ServerError

RETRYABLE_STATUSES = frozenset({500, 502, 503, 504})


@dataclass(frozen=True)
class RetryPolicy:
    """``max_retries`` extra attempts after the first; backoff doubles from ``base_delay``.

    ``retry_maybe_billed=True`` also resends a paid request that timed out after it was fully
    sent: each such retry may be billed again (the v1 API has no idempotency key). Leave it off and
    use ``api="v2"`` (submit, journal, poll) when long calls must survive timeouts.
    """

    max_retries: int = DEFAULT_MAX_RETRIES
    base_delay: float = 0.5
    max_delay: float = 8.0
    max_retry_after: float = DEFAULT_MAX_RETRY_AFTER
    retry_maybe_billed: bool = False

    def __post_init__(self) -> None:
        if self.max_retries < 0 or self.base_delay < 0 or self.max_delay < 0:
            raise ValueError("RetryPolicy values must be >= 0")

    def delay(
        self, error: APIError, retries_done: int, rng: random.Random | None = None
    ) -> float | None:
        """Seconds to wait before retrying after ``error``, or None when it must be raised."""
        if retries_done >= self.max_retries or not self.retries(error):
            return None
        if isinstance(error, RateLimitError) and error.retry_after is not None:
            return error.retry_after
        return self.backoff(retries_done, rng)

    def retries(self, error: APIError) -> bool:
        """Whether this kind of failure is retried at all (``max_retries`` aside)."""
        if isinstance(error, RateLimitError):
            return error.retry_after is None or error.retry_after <= self.max_retry_after
        if isinstance(error, ServerError):
            return error.status in RETRYABLE_STATUSES
        if isinstance(error, APIConnectionError):  # includes APITimeoutError
            return not error.may_be_billed or self.retry_maybe_billed
        return False

    def backoff(self, retries_done: int, rng: random.Random | None = None) -> float:
        """Equal jitter: half the exponential step fixed, half random, so waits grow yet spread."""
        step = min(self.max_delay, self.base_delay * 2.0**retries_done)
        return step / 2 + (rng or random).uniform(0, step / 2)
