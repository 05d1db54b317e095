"""Runs sharing one client (threads, or tasks on one loop) each log exactly their own attempts
and leave the client as they found it: a run's attempt logger and breaker are scoped to its own
calls (``llamakit.client.scope``), not set on the shared client and put back out of order."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import pytest
from exp_helpers import FAST_RETRIES, billed, make_experiment

import llamakit as lk
from llamakit.client.retry import RetryPolicy
from llamakit.store import Store

ITEMS = 10  # x 3 prompts x 1 repeat = 30 cells per run


def _check(stores: list[Store], client: Any, user_log: list[Any], srv: Any, before: int) -> None:
    for store in stores:
        (run_id,) = [r["run_id"] for r in store.query("SELECT run_id FROM runs")]
        rows = store.query("SELECT run_id, cell_key FROM attempts")
        # Each run logged each of its own attempts, against its own run and cells, once.
        assert len(rows) == ITEMS * 3, len(rows)
        assert {r["run_id"] for r in rows} == {run_id}
        cells = {c["cell_key"] for c in store.cell_rows(run_id, columns="cell_key")}
        assert {r["cell_key"] for r in rows} == cells
    assert billed(srv) - before == len(stores) * ITEMS * 3
    assert len(user_log) == len(stores) * ITEMS * 3  # the user's own hook saw every attempt
    # The client is as it was: its own hook, its own retry policy.
    assert client.on_attempt == user_log.append
    assert type(client._core.retry) is RetryPolicy


@pytest.mark.parametrize("cls", [lk.Client, lk.AsyncClient])
def test_parallel_runs_on_one_client_each_log_their_own_attempts(cls: Any, tmp_path: Path) -> None:
    user_log: list[Any] = []
    with lk.local_server(backend="scripted", credits=10.0, latency_ms=10) as srv:
        client = cls(
            srv.api_key,
            base_url=srv.url + "/v1",
            retry_policy=FAST_RETRIES,
            on_attempt=user_log.append,
        )
        before = billed(srv)
        stores = [Store(tmp_path / f"s{i}.db") for i in range(4)]
        exps = [make_experiment(items=ITEMS, repeats=1, scorers=[], name=f"p{i}") for i in range(4)]
        if cls is lk.Client:
            threads = [
                threading.Thread(
                    target=exp.run,
                    args=(client,),
                    kwargs={"concurrency": 8, "progress": False, "store": store},
                )
                for exp, store in zip(exps, stores, strict=True)
            ]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        else:

            async def together() -> None:
                await asyncio.gather(
                    *(
                        exp.arun(client, concurrency=8, progress=False, store=store)
                        for exp, store in zip(exps, stores, strict=True)
                    )
                )

            asyncio.run(together())
        _check(stores, client, user_log, srv, before)


def test_a_call_outside_the_run_is_not_logged_as_the_runs(tmp_path: Path) -> None:
    # The user's own calls on the same client while a run is going belong to no run.
    with lk.local_server(backend="scripted", credits=10.0, latency_ms=20) as srv:
        client = lk.Client(srv.api_key, base_url=srv.url + "/v1", retry_policy=FAST_RETRIES)
        store = Store(tmp_path / "s.db")
        exp = make_experiment(items=ITEMS, repeats=1, scorers=[])
        run = exp.start(client, concurrency=4, progress=False, store=store)
        for i in range(5):
            client.chat(f"aside {i}", max_tokens=4)
        run.wait()
        rows = store.query("SELECT cell_key FROM attempts")
        assert len(rows) == ITEMS * 3 and all(r["cell_key"] for r in rows)


def test_side_calls_from_the_runs_own_code_and_tasks_that_outlive_it_are_not_its_attempts(
    tmp_path: Path,
) -> None:
    # A scorer calls the run's client on the side, and starts a task (inheriting the run's
    # context) that calls it again after the run has ended: neither is one of the run's cells.
    with lk.local_server(backend="scripted", credits=10.0, latency_ms=5) as srv:
        client = lk.AsyncClient(srv.api_key, base_url=srv.url + "/v1", retry_policy=FAST_RETRIES)
        later: list[asyncio.Task[Any]] = []

        async def after_the_run() -> None:
            await asyncio.sleep(0.3)
            await client.chat("heartbeat", max_tokens=4)

        def scorer(text: str, row: Any) -> float:
            later.append(asyncio.get_running_loop().create_task(after_the_run()))
            return 1.0

        async def main() -> int:
            store = Store(tmp_path / "s.db")
            exp = make_experiment(items=ITEMS, repeats=1, scorers=[scorer])
            await exp.arun(client, concurrency=4, progress=False, store=store)
            await asyncio.gather(*later)
            return int(store.query("SELECT COUNT(*) AS n FROM attempts")[0]["n"])

        before = billed(srv)
        assert asyncio.run(main()) == ITEMS * 3
        assert billed(srv) - before == 2 * ITEMS * 3  # the heartbeats did go out
