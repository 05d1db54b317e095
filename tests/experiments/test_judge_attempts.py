"""A judge's grading calls are in the run's attempt log whichever client makes them (the run's,
or the judge's own, sync or async), logged against the grading call's key as with the run's
client, and only the run's own (``llamakit.client.scope``): one mechanism for every client the
run calls through. Before, a judge with its own client left its attempts unlogged (60 responses,
20 attempt rows)."""

from __future__ import annotations

import asyncio
import json
import threading
from pathlib import Path
from typing import Any

import pytest
from exp_helpers import FAST_RETRIES, make_experiment

from llamakit import scoring
from llamakit.store import Store

RUBRIC = "Is the answer {{ expected }}?"
GRADER = "llama-v3p1-8b-instruct"


def _judge_keys(store: Store, run_id: str) -> set[str]:
    keys: set[str] = set()
    for cell in store.cell_rows(run_id, columns="judge_keys"):
        for value in json.loads(cell["judge_keys"] or "{}").values():
            keys.update(value if isinstance(value, list) else [value])
    return keys


def _check_log(store: Store, run: Any) -> set[str]:
    """Every stored reply of the run has exactly its attempts logged; returns the judge keys."""
    judged = _judge_keys(store, run.id)
    assert judged
    logged: dict[str, int] = {}
    for row in store.attempts(run.id):
        logged[row["cell_key"]] = logged.get(row["cell_key"], 0) + 1
    replies = store.query("SELECT cell_key, attempts FROM responses WHERE run_id = ?", (run.id,))
    assert {r["cell_key"] for r in replies} == set(logged)
    assert all(logged[r["cell_key"]] == r["attempts"] for r in replies)
    assert judged <= set(logged)  # every grading call's attempts, against its own key
    return judged


def _judge(client: Any) -> Any:
    return scoring.judge(client, RUBRIC, name="grade")


@pytest.mark.parametrize("whose", ["run's client", "own Client", "own AsyncClient"])
def test_judge_attempts_are_logged_whichever_client_grades(
    whose: str, server: Any, tmp_path: Path
) -> None:
    server.set_faults(fail_rate=0.2, seed=7)  # retries: more than one attempt per call
    client = server.client(retry_policy=FAST_RETRIES)
    seen: list[Any] = []
    if whose == "run's client":
        grader = None
    elif whose == "own Client":
        grader = server.client(retry_policy=FAST_RETRIES, model=GRADER, on_attempt=seen.append)
    else:
        grader = server.async_client(
            retry_policy=FAST_RETRIES, model=GRADER, on_attempt=seen.append
        )
    store = Store(tmp_path / "s.db")
    exp = make_experiment(items=6, repeats=1, scorers=[_judge(grader)])
    run = exp.run(client, concurrency=4, progress=False, store=store)
    assert run.status == "finished"
    judged = _check_log(store, run)
    if grader is not None:
        # The judge's own client saw exactly the attempts the run logged for its gradings.
        rows = [r for r in store.attempts(run.id) if r["cell_key"] in judged]
        assert sorted((a.call_id, a.attempt) for a in seen) == sorted(
            (r["call_id"], r["attempt"]) for r in rows
        )
        assert any(r["status"] == 500 for r in rows), "no retry: this would prove little"


def test_async_run_logs_its_judges_own_client(server: Any, tmp_path: Path) -> None:
    client = server.async_client(retry_policy=FAST_RETRIES)
    grader = server.async_client(retry_policy=FAST_RETRIES, model=GRADER)
    store = Store(tmp_path / "s.db")
    exp = make_experiment(items=6, repeats=1, scorers=[_judge(grader)])
    run = asyncio.run(exp.arun(client, concurrency=4, progress=False, store=store))
    _check_log(store, run)


def test_runs_sharing_a_judges_client_each_log_only_their_own(server: Any, tmp_path: Path) -> None:
    # Two runs in threads, each with its own client, grade through one shared judge client.
    seen: list[Any] = []
    grader = server.client(retry_policy=FAST_RETRIES, model=GRADER, on_attempt=seen.append)
    stores = [Store(tmp_path / f"s{i}.db") for i in range(2)]
    exps = [
        make_experiment(items=6, repeats=1, scorers=[_judge(grader)], name=f"r{i}")
        for i in range(2)
    ]
    runs: list[Any] = [None, None]

    def go(i: int) -> None:
        client = server.client(retry_policy=FAST_RETRIES)
        runs[i] = exps[i].run(client, concurrency=4, progress=False, store=stores[i])

    threads = [threading.Thread(target=go, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    graded = 0
    for store, run in zip(stores, runs, strict=True):
        judged = _check_log(store, run)
        graded += sum(1 for r in store.attempts(run.id) if r["cell_key"] in judged)
    assert graded == len(seen)  # each grading attempt is in exactly one run's log
