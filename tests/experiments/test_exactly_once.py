"""Each cell paid for once, whatever happens: processes started at once on one store, a claim whose
owner died, an edited prompt. Runner processes are real separate processes against a real local
server in this process; what they paid is read from the server's ledger (``billed_calls``).

A cell is done only after a billed call answered it, so "billed == cells and every cell done"
means exactly one billed call per cell.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from exp_helpers import billed, client_of, rows

import llamakit as lk
from llamakit.experiment.run import load_run
from llamakit.store import Store
from llamakit.store._claims import Busy, Lease

HERE = Path(__file__).parent
TRIALS = 20
ITEMS = 4  # x 2 variants x 2 repeats = 16 cells per trial


def _start_runners(srv: Any, work: Path, names: list[str]) -> list[subprocess.Popen[str]]:
    env = {**os.environ, "SEGMIND_API_KEY": srv.api_key}
    return [
        subprocess.Popen(
            [
                sys.executable,
                str(HERE / "claim_runner.py"),
                srv.url,
                str(work),
                name,
                str(TRIALS),
                str(ITEMS),
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for name in names
    ]


def _wait_for(predicate: Any, procs: list[subprocess.Popen[str]], what: str) -> None:
    deadline = time.monotonic() + 60
    while not predicate():
        for p in procs:
            assert p.poll() is None, f"{what}: a runner exited: {p.stderr.read()}"  # type: ignore[union-attr]
        assert time.monotonic() < deadline, what
        time.sleep(0.002)


@pytest.mark.parametrize("processes", [2, 4])
def test_processes_started_at_once_bill_each_cell_once(processes: int, tmp_path: Path) -> None:
    cells = ITEMS * 2 * 2
    names = [f"p{i}" for i in range(processes)]
    with lk.local_server(backend="scripted", credits=100.0, latency_ms=5) as srv:
        procs = _start_runners(srv, tmp_path, names)
        figures = []
        try:
            for trial in range(TRIALS):
                ready = [tmp_path / f"ready-{trial}-{n}" for n in names]
                _wait_for(lambda r=ready: all(f.exists() for f in r), procs, f"trial {trial}")
                before, balance = billed(srv), srv.balance()
                (tmp_path / f"go-{trial}").touch()  # every runner starts now, on a fresh store
                lines = [json.loads(p.stdout.readline()) for p in procs]  # type: ignore[union-attr]
                paid = billed(srv) - before
                store = Store(tmp_path / f"store-{trial}.db")
                runs = store.query("SELECT run_id, status FROM runs")
                figures.append((paid, [line["paid"] for line in lines]))
                assert paid == cells, (trial, lines)
                assert store.query("SELECT COUNT(*) AS n FROM responses")[0]["n"] == cells
                assert sum(line["paid"] for line in lines) == cells
                assert all(r["status"] == "finished" for r in runs), runs
                assert store.live_claims() == []
                # Usually every process joins one run. One that starts after the run finished
                # (a loaded machine) makes a fully cached rerun sharing its cells: it pays for
                # nothing and stores no cells of its own, so there is still one set of cells.
                (base,) = {store.cells_run(r["run_id"]) for r in runs}
                done = store.query("SELECT COUNT(*) AS n FROM run_cells WHERE status = 'done'")
                assert done[0]["n"] == cells, (trial, lines)
                for r in runs:
                    assert len(store.done_cell_ids(r["run_id"])) == cells, (trial, lines)
                # The run's spend is the ledger's debit, exactly, however many processes paid:
                # each process's balances moved with the others' calls too (see spans.py).
                debit = balance - srv.balance()
                assert lk.runs(store)["credits_spent"].sum() == debit, (trial, lines)
                assert load_run(base, store).results["credits"].sum() == debit
                store.close()
        finally:
            for p in procs:
                p.kill() if p.poll() is None else None
                p.wait(timeout=30)
                p.stdout.close()  # type: ignore[union-attr]
                p.stderr.close()  # type: ignore[union-attr]
    # They cooperated: in most trials more than one process paid for cells.
    shared = sum(1 for _, split in figures if sum(1 for n in split if n) > 1)
    print(f"\n{processes} processes x {TRIALS} trials: billed {[f[0] for f in figures]}, "
          f"split {[f[1] for f in figures]}, shared in {shared} trials")  # fmt: skip
    assert shared >= TRIALS // 2


HOLDER = textwrap.dedent(
    """
    import sys, time
    from llamakit.store import Store
    from llamakit.store._claims import Lease
    store = Store(sys.argv[1])
    lease = Lease(store, "other").start()
    assert store.claim_cell("k1", lease) is None
    print("claimed", flush=True)
    time.sleep(float(sys.argv[2]))
    """
)


def test_a_live_claim_elsewhere_is_respected_and_a_dead_ones_is_taken_over(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    Store(path).close()
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(path), "60"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "claimed"  # type: ignore[union-attr]
        store = Store(path)
        lease = Lease(store, "mine")
        assert isinstance(store.claim_cell("k1", lease), Busy)  # another live process pays
        assert store.claim_cell("k2", lease) is None  # others are free
        holder.kill()
        holder.wait(timeout=10)
        assert store.claim_cell("k1", lease) is None  # its owner died: taken over at once
    finally:
        holder.kill() if holder.poll() is None else None
        holder.wait()
        holder.stdout.close()  # type: ignore[union-attr]
    # A stored reply is returned instead of a claim, whoever claimed it.
    store.record_call({"cell_key": "k1", "messages": [], "params": {}, "repeat": 0, "text": "hi"})
    assert store.claim_cell("k1", lease)["text"] == "hi"  # type: ignore[index]


def test_a_claim_with_a_stale_heartbeat_is_taken_over(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.db")
    other = Lease(store, "other")  # a live owner in this process ...
    assert store.claim_cell("k", other) is None
    mine = Lease(store, "mine")
    assert isinstance(store.claim_cell("k", mine), Busy)
    store._db.query("UPDATE claims SET heartbeat = heartbeat - 3600")  # ... that stopped beating
    assert store.claim_cell("k", mine) is None
    other.close()


def test_a_closed_lease_in_this_process_frees_its_claims(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.db")
    first = Lease(store, "a")
    assert store.claim_cell("k", first) is None
    first.close()
    assert store.claim_cell("k", Lease(store, "b")) is None


def _arith(plain: str) -> lk.Experiment:
    return lk.Experiment(
        "arith",
        prompts={"terse": "{{ a }} + {{ b }} =", "plain": plain},
        dataset=rows(3),
        params={"max_tokens": 16},
    )


def test_an_edited_prompt_starts_a_new_run_and_reuses_unchanged_cells(server, capsys) -> None:
    client = client_of(server)
    # Stopped by its budget after two calls: the first two "terse" cells.
    run1 = _arith("What is {{ a }} + {{ b }}?").run(client, progress=False, budget=0.0013)
    assert run1.status == "budget" and billed(server) == 2
    capsys.readouterr()

    run2 = _arith("What is {{ a }} plus {{ b }}?").run(client, progress=False)  # edited
    err = capsys.readouterr().err
    assert run2.id != run1.id and run2.status == "finished"
    assert err.count("\n") == 1 and f"changed since run {run1.id} (prompts)" in err, err
    results = run2.results.set_index(["variant", "item_id"])
    assert results.loc["terse", "cached"].tolist() == [True, True, False]
    assert not results.loc["plain", "cached"].any()
    assert billed(server) == 2 + 4  # the two cached cells were free
    # The old run keeps only the old wording's replies.
    assert set(run1.results["prompt"]) == set(results.loc["terse", "prompt"].iloc[:2])

    # An unchanged experiment resumes its unfinished run rather than starting another.
    run3 = _arith("What is {{ a }} + {{ b }}?").run(client, progress=False)
    assert run3.id == run1.id and run3.status == "finished" and billed(server) == 6 + 3
    assert "changed" not in capsys.readouterr().err


def _variant(**change: Any) -> lk.Experiment:
    from llamakit import scoring

    spec: dict[str, Any] = {
        "prompts": {"terse": "{{ a }} + {{ b }} =", "plain": "What is {{ a }} + {{ b }}?"},
        "dataset": rows(3),
        "params": {"max_tokens": 16},
        "scorers": [scoring.contains()],
        **change,
    }
    return lk.Experiment("arith", **spec)


@pytest.mark.parametrize(
    "change",
    [
        {"prompts": {"terse": "{{ a }} + {{ b }} =", "plain": "What is {{ a }} plus {{ b }}?"}},
        {"prompts": {"terse": [{"role": "system", "content": "Be brief."},
                               {"role": "user", "content": "{{ a }} + {{ b }} ="}],
                     "plain": "What is {{ a }} + {{ b }}?"}},
        {"params": {"max_tokens": 17}},
        {"params": {"max_tokens": 16, "temperature": 0.5}},
        {"dataset": [{**r, "a": r["a"] + 100} for r in rows(3)]},
        {"dataset": [{**r, "expected": "other"} for r in rows(3)]},
        {"scorers": []},
        {"scorers": [lk.scoring.exact()]},
        {"repeats": 2},
    ],
    ids=["prompt", "system-message", "params", "new-param", "row-values", "row-expected",
         "no-scorer", "other-scorer", "repeats"],
)  # fmt: skip
def test_the_fingerprint_covers_everything_that_changes_a_request(change: dict[str, Any]) -> None:
    base = _variant()
    assert base.fingerprint("m", "src") == _variant().fingerprint("m", "src")
    assert _variant(**change).fingerprint("m", "src") != base.fingerprint("m", "src")
    assert base.fingerprint("m2", "src") != base.fingerprint("m", "src")
    assert base.fingerprint("m", "other-server") != base.fingerprint("m", "src")


def test_the_fingerprint_covers_a_judges_rubric(server) -> None:
    from llamakit import scoring

    def judged(rubric: str) -> str:
        judge = scoring.judge(server.client(), rubric, name="j")
        return _variant(scorers=[judge]).fingerprint("m", "src")

    assert judged("Is {{ expected }} right?") == judged("Is {{ expected }} right?")
    assert judged("Is {{ expected }} right?") != judged("Is {{ expected }} correct?")


def test_a_running_lease_keeps_its_claims_alive(tmp_path: Path, monkeypatch) -> None:
    from llamakit.store import _claims

    monkeypatch.setattr(_claims, "HEARTBEAT_S", 0.02)
    store = Store(tmp_path / "s.db")
    lease = Lease(store, "r").start()
    assert store.claim_cell("k", lease) is None
    first = store.query("SELECT heartbeat FROM claims")[0]["heartbeat"]
    deadline = time.monotonic() + 10
    while store.query("SELECT heartbeat FROM claims")[0]["heartbeat"] == first:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    lease.close()
    assert store.query("SELECT COUNT(*) AS n FROM claims")[0]["n"] == 0


def test_a_process_killed_mid_run_leaves_its_cells_to_the_other(tmp_path: Path) -> None:
    """Two processes share a run; one is SIGKILLed holding claims. The other takes its cells
    over at once (its pid is gone) rather than after the 60 s lease, and finishes the run. The
    only cost is v1's: calls in flight in the killed process were billed and are paid again."""
    import signal
    import sqlite3

    items, concurrency = 10, 4
    cells = items * 2 * 2
    with lk.local_server(backend="scripted", credits=100.0, latency_ms=150) as srv:
        env = {**os.environ, "SEGMIND_API_KEY": srv.api_key}
        procs = [
            subprocess.Popen(
                [
                    sys.executable,
                    str(HERE / "claim_runner.py"),
                    srv.url,
                    str(tmp_path),
                    name,
                    "1",
                    str(items),
                ],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )  # fmt: skip
            for name in ("victim", "survivor")
        ]
        victim, survivor = procs
        try:
            ready = [tmp_path / f"ready-0-{n}" for n in ("victim", "survivor")]
            _wait_for(lambda: all(r.exists() for r in ready), procs, "ready")
            (tmp_path / "go-0").touch()
            db = tmp_path / "store-0.db"

            def victim_holds_claims() -> bool:
                if not db.exists():
                    return False
                conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
                try:
                    sql = "SELECT COUNT(*) FROM claims WHERE pid = ?"
                    held = conn.execute(sql, (victim.pid,)).fetchone()[0]
                    done = conn.execute("SELECT COUNT(*) FROM responses").fetchone()[0]
                except sqlite3.OperationalError:  # not migrated yet
                    return False
                finally:
                    conn.close()
                return held > 0 and done >= 4

            _wait_for(victim_holds_claims, procs, "victim claims")
            os.kill(victim.pid, signal.SIGKILL)
            victim.wait(timeout=10)
            started = time.monotonic()
            line = json.loads(survivor.stdout.readline())  # type: ignore[union-attr]
            took = time.monotonic() - started
        finally:
            for p in procs:
                p.kill() if p.poll() is None else None
                p.wait(timeout=30)
                p.stdout.close()  # type: ignore[union-attr]
                p.stderr.close()  # type: ignore[union-attr]
        assert line["status"] == "finished" and line["done"] == cells, line
        assert took < 30  # not waiting out the 60 s lease
        store = Store(tmp_path / "store-0.db")
        assert store.query("SELECT COUNT(*) AS n FROM responses")[0]["n"] == cells
        assert cells <= billed(srv) <= cells + concurrency
        print(f"\nkilled mid-run: survivor finished {cells} cells {took:.1f} s after the kill, "
              f"billed {billed(srv)}")  # fmt: skip
