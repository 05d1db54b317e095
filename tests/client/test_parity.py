"""Client and AsyncClient are one implementation with two IO drivers: prove they agree."""

from __future__ import annotations

import asyncio
import inspect
from typing import Any

import pytest
from client_helpers import FAST

from llamakit import APIError, AsyncClient, Attempt, Client, ValidationError


def comparable(response: Any) -> tuple[Any, ...]:
    return (
        response.text,
        response.usage,
        response.finish_reason,
        response.model,
        response.attempts,
        sorted(response.raw),
    )


def outcome_sync(client: Client, *args: Any, **kw: Any) -> Any:
    try:
        return comparable(client.chat(*args, **kw))
    except (APIError, ValidationError) as exc:
        return type(exc).__name__, getattr(exc, "status", None), getattr(exc, "field", None)


async def outcome_async(client: AsyncClient, *args: Any, **kw: Any) -> Any:
    try:
        return comparable(await client.chat(*args, **kw))
    except (APIError, ValidationError) as exc:
        return type(exc).__name__, getattr(exc, "status", None), getattr(exc, "field", None)


CASES: list[tuple[tuple[Any, ...], dict[str, Any]]] = [
    (("Say hello",), {"max_tokens": 16, "temperature": 0}),
    (([{"role": "system", "content": "terse"}, {"role": "user", "content": "2+2?"}],), {"seed": 3}),
    (("x",), {"max_tokens": 2}),
    (([],), {}),
    (("x",), {"temperature": 5}),
    (("x",), {"extra_body": {"messages": 1}}),
]


def test_same_requests_same_results(server: Any) -> None:
    sync = server.client(retry_policy=FAST)
    expected = [outcome_sync(sync, *args, **kw) for args, kw in CASES]

    async def run_all() -> list[Any]:
        async with server.async_client(retry_policy=FAST) as client:
            return [await outcome_async(client, *args, **kw) for args, kw in CASES]

    assert asyncio.run(run_all()) == expected
    assert expected[0][0] and expected[3] == ("ValidationError", None, "messages")


@pytest.mark.parametrize("status", [401, 404, 500])
def test_same_errors_and_same_attempts(server: Any, status: int) -> None:
    kw: dict[str, Any] = {"retry_policy": FAST.__class__(max_retries=2, base_delay=0.001)}
    if status == 401:
        kw["api_key"] = "SG_not_a_real_key"
    if status == 404:
        kw["model"] = "no-such-model"
    if status == 500:
        server.set_faults(fail_rate=1.0)

    def shape(seen: list[Attempt]) -> list[tuple[Any, ...]]:
        return [(a.attempt, a.status, a.error, a.message) for a in seen]

    seen_sync: list[Attempt] = []
    with pytest.raises(APIError) as sync_info:
        server.client(on_attempt=seen_sync.append, **kw).chat("hi")

    seen_async: list[Attempt] = []

    async def go() -> None:
        async with server.async_client(on_attempt=seen_async.append, **kw) as client:
            await client.chat("hi")

    with pytest.raises(APIError) as async_info:
        asyncio.run(go())
    assert type(sync_info.value) is type(async_info.value)
    assert str(sync_info.value) == str(async_info.value)
    assert shape(seen_sync) == shape(seen_async) and len(seen_sync) == (3 if status == 500 else 1)


def test_same_public_surface() -> None:
    sync_names = {n for n in dir(Client) if not n.startswith("_")}
    async_names = {n for n in dir(AsyncClient) if not n.startswith("_")}
    assert sync_names == async_names
    assert inspect.signature(Client.__init__).parameters.keys() == (
        inspect.signature(AsyncClient.__init__).parameters.keys()
    )
    for name in ("chat", "credits", "close"):
        assert inspect.iscoroutinefunction(getattr(AsyncClient, name))
        assert not inspect.iscoroutinefunction(getattr(Client, name))
