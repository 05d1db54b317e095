"""The llamakit client of Segmind's hosted API (or any server with the same contract).

``Client`` is sync (usable from a Jupyter cell: it never touches the event loop), ``AsyncClient``
is its async twin. Both drive the same plans from ``_core``, so validation, retries, rate limits,
parsing and credit bookkeeping are one implementation; only the IO differs.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import httpx

from ._core import Core, Plan, Request, Sleep, T
from ._defaults import DEFAULT_MAX_RETRIES, DEFAULT_MODEL, DEFAULT_TIMEOUT
from ._ratelimit import AdaptiveRate
from ._retry import RetryPolicy
from ._v2 import DEFAULT_POLL_INTERVAL, DEFAULT_WAIT_TIMEOUT, submit_plan, wait_plan
from .errors import APIError
from .types import Attempt, ChatResponse, Job

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
        return self._core.describe(type(self).__name__)


class Client(_Base):
    """Sync client. ``chat(messages, **params) -> ChatResponse`` (v1); ``submit()`` + ``wait()``
    (v2, submit and poll); ``credits() -> Decimal`` (exact); ``spent`` since the first call.

    The key comes from ``api_key``, else ``SEGMIND_API_KEY``; the URL from ``base_url``, else
    ``SEGMIND_BASE_URL``, else the hosted API. ``max_retries`` bounds retries of 5xx, timeouts,
    dropped connections and 429s (``retry_policy`` sets the backoff too). ``rpm`` spaces requests so a limit of that many per minute is never hit; ``adaptive=True``
    (or an ``AdaptiveRate``) learns the limit from 429s instead. ``on_attempt`` is called once per
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
        )
        self._http = httpx.Client(
            headers=self._core.headers(), timeout=self._core.timeout, transport=transport
        )
        self._start_lock = threading.Lock()

    def chat(self, messages: Any, **params: Any) -> ChatResponse:
        """One chat completion. ``messages``: a string, or a list of dicts / ``Message``."""
        body = self._core.prepare_chat(messages, params)
        self._ensure_start_balance()
        return self._drive(self._core.chat_plan(body))

    def credits(self) -> Decimal:
        """Current balance (credits + free credits, USD) from ``GET /v1/get-user-credits`` (free),
        as an exact ``Decimal`` of the figure the server sent."""
        return self._drive(self._core.credits_plan())

    def submit(self, messages: Any, **params: Any) -> Job:
        """Submit a chat on the v2 path (``POST /v2/{model}``); returns at once with a ``Job``."""
        body = self._core.prepare_chat(messages, params)
        self._ensure_start_balance()
        return self._drive(submit_plan(self._core, body))

    def wait(
        self,
        job: Job,
        *,
        timeout: float = DEFAULT_WAIT_TIMEOUT,
        poll_interval: float = DEFAULT_POLL_INTERVAL,
    ) -> ChatResponse:
        """Poll a submitted ``Job`` until it completes; APITimeoutError after ``timeout`` s."""
        return self._drive(wait_plan(self._core, job, timeout, poll_interval))

    def _ensure_start_balance(self) -> None:
        # The first x-remaining-credits header arrives *after* the first call was billed, so the
        # starting balance is read from the (free) balance endpoint once, before any chat.
        if self._core.start_checked:
            return
        with self._start_lock:
            if not self._core.start_checked:
                try:
                    self.credits()
                except APIError as exc:
                    log.debug("could not read the starting balance (%s); spent stays None", exc)
                finally:
                    self._core.start_checked = True

    def _drive(self, plan: Plan[T]) -> T:
        reply: Any = None
        while True:
            try:
                action = plan.send(reply)
            except StopIteration as done:
                return done.value  # type: ignore[no-any-return]
            if isinstance(action, Sleep):
                time.sleep(action.seconds)
                reply = None
            else:
                reply = self._send(action)

    def _send(self, request: Request) -> httpx.Response | httpx.HTTPError:
        try:
            return self._http.request(request.method, request.url, json=request.json)
        except httpx.HTTPError as exc:
            return exc

    def close(self) -> None:
        self._http.close()

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
        )
        self._http = httpx.AsyncClient(
            headers=self._core.headers(), timeout=self._core.timeout, transport=transport
        )
        self._start_lock = asyncio.Lock()

    async def chat(self, messages: Any, **params: Any) -> ChatResponse:
        body = self._core.prepare_chat(messages, params)
        await self._ensure_start_balance()
        return await self._drive(self._core.chat_plan(body))

    async def credits(self) -> Decimal:
        return await self._drive(self._core.credits_plan())

    async def submit(self, messages: Any, **params: Any) -> Job:
        body = self._core.prepare_chat(messages, params)
        await self._ensure_start_balance()
        return await self._drive(submit_plan(self._core, body))

    async def wait(
        self,
        job: Job,
        *,
        timeout: float = DEFAULT_WAIT_TIMEOUT,
        poll_interval: float = DEFAULT_POLL_INTERVAL,
    ) -> ChatResponse:
        return await self._drive(wait_plan(self._core, job, timeout, poll_interval))

    async def _ensure_start_balance(self) -> None:
        if self._core.start_checked:
            return
        async with self._start_lock:
            if not self._core.start_checked:
                try:
                    await self.credits()
                except APIError as exc:
                    log.debug("could not read the starting balance (%s); spent stays None", exc)
                finally:
                    self._core.start_checked = True

    async def _drive(self, plan: Plan[T]) -> T:
        reply: Any = None
        while True:
            try:
                action = plan.send(reply)
            except StopIteration as done:
                return done.value  # type: ignore[no-any-return]
            if isinstance(action, Sleep):
                await asyncio.sleep(action.seconds)
                reply = None
            else:
                reply = await self._send(action)

    async def _send(self, request: Request) -> httpx.Response | httpx.HTTPError:
        try:
            return await self._http.request(request.method, request.url, json=request.json)
        except httpx.HTTPError as exc:
            return exc

    async def close(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


__all__ = ["AdaptiveRate", "AsyncClient", "Client", "RetryPolicy"]
