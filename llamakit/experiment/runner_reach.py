"""Fail fast when the API cannot be reached: a run-wide breaker on connection failures.

Without it, a run with no network retries every cell ``max_retries`` times (144 cells took four
minutes to report ``0/144``). The breaker counts *connection* failures (the TCP connection or the
DNS lookup failed, so nothing was sent and nothing can have been billed) across all of the run's
calls, and any HTTP answer, even an error status, resets the count:

- before anything has answered in this session, ``after`` failures in a row stop the run;
- once something has answered (a server restart, a network blip), the failures must also have
  lasted ``grace_s`` seconds, so the ordinary retries ride out a short outage.

Tripped, it makes the client's retry policy give up at once on every call in flight, and the runner
ends the run with one ``APIUnreachableError``. Nothing finished is lost: a rerun resumes.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Awaitable, Callable, Collection, Sequence
from typing import Any
from urllib.parse import urlsplit

import httpx

from .._defaults import DEFAULT_OUTAGE_GRACE_S, DEFAULT_UNREACHABLE_AFTER
from ..client import scope
from ..client.secrets import redact
from ..errors import APIConnectionError, APIStatusError, APIUnreachableError, ValidationError

# Failures that prove the request never reached the server (never billed, never half-sent).
_NOT_CONNECTED = (httpx.ConnectError, httpx.ConnectTimeout, httpx.ProxyError)


# Connections the server took and then closed (or reset) before any status line.
_DROPPED = (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError)


def is_connect_failure(error: BaseException) -> bool:
    """True when ``error`` is a llamakit connection error whose request never left this machine."""
    return isinstance(error, APIConnectionError) and isinstance(error.__cause__, _NOT_CONNECTED)


def is_dropped_before_status(error: BaseException) -> bool:
    """True when the server accepted the connection and dropped it without a status line (a port
    that accepts and closes, a proxy with nothing behind it). Such a request may have been
    read, so it trips the breaker only when one call has met it on ``after`` attempts in a row
    and nothing has answered in this session: a live but flaky server answers some call first."""
    return (
        isinstance(error, APIConnectionError)
        and not isinstance(error, APIStatusError)
        and isinstance(error.__cause__, _DROPPED)
    )


class Reachability:
    """The breaker of one runner session; thread-safe (sync clients run on a thread pool)."""

    def __init__(
        self,
        *,
        after: int = DEFAULT_UNREACHABLE_AFTER,
        grace_s: float = DEFAULT_OUTAGE_GRACE_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.after = after
        self.grace_s = grace_s
        self._clock = clock
        self._lock = threading.Lock()
        self._failures = 0
        self._since: float | None = None
        self._answered = False
        self._last: BaseException | None = None
        self._seen: BaseException | None = None
        self.tripped = False

    def answered(self) -> None:
        """Something reached the server (any HTTP status): it is reachable."""
        with self._lock:
            self._answered = True
            self._failures = 0
            self._since = None

    def observe(self, error: BaseException, attempt: int | None = None) -> bool:
        """Count one failed attempt (``attempt``: how many times this call has failed so far,
        when known); returns True when the run must stop (now or before)."""
        with self._lock:
            if error is self._seen:  # the policy saw this attempt; the runner sees it again
                return self.tripped
            self._seen = error
            if isinstance(error, APIStatusError):
                self._answered, self._failures, self._since = True, 0, None
            elif (
                attempt is not None
                and attempt >= self.after
                and not self._answered
                and is_dropped_before_status(error)
            ):
                self._failures, self._last, self.tripped = attempt, error, True
            elif is_connect_failure(error):
                now = self._clock()
                self._failures += 1
                self._since = now if self._since is None else self._since
                self._last = error
                lasted = now - self._since
                if self._failures >= self.after and (not self._answered or lasted >= self.grace_s):
                    self.tripped = True
            return self.tripped

    def error(self, base_url: str | None) -> APIUnreachableError:
        host = urlsplit(base_url).netloc if base_url else "the API"
        last = None if self._last is None else self._last.__cause__
        cause = "" if last is None else f" (last: {type(last).__name__}: {redact(str(last))[:200]})"
        after = "" if not self._answered else f" for {self.grace_s:g}s"
        err = APIUnreachableError(
            f"{host} is unreachable: {self._failures} connection attempts in a row failed"
            f"{after}{cause}, so the run stopped instead of retrying every cell. Check the "
            "network and base_url (SEGMIND_BASE_URL), then rerun: finished cells are kept"
        )
        err.__cause__ = self._last
        return err


def hook_breaker(client: Any, breaker: Reachability) -> Callable[[], None]:
    """Give up retrying this run's calls of ``client`` once ``breaker`` has tripped; returns the
    undo, to be called in the same context.

    For llamakit's clients the breaker joins the run's scope (``llamakit.client.scope``): it
    sees only this run's calls, however many runs share the client. Another client keeps its
    own retries, and the runner still counts the failures that reach it.
    """
    core = getattr(client, "_core", None)
    if core is None or not hasattr(core, "retry"):
        return lambda: None
    return scope.enter(scope.RunScope(core, give_up=breaker.observe))


async def check_served(
    call: Callable[..., Awaitable[Any]], client: Any, slugs: Sequence[str], needed: Collection[str]
) -> None:
    """Before any credit is spent: ValidationError naming a slug among ``slugs`` that cells
    still to send need (``needed``: their models) and the client's API does not serve (a free
    probe per slug, see ``Client.has_model``). A client without ``has_model`` is not probed."""
    probe = getattr(client, "has_model", None)
    if probe is None or not slugs:
        return
    for slug in (m for m in slugs if m in needed):
        if not await call(probe, slug):
            where = getattr(client, "base_url", "the client's API")
            raise ValidationError(
                f"model {slug!r} is not served at {where} (404); check the slug's spelling, "
                "or drop it from models=",
                field="models",
            )
