"""Connections are kept and reused at a run's concurrency, and a connection the server closed
while idle is never reused."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest
from client_helpers import CHAT_OK
from raw_servers import raw_server, url_of

from llamakit import AsyncClient, Client
from llamakit.client import transport

KEY = "SG_reusetestkey001"


@pytest.fixture
def connects(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Every TCP connection the client opens, sync or async."""
    opened: list[str] = []
    sync_connect, async_connect = (
        transport._Backend.connect_tcp,
        transport._AsyncBackend.connect_tcp,
    )

    def counting(self: Any, *args: Any, **kw: Any) -> Any:
        opened.append("sync")
        return sync_connect(self, *args, **kw)

    async def async_counting(self: Any, *args: Any, **kw: Any) -> Any:
        opened.append("async")
        return await async_connect(self, *args, **kw)

    monkeypatch.setattr(transport._Backend, "connect_tcp", counting)
    monkeypatch.setattr(transport._AsyncBackend, "connect_tcp", async_counting)
    yield opened


def test_an_async_burst_at_concurrency_32_keeps_its_32_connections(
    server: Any, connects: list[str]
) -> None:
    async def burst(client: AsyncClient) -> None:
        gate = asyncio.Semaphore(32)

        async def one(i: int) -> None:
            async with gate:
                await client.chat(f"question {i}", max_tokens=4)

        await asyncio.gather(*(one(i) for i in range(160)))

    server.set_faults(latency_ms=50)  # so that all 32 are in flight together

    async def main() -> None:
        async with server.async_client() as client:
            await burst(client)

    asyncio.run(main())
    # httpx's default keeps 20 idle connections: 12 of 32 were closed and reopened per reply.
    assert len(connects) <= 32, len(connects)
    assert server.stats()["billed_calls"] == 160


def test_sync_threads_at_concurrency_32_keep_their_connections(
    server: Any, connects: list[str]
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    server.set_faults(latency_ms=50)
    with server.client() as client, ThreadPoolExecutor(32) as pool:
        list(pool.map(lambda i: client.chat(f"question {i}", max_tokens=4), range(160)))
    assert len(connects) <= 32, len(connects)


def _reply_then_close(sock: socket.socket, head: bytes) -> None:
    """A keep-alive reply (no ``connection: close``); the raw server then closes the socket."""
    body = json.dumps(CHAT_OK).encode()
    lines = ["HTTP/1.1 200 OK", f"content-length: {len(body)}", "content-type: application/json"]
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + body)


def test_a_connection_closed_while_idle_is_not_reused(connects: list[str]) -> None:
    # The pool asks the socket whether it is readable (the server's FIN is) before reusing it;
    # sending on the dead connection would lose a paid call's reply.
    attempts: list[Any] = []
    with raw_server(_reply_then_close) as srv:
        url = url_of(srv) + "/v1"
        kw: dict[str, Any] = {
            "base_url": url,
            "check_context": False,
            "on_attempt": attempts.append,
        }

        async def main() -> list[str]:
            async with AsyncClient(KEY, **kw) as client:
                texts = []
                for i in range(4):
                    texts.append((await client.chat(f"q{i}")).text)
                    await asyncio.sleep(0.05)
                return texts

        assert asyncio.run(main()) == ["hello"] * 4
        with Client(KEY, **kw) as client:
            for i in range(4):
                assert client.chat(f"q{i}").text == "hello"
                time.sleep(0.05)
        chats = [r for r in srv.seen if r.startswith(b"POST")]
        assert len(chats) == 8 and len(connects) == len(srv.seen)
    # Not one attempt lost on a dead connection (it would have been retried, unseen here).
    assert len(attempts) == 8, attempts
