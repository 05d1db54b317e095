"""close() while calls are going (from another thread, or another task): requests on the wire
finish and their replies are returned, no new request is sent, and every call that is refused
says so with ClientClosedError (never httpx's bare RuntimeError). Checked against the server's
ledger: every billed call came back to its caller."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest

import llamakit as lk
from llamakit.client.retry import RetryPolicy

FAST = RetryPolicy(max_retries=3, base_delay=0.002, max_delay=0.02)
CALLS = 24  # 8 at a time, each taking ~100 ms at the server: close() lands mid-run


def _requests(server: Any) -> int:
    return sum(server.stats()["requests"].values())


def _settled_billed(server: Any, at_least: int) -> int:
    # The server counts a call once its reply is sent; give its bookkeeping a moment.
    end = time.monotonic() + 2.0
    while server.stats()["billed_calls"] < at_least and time.monotonic() < end:
        time.sleep(0.01)
    return int(server.stats()["billed_calls"])


def test_close_from_another_thread_keeps_every_billed_reply(server: Any) -> None:
    server.set_faults(latency_ms=100)
    client = server.client(retry_policy=FAST, check_context=False)
    client.credits()  # the starting balance, read before the race
    replies: list[Any] = []
    refused: list[BaseException] = []
    other: list[BaseException] = []
    lock = threading.Lock()

    def worker(i: int) -> None:
        for j in range(CALLS // 8):
            try:
                r = client.chat(f"question {i}-{j}", max_tokens=4)
            except lk.ClientClosedError as exc:
                with lock:
                    refused.append(exc)
                return
            except BaseException as exc:  # anything else is the fault this test guards
                with lock:
                    other.append(exc)
                return
            with lock:
                replies.append(r)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    time.sleep(0.15)  # the first round is on the wire
    client.close()
    for t in threads:
        t.join()
    assert not other, other
    assert replies and refused, (len(replies), len(refused))
    assert _settled_billed(server, len(replies)) == len(replies)
    assert "closed" in str(refused[0]) and "create a new client" in str(refused[0])


def test_a_closed_client_sends_nothing(server: Any) -> None:
    client = server.client(retry_policy=FAST)
    client.chat("hello", max_tokens=4)
    client.close()
    before = _requests(server)
    for call in (lambda: client.chat("again", max_tokens=4), client.credits):
        with pytest.raises(lk.ClientClosedError):
            call()
    assert _requests(server) == before


def test_close_from_another_task_keeps_every_billed_reply(server: Any) -> None:
    server.set_faults(latency_ms=100)
    client = server.async_client(retry_policy=FAST, check_context=False)

    async def main() -> list[Any]:
        await client.credits()
        sem = asyncio.Semaphore(8)

        async def one(i: int) -> Any:
            async with sem:
                return await client.chat(f"question {i}", max_tokens=4)

        async def closer() -> None:
            await asyncio.sleep(0.15)
            await client.close()

        closing = asyncio.create_task(closer())
        outcomes = await asyncio.gather(*(one(i) for i in range(CALLS)), return_exceptions=True)
        await closing
        return outcomes

    outcomes = asyncio.run(main())
    replies = [o for o in outcomes if isinstance(o, lk.ChatResponse)]
    refused = [o for o in outcomes if isinstance(o, lk.ClientClosedError)]
    assert len(replies) + len(refused) == CALLS, outcomes
    assert replies and refused
    assert _settled_billed(server, len(replies)) == len(replies)


def test_a_closed_async_client_stays_closed_on_another_loop(server: Any) -> None:
    # It used to open a new pool for the next loop: close() did not stop the client.
    client = server.async_client(retry_policy=FAST)

    async def once() -> Any:
        return await client.chat("hi", max_tokens=4)

    async def close() -> None:
        await client.close()

    asyncio.run(once())
    asyncio.run(close())
    before = _requests(server)
    with pytest.raises(lk.ClientClosedError):
        asyncio.run(once())
    assert _requests(server) == before
