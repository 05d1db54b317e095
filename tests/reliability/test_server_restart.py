"""Server restart mid-run (issue 6, item 2): the `llamakit serve` process is SIGKILLed while an
experiment is running against it and started again on the same port with the same `--db`.
The client rides it out with retries, no cell is lost, and balances survive the restart."""

from __future__ import annotations

import signal
import socket
import sqlite3
import time
from decimal import Decimal
from pathlib import Path

import pytest
from reliability_helpers import SUMMARY, ServeProcess

import llamakit as lk
from llamakit.client.retry import RetryPolicy
from llamakit.store import Store

pytestmark = pytest.mark.slow

CELLS = 400
CREDITS = Decimal("10.0")
PRICE = Decimal("0.00063")
CONCURRENCY = 8


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ledger(db: Path) -> tuple[Decimal, int, Decimal]:
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT balance, billed_calls, spent FROM accounts").fetchall()
    assert len(rows) == 1, rows  # one key, known by its label only
    balance, billed, spent = rows[0]
    return Decimal(balance), int(billed), Decimal(spent)  # the ledger stores decimal text


def test_client_rides_out_a_server_restart_and_balances_persist(tmp_path: Path) -> None:
    key = "SG_restart_0123456789"
    port = _free_port()
    db = tmp_path / "ledger.db"
    args = ("--credits", str(CREDITS), "--db", str(db), "--latency-ms", "40")
    server = ServeProcess(key, *args, port=port, log=tmp_path / "server.log")
    store = Store(tmp_path / "store.db")
    client = lk.Client(
        key,
        base_url=server.url + "/v1",
        timeout=10,
        # Long enough, in total, to outlast a restart (the new process needs a few seconds).
        retry_policy=RetryPolicy(max_retries=30, base_delay=0.1, max_delay=1.0),
    )
    items = [{"id": str(i), "q": f"restart question {i}"} for i in range(CELLS)]
    experiment = lk.Experiment(
        "restart", prompts="{{ q }}", dataset=items, params={"max_tokens": 8}
    )
    run = experiment.start(client, concurrency=CONCURRENCY, progress=False, store=store)
    try:
        deadline = time.monotonic() + 60
        while run.progress.done < CELLS // 4:
            assert time.monotonic() < deadline and not run.progress.finished, run.progress
            time.sleep(0.01)
        # Crash, not a graceful stop: calls in flight die with the process.
        server.proc.send_signal(signal.SIGKILL)
        server.proc.wait()
        done_at_crash = run.progress.done
        balance_at_crash, billed_at_crash, _ = _ledger(db)
        assert billed_at_crash >= done_at_crash and balance_at_crash < CREDITS
        time.sleep(0.5)  # the run keeps trying against a closed port meanwhile
        server.stop()
        server = ServeProcess(key, *args, port=port, log=tmp_path / "server.log")
        # The stored balance wins over --credits: a restart does not refill the account (the
        # run is already calling the new process, so the balance may have dropped further).
        assert server.balance() <= balance_at_crash
        run.wait(timeout=120)
    finally:
        run.stop()
        server.stop()

    assert run.status == "finished", run.progress
    results = run.results
    assert len(results) == CELLS and results["error"].isna().all()
    assert results["response"].notna().all()
    attempts = store.attempts(run.id)
    refused = [a for a in attempts if a["error"] == "APIConnectionError"]
    assert refused, "the restart never showed in the client's attempts"

    balance, billed, spent = _ledger(db)
    assert balance == CREDITS - spent  # exact
    assert spent == billed * PRICE
    # A crash can land after a call was billed and before its reply was sent: the client retries
    # it and the server bills again. At most one such call per call in flight.
    assert CELLS <= billed <= CELLS + CONCURRENCY, billed
    # The run's own figure (balance endpoint before and after) matches the persisted ledger.
    assert run.credits_spent == spent  # to the last digit
    assert run.spend_source == "balance"
    SUMMARY["restart"] = (
        f"server SIGKILLed at {done_at_crash}/{CELLS} cells and restarted on --db; "
        f"{len(refused)} refused attempts retried; billed {billed} for {CELLS} cells"
    )
    store.close()
