"""What ``Client`` and ``AsyncClient`` share, so the two can never drift: configuration, request
building, response parsing and credit bookkeeping. The retry loop they both drive (sans-IO, a
generator of ``Request`` and ``Sleep``) is in ``attempt``; ``Client`` drives it with
``httpx.Client`` and ``time.sleep``, ``AsyncClient`` with ``httpx.AsyncClient`` and
``asyncio.sleep``, both through ``transport``.
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import os
import re
import threading
import time
import uuid
import warnings
from collections.abc import Callable, Generator
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

import httpx

from .._defaults import (
    DEFAULT_BASE_URL,
    DEFAULT_MAX_RESPONSE_BYTES,
    DEFAULT_RPM_WINDOW_S,
    ENV_API_KEY,
    ENV_BASE_URL,
)
from ..errors import (
    APIError,
    APIResponseError,
    MethodNotAllowedError,
    NotFoundError,
    ValidationError,
)
from .attempt import attempts
from .closing import Gate
from .headers import parse_credits_header
from .messages import normalize_messages, validate_params
from .origin import Origin, display_url
from .parse import parse_chat, parse_credits
from .plan import Plan, Request, Sleep, T
from .ratelimit import AdaptiveRate, RateLimiter
from .retry import RetryPolicy
from .scope import scopes_of
from .secrets import install_log_filter, redact, register_secret, register_url_password
from .types import Attempt, ChatResponse

log = logging.getLogger("llamakit.client")

CREDITS_HEADER = "x-remaining-credits"
_SLUG = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def check_slug(model: object) -> str:
    """``model`` if it is a model slug (one URL path segment); ValidationError otherwise."""
    if not isinstance(model, str) or not _SLUG.match(model):
        raise ValidationError(
            f"model must be a slug like 'llama-v3-8b-instruct', not {model!r}", field="model"
        )
    return model


def _no_body(response: httpx.Response) -> None:
    return None


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
        deadline: float | None = None,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        rpm_window_s: float = DEFAULT_RPM_WINDOW_S,
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
        if key is not None and not all(33 <= ord(c) < 127 for c in key):
            # An HTTP header carries ASCII only; a pasted key often brings smart quotes or
            # lookalike letters with it. Neither the key nor the offending character is shown.
            raise ValidationError(
                "api_key contains a character that is not plain ASCII (often quotes or a "
                "lookalike letter picked up by a copy-paste); copy the key again from the "
                "provider's dashboard, without quotes around it",
                field="api_key",
            )
        self.api_key = key
        if key:
            register_secret(key)
        install_log_filter()

        base = (base_url or os.environ.get(ENV_BASE_URL) or DEFAULT_BASE_URL).rstrip("/")
        try:
            parts = urlsplit(base)
            ok = parts.scheme in ("http", "https") and bool(parts.hostname) and parts.port != -1
        except ValueError:  # an unparsable port or host
            ok = False
        if not ok:
            raise ValidationError(
                f"base_url must be an http(s) URL like {DEFAULT_BASE_URL}, not "
                f"{redact(display_url(base))!r}",
                field="base_url",
            )
        if "?" in base or "#" in base:
            # A query or fragment would be glued before each request's path (wrong route), and
            # is where a pasted token lives: it is refused, and not quoted back.
            raise ValidationError(
                "base_url must not have a query string or fragment ('?...' or '#...'): pass the "
                f"plain API root like {DEFAULT_BASE_URL} as base_url (or {ENV_BASE_URL}) and "
                "the key as api_key= (or " + ENV_API_KEY + ")",
                field="base_url",
            )
        if parts.password:
            register_url_password(parts.password)
        # The URL requests go to keeps its credentials; every shown or stored form drops them.
        self._url = base
        self.base_url = display_url(base)
        self.origin = Origin.of(base)
        self.is_local = _is_loopback(parts.hostname or "")
        # A balance is one key's at one server (``credits.account_of``). Every loopback name of
        # a port (localhost, 127.0.0.1, ::1) is one server: a judge sent to localhost and a run
        # to 127.0.0.1 with one key pay from one balance, which two accounts counted twice.
        digest = hashlib.sha256((key or "").encode()).hexdigest()[:16]
        host = "loopback" if self.is_local else self.origin.host.lower()
        self.account = f"{self.origin.scheme}://{host}:{self.origin.port}#{digest}"
        if source is not None and (not isinstance(source, str) or not source.strip()):
            raise ValidationError("source must be a non-empty string", field="source")
        self.source = redact(source) if source else self.base_url
        check_slug(model)
        self.model = model
        self.timeout = _seconds(timeout, "timeout")
        self.deadline = None if deadline is None else _seconds(deadline, "deadline")
        if (
            isinstance(max_response_bytes, bool)
            or not isinstance(max_response_bytes, int)
            or max_response_bytes < 1
        ):
            raise ValidationError(
                "max_response_bytes must be a positive integer (bytes)", field="max_response_bytes"
            )
        self.max_response_bytes = max_response_bytes
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
        window = _seconds(rpm_window_s, "rpm_window_s")
        self.limiter = RateLimiter(rpm, adaptive=adaptive or None, window_s=window)
        self.check_context = check_context
        self.on_attempt = on_attempt

        self._lock = threading.Lock()
        self.credits_start: Decimal | None = None
        self.credits_last: Decimal | None = None
        self.start_checked = False
        self.gate = Gate()  # every request passes it as it is sent; close() shuts it

    # ---- configuration -------------------------------------------------------------------

    def headers(self) -> dict[str, str]:
        """Headers of every request; the key is not among them (see ``_authorize``)."""
        from .. import __version__

        return {"User-Agent": f"llamakit/{__version__}", "Accept": "application/json"}

    def describe(self, cls: str) -> str:
        """The repr; never raises, also on a half-built client (a repr in a traceback must not
        replace the error being shown)."""
        try:
            key = getattr(self, "api_key", None)
            shown = "None" if not key else repr(key[:3] + "****")
            model = getattr(self, "model", "?")
            base = getattr(self, "base_url", "?")
            return f"{cls}(model={model!r}, base_url={redact(str(base))!r}, api_key={shown})"
        except Exception:
            return f"{cls}(<not fully built>)"

    def _authorize(self, request: Request, timeout: float) -> Request:
        """The request with the key attached, if its URL has base_url's origin; else the
        APIResponseError that refuses to send it (a reply naming another host must not get the
        key). Every request of every plan passes through here."""
        target = Origin.of(request.url)
        if target != self.origin:
            raise APIResponseError(
                f"refusing to send the API key to {target} (from a server reply): llamakit sends "
                f"requests only to base_url's origin {self.origin}. If that server is really "
                "yours, use it as base_url"
            )
        headers = {"x-api-key": self.api_key} if self.api_key else {}
        # Built directly: dataclasses.replace inspects the fields on every attempt.
        return Request(
            request.method, request.url, request.json, request.billable, headers, timeout
        )

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

    def url(self, path: str) -> str:
        """``base_url`` + ``path``, with the credentials base_url may carry."""
        return f"{self._url}/{path}"

    def deadline_at(self, deadline: float | None) -> float | None:
        """Monotonic time by which a call must be over: per-call ``deadline`` else the client's."""
        seconds = self.deadline if deadline is None else _seconds(deadline, "deadline")
        return None if seconds is None else time.monotonic() + seconds

    def slug(self, model: str | None) -> str:
        """The slug a call goes to: ``model`` (checked) or the client's own. One client serves
        every sibling slug (same key, same base URL); only the last path segment differs."""
        if model is None:
            return self.model
        check_slug(model)
        return model

    def chat_plan(
        self, body: dict[str, Any], deadline_at: float | None = None, model: str | None = None
    ) -> Plan[ChatResponse]:
        call_id = uuid.uuid4().hex
        started = time.time()
        request = Request("POST", self.url(self.slug(model)), body, billable=True)
        fields, attempts = yield from self._attempts(
            request, parse_chat, call_id, deadline_at=deadline_at
        )
        return ChatResponse(
            **fields,
            attempts=attempts,
            started_at=started,
            finished_at=time.time(),
            call_id=call_id,
        )

    def model_probe_plan(self, model: str) -> Plan[bool]:
        """Whether ``model`` is served here, asked for free: ``GET /v1/{slug}`` is 405 on a known
        endpoint and 404 on an unknown one (CONTRACT §4.3 check order; neither is billed)."""
        self._require_key()
        request = Request("GET", self.url(self.slug(model)))
        try:
            yield from self._attempts(request, _no_body, None, paced=False)
        except NotFoundError:
            return False
        except MethodNotAllowedError:
            return True
        return True

    def credits_plan(self, deadline_at: float | None = None) -> Plan[Decimal]:
        """The balance; ``deadline_at`` bounds it when it is read as part of a call."""
        self._require_key()
        request = Request("GET", self.url("get-user-credits"))
        # Not paced: the balance endpoint is free and not an inference call, and pacing it would
        # cost a whole slot at a 5-rpm plan before the first chat.
        value, _ = yield from self._attempts(
            request, parse_credits, None, paced=False, deadline_at=deadline_at
        )
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
        deadline_at: float | None = None,
    ) -> Generator[Request | Sleep, Any, tuple[T, int]]:
        """The retry loop of every request (see ``_attempt.attempts``)."""
        return attempts(self, request, parse, call_id, paced=paced, deadline_at=deadline_at)

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
        candidates = (self.on_attempt, *(s.on_attempt for s in scopes_of(self)))
        observers = [fn for fn in candidates if fn is not None]
        if call_id is None or not observers:
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
        for observe in observers:
            try:
                observe(record)
            except Exception:
                # A failing logger must not turn a paid, successful call into an error.
                log.exception("on_attempt callback raised; the call itself continues")

    def _observe_credits(self, resp: httpx.Response, *, strict: bool) -> Decimal | None:
        """The balance an ``x-remaining-credits`` header states, or None. A malformed header
        on a 200 (``strict``) never costs the paid reply: the balance becomes unknown and a
        warning says why; on an error status it is ignored."""
        raw = resp.headers.get(CREDITS_HEADER)
        if raw is None:
            return None
        value, why = parse_credits_header(raw)
        if value is None:
            if strict:
                reason = (
                    f"the {CREDITS_HEADER} header of a paid reply is malformed ({why}: "
                    f"{redact(raw)[:40]!r}); the reply is kept, the balance is unknown until the "
                    "next well-formed header or credits() call"
                )
                with self._lock:
                    self.credits_last = None
                warnings.warn(reason, RuntimeWarning, stacklevel=2)
            return None
        with self._lock:
            # Concurrent replies arrive out of order; balances only fall, so the lowest is newest.
            if self.credits_last is None or value < self.credits_last:
                self.credits_last = value
        return value


def _seconds(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1e9:
        raise ValidationError(f"{name} must be a positive number of seconds", field=name)
    return float(value)


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
        from .. import tokens
    except ImportError:
        return
    if not tokens.surely_fits(messages, max_tokens):  # most prompts: no tokenizer needed
        tokens.preflight(messages, max_tokens)
