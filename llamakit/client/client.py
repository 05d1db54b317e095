"""The llamakit client of Segmind's hosted API (or any server with the same contract).

``Client`` is sync (usable from a Jupyter cell: it never touches the event loop), ``AsyncClient``
is its async twin. Both drive the same plans from ``core``, so validation, retries, rate limits,
parsing and credit bookkeeping are one implementation; only the IO differs.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Any

import httpx

from .._defaults import (
    DEFAULT_DEADLINE,
    DEFAULT_MAX_RESPONSE_BYTES,
    DEFAULT_MAX_RETRIES,
    DEFAULT_MODEL,
    DEFAULT_RPM_WINDOW_S,
    DEFAULT_TIMEOUT,
)
from ..errors import APIError
from .closing import CLOSE_GRACE_S
from .core import Core
from .plan import Plan, Sleep, T
from .pools import PerLoop
from .ratelimit import AdaptiveRate
from .retry import RetryPolicy
from .scope import apause, pause
from .transport import async_transport, send_async, send_sync, sync_transport
from .types import Attempt, ChatResponse, Job
from .v2 import DEFAULT_POLL_INTERVAL, DEFAULT_WAIT_TIMEOUT, submit_plan, wait_plan

log = logging.getLogger("llamakit.client")


class _Base:
    """Read-only views of the shared core, identical for both clients."""

    _core: Core

    @property
    def model(self) -> str:
        return self._core.model

    @property
    def base_url(self) -> str:
        """The API root, ending in ``/v1``; chat goes to ``{base_url}/{model}``."""
        return self._core.base_url

    @property
    def is_local(self) -> bool:
        """True when the server is on this machine (a loopback host)."""
        return self._core.is_local

    @property
    def source(self) -> str:
        """Who answers this client's calls: part of every cache key and run fingerprint, so the
        replies of one server (the local stand-in, another base URL) are never reused as
        another's. The base URL by default; a local server's handle names its backend instead."""
        return self._core.source

    @property
    def account(self) -> str:
        """Who pays for this client's calls: its origin (every loopback name of a port counted
        as one) and a digest of its key (never the key), so two clients bill the same balance
        exactly when their accounts are equal."""
        return self._core.account

    @property
    def credits_start(self) -> Decimal | None:
        """Balance before this client's first call (fetched once from the free balance endpoint)."""
        return self._core.credits_start

    @property
    def credits_last(self) -> Decimal | None:
        """Newest balance seen: the lowest ``x-remaining-credits`` since the last ``credits()``."""
        return self._core.credits_last

    @property
    def spent(self) -> Decimal | None:
        """Credits spent through this client: ``credits_start - credits_last`` (None if unknown).

        Exact when nobody else spends on (or tops up) the same key meanwhile.
        """
        return self._core.spent

    @property
    def on_attempt(self) -> Callable[[Attempt], None] | None:
        """Called once per HTTP attempt with an ``Attempt``; settable (a runner chains onto it)."""
        return self._core.on_attempt

    @on_attempt.setter
    def on_attempt(self, fn: Callable[[Attempt], None] | None) -> None:
        self._core.on_attempt = fn

    @property
    def rpm(self) -> float | None:
        """The request rate currently enforced (adaptive mode changes it), None when unpaced."""
        return self._core.limiter.rpm

    def __repr__(self) -> str:
        core: Core | None = self.__dict__.get("_core")  # absent on a half-built client
        if core is None:
            return f"{type(self).__name__}(<not fully built>)"
        return core.describe(type(self).__name__)


class Client(_Base):
    """Sync client. ``chat(messages, **params) -> ChatResponse`` (v1); ``submit()`` + ``wait()``
    (v2, submit and poll); ``credits() -> Decimal`` (exact); ``spent`` since the first call.

    The key comes from ``api_key``, else ``SEGMIND_API_KEY``; the URL from ``base_url``, else
    ``SEGMIND_BASE_URL``, else the hosted API; the key is sent only to that URL's origin.

    ``timeout`` (s) bounds each attempt as a whole: connect, send, headers and body. ``deadline``
    (s, also per call) bounds a call across all its retries. ``max_retries`` bounds retries of
    5xx, unsent requests, dropped connections and 429s; a paid request that timed out after it
    was sent is not retried (it may have been billed; see ``RetryPolicy``, which also sets the
    backoff). ``max_response_bytes`` caps a reply's size (APIResponseError beyond it).

    ``rpm`` keeps calls under that many per minute, counted over a sliding ``rpm_window_s``
    (bursts up to the window's allowance go out at once); ``adaptive=True`` (or an
    ``AdaptiveRate``) learns the limit from 429s instead. ``on_attempt`` is called once per
    HTTP attempt (retries included) with an ``Attempt``. ``check_context=False`` skips the
    pre-flight token count. ``transport`` replaces httpx's network transport (tests, proxies).
    ``source`` names who answers (see the ``source`` property); the base URL unless given.
    """

    def __init__(
        self,
        api_key: str | None = None,
        *,
        model: str = DEFAULT_MODEL,
        base_url: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        max_retries: int = DEFAULT_MAX_RETRIES,
        rpm: float | None = None,
        adaptive: bool | AdaptiveRate = False,
        check_context: bool = True,
        on_attempt: Callable[[Attempt], None] | None = None,
        retry_policy: RetryPolicy | None = None,
        transport: httpx.BaseTransport | None = None,
        source: str | None = None,
        deadline: float | None = DEFAULT_DEADLINE,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        rpm_window_s: float = DEFAULT_RPM_WINDOW_S,
    ) -> None:
        self._core = Core(
            api_key,
            model=model,
            base_url=base_url,
            timeout=timeout,
            max_retries=max_retries,
            rpm=rpm,
            adaptive=adaptive,
            check_context=check_context,
            on_attempt=on_attempt,
            retry_policy=retry_policy,
            source=source,
            deadline=deadline,
            max_response_bytes=max_response_bytes,
            rpm_window_s=rpm_window_s,
        )
        self._http = httpx.Client(
            headers=self._core.headers(),
            transport=transport or sync_transport(),
            follow_redirects=False,  # a redirect could carry the key to another origin
        )
        self._start_lock = threading.Lock()
        self._own_transport = transport is None
        self._twin: AsyncClient | None = None
        self._twin_lock = threading.Lock()

    def chat(
        self,
        messages: Any,
        *,
        deadline: float | None = None,
        model: str | None = None,
        **params: Any,
    ) -> ChatResponse:
        """One chat completion. ``messages``: a string, or a list of dicts / ``Message``.
        ``deadline`` (s) bounds this call across retries (default: the client's). ``model``
        sends this call to another slug on the same API (same key, same base URL)."""
        deadline_at = self._core.deadline_at(deadline)  # the clock starts now
        body = self._core.prepare_chat(messages, params)
        self._core.slug(model)  # a malformed slug fails before the balance request
        self._ensure_start_balance(deadline_at)
        return self._drive(self._core.chat_plan(body, deadline_at, model))

    def has_model(self, model: str) -> bool:
        """Whether this API serves ``model``, asked for free (no credit is spent)."""
        return self._drive(self._core.model_probe_plan(model))

    def credits(self) -> Decimal:
        """Current balance (credits + free credits, USD) from ``GET /v1/get-user-credits`` (free),
        as an exact ``Decimal`` of the figure the server sent."""
        return self._drive(self._core.credits_plan())

    def submit(
        self,
        messages: Any,
        *,
        deadline: float | None = None,
        model: str | None = None,
        **params: Any,
    ) -> Job:
        """Submit a chat on the v2 path (``POST /v2/{model}``); returns at once with a ``Job``."""
        deadline_at = self._core.deadline_at(deadline)  # the clock starts now
        body = self._core.prepare_chat(messages, params)
        self._core.slug(model)
        self._ensure_start_balance(deadline_at)
        return self._drive(submit_plan(self._core, body, deadline_at, model))

    def wait(
        self,
        job: Job,
        *,
        timeout: float = DEFAULT_WAIT_TIMEOUT,
        poll_interval: float = DEFAULT_POLL_INTERVAL,
    ) -> ChatResponse:
        """Poll a submitted ``Job`` until it completes; APITimeoutError after ``timeout`` s."""
        return self._drive(wait_plan(self._core, job, timeout, poll_interval))

    def _ensure_start_balance(self, deadline_at: float | None = None) -> None:
        # The first x-remaining-credits header arrives *after* the first call was billed, so the
        # starting balance is read from the (free) balance endpoint once, before any chat.
        if self._core.start_checked:
            return
        with self._start_lock:
            if not self._core.start_checked:
                try:
                    self._drive(self._core.credits_plan(deadline_at))
                except APIError as exc:
                    log.debug("could not read the starting balance (%s); spent stays None", exc)
                finally:
                    self._core.start_checked = True

    def _drive(self, plan: Plan[T]) -> T:
        reply: Any = None
        try:
            while True:
                try:
                    action = plan.send(reply)
                except StopIteration as done:
                    return done.value  # type: ignore[no-any-return]
                if isinstance(action, Sleep):
                    pause(self._core, action.seconds, stoppable=action.stoppable)
                    reply = None
                else:
                    with self._core.gate.sending():
                        reply = send_sync(self._http, action, self._core.max_response_bytes)
        finally:
            plan.close()  # an interrupted plan gives back its rate-limit slot now

    def _chat_on_loop(self) -> Callable[..., Awaitable[ChatResponse]] | None:
        """``chat`` as a coroutine for the running event loop, or None: for a run driving many
        calls at once, so that a call in flight needs no thread of its own (a thread per call,
        handing the GIL back and forth, cost a run ~1.5x the CPU per call of an async one). The
        calls go through the same core (key, rate limit, retries, balance, attempt log, close
        gate) and a connection pool of the same kind, on that loop. None when this client sends
        through a transport of the caller's (a sync transport cannot be driven from a loop) or
        when ``chat`` is not ``Client.chat`` (overridden or replaced: the caller's own code must
        run)."""
        if not self._own_transport or "chat" in vars(self) or type(self).chat is not _CLIENT_CHAT:
            return None
        with self._twin_lock:
            if self._twin is None:
                self._twin = AsyncClient._sharing(self._core)
        return self._twin.chat

    def close(self) -> None:
        """Close the client, from any thread or callback, also while calls are going: no new
        request is sent (those calls raise ``ClientClosedError``), requests already on the wire
        finish and their replies are returned, then the connections are closed. Called on the
        thread of a run's event loop (a progress subscriber), it does not wait for the calls
        that loop is sending for the run: they finish after it returns, and their connections
        close with the run's loop."""
        self._core.gate.close(self._core.timeout + CLOSE_GRACE_S)
        self._http.close()
        if self._twin is not None:  # the pools runs opened on their loops (_chat_on_loop)
            wait_s = self._core.timeout + CLOSE_GRACE_S
            self._twin._loops.close_all_soon(lambda: self._core.gate.aclose(wait_s))

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncClient(_Base):
    """Async twin of ``Client``: same arguments, ``await chat(...)``, ``await credits()``."""

    def __init__(
        self,
        api_key: str | None = None,
        *,
        model: str = DEFAULT_MODEL,
        base_url: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        max_retries: int = DEFAULT_MAX_RETRIES,
        rpm: float | None = None,
        adaptive: bool | AdaptiveRate = False,
        check_context: bool = True,
        on_attempt: Callable[[Attempt], None] | None = None,
        retry_policy: RetryPolicy | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        source: str | None = None,
        deadline: float | None = DEFAULT_DEADLINE,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        rpm_window_s: float = DEFAULT_RPM_WINDOW_S,
    ) -> None:
        self._core = Core(
            api_key,
            model=model,
            base_url=base_url,
            timeout=timeout,
            max_retries=max_retries,
            rpm=rpm,
            adaptive=adaptive,
            check_context=check_context,
            on_attempt=on_attempt,
            retry_policy=retry_policy,
            source=source,
            deadline=deadline,
            max_response_bytes=max_response_bytes,
            rpm_window_s=rpm_window_s,
        )
        self._transport = transport
        self._loops = PerLoop(self._new_http)

    @classmethod
    def _sharing(cls, core: Core) -> AsyncClient:
        """An AsyncClient on ``core``, a sync ``Client``'s (see ``Client._chat_on_loop``)."""
        twin = cls.__new__(cls)
        twin._core = core
        twin._transport = None
        twin._loops = PerLoop(twin._new_http)
        return twin

    def _new_http(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            headers=self._core.headers(),
            transport=self._transport or async_transport(),
            follow_redirects=False,
        )

    async def chat(
        self,
        messages: Any,
        *,
        deadline: float | None = None,
        model: str | None = None,
        **params: Any,
    ) -> ChatResponse:
        deadline_at = self._core.deadline_at(deadline)  # the clock starts now
        body = self._core.prepare_chat(messages, params)
        self._core.slug(model)
        await self._ensure_start_balance(deadline_at)
        return await self._drive(self._core.chat_plan(body, deadline_at, model))

    async def has_model(self, model: str) -> bool:
        """Whether this API serves ``model``, asked for free (no credit is spent)."""
        return await self._drive(self._core.model_probe_plan(model))

    async def credits(self) -> Decimal:
        return await self._drive(self._core.credits_plan())

    async def submit(
        self,
        messages: Any,
        *,
        deadline: float | None = None,
        model: str | None = None,
        **params: Any,
    ) -> Job:
        deadline_at = self._core.deadline_at(deadline)  # the clock starts now
        body = self._core.prepare_chat(messages, params)
        self._core.slug(model)
        await self._ensure_start_balance(deadline_at)
        return await self._drive(submit_plan(self._core, body, deadline_at, model))

    async def wait(
        self,
        job: Job,
        *,
        timeout: float = DEFAULT_WAIT_TIMEOUT,
        poll_interval: float = DEFAULT_POLL_INTERVAL,
    ) -> ChatResponse:
        return await self._drive(wait_plan(self._core, job, timeout, poll_interval))

    async def _ensure_start_balance(self, deadline_at: float | None = None) -> None:
        if self._core.start_checked:
            return
        _, lock = await self._loops.get()
        async with lock:
            if not self._core.start_checked:
                try:
                    await self._drive(self._core.credits_plan(deadline_at))
                except APIError as exc:
                    log.debug("could not read the starting balance (%s); spent stays None", exc)
                finally:
                    self._core.start_checked = True

    async def _drive(self, plan: Plan[T]) -> T:
        self._core.gate.check()  # a closed client opens no new pool
        http, _ = await self._loops.get()
        reply: Any = None
        try:
            while True:
                try:
                    action = plan.send(reply)
                except StopIteration as done:
                    return done.value  # type: ignore[no-any-return]
                if isinstance(action, Sleep):
                    await apause(self._core, action.seconds, stoppable=action.stoppable)
                    reply = None
                else:
                    with self._core.gate.sending(on_loop=True):
                        reply = await send_async(http, action, self._core.max_response_bytes)
        finally:
            plan.close()

    async def close(self) -> None:
        """Close the client, also while other tasks use it: as ``Client.close``, no new request
        is sent and those on the wire finish first; then this event loop's connections are
        closed (those of loops already closed were closed when their loop shut down)."""
        await self._core.gate.aclose(self._core.timeout + CLOSE_GRACE_S)
        await self._loops.close_current()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


# Client.chat as defined here: a run drives it on its loop only if nobody replaced it.
_CLIENT_CHAT = Client.chat

__all__ = ["AdaptiveRate", "AsyncClient", "Client", "RetryPolicy"]
