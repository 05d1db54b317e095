"""httpcore's network layer on asyncio itself: a socket's transport and protocol, no anyio.

httpcore reaches asyncio through anyio, whose stream does per read and per write what a
cancellable, backend-neutral API needs: a cancel scope and a timer per operation
(``fail_after``), a ``sleep(0)`` checkpoint after every write, and, for every read, reading
switched on and off again at the selector (two ``epoll_ctl`` system calls). Measured with py-spy
on a run at concurrency 32, that was ~12% of the runner's CPU per call, more than any part of
llamakit's own work. Here a read returns what the protocol already buffered, or waits on one
future with one timer; a write hands the bytes to the transport and waits only when the
transport says its buffer is full (``pause_writing``).

What httpcore expects of a stream is kept: its exceptions (``ConnectError``, ``ReadTimeout`` ...
each from the ``OSError`` or timeout behind it), ``b""`` at the end of the stream, TLS through
``start_tls``, and ``get_extra_info`` for ``ssl_object``, ``socket``, ``client_addr``,
``server_addr`` and ``is_readable``. Reading pauses while more than ``_HIGH_WATER`` bytes wait
unread, so a server that floods a connection cannot grow the buffer without bound.

Outside an asyncio event loop (trio through anyio), and for Unix sockets, httpcore's own backend
is used.
"""

from __future__ import annotations

import asyncio
import select
import ssl
from collections.abc import Iterable
from typing import Any

import httpcore


def _socket_readable(sock: Any) -> bool:
    """Whether the kernel holds bytes (or an end of stream) for ``sock`` that nobody asked for,
    as httpcore's own check does (``poll`` where there is one: ``select`` breaks past fd 1024).
    A socket already closed counts as readable: it is no longer usable either."""
    if sock is None or sock.fileno() < 0:
        return True
    if hasattr(select, "poll"):
        poller = select.poll()
        poller.register(sock, select.POLLIN)
        return bool(poller.poll(0))
    return bool(select.select([sock], [], [], 0)[0])  # pragma: no cover - Windows


# Reading pauses while this much is buffered unread and resumes once it is down to _LOW_WATER.
_HIGH_WATER = 256 * 1024
_LOW_WATER = 64 * 1024
# RFC 8305's recommended delay before trying the next address of a host (what anyio uses too).
_HAPPY_EYEBALLS_S = 0.25


class _Protocol(asyncio.Protocol):
    """Buffers what arrives and wakes the one reader waiting for it."""

    def __init__(self) -> None:
        self.transport: Any = None
        self.buffer = bytearray()
        self.eof = False
        self.error: BaseException | None = None
        self.reader: asyncio.Future[bool] | None = None
        self.drained: asyncio.Future[bool] | None = None
        self.paused = False

    def connection_made(self, transport: Any) -> None:
        # Not called again by start_tls(): AsyncioStream.start_tls sets the TLS transport itself.
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if len(self.buffer) > _HIGH_WATER and not self.paused:
            self.paused = True
            self.transport.pause_reading()
        self._wake()

    def eof_received(self) -> None:
        self.eof = True
        self._wake()

    def connection_lost(self, exc: BaseException | None) -> None:
        self.eof = True
        self.error = exc
        self._wake()
        self.resume_writing()

    def pause_writing(self) -> None:
        if self.drained is None:
            self.drained = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        drained, self.drained = self.drained, None
        if drained is not None and not drained.done():
            drained.set_result(True)

    def _wake(self) -> None:
        reader = self.reader
        if reader is not None and not reader.done():
            reader.set_result(True)


def _expire(waiter: asyncio.Future[bool]) -> None:
    if not waiter.done():
        waiter.set_result(False)


async def _wait(waiter: asyncio.Future[bool], timeout: float | None) -> bool:
    """True once ``waiter`` is woken, False if ``timeout`` seconds pass first."""
    if timeout is None:
        return await waiter
    timer = asyncio.get_running_loop().call_later(timeout, _expire, waiter)
    try:
        return await waiter
    finally:
        timer.cancel()


def _reason(exc: BaseException | None, default: str) -> str:
    return str(exc) or type(exc).__name__ if exc is not None else default


class AsyncioStream(httpcore.AsyncNetworkStream):
    """One connection: an asyncio transport and the ``_Protocol`` that buffers its bytes."""

    def __init__(self, transport: Any, protocol: _Protocol) -> None:
        self._transport = transport
        self._protocol = protocol
        self._socket: Any = None

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        protocol = self._protocol
        if not protocol.buffer and not protocol.eof:
            protocol.reader = asyncio.get_running_loop().create_future()
            try:
                if not await _wait(protocol.reader, timeout):
                    raise httpcore.ReadTimeout("timed out waiting for the server's reply")
            finally:
                protocol.reader = None
        buffer = protocol.buffer
        if buffer:
            if len(buffer) <= max_bytes:
                data = bytes(buffer)
                buffer.clear()
            else:
                data = bytes(buffer[:max_bytes])
                del buffer[:max_bytes]
            if protocol.paused and len(buffer) <= _LOW_WATER:
                protocol.paused = False
                self._transport.resume_reading()
            return data
        if protocol.error is not None:
            raise httpcore.ReadError(_reason(protocol.error, "")) from protocol.error
        return b""

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if not buffer:
            return
        protocol = self._protocol
        if self._transport.is_closing():
            # asyncio would drop the bytes with a logged warning instead of raising.
            raise httpcore.WriteError(_reason(protocol.error, "the connection is closed"))
        self._transport.write(buffer)
        if protocol.drained is not None and not await _wait(protocol.drained, timeout):
            raise httpcore.WriteTimeout("timed out sending the request")
        if protocol.error is not None:
            raise httpcore.WriteError(_reason(protocol.error, "")) from protocol.error

    async def aclose(self) -> None:
        if self._transport.get_extra_info("ssl_object") is None:
            self._transport.close()
        else:
            # close() on TLS starts asyncio's graceful shutdown (close_notify both ways, up to
            # 30 s); a run's loop closes before it ends and its socket stays open until the
            # garbage collector finds it (an fd per connection, "Too many open files" after a
            # dozen runs). httpcore asks anyio for no close_notify either.
            self._transport.abort()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.AsyncNetworkStream:
        loop = asyncio.get_running_loop()
        try:
            transport = await asyncio.wait_for(
                loop.start_tls(
                    self._transport, self._protocol, ssl_context, server_hostname=server_hostname
                ),
                timeout,
            )
        except (asyncio.TimeoutError, TimeoutError) as exc:
            self._transport.close()
            raise httpcore.ConnectTimeout("timed out in the TLS handshake") from exc
        except (OSError, ssl.SSLError) as exc:
            self._transport.close()
            raise httpcore.ConnectError(_reason(exc, "")) from exc
        if transport is None:  # the connection closed during the handshake
            raise httpcore.ConnectError("the server closed the connection during the TLS handshake")
        # The protocol now pauses and resumes reading on the TLS transport: pausing the TCP one
        # under it would never be undone (resume_reading on the TLS transport does not reach it).
        self._protocol.transport = transport
        return AsyncioStream(transport, self._protocol)

    def get_extra_info(self, info: str) -> Any:
        if info == "is_readable":
            # httpcore asks every idle pooled connection this each time it assigns a request: a
            # connection that has data or an end of stream waiting, unasked, is no longer usable.
            protocol = self._protocol
            if protocol.buffer or protocol.eof:
                return True
            if self._socket is None:
                self._socket = self._transport.get_extra_info("socket")
            return _socket_readable(self._socket)
        key = {"client_addr": "sockname", "server_addr": "peername"}.get(info, info)
        if key in ("ssl_object", "socket", "sockname", "peername"):
            return self._transport.get_extra_info(key)
        return None


class AsyncioBackend(httpcore.AsyncNetworkBackend):
    """Connects with the running asyncio loop; ``fallback`` (httpcore's backend) does the rest."""

    def __init__(self, fallback: httpcore.AsyncNetworkBackend) -> None:
        self._fallback = fallback

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # pragma: no cover - another async library (trio)
            return await self._fallback.connect_tcp(
                host, port, timeout, local_address, socket_options
            )
        try:
            transport, protocol = await asyncio.wait_for(
                loop.create_connection(
                    _Protocol,
                    host,
                    port,
                    local_addr=(local_address, 0) if local_address else None,
                    happy_eyeballs_delay=_HAPPY_EYEBALLS_S,
                ),
                timeout,
            )
        except (asyncio.TimeoutError, TimeoutError) as exc:
            raise httpcore.ConnectTimeout(f"timed out connecting to {host}:{port}") from exc
        except OSError as exc:
            raise httpcore.ConnectError(_reason(exc, "")) from exc
        sock = transport.get_extra_info("socket")
        for option in socket_options or ():
            sock.setsockopt(*option)  # asyncio already sets TCP_NODELAY
        return AsyncioStream(transport, protocol)

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.AsyncNetworkStream:
        return await self._fallback.connect_unix_socket(path, timeout, socket_options)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
