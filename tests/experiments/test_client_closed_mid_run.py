"""A run whose client is closed under it (from another thread, a scorer, a progress callback,
another task; the run's client or a judge's own): the calls on the wire finish and are stored,
nothing more is sent, and the run stops with ClientClosedError saying how to resume. Checked
against the server's ledger: billed == stored when it stops, and the rerun pays for exactly the
cells that were not stored."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import pytest
from exp_helpers import FAST_RETRIES, billed, make_experiment

import llamakit as lk
from llamakit import scoring
from llamakit.store import Store

ITEMS = 16
CELLS = ITEMS * 3  # 3 prompts x 1 repeat, sent 8 at a time, ~100 ms each


def _stored(store: Store) -> int:
    return int(store.query("SELECT COUNT(*) AS n FROM responses")[0]["n"])


def _check_stop_and_rerun(
    srv: Any, store: Store, exp: lk.Experiment, err: Any, before: int
) -> None:
    assert isinstance(err, lk.ClientClosedError), repr(err)
    assert "was closed while this run was using it" in str(err) and "Rerun" in str(err)
    stored = _stored(store)
    assert 0 < stored < CELLS
    assert billed(srv) - before == stored  # every billed reply was kept
    cells = store.query("SELECT status, COUNT(*) AS n FROM run_cells GROUP BY status")
    assert {r["status"] for r in cells} <= {"done", "scoring"}, cells
    again = srv.client(retry_policy=FAST_RETRIES)
    paid = billed(srv)
    run = exp.run(again, concurrency=8, progress=False, store=store)
    assert run.status == "finished"
    assert billed(srv) - paid == CELLS - stored  # the rerun paid only the rest
    assert billed(srv) - before == _stored(store)


def _sync_run_closed_by(how: str, srv: Any, tmp_path: Path) -> None:
    client = srv.client(retry_policy=FAST_RETRIES)
    seen = [0]

    def scorer(text: str, row: Any) -> float:
        seen[0] += 1
        if how == "scorer" and seen[0] == 10:
            client.close()
        return 1.0

    store = Store(tmp_path / "s.db")
    exp = make_experiment(items=ITEMS, repeats=1, scorers=[scorer])
    before = billed(srv)
    err: BaseException | None = None
    try:
        if how == "thread":
            threading.Timer(0.35, client.close).start()
            exp.run(client, concurrency=8, progress=False, store=store)
        elif how == "scorer":
            exp.run(client, concurrency=8, progress=False, store=store)
        else:  # a progress callback
            run = exp.start(client, concurrency=8, progress=False, store=store)
            run.subscribe(lambda p: client.close() if p.done >= 10 else None)
            run.wait()
    except lk.LlamakitError as exc:
        err = exc
    _check_stop_and_rerun(srv, store, exp, err, before)


@pytest.mark.parametrize("how", ["thread", "scorer", "progress"])
def test_sync_client_closed_mid_run(how: str, tmp_path: Path) -> None:
    with lk.local_server(backend="scripted", credits=10.0, latency_ms=100) as srv:
        _sync_run_closed_by(how, srv, tmp_path)


def test_async_client_closed_by_another_task(tmp_path: Path) -> None:
    with lk.local_server(backend="scripted", credits=10.0, latency_ms=100) as srv:
        client = srv.async_client(retry_policy=FAST_RETRIES)
        store = Store(tmp_path / "s.db")
        exp = make_experiment(items=ITEMS, repeats=1, scorers=[])
        before = billed(srv)

        async def main() -> None:
            async def closer() -> None:
                await asyncio.sleep(0.35)
                await client.close()

            closing = asyncio.create_task(closer())
            try:
                await exp.arun(client, concurrency=8, progress=False, store=store)
            finally:
                await closing

        with pytest.raises(lk.ClientClosedError) as info:
            asyncio.run(main())
        _check_stop_and_rerun(srv, store, exp, info.value, before)


def test_v2_jobs_of_a_closed_client_are_collected_not_paid_again(tmp_path: Path) -> None:
    # A job submitted before close() whose polls are then refused is journaled: the rerun
    # collects it by request id. Each cell is paid once in all.
    with lk.local_server(backend="scripted", credits=10.0, latency_ms=100) as srv:
        client = srv.client(retry_policy=FAST_RETRIES)
        store = Store(tmp_path / "s.db")
        exp = make_experiment(items=ITEMS, repeats=1, scorers=[])
        before = billed(srv)
        threading.Timer(0.35, client.close).start()
        with pytest.raises(lk.ClientClosedError):
            exp.run(client, concurrency=8, progress=False, store=store, api="v2")
        again = srv.client(retry_policy=FAST_RETRIES)
        run = exp.run(again, concurrency=8, progress=False, store=store, api="v2")
        assert run.status == "finished"
        assert billed(srv) - before == CELLS == _stored(store)


def test_a_judges_own_client_closed_mid_run(tmp_path: Path) -> None:
    rubric = "Is it right? Expected {{ expected }}."
    with lk.local_server(backend="scripted", credits=10.0, latency_ms=100) as srv:
        client = srv.client(retry_policy=FAST_RETRIES)
        grader = srv.client(retry_policy=FAST_RETRIES, model="llama-v3p1-8b-instruct")
        store = Store(tmp_path / "s.db")
        exp = make_experiment(
            items=ITEMS, repeats=1, scorers=[scoring.judge(grader, rubric, name="grade")]
        )
        before = billed(srv)
        threading.Timer(0.5, grader.close).start()
        with pytest.raises(lk.ClientClosedError) as info:
            exp.run(client, concurrency=8, progress=False, store=store)
        assert "llama-v3p1-8b-instruct" in str(info.value)  # it says which client was closed
        stored = _stored(store)
        assert billed(srv) - before == stored
        # The rerun, with a new client for the judge, pays only for what was not stored.
        regrader = srv.client(retry_policy=FAST_RETRIES, model="llama-v3p1-8b-instruct")
        exp = make_experiment(
            items=ITEMS, repeats=1, scorers=[scoring.judge(regrader, rubric, name="grade")]
        )
        run = exp.run(client, concurrency=8, progress=False, store=store)
        assert run.status == "finished" and _stored(store) > stored
        assert billed(srv) - before == _stored(store)
