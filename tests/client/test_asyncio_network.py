"""The asyncio network layer under httpcore (``llamakit.client.aio_network``): TLS to the real
stand-in, and what a stream must do at its edges (timeouts, a flood, a peer that closes, a cancel),
each checked on real sockets."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import socket
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpcore
import httpx
import pytest
import trustme

import llamakit as lk
from llamakit.client import aio_network
from llamakit.client.aio_network import AsyncioBackend, AsyncioStream
from llamakit.errors import LlamakitError
from llamakit.server import ServerConfig
from llamakit.store import Store

KEY = "SG_tls_test_0123456789abcdef"
REQUEST = b"GET / HTTP/1.1\r\nhost: x\r\n\r\n"


# -- TLS end to end: the stand-in served by uvicorn over HTTPS ---------------------------------


@contextmanager
def tls_stand_in(tmp_path: Path) -> Iterator[tuple[str, Any, trustme.CA]]:
    """The real stand-in app served over TLS with a certificate for 127.0.0.1 from a throwaway
    CA: (base URL, the app's state for its ledger, the CA)."""
    import uvicorn

    from llamakit.server.app import create_app

    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    key_file, cert_file = tmp_path / "key.pem", tmp_path / "cert.pem"
    cert.private_key_pem.write_to_path(str(key_file))
    cert.cert_chain_pems[0].write_to_path(str(cert_file))
    config = ServerConfig(keys={KEY: Decimal("10")})
    app = create_app(config)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(
        config.guard.uvicorn_config(
            app,
            log_level="warning",
            ssl_keyfile=str(key_file),
            ssl_certfile=str(cert_file),
        )
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        assert thread.is_alive(), "the TLS server did not start"
        thread.join(0.01)
    try:
        yield f"https://127.0.0.1:{sock.getsockname()[1]}/v1", app.state, ca
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


def test_a_run_over_tls_bills_each_cell_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with tls_stand_in(tmp_path) as (url, state, ca):
        ca_file = tmp_path / "ca.pem"
        ca.cert_pem.write_to_path(str(ca_file))
        monkeypatch.setenv("SSL_CERT_FILE", str(ca_file))  # httpx's own trust setting

        async def main() -> lk.Run:
            async with lk.AsyncClient(KEY, base_url=url) as client:
                reply = await client.chat("over TLS?", max_tokens=5)
                assert reply.text
                exp = lk.Experiment(
                    "tls", prompts="{{ q }}", dataset=[{"q": f"q{i}"} for i in range(24)],
                    params={"max_tokens": 5},
                )  # fmt: skip
                return await exp.arun(client, concurrency=6, progress=False,
                                      store=Store(tmp_path / "s.db"))  # fmt: skip

        run = asyncio.run(main())
        assert run.status == "finished"
        stats = state.stats_dict()
        assert stats["billed_calls"] == 25  # the one chat and each of the 24 cells, once
        assert len(run.results) == 24


def test_an_untrusted_certificate_fails_before_any_credit_is_spent(tmp_path: Path) -> None:
    with tls_stand_in(tmp_path) as (url, state, _):

        async def main() -> None:
            async with lk.AsyncClient(KEY, base_url=url, max_retries=0) as client:
                await client.chat("hi", max_tokens=5)

        with pytest.raises(LlamakitError) as info:
            asyncio.run(main())
        assert "certificate" in str(info.value).lower() or "ssl" in str(info.value).lower()
        assert state.stats_dict()["billed_calls"] == 0


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="counts /proc/self/fd")
def test_runs_over_tls_leave_no_socket_open(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each sync run drives its calls on a loop of its own and closes its connections with it.
    TLS connections were closed gracefully (close_notify, up to 30 s) by a loop about to close,
    so each left its socket open until the garbage collector ran: ~30 fds a run, and "Too many
    open files" after a dozen runs under a 256-fd limit."""
    with tls_stand_in(tmp_path) as (url, state, ca):
        ca_file = tmp_path / "ca.pem"
        ca.cert_pem.write_to_path(str(ca_file))
        monkeypatch.setenv("SSL_CERT_FILE", str(ca_file))
        client = lk.Client(KEY, base_url=url)
        store = Store(tmp_path / "s.db")
        gc.disable()  # the leak only showed until a collection found the sockets
        try:
            counts = []
            for i in range(6):
                exp = lk.Experiment(
                    f"fd{i}", prompts="{{ q }}", dataset=[{"q": f"r{i} q{j}"} for j in range(16)],
                    params={"max_tokens": 4},
                )  # fmt: skip
                assert exp.run(client, concurrency=16, progress=False, store=store).status == (
                    "finished"
                )
                counts.append(_client_sockets_to(int(url.rsplit(":", 1)[1].split("/")[0])))
        finally:
            gc.enable()
        client.close()
        # None left open by a run, not ~16 more per run: at most the sync pool's one kept-alive
        # connection (the balance reads). Only this process's client ends count: the in-process
        # server closes its own ends when it notices, in its own time.
        assert max(counts) <= 1, counts
        assert state.stats_dict()["billed_calls"] == 6 * 16


def _client_sockets_to(port: int) -> int:
    """Open sockets of this process connected to ``port`` on this machine (IPv4 or IPv6)."""
    ours = set()
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            link = os.readlink(f"/proc/self/fd/{fd}")
            if link.startswith("socket:["):
                ours.add(link[8:-1])
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError), open(table, encoding="ascii") as fh:
            for line in fh.readlines()[1:]:
                fields = line.split()
                remote_port = int(fields[2].rsplit(":", 1)[1], 16)
                if remote_port == port and fields[9] in ours:
                    count += 1
    return count


# -- the stream at its edges, against a plain socket server ------------------------------------


@contextmanager
def peer(script: Any, tls: ssl.SSLContext | None = None) -> Iterator[int]:
    """A one-connection server on a thread; ``script(conn)`` plays the server's part (over
    TLS with the ``tls`` server context, after the handshake)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)

    def serve() -> None:
        try:
            conn, _ = listener.accept()
            if tls is not None:
                conn = tls.wrap_socket(conn, server_side=True)
        except OSError:  # the test ended without connecting
            return
        try:
            script(conn)
        except OSError:
            pass
        finally:
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        listener.close()
        thread.join(5)


async def connect(port: int, tls: ssl.SSLContext | None = None, **kw: Any) -> AsyncioStream:
    stream = await AsyncioBackend(httpcore.AnyIOBackend()).connect_tcp("127.0.0.1", port, 5, **kw)
    if tls is not None:
        stream = await stream.start_tls(tls, server_hostname="127.0.0.1", timeout=5)
    assert isinstance(stream, AsyncioStream)
    return stream


@pytest.fixture(scope="module")
def tls_pair() -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """(server context, client context) for 127.0.0.1 from a throwaway CA."""
    ca = trustme.CA()
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server)
    client = ssl.create_default_context()
    ca.configure_trust(client)
    return server, client


def test_a_silent_server_is_a_read_timeout_and_the_stream_stays_usable() -> None:
    sent = threading.Event()

    def script(conn: socket.socket) -> None:
        conn.recv(100)
        sent.wait(5)
        conn.sendall(b"late")

    async def main() -> None:
        with peer(script) as port:
            stream = await connect(port)
            await stream.write(REQUEST)
            loop = asyncio.get_running_loop()
            start = loop.time()
            with pytest.raises(httpcore.ReadTimeout):
                await stream.read(100, timeout=0.2)
            assert 0.15 < loop.time() - start < 2
            sent.set()
            assert await stream.read(100, timeout=5) == b"late"  # no waiter was left behind
            await stream.aclose()

    asyncio.run(main())


def test_a_cancelled_read_leaves_the_bytes_for_the_next_read() -> None:
    go = threading.Event()

    def script(conn: socket.socket) -> None:
        conn.recv(100)
        go.wait(5)
        conn.sendall(b"kept")

    async def main() -> None:
        with peer(script) as port:
            stream = await connect(port)
            await stream.write(REQUEST)
            task = asyncio.ensure_future(stream.read(100))
            await asyncio.sleep(0.05)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            go.set()
            assert await stream.read(100, timeout=5) == b"kept"
            await stream.aclose()

    asyncio.run(main())


def test_reads_are_bounded_by_max_bytes_and_end_with_empty_bytes() -> None:
    def script(conn: socket.socket) -> None:
        conn.recv(100)
        conn.sendall(b"0123456789")
        conn.shutdown(socket.SHUT_WR)

    async def main() -> None:
        with peer(script) as port:
            stream = await connect(port)
            await stream.write(REQUEST)
            got = b""
            while len(got) < 10:
                chunk = await stream.read(4, timeout=5)
                assert 0 < len(chunk) <= 4
                got += chunk
            assert got == b"0123456789"
            assert await stream.read(4, timeout=5) == b""
            assert await stream.read(4, timeout=5) == b""  # and again, not a hang
            await stream.aclose()

    asyncio.run(main())


@pytest.mark.parametrize("over", ["tcp", "tls"])
def test_a_flooding_server_is_buffered_only_up_to_the_high_water_mark(
    over: str, tls_pair: tuple[ssl.SSLContext, ssl.SSLContext]
) -> None:
    """Past the mark reading pauses, and reading on resumes it: over TLS too, where the pause
    must be the TLS transport's (pausing the TCP one under it was never undone: the read after
    it timed out with most of the reply unread)."""
    size = 8 * 1024 * 1024
    server_tls, client_tls = tls_pair if over == "tls" else (None, None)

    def script(conn: socket.socket) -> None:
        conn.recv(100)
        conn.settimeout(10)
        conn.sendall(b"x" * size)

    async def main() -> None:
        with peer(script, server_tls) as port:
            stream = await connect(port, client_tls)
            await stream.write(REQUEST)
            await stream.read(1, timeout=5)
            await asyncio.sleep(0.5)  # the server keeps sending; nothing reads
            buffered = len(stream._protocol.buffer)
            # Past the mark reading pauses; one delivery (at most 256 KiB) may come first.
            assert buffered <= aio_network._HIGH_WATER + 256 * 1024, buffered
            assert buffered > aio_network._LOW_WATER, buffered  # the flood did arrive
            assert stream._protocol.paused
            total = 1
            while chunk := await stream.read(65536, timeout=5):
                total += len(chunk)
            assert total == size  # and reading resumed: every byte arrived
            await stream.aclose()

    asyncio.run(main())


def test_a_server_that_reads_nothing_makes_a_large_write_time_out() -> None:
    stop = threading.Event()

    def script(conn: socket.socket) -> None:
        stop.wait(10)

    async def main() -> None:
        with peer(script) as port:
            stream = await connect(port)
            with pytest.raises(httpcore.WriteTimeout):
                await stream.write(b"x" * (64 * 1024 * 1024), timeout=0.3)
            stop.set()
            await stream.aclose()

    asyncio.run(main())


def test_a_peer_that_closed_makes_writes_fail_and_the_connection_readable() -> None:
    def script(conn: socket.socket) -> None:
        conn.close()

    async def main() -> None:
        with peer(script) as port:
            stream = await connect(port)
            assert await stream.read(100, timeout=5) == b""
            # httpcore asks an idle pooled connection this: one whose peer left is not reused.
            assert stream.get_extra_info("is_readable") is True
            with pytest.raises(httpcore.WriteError):
                for _ in range(3):
                    await stream.write(REQUEST)
                    await asyncio.sleep(0.05)
            await stream.aclose()

    asyncio.run(main())


def test_an_idle_open_connection_is_not_readable_and_reports_its_addresses() -> None:
    stop = threading.Event()

    async def main() -> None:
        with peer(lambda conn: stop.wait(5)) as port:
            options = [(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)]
            stream = await connect(port, socket_options=options)
            assert stream.get_extra_info("is_readable") is False
            assert stream.get_extra_info("server_addr") == ("127.0.0.1", port)
            assert stream.get_extra_info("client_addr")[0] == "127.0.0.1"
            assert stream.get_extra_info("ssl_object") is None
            sock = stream.get_extra_info("socket")
            assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
            stop.set()
            await stream.aclose()

    asyncio.run(main())


def test_a_refused_connection_is_a_connect_error_that_names_the_cause() -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]

    async def main() -> None:
        with pytest.raises(httpcore.ConnectError) as info:
            await connect(port)
        assert "refused" in str(info.value).lower() or "111" in str(info.value)

    asyncio.run(main())


def test_httpx_maps_the_streams_errors_as_it_maps_its_own() -> None:
    """Through the transport llamakit builds, a refused connection is ``httpx.ConnectError`` and
    the retry policy's phase logic sees what it saw with httpcore's backend."""
    from llamakit.client.transport import async_transport

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]

    async def main() -> None:
        transport = async_transport()
        request = httpx.Request("GET", f"http://127.0.0.1:{port}/")
        with pytest.raises(httpx.ConnectError):
            await transport.handle_async_request(request)
        await transport.aclose()

    asyncio.run(main())


def test_transports_share_one_tls_context_per_trust_setting(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Building httpx's default TLS context costs ~17 ms; a sync run builds a new async pool on
    its own loop each time, so the context is built once per trust setting and shared."""
    from llamakit.client.transport import async_transport, sync_transport

    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    first = async_transport()._pool._ssl_context
    assert async_transport()._pool._ssl_context is first
    assert sync_transport()._pool._ssl_context is first
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "ca.pem"))
    assert async_transport()._pool._ssl_context is not first  # a new trust setting is honoured
