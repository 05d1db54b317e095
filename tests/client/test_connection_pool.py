"""The linear pool pass (``llamakit.client.connection_pool``): httpcore's behaviour, linear work."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpcore
import httpx
import pytest

from llamakit.client import connection_pool, transport

BODY = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}


@pytest.fixture
def is_idle_calls(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """How many times any pooled connection was asked ``is_idle()``."""
    calls = [0]
    for cls in (httpcore.AsyncHTTPConnection, httpcore.HTTPConnection):
        real = cls.is_idle

        def counting(self: Any, real: Any = real) -> bool:
            calls[0] += 1
            return bool(real(self))

        monkeypatch.setattr(cls, "is_idle", counting)
    yield calls


def _limits(connections: int, keepalive: int) -> httpx.Limits:
    return httpx.Limits(max_connections=connections, max_keepalive_connections=keepalive)


def _async_http(server: Any, limits: httpx.Limits, *, linear: bool) -> httpx.AsyncClient:
    pool = httpx.AsyncHTTPTransport(limits=limits)
    if linear:
        connection_pool.linear(pool._pool)
    headers = {"x-api-key": server.api_key}
    return httpx.AsyncClient(transport=pool, base_url=server.url, headers=headers, timeout=30)


def _burst(server: Any, limits: httpx.Limits, n: int, concurrency: int, *, linear: bool) -> Any:
    async def main() -> tuple[list[int], list[Any]]:
        async with _async_http(server, limits, linear=linear) as http:
            gate = asyncio.Semaphore(concurrency)

            async def one() -> int:
                async with gate:
                    r = await http.post("/v1/llama-v3-8b-instruct", json=BODY)
                    return r.status_code

            codes = await asyncio.gather(*(one() for _ in range(n)))
            return list(codes), http._transport._pool.connections  # type: ignore[attr-defined]

    return asyncio.run(main())


def test_the_runner_s_transports_get_the_linear_pass() -> None:
    assert type(transport.async_transport()._pool).__name__ == "_LinearAsyncPool"
    assert type(transport.sync_transport()._pool).__name__ == "_LinearPool"


def test_a_pass_costs_a_few_checks_per_connection_not_one_per_pair(
    server: Any, is_idle_calls: list[int]
) -> None:
    server.set_faults(latency_ms=30)
    limits = _limits(100, 100)
    codes, _ = _burst(server, limits, 192, 32, linear=True)
    linear_calls = is_idle_calls[0]
    is_idle_calls[0] = 0
    stock_codes, _ = _burst(server, limits, 192, 32, linear=False)
    assert codes == stock_codes == [200] * 192
    # httpcore re-counts the pool for each idle connection: ~5,700 checks per request here,
    # against ~13 for one walk per pass.
    assert linear_calls / 192 < 50 and is_idle_calls[0] / 192 > 1000, (
        linear_calls,
        is_idle_calls[0],
    )


def test_more_requests_than_connections_all_complete_within_the_limit(server: Any) -> None:
    server.set_faults(latency_ms=20)
    codes, connections = _burst(server, _limits(4, 4), 40, 20, linear=True)
    assert codes == [200] * 40 and len(connections) <= 4


def test_idle_connections_beyond_the_keepalive_limit_are_closed(server: Any) -> None:
    server.set_faults(latency_ms=20)
    codes, connections = _burst(server, _limits(8, 2), 40, 8, linear=True)
    assert codes == [200] * 40
    assert sum(1 for c in connections if c.is_idle()) <= 2


def test_the_sync_pool_serves_threads(server: Any, is_idle_calls: list[int]) -> None:
    server.set_faults(latency_ms=20)
    pool = httpx.HTTPTransport(limits=_limits(100, 100))
    connection_pool.linear(pool._pool)
    headers = {"x-api-key": server.api_key}
    with (
        httpx.Client(transport=pool, base_url=server.url, headers=headers, timeout=30) as http,
        ThreadPoolExecutor(16) as threads,
    ):
        post = http.post
        codes = list(threads.map(lambda _: post("/v1/llama-v3-8b-instruct", json=BODY), range(64)))
        assert [r.status_code for r in codes] == [200] * 64
        assert len(pool._pool.connections) <= 16
    assert is_idle_calls[0] / 64 < 200


def test_another_httpcore_version_keeps_its_own_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(httpcore, "__version__", "2.0.0")
    pool = httpx.AsyncHTTPTransport()._pool
    connection_pool.linear(pool)
    assert type(pool) is httpcore.AsyncConnectionPool


def test_requests_cancelled_before_they_start_leave_no_connection_behind(server: Any) -> None:
    # A task cancelled between getting its connection and starting on it left that connection
    # in state NEW, held by no request; httpcore kept it forever, and max_connections of them
    # made every later request wait for the pool.
    server.set_faults(latency_ms=10)

    async def main() -> list[Any]:
        async with _async_http(server, _limits(3, 3), linear=True) as http:
            for steps in list(range(40)) * 3:
                task = asyncio.create_task(http.post("/v1/llama-v3-8b-instruct", json=BODY))
                for _ in range(steps):
                    await asyncio.sleep(0)
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task
            reply = await asyncio.wait_for(http.post("/v1/llama-v3-8b-instruct", json=BODY), 5)
            assert reply.status_code == 200
            return http._transport._pool.connections  # type: ignore[attr-defined]

    connections = asyncio.run(main())
    assert all(c.is_idle() or c.is_closed() for c in connections), connections


@pytest.mark.parametrize("pool_kind", ["async", "sync"])
def test_a_connection_held_by_a_request_is_not_closed_when_its_keepalive_expires(
    server: Any, pool_kind: str
) -> None:
    # Bursts after a pause just under the keep-alive expiry: a connection handed to a request
    # expires before the request starts on it. Closing it then (as idle) raced the request's
    # send: the server billed calls whose replies the client never read (6 of 200, 4 billed).
    server.set_faults(latency_ms=20)
    limits = httpx.Limits(max_connections=100, max_keepalive_connections=100, keepalive_expiry=0.3)
    before = server.stats()["billed_calls"]
    codes: list[int] = []
    errors: list[str] = []
    if pool_kind == "async":

        async def main() -> None:
            async with _async_http(server, limits, linear=True) as http:

                async def one() -> None:
                    try:
                        r = await http.post("/v1/llama-v3-8b-instruct", json=BODY)
                        codes.append(r.status_code)
                    except httpx.HTTPError as exc:
                        errors.append(repr(exc))

                for gap in (0.28, 0.29, 0.295, 0.3, 0.29, 0.285, 0.295, 0.29):
                    await asyncio.gather(*(one() for _ in range(40)))
                    await asyncio.sleep(gap)

        asyncio.run(main())
    else:
        pool = httpx.HTTPTransport(limits=limits)
        connection_pool.linear(pool._pool)
        headers = {"x-api-key": server.api_key}
        with httpx.Client(transport=pool, base_url=server.url, headers=headers, timeout=30) as h:

            def one(_: int) -> None:
                try:
                    codes.append(h.post("/v1/llama-v3-8b-instruct", json=BODY).status_code)
                except httpx.HTTPError as exc:
                    errors.append(repr(exc))

            with ThreadPoolExecutor(40) as threads:
                for gap in (0.28, 0.29, 0.295, 0.3, 0.29, 0.285, 0.295, 0.29):
                    list(threads.map(one, range(40)))
                    time.sleep(gap)
    assert errors == [] and codes == [200] * 320
    assert server.stats()["billed_calls"] - before == 320  # no reply lost, none paid twice
