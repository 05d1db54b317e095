"""A run given a sync ``lk.Client`` drives its calls on the run's event loop (the client's own
core, an async pool of the same kind), not on a thread per call in flight; a client with a
caller's transport or a replaced ``chat`` keeps the thread path, so the caller's code runs."""

from __future__ import annotations

import asyncio
import threading
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from exp_helpers import FAST_RETRIES, billed, make_experiment

import llamakit as lk
from llamakit.store import Store


def _client(srv: Any, **kw: Any) -> lk.Client:
    return lk.Client(srv.api_key, base_url=srv.url + "/v1", retry_policy=FAST_RETRIES, **kw)


def test_a_sync_run_sends_from_the_loop_and_bills_each_cell_once(
    server: Any, tmp_path: Path
) -> None:
    threads: list[str] = []
    client = _client(server, on_attempt=lambda a: threads.append(threading.current_thread().name))
    before, spent_before = billed(server), Decimal(server.stats()["credits_spent"])
    run = make_experiment(items=20, repeats=1, scorers=[]).run(
        client, concurrency=8, progress=False, store=Store(tmp_path / "s.db")
    )
    assert run.status == "finished"
    assert billed(server) - before == 60 == len(run.results)
    # Every attempt was made on the run's one loop thread, none on a per-call worker thread.
    assert len(threads) == 60 and len(set(threads)) == 1, set(threads)
    assert not threads[0].startswith("llamakit-cell")
    # The client's own figures saw those calls: they share its core.
    spent = Decimal(server.stats()["credits_spent"]) - spent_before
    assert client.spent == spent
    # And the client goes on working for calls of the user's own, after the run's loop is gone.
    assert client.chat("still there?", max_tokens=4).text
    client.close()


def test_a_caller_transport_keeps_the_thread_path(server: Any, tmp_path: Path) -> None:
    threads: list[str] = []
    transport = httpx.HTTPTransport()  # the caller's: it cannot be driven from a loop
    client = _client(
        server,
        transport=transport,
        on_attempt=lambda a: threads.append(threading.current_thread().name),
    )
    before = billed(server)
    run = make_experiment(items=5, repeats=1, scorers=[]).run(
        client, concurrency=4, progress=False, store=Store(tmp_path / "s.db")
    )
    assert run.status == "finished" and billed(server) - before == 15
    assert all(name.startswith("llamakit-cell") for name in threads), set(threads)
    client.close()


def test_a_replaced_chat_is_the_one_called(server: Any, tmp_path: Path) -> None:
    client = _client(server)
    original = client.chat
    seen: list[str] = []

    def chat(messages: Any, **kw: Any) -> Any:
        seen.append(threading.current_thread().name)
        return original(messages, **kw)

    client.chat = chat  # type: ignore[method-assign]
    run = make_experiment(items=5, repeats=1, scorers=[]).run(
        client, concurrency=4, progress=False, store=Store(tmp_path / "s.db")
    )
    assert run.status == "finished" and len(seen) == 15

    class Counting(lk.Client):
        calls = 0

        def chat(self, messages: Any, **kw: Any) -> Any:  # type: ignore[override]
            Counting.calls += 1
            return super().chat(messages, **kw)

    sub = Counting(server.api_key, base_url=server.url + "/v1", retry_policy=FAST_RETRIES)
    run = make_experiment(items=5, repeats=1, scorers=[], name="sub").run(
        sub, concurrency=4, progress=False, store=Store(tmp_path / "s2.db")
    )
    assert run.status == "finished" and Counting.calls == 15
    client.close()
    sub.close()


def test_closing_the_client_from_the_runs_own_loop_does_not_stall_it(
    server: Any, tmp_path: Path
) -> None:
    """A progress subscriber runs on the run's loop; ``close()`` there must not wait for the
    calls that loop is sending (they cannot move while it waits, so it would wait out the
    client's timeout): it returns, they finish and are stored, the run stops with
    ClientClosedError, and every paid reply is kept."""
    server.set_faults(latency_ms=200)
    client = _client(server, timeout=30)
    took: list[float] = []

    def on_progress(p: Any) -> None:
        if p.done >= 3 and not took:
            t0 = time.monotonic()
            client.close()
            took.append(time.monotonic() - t0)

    before = billed(server)
    store = Store(tmp_path / "s.db")
    run = make_experiment(items=20, repeats=1, scorers=[]).start(
        client, concurrency=8, progress=False, store=store
    )
    run.subscribe(on_progress)
    with pytest.raises(lk.ClientClosedError):
        run.wait()
    assert took and took[0] < 5, took  # not the 31 s of the client's timeout and grace
    stored = store.query("SELECT COUNT(*) AS n FROM responses")[0]["n"]
    assert 3 <= stored < 60
    assert billed(server) - before == stored  # every paid reply kept


def test_close_closes_the_connections_runs_opened_on_the_callers_loop(
    server: Any, tmp_path: Path
) -> None:
    """Runs awaited inside one loop (a notebook's kernel loop never ends) leave their pool on
    it; ``close()`` from that loop's own thread closes it there once nothing is on the wire."""
    client = _client(server)
    store = Store(tmp_path / "s.db")

    async def main() -> None:
        for i in range(3):
            exp = make_experiment(items=6, repeats=1, scorers=[], name=f"loop{i}")
            run = await exp.arun(client, concurrency=16, progress=False, store=store)
            assert run.status == "finished"
        assert client._twin is not None
        pools = [entry[0] for entry in client._twin._loops._loops.values()]
        assert len(pools) == 1 and pools[0]._transport._pool.connections  # kept alive
        client.close()  # sync, on this loop's thread, as a notebook cell would
        for _ in range(100):
            await asyncio.sleep(0.01)
            if pools[0].is_closed:
                break
        assert pools[0].is_closed
        assert not pools[0]._transport._pool.connections

    asyncio.run(main())
