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


def test_one_async_client_serves_successive_event_loops(server: Any) -> None:
    # Two asyncio.run() calls (two notebook cells running async code, a script's phases): each
    # loop gets its own connections; the second used to fail with "Event loop is closed".
    client = server.async_client(retry_policy=FAST)

    async def once(i: int) -> str:
        return (await client.chat(f"question {i}")).text

    texts = [asyncio.run(once(i)) for i in range(3)]
    assert all(texts) and server.stats()["billed_calls"] == 3
    assert client._loops._loops == {}  # each loop's pool was closed as its loop shut down

    async def concurrent() -> list[str]:
        async with client:
            return [r.text for r in await asyncio.gather(*(client.chat("x") for _ in range(4)))]

    assert len(asyncio.run(concurrent())) == 4


def test_sync_run_of_an_async_client_inside_a_running_loop(server: Any, isolated_home: Any) -> None:
    # A Jupyter cell: a loop is running and the AsyncClient was already used on it; the sync
    # exp.run runs the experiment on a worker loop, which gets its own connections.
    import llamakit as lk

    exp = lk.Experiment(
        "loops", prompts={"p": "Say {{ w }}"}, dataset=[{"w": w} for w in "abcd"], repeats=1
    )
    client = server.async_client(retry_policy=FAST)

    async def cell() -> tuple[Any, Any]:
        await client.chat("warm up on this loop")
        sync_run = exp.run(client, progress=False)
        async_run = await exp.arun(client, progress=False)  # resumes: nothing left to send
        return sync_run, async_run

    sync_run, async_run = asyncio.run(cell())
    assert len(sync_run.results) == 4 and sync_run.results["response"].notna().all()
    assert list(sync_run.results["response"]) == list(async_run.results["response"])
    assert server.stats()["billed_calls"] == 1 + 4
