"""One HTTP attempt, bounded as a whole: in time (``timeout`` covers connect, send, headers and
body together) and in size (``max_response_bytes``).

httpx's timeouts bound each socket operation, not the attempt: a server that sends one byte every
half second never trips a 2 s read timeout. So the attempt's deadline lives in a context variable,
and a wrapper around httpcore's network backend clamps every connect, read and write to the time
left (raising httpcore's own ``ReadTimeout`` etc. once it is gone, which httpx maps to its
``ReadTimeout``). The phase that ran out is therefore still visible in the exception type, and the
retry policy needs it: a read timeout comes after the request was fully sent, so it may be billed.
Bodies are read in chunks, checked against the deadline and the size cap as they arrive, which
also bounds transports that are not sockets (``httpx.MockTransport`` in tests).

The same wrapper notes the status line as it arrives. A server can send ``HTTP/1.1 200 OK`` and
then close, or follow it with a head h11 refuses (a malformed line, a NUL, two content-lengths):
httpx then raises before any ``Response`` exists, yet the server said the call succeeded, so it
was probably billed. ``Failure.status`` carries that code, and the retry policy treats it like a
200 whose body was cut off (not resent). Headers are handed on as the bytes that arrived: a
non-ASCII byte in a header (``server: caf\xe9``) must not turn a paid reply into an encoding
error when the response is rebuilt.

The drivers in ``client.py`` call ``send_sync``/``send_async``; both return the finished
``httpx.Response`` or a ``Failure`` (never raise), for the IO-free plans of ``core``.
"""

from __future__ import annotations

import contextvars
import functools
import logging
import os
import re
import ssl
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpcore
import httpx

from .._defaults import DEFAULT_CONNECT_TIMEOUT
from .aio_network import AsyncioBackend
from .connection_pool import linear

if TYPE_CHECKING:
    from .plan import Request

# Monotonic time at which the current attempt must end; None outside an attempt.
_DEADLINE: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "llamakit_attempt_deadline", default=None
)
_HTTPX_LOG = logging.getLogger("httpx")
# A socket timeout of 0 would switch the socket to non-blocking mode (BlockingIOError, not a
# timeout), so the time left is never passed on as less than this.
_MIN_WAIT = 0.001
# The status code of a status line (RFC 9112 section 4); more than this many bytes without a line end
# is no status line.
_STATUS_LINE = re.compile(rb"HTTP/\d(?:\.\d)? +(\d{3})(?:[ \r\n]|$)")
_STATUS_LINE_MAX = 256


class _Head:
    """The first bytes of the current attempt's reply, until its status line is complete."""

    def __init__(self) -> None:
        self.buf = b""
        self.status: int | None = None
        self.done = False

    def note(self, data: bytes) -> None:
        if self.done:
            return
        self.buf += data[:_STATUS_LINE_MAX]
        # No data is the end of the stream: a code the server sent before closing still counts.
        if data and b"\n" not in self.buf and len(self.buf) < _STATUS_LINE_MAX:
            return
        self.done = True
        match = _STATUS_LINE.match(self.buf.split(b"\n", 1)[0])
        self.status = int(match.group(1)) if match else None


_HEAD: contextvars.ContextVar[_Head | None] = contextvars.ContextVar(
    "llamakit_attempt_head", default=None
)


def _seen(data: bytes) -> bytes:
    head = _HEAD.get()
    if head is not None:
        head.note(data)
    return data


class ResponseTooLarge(Exception):
    """The reply grew past ``max_response_bytes``; reading stopped there."""

    def __init__(self, limit: int, status: int) -> None:
        super().__init__(f"reply larger than {limit} bytes")
        self.limit = limit
        self.status = status


@dataclass(frozen=True)
class Failure:
    """An attempt that produced no complete response. ``status`` is the status line's code if one
    arrived before the failure, else None; ``head_complete`` says whether the headers after it
    arrived whole (then the body failed) or not (cut off or malformed)."""

    error: BaseException
    status: int | None = None
    head_complete: bool = False


def _left(kind: type[Exception], timeout: float | None) -> float | None:
    deadline = _DEADLINE.get()
    if deadline is None:
        return timeout
    left = deadline - time.monotonic()
    if left <= 0:
        raise kind("the attempt's time budget (timeout=) is used up")
    return max(_MIN_WAIT, left if timeout is None else min(timeout, left))


class _Stream(httpcore.NetworkStream):
    def __init__(self, inner: httpcore.NetworkStream) -> None:
        self._inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return _seen(self._inner.read(max_bytes, _left(httpcore.ReadTimeout, timeout)))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, _left(httpcore.WriteTimeout, timeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        inner = self._inner.start_tls(
            ssl_context, server_hostname, _left(httpcore.ConnectTimeout, timeout)
        )
        return _Stream(inner)

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _Backend(httpcore.NetworkBackend):
    def __init__(self, inner: httpcore.NetworkBackend) -> None:
        self._inner = inner

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        stream = self._inner.connect_tcp(
            host, port, _left(httpcore.ConnectTimeout, timeout), local_address, socket_options
        )
        return _Stream(stream)

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.NetworkStream:
        stream = self._inner.connect_unix_socket(
            path, _left(httpcore.ConnectTimeout, timeout), socket_options
        )
        return _Stream(stream)

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


class _AsyncStream(httpcore.AsyncNetworkStream):
    def __init__(self, inner: httpcore.AsyncNetworkStream) -> None:
        self._inner = inner

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return _seen(await self._inner.read(max_bytes, _left(httpcore.ReadTimeout, timeout)))

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        await self._inner.write(buffer, _left(httpcore.WriteTimeout, timeout))

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.AsyncNetworkStream:
        inner = await self._inner.start_tls(
            ssl_context, server_hostname, _left(httpcore.ConnectTimeout, timeout)
        )
        return _AsyncStream(inner)

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _AsyncBackend(httpcore.AsyncNetworkBackend):
    def __init__(self, inner: httpcore.AsyncNetworkBackend) -> None:
        self._inner = inner

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        stream = await self._inner.connect_tcp(
            host, port, _left(httpcore.ConnectTimeout, timeout), local_address, socket_options
        )
        return _AsyncStream(stream)

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.AsyncNetworkStream:
        stream = await self._inner.connect_unix_socket(
            path, _left(httpcore.ConnectTimeout, timeout), socket_options
        )
        return _AsyncStream(stream)

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


# httpx keeps at most 20 idle connections by default: a run at concurrency 32 then closed some
# after each reply and opened new ones (a TCP connect for nearly every call). Every open
# connection may stay idle, but for 4 s, not httpx's 5: servers commonly close an idle
# connection at 5 s (uvicorn, Node), and a request sent on one the server is closing that very
# moment fails (a retry, or a cell error with max_retries=0): 6 of 40 after a 4.9 s pause.
KEEPALIVE_S = 4.0
_LIMITS = httpx.Limits(
    max_connections=100, max_keepalive_connections=100, keepalive_expiry=KEEPALIVE_S
)


def _tls() -> ssl.SSLContext:
    """httpx's default TLS context (certifi's CAs, or ``SSL_CERT_FILE``/``SSL_CERT_DIR``), built
    once per setting: building one costs ~17 ms of CPU, and a run on a loop of its own needs a
    new async pool (a new transport) each time. A context is safe to share between them."""
    return _tls_for(os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR"))


@functools.lru_cache(maxsize=8)
def _tls_for(cert_file: str | None, cert_dir: str | None) -> ssl.SSLContext:
    return httpx.create_ssl_context(verify=True, trust_env=True)


def sync_transport() -> httpx.HTTPTransport:
    """httpx's own transport, its network backend wrapped so each IO step sees the deadline."""
    transport = httpx.HTTPTransport(limits=_LIMITS, verify=_tls())
    pool = transport._pool
    linear(pool)
    # httpcore keeps the backend as a plain attribute that every new connection is handed.
    pool._network_backend = _Backend(pool._network_backend)
    return transport


def async_transport() -> httpx.AsyncHTTPTransport:
    transport = httpx.AsyncHTTPTransport(limits=_LIMITS, verify=_tls())
    pool = transport._pool
    linear(pool)
    pool._network_backend = _AsyncBackend(AsyncioBackend(pool._network_backend))
    return transport


def _timeouts(seconds: float) -> httpx.Timeout:
    return httpx.Timeout(seconds, connect=min(DEFAULT_CONNECT_TIMEOUT, seconds))


class _Body:
    """Collects a body's chunks, refusing to outgrow ``limit`` or outlive the deadline."""

    def __init__(self, resp: httpx.Response, limit: int) -> None:
        self.limit, self.status = limit, resp.status_code
        self.chunks: list[bytes] = []
        self.size = 0
        declared = resp.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise ResponseTooLarge(limit, self.status)
        # The decoded size to expect, when it is known (a compressed body's length is not it).
        encoded = resp.headers.get("content-encoding", "identity").lower() != "identity"
        self.declared = int(declared) if declared.isdigit() and not encoded else None

    def add(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.size > self.limit:
            raise ResponseTooLarge(self.limit, self.status)
        self.chunks.append(chunk)
        if self.declared is None or self.size < self.declared:
            # More is coming: a transport that never blocks must still meet the deadline (a
            # body that is complete is kept, however late its last byte was).
            _left(httpx.ReadTimeout, None)

    def response(self, resp: httpx.Response) -> httpx.Response:
        """``resp`` with its body, as httpx's own ``read()`` keeps it (``_content``): decoded, so
        nothing decodes it again; headers as they arrived (bytes, so a non-ASCII byte in one is
        no encoding error). Building a second ``Response`` cost ~2.5% of a call's CPU."""
        resp._content = b"".join(self.chunks)
        return resp


def _request(http: httpx.Client | httpx.AsyncClient, request: Request) -> httpx.Request:
    """The ``httpx.Request`` the client would build: its headers under the request's own, the
    attempt's timeouts. Sent to the client's transport directly: ``Client.send`` adds cookies,
    auth and redirect handling, event hooks, a timer and a log line, none of which a call uses
    (no auth, cookies or hooks are set; redirects are not followed), and cost ~200 us of CPU per
    call, a quarter of a bare client's (py-spy, ``benchmarks/runner_throughput.py``). What of
    ``send`` a call can need is kept: credentials in the URL become Basic auth, and each reply
    is logged as httpx logs it (``_received``)."""
    if http.is_closed:  # what Client.send says
        raise RuntimeError("Cannot send a request, as the client has been closed.")
    headers = http.headers.copy()
    if request.headers:
        headers.update(request.headers)
    timeouts = {"timeout": _timeouts(request.timeout).as_dict()}
    sent = httpx.Request(
        request.method, request.url, json=request.json, headers=headers, extensions=timeouts
    )
    if sent.url.username or sent.url.password:  # as httpx's _build_request_auth does
        next(httpx.BasicAuth(sent.url.username, sent.url.password).sync_auth_flow(sent))
    return sent


def _received(sent: httpx.Request, resp: httpx.Response) -> None:
    resp.request = sent
    if _HTTPX_LOG.isEnabledFor(logging.INFO):  # httpx's own line, on its logger (redacted there)
        _HTTPX_LOG.info(
            'HTTP Request: %s %s "%s %d %s"',
            sent.method,
            sent.url,
            resp.http_version,
            resp.status_code,
            resp.reason_phrase,
        )


def send_sync(http: httpx.Client, request: Request, limit: int) -> httpx.Response | Failure:
    token = _DEADLINE.set(time.monotonic() + request.timeout)
    head = _Head()
    head_token = _HEAD.set(head)
    status: int | None = None
    try:
        sent = _request(http, request)
        # The transport the client was built with: llamakit always passes one, so httpx mounts
        # no proxy from the environment and this is the one it would use.
        resp = http._transport.handle_request(sent)
        _received(sent, resp)
        try:
            status = resp.status_code
            body = _Body(resp, limit)
            for chunk in resp.iter_bytes():
                body.add(chunk)
            return body.response(resp)
        finally:
            resp.close()
    except (httpx.HTTPError, ResponseTooLarge) as exc:
        if status is None:
            return Failure(exc, head.status)
        return Failure(exc, status, head_complete=True)
    finally:
        _HEAD.reset(head_token)
        _DEADLINE.reset(token)


async def send_async(
    http: httpx.AsyncClient, request: Request, limit: int
) -> httpx.Response | Failure:
    token = _DEADLINE.set(time.monotonic() + request.timeout)
    head = _Head()
    head_token = _HEAD.set(head)
    status: int | None = None
    try:
        sent = _request(http, request)
        resp = await http._transport.handle_async_request(sent)
        _received(sent, resp)
        try:
            status = resp.status_code
            body = _Body(resp, limit)
            async for chunk in resp.aiter_bytes():
                body.add(chunk)
            return body.response(resp)
        finally:
            await resp.aclose()
    except (httpx.HTTPError, ResponseTooLarge) as exc:
        if status is None:
            return Failure(exc, head.status)
        return Failure(exc, status, head_complete=True)
    finally:
        _HEAD.reset(head_token)
        _DEADLINE.reset(token)
