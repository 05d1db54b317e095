"""What ``Client`` and ``AsyncClient`` share, so the two can never drift: configuration, request
building, response parsing, credit bookkeeping, and the retry loop itself.

The retry loop is written once, as a generator ("sans-IO"): it yields ``Request`` (send this, then
send me back the ``httpx.Response`` or the ``httpx.HTTPError``) and ``Sleep`` (wait this long), and
returns the parsed result or raises a llamakit error. ``Client`` drives it with ``httpx.Client`` and
``time.sleep``, ``AsyncClient`` with ``httpx.AsyncClient`` and ``asyncio.sleep``.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import re
import threading
import time
import uuid
from collections.abc import Callable, Generator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, TypeVar
from urllib.parse import urlsplit

import httpx

from ._defaults import (
    DEFAULT_BASE_URL,
    DEFAULT_CONNECT_TIMEOUT,
    ENV_API_KEY,
    ENV_BASE_URL,
)
from ._parse import (
    credit_amount,
    error_message,
    json_or_none,
    parse_chat,
    parse_credits,
    parse_retry_after,
    partial_response,
    request_id,
    transport_error,
)
from ._ratelimit import AdaptiveRate, RateLimiter
from ._retry import RetryPolicy
from ._secrets import install_log_filter, redact, register_secret
from .errors import (
    APIError,
    APIResponseError,
    APIStatusError,
    InsufficientCreditsError,
    RateLimitError,
    ValidationError,
    error_class_for_status,
)
from .messages import normalize_messages, validate_params
from .types import Attempt, ChatResponse

log = logging.getLogger("llamakit.client")
T = TypeVar("T")

CREDITS_HEADER = "x-remaining-credits"
_SLUG = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


@dataclass(frozen=True)
class Request:
    method: str
    url: str
    json: dict[str, Any] | None = None


@dataclass(frozen=True)
class Sleep:
    seconds: float


Plan = Generator["Request | Sleep", Any, T]


class Core:
    """Configuration and state of one client; every method here is IO-free."""

    def __init__(
        self,
        api_key: str | None,
        *,
        model: str,
        base_url: str | None,
        timeout: float,
        max_retries: int,
        rpm: float | None,
        adaptive: bool | AdaptiveRate,
        check_context: bool,
        on_attempt: Callable[[Attempt], None] | None,
        retry_policy: RetryPolicy | None,
        source: str | None = None,
    ) -> None:
        # Explicit argument beats environment beats default; read now, never at import.
        key = api_key if api_key is not None else os.environ.get(ENV_API_KEY) or None
        if key is not None and (
            not isinstance(key, str) or not key or any(c.isspace() or ord(c) < 32 for c in key)
        ):
            # The text deliberately does not quote the value: it is a secret.
            raise ValidationError(
                "api_key must be a non-empty string without spaces", field="api_key"
            )
        self.api_key = key
        if key:
            register_secret(key)
        install_log_filter()

        base = (base_url or os.environ.get(ENV_BASE_URL) or DEFAULT_BASE_URL).rstrip("/")
        parts = urlsplit(base)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValidationError(
                f"base_url must be an http(s) URL like {DEFAULT_BASE_URL}, not {base!r}",
                field="base_url",
            )
        self.base_url = base
        self.is_local = _is_loopback(parts.hostname)
        if source is not None and (not isinstance(source, str) or not source.strip()):
            raise ValidationError("source must be a non-empty string", field="source")
        self.source = source or base
        if not isinstance(model, str) or not _SLUG.match(model):
            raise ValidationError(
                f"model must be a slug like 'llama-v3-8b-instruct', not {model!r}", field="model"
            )
        self.model = model
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
            raise ValidationError("timeout must be a positive number of seconds", field="timeout")
        self.timeout = httpx.Timeout(timeout, connect=min(DEFAULT_CONNECT_TIMEOUT, timeout))
        if retry_policy is None:
            if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
                raise ValidationError("max_retries must be an integer >= 0", field="max_retries")
            retry_policy = RetryPolicy(max_retries=max_retries)
        self.retry = retry_policy
        if rpm is not None and (
            isinstance(rpm, bool) or not isinstance(rpm, (int, float)) or rpm <= 0
        ):
            raise ValidationError(
                "rpm must be a positive number of requests per minute", field="rpm"
            )
        if adaptive is True:
            # With rpm given, it is both where adaptive mode starts and its ceiling (your plan's limit).
            adaptive = AdaptiveRate(start=rpm, max=rpm) if rpm else AdaptiveRate()
        self.limiter = RateLimiter(rpm, adaptive=adaptive or None)
        self.check_context = check_context
        self.on_attempt = on_attempt

        self._lock = threading.Lock()
        self.credits_start: Decimal | None = None
        self.credits_last: Decimal | None = None
        self.start_checked = False

    # ---- configuration -------------------------------------------------------------------

    def headers(self) -> dict[str, str]:
        from . import __version__

        headers = {"User-Agent": f"llamakit/{__version__}", "Accept": "application/json"}
        if self.api_key:
            headers["x-api-key"] = self.api_key
        return headers

    def describe(self, cls: str) -> str:
        key = "None" if not self.api_key else repr(self.api_key[:3] + "****")
        return f"{cls}(model={self.model!r}, base_url={self.base_url!r}, api_key={key})"

    @property
    def spent(self) -> Decimal | None:
        if self.credits_start is None or self.credits_last is None:
            return None
        return self.credits_start - self.credits_last

    # ---- plans -----------------------------------------------------------------------------

    def prepare_chat(self, messages: Any, params: dict[str, Any]) -> dict[str, Any]:
        """Validate everything and build the body; raises ValidationError before any HTTP."""
        self._require_key()
        wire = normalize_messages(messages)
        body: dict[str, Any] = {"messages": wire, **validate_params(params)}
        if self.check_context:
            _preflight(wire, body.get("max_tokens"))
        return body

    def chat_plan(self, body: dict[str, Any]) -> Plan[ChatResponse]:
        call_id = uuid.uuid4().hex
        started = time.time()
        request = Request("POST", f"{self.base_url}/{self.model}", body)
        fields, attempts = yield from self._attempts(request, parse_chat, call_id)
        return ChatResponse(
            **fields,
            attempts=attempts,
            started_at=started,
            finished_at=time.time(),
            call_id=call_id,
        )

    def credits_plan(self) -> Plan[Decimal]:
        self._require_key()
        request = Request("GET", f"{self.base_url}/get-user-credits")
        # Not paced: the balance endpoint is free and not an inference call, and pacing it would
        # cost a whole slot at a 5-rpm plan before the first chat.
        value, _ = yield from self._attempts(request, parse_credits, None, paced=False)
        with self._lock:
            if self.credits_start is None:
                self.credits_start = value
            # The balance endpoint is the truth: it also resets the running minimum (a top-up).
            self.credits_last = value
            self.start_checked = True
        return value

    def _require_key(self) -> None:
        if not self.api_key:
            raise ValidationError(
                f"no API key: pass api_key=... or set the {ENV_API_KEY} environment variable "
                "(or call llamakit.connect() to use a local server)",
                field="api_key",
            )

    def _attempts(
        self,
        request: Request,
        parse: Callable[[httpx.Response], T],
        call_id: str | None,
        *,
        paced: bool = True,
    ) -> Generator[Request | Sleep, Any, tuple[T, int]]:
        retries = 0
        while True:
            while paced:
                wait, epoch = self.limiter.reserve()
                if wait > 0:
                    yield Sleep(wait)
                if not self.limiter.current(epoch):
                    continue  # a 429 voided the booking: book again
                while (gap := self.limiter.confirm()) > 0:
                    yield Sleep(gap)
                break
            started = time.time()
            clock = time.perf_counter()
            reply = yield request
            latency = time.perf_counter() - clock
            status: int | None = None
            credits: Decimal | None = None
            try:
                if isinstance(reply, httpx.HTTPError):
                    raise transport_error(reply, request.url) from reply
                assert isinstance(reply, httpx.Response), reply
                status = reply.status_code
                if status >= 300:
                    credits = self._observe_credits(reply, strict=False)
                    raise self._status_error(reply)
                result = parse(reply)
                if isinstance(result, dict) and "latency_s" in result:  # a chat reply
                    result["latency_s"] = latency
                credits = self._observe_credits(reply, strict=True, parsed=result)
            except APIError as err:
                self._report(call_id, retries + 1, status, err, latency, credits, started)
                if isinstance(err, RateLimitError) and paced:
                    self.limiter.on_rate_limited(err.retry_after)
                delay = self.retry.delay(err, retries)
                if delay is None:
                    raise
                retries += 1
                if delay > 0:
                    yield Sleep(delay)
                continue
            if paced:
                self.limiter.on_success()
            self._report(call_id, retries + 1, status, None, latency, credits, started)
            if isinstance(result, dict) and "credits_remaining" in result:
                result["credits_remaining"] = credits
            return result, retries + 1

    # ---- bookkeeping -----------------------------------------------------------------------

    def _report(
        self,
        call_id: str | None,
        attempt: int,
        status: int | None,
        err: APIError | None,
        latency: float,
        credits: Decimal | None,
        started: float,
    ) -> None:
        if call_id is None or self.on_attempt is None:
            return
        record = Attempt(
            call_id=call_id,
            attempt=attempt,
            status=status,
            error=None if err is None else type(err).__name__,
            message=None if err is None else str(err),
            latency_s=latency,
            credits_remaining=credits,
            started_at=started,
            finished_at=started + latency,
        )
        try:
            self.on_attempt(record)
        except Exception:
            # A failing logger must not turn a paid, successful call into an error.
            log.exception("on_attempt callback raised; the call itself continues")

    def _observe_credits(
        self, resp: httpx.Response, *, strict: bool, parsed: Any = None
    ) -> Decimal | None:
        raw = resp.headers.get(CREDITS_HEADER)
        if raw is None:
            return None
        try:
            value = credit_amount(raw)
        except ValueError:
            if not strict:
                return None
            err = APIResponseError(
                f"the {CREDITS_HEADER} header is not a number ({redact(raw[:40])!r}); the call "
                "succeeded and was billed: its reply is in this error's .response",
                request_id=request_id(resp, None),
            )
            err.response = partial_response(parsed)  # type: ignore[attr-defined]
            raise err from None
        with self._lock:
            # Concurrent replies arrive out of order; balances only fall, so the lowest is newest.
            if self.credits_last is None or value < self.credits_last:
                self.credits_last = value
        return value

    def _status_error(self, resp: httpx.Response) -> APIStatusError:
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
                message, balance=self.credits_last, status=status, request_id=rid
            )
        return cls(message, status=status, request_id=rid)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _preflight(messages: list[dict[str, str]], max_tokens: int | None) -> None:
    """The token-count check of llamakit.tokens, when that module is installed."""
    try:
        from . import tokens
    except ImportError:
        return
    tokens.preflight(messages, max_tokens)
