"""``Experiment.arun`` cancelled mid-run (Ctrl-C under ``asyncio.run``, ``task.cancel()``, an
``asyncio.wait_for`` timeout) keeps every reply the server billed, as ``run`` does on Ctrl-C:
it sends no new call, lets the calls on the wire finish, stores them, ends the run "interrupted"
and re-raises the cancellation. Checked against the server's ledger: billed == stored, and the
rerun pays for exactly the cells that were not stored.

Before the fix, ``arun`` cancelled its workers with their calls on the wire: 5 of 5 SIGINT trials
lost 7-16 billed replies (concurrency 16), and a cancelled task lost up to 8.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import re
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from exp_helpers import billed, make_experiment

import llamakit as lk
from llamakit.client.retry import RetryPolicy
from llamakit.store import Store

KEY = "SG_aruntest_0123456789abcdef"
CHILD = Path(__file__).with_name("arun_child.py")
ITEMS = 80  # x 2 prompts: 160 cells, 16 at a time, 200 ms each: about 2 s of run
CELLS = ITEMS * 2
TRIALS = 5


def _stored(db: Path) -> int:
    if not db.exists():
        return 0
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    try:
        return int(conn.execute("SELECT COUNT(*) FROM responses").fetchone()[0])
    except sqlite3.OperationalError:  # tables not created yet
        return 0
    finally:
        conn.close()


def _run_status(db: Path) -> str:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    try:
        return str(conn.execute("SELECT status FROM runs").fetchone()[0])
    finally:
        conn.close()


def _ledger(url: str) -> int:
    stats = httpx.get(url + "/_llamakit/stats", headers={"x-api-key": KEY}).json()
    return int(stats["billed_calls"])


def _settled(read: Any) -> int:
    """The ledger once calls still running on the server (abandoned ones) have been billed."""
    last = read()
    while True:
        time.sleep(0.5)  # more than two server latencies
        now = read()
        if now == last:
            return int(now)
        last = now


@pytest.fixture
def server_url() -> Iterator[str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "llamakit.cli", "serve", "--backend", "scripted", "--port", "0",
         "--api-key", KEY, "--credits", "100", "--latency-ms", "200"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        url = proc.stdout.readline().split()[2]  # type: ignore[union-attr]
        assert url.startswith("http://127.0.0.1:"), url
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _child(url: str, db: Path) -> subprocess.Popen[str]:
    # A shell without job control starts background jobs with SIGINT ignored; restore the
    # default so the child sees the signal as Ctrl-C however the suite was launched.
    return subprocess.Popen(
        [sys.executable, str(CHILD), url, str(db), str(ITEMS)],
        env={**os.environ, "SEGMIND_API_KEY": KEY},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def _check_clean_interrupt(returncode: int, err: str) -> None:
    """What ``asyncio.run`` gives on Ctrl-C: its CancelledError-then-KeyboardInterrupt report,
    the exit by SIGINT, and nothing else (no other error, no task left pending)."""
    assert returncode == -signal.SIGINT, err
    raised = re.findall(r"^([A-Za-z_][\w.]*(?:Error|Exception|Interrupt|Warning)\b)", err, re.M)
    assert set(raised) <= {"asyncio.exceptions.CancelledError", "KeyboardInterrupt"}, err
    assert err.rstrip().endswith("KeyboardInterrupt"), err
    for noise in ("Task was destroyed", "never retrieved", "Exception ignored", "abandoned"):
        assert noise not in err, err
    assert "stopping run" in err and "interrupted at" in err, err


@pytest.mark.slow
def test_sigint_mid_arun_keeps_every_billed_reply(server_url: str, tmp_path: Path) -> None:
    moments = random.Random(2023)
    for trial in range(TRIALS):
        db = tmp_path / f"store-{trial}.db"
        before = _ledger(server_url)
        child = _child(server_url, db)
        while _stored(db) < 1:  # the run is sending
            assert child.poll() is None, child.communicate()
            time.sleep(0.01)
        at = moments.uniform(0.0, 1.2)  # the run's middle: it takes about 2 s in all
        time.sleep(at)
        child.send_signal(signal.SIGINT)
        _, err = child.communicate(timeout=60)
        paid = _settled(lambda: _ledger(server_url)) - before
        stored = _stored(db)
        assert paid == stored, (trial, at, paid, stored)  # nothing billed is lost
        assert 0 < stored < CELLS, (trial, at, stored)  # interrupted mid-run
        _check_clean_interrupt(child.returncode, err)
        assert _run_status(db) == "interrupted"

        rerun = _child(server_url, db)
        out, err = rerun.communicate(timeout=120)
        assert rerun.returncode == 0, err
        assert json.loads(out)["status"] == "finished"
        assert _settled(lambda: _ledger(server_url)) - before == CELLS  # only the rest was paid
        assert _stored(db) == CELLS


# -- in-process: task.cancel() and wait_for against the stand-in ----------------------------------


def _cells_stored(store: Store) -> int:
    return int(store.query("SELECT COUNT(*) AS n FROM responses")[0]["n"])


def _check_and_rerun(srv: Any, store: Store, exp: lk.Experiment, before: int) -> None:
    cells = 48  # make_experiment(items=16, repeats=1): 3 prompts x 16 items
    paid = _settled(lambda: billed(srv)) - before
    stored = _cells_stored(store)
    assert paid == stored
    assert 0 < stored < cells, stored
    runs = store.query("SELECT status FROM runs")
    assert [r["status"] for r in runs] == ["interrupted"]
    again = asyncio.run(exp.arun(srv.async_client(), store=store, concurrency=8, progress=False))
    assert again.status == "finished"
    assert billed(srv) - before == cells == _cells_stored(store)


@pytest.mark.parametrize("kind", ["async", "sync"])
def test_task_cancel_stores_the_calls_in_flight_then_raises_cancelled(
    kind: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with lk.local_server(backend="scripted", credits=10.0, latency_ms=150) as srv:
        store = Store(tmp_path / "s.db")
        exp = make_experiment(items=16, repeats=1, scorers=[])  # 48 cells, 8 at a time
        # A sync client's calls run on the runner's threads: cancelling cannot stop them.
        client = srv.async_client() if kind == "async" else srv.client()
        before = billed(srv)

        async def main() -> None:
            task = asyncio.create_task(exp.arun(client, store=store, concurrency=8, progress=False))
            await asyncio.sleep(0.4)  # mid-run, with 8 calls on the wire
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert task.cancelled()

        asyncio.run(main())
        err = capsys.readouterr().err
        assert "stopping run" in err and "interrupted at" in err and "abandoned" not in err
        _check_and_rerun(srv, store, exp, before)


def test_wait_for_timeout_stores_the_calls_in_flight(tmp_path: Path) -> None:
    with lk.local_server(backend="scripted", credits=10.0, latency_ms=150) as srv:
        store = Store(tmp_path / "s.db")
        exp = make_experiment(items=16, repeats=1, scorers=[])
        before = billed(srv)
        run = exp.arun(srv.async_client(), store=store, concurrency=8, progress=False)
        with pytest.raises(TimeoutError):
            asyncio.run(asyncio.wait_for(run, 0.4))
        _check_and_rerun(srv, store, exp, before)


def test_a_call_waiting_to_retry_is_not_waited_for(tmp_path: Path) -> None:
    # Every call fails (500, never billed) and would retry after 30 s: nothing is on the wire,
    # so the cancelled run ends at once instead of sitting out the backoff.
    slow = RetryPolicy(max_retries=3, base_delay=30.0, max_delay=30.0)
    with lk.local_server(backend="scripted", credits=10.0, fail_rate=1.0) as srv:
        store = Store(tmp_path / "s.db")
        exp = make_experiment(items=4, repeats=1, scorers=[])
        client = srv.async_client(retry_policy=slow)

        async def main() -> float:
            task = asyncio.create_task(exp.arun(client, store=store, concurrency=4, progress=False))
            await asyncio.sleep(0.3)  # every call is in its backoff by now
            task.cancel()
            cancelled = time.monotonic()
            with pytest.raises(asyncio.CancelledError):
                await task
            return time.monotonic() - cancelled

        assert asyncio.run(main()) < 2.0
        assert billed(srv) == 0
        cells = store.query("SELECT status FROM run_cells")
        assert cells == []  # stopped, not failed: the rerun sends them all
        assert [r["status"] for r in store.query("SELECT status FROM runs")] == ["interrupted"]


def test_a_second_cancel_abandons_the_wait_and_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with lk.local_server(backend="scripted", credits=10.0, latency_ms=1500) as srv:
        store = Store(tmp_path / "s.db")
        exp = make_experiment(items=4, repeats=1, scorers=[])

        async def main() -> float:
            task = asyncio.create_task(
                exp.arun(srv.async_client(), store=store, concurrency=4, progress=False)
            )
            await asyncio.sleep(0.3)
            task.cancel()
            await asyncio.sleep(0.1)
            task.cancel()  # impatient: do not wait for the calls on the wire
            cancelled = time.monotonic()
            with pytest.raises(asyncio.CancelledError):
                await task
            return time.monotonic() - cancelled

        assert asyncio.run(main()) < 1.0
        err = capsys.readouterr().err
        assert "abandoned 4 call(s) on the wire" in err and "a rerun pays" in err, err
        assert [r["status"] for r in store.query("SELECT status FROM runs")] == ["interrupted"]


def test_what_an_interrupt_says_matches_what_it_costs(capsys: Any) -> None:
    """On v2 an abandoned call's job is journalled (a rerun collects it); a run interrupted after
    its last cell has nothing left to resume."""
    from types import SimpleNamespace

    from llamakit.experiment.live_runs import announce_abandoned, announce_interrupted

    announce_abandoned("r1", 3, "v2")
    announce_abandoned("r1", 3, "v1")
    announce_interrupted(SimpleNamespace(id="r1", progress=SimpleNamespace(done=40, total=40)))
    announce_interrupted(SimpleNamespace(id="r1", progress=SimpleNamespace(done=12, total=40)))
    v2, v1, complete, partial = capsys.readouterr().err.splitlines()
    assert "journalled" in v2 and "a rerun pays again" not in v2
    assert "a rerun pays again" in v1
    assert "every cell is done" in complete and "resume" not in complete
    assert "run it again to resume" in partial
