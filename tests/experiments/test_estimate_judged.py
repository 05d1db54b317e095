"""The estimate counts the grading calls a run would pay for: a run grades every cell's reply,
cached or new, and a grading is itself cached under its request key. The estimate used to count
one grading per judge per new reply only, so a judge added over cached replies was estimated at
0 calls and 0 credits while the run paid a grading per reply (20 calls, 0.0126 credits).

Each test checks the estimate against what the stand-in then bills (its ledger) and what the run
says it spent, to the last digit: the stand-in bills the published prices, so the estimate's
prices (published, or the store's observed mean of them) are the billed ones."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from exp_helpers import billed, rows

import llamakit as lk
from llamakit import scoring
from llamakit._defaults import PUBLISHED_COST_BY_MODEL, PUBLISHED_COST_PER_CALL
from llamakit.client.retry import RetryPolicy

V3, V70 = "llama-v3-8b-instruct", "llama-v3p1-70b-instruct"
PRICE, PRICE_70 = PUBLISHED_COST_PER_CALL, PUBLISHED_COST_BY_MODEL[V70]
# Graders that always end with a verdict (no re-ask), except the "ramble" judge's grading: no
# verdict line, so a judge that re-asks asks once more, answered with the line alone.
RULES = [
    {"pattern": "did not end with the verdict line", "reply": "VERDICT: PASS"},
    {"pattern": "Ramble", "reply": "It looks fine to me."},
    {"pattern": "Response to grade", "reply": "Right.\nVERDICT: PASS"},
]


@pytest.fixture
def srv() -> Iterator[Any]:
    with lk.local_server(
        backend="scripted",
        credits=10,
        latency_ms=1,
        rules=RULES,
        cost_per_call=PRICE,
        slug_costs={V70: PRICE_70},
    ) as server:
        yield server


@pytest.fixture
def store(tmp_path: Path) -> lk.Store:
    return lk.Store(tmp_path / "runs.db")


def exp(scorers: list[Any], *, items: int = 20, repeats: int = 1) -> lk.Experiment:
    return lk.Experiment(
        "graded",
        prompts={"plain": "What is {{ a }} + {{ b }}?"},
        dataset=rows(items),
        params={"max_tokens": 16},
        repeats=repeats,
        scorers=scorers,
    )


def correct(client: Any = None, **kw: Any) -> Any:
    return scoring.judge(client, "Is the answer {{ expected }} correct?", scale=1, **kw)


def brief() -> Any:
    return scoring.judge(None, "Is the answer brief?", scale=1, name="brief")


def run_as_estimated(experiment: lk.Experiment, srv: Any, store: lk.Store) -> lk.Estimate:
    """Estimate, run, and check the run paid exactly what the estimate said: calls and credits."""
    est = experiment.estimate(srv.client(), store=store)
    before = billed(srv)
    run = experiment.run(srv.client(), store=store, progress=False, concurrency=1)
    assert run.status == "finished"
    assert billed(srv) - before == est.calls
    assert run.credits_spent == est.credits
    return est


def test_a_judge_added_over_cached_replies_grades_each_of_them(srv: Any, store: lk.Store) -> None:
    exp([scoring.contains()]).run(srv.client(), store=store, progress=False)
    assert billed(srv) == 20
    est = run_as_estimated(exp([scoring.contains(), correct()]), srv, store)
    assert (est.cells_to_run, est.judge_calls, est.calls) == (0, 20, 20)
    assert est.judge_credits == est.credits == 20 * PRICE
    assert "+ 20 judge calls (~0.0126 credits)" in str(est)


def test_cached_and_new_cells_are_all_graded(srv: Any, store: lk.Store) -> None:
    exp([scoring.contains()], items=8).run(srv.client(), store=store, progress=False)
    est = run_as_estimated(exp([correct()]), srv, store)
    assert (est.cells_to_run, est.cells_finished, est.judge_calls) == (12, 8, 20)
    assert est.credits == 32 * PRICE and est.judge_credits == 20 * PRICE


def test_gradings_a_previous_run_paid_are_not_counted(srv: Any, store: lk.Store) -> None:
    exp([scoring.contains()]).run(srv.client(), store=store, progress=False)
    exp([correct()], items=8).run(srv.client(), store=store, progress=False)  # grades q00-q07
    est = run_as_estimated(exp([correct()]), srv, store)
    assert (est.cells_to_run, est.judge_calls) == (0, 12)
    # And new cells on top: 4 to send and grade, the 20 cached ones graded already.
    est = run_as_estimated(exp([correct()], items=24), srv, store)
    assert (est.cells_to_run, est.judge_calls, est.credits) == (4, 4, 8 * PRICE)


def test_two_judges_are_counted_each_on_its_own_cache(srv: Any, store: lk.Store) -> None:
    exp([scoring.contains()]).run(srv.client(), store=store, progress=False)
    exp([correct()], items=5).run(srv.client(), store=store, progress=False)
    est = run_as_estimated(exp([correct(), brief()]), srv, store)
    assert (est.cells_to_run, est.judge_calls) == (0, 15 + 20)


def test_a_judge_on_its_own_model_is_priced_there(srv: Any, store: lk.Store) -> None:
    exp([scoring.contains()], items=15).run(srv.client(), store=store, progress=False)
    graded = exp([correct(srv.client(model=V70), name="big")])
    est = run_as_estimated(graded, srv, store)
    assert (est.cells_to_run, est.judge_calls) == (5, 20)
    assert est.judge_credits == 20 * PRICE_70
    assert est.credits == 5 * PRICE + 20 * PRICE_70


def test_a_request_several_cells_share_is_graded_once(srv: Any, store: lk.Store) -> None:
    # Repeats of a greedy scripted reply are the same text: one grading per item, not per cell.
    exp([scoring.contains()], items=6, repeats=3).run(srv.client(), store=store, progress=False)
    est = run_as_estimated(exp([correct()], items=6, repeats=3), srv, store)
    assert (est.cells_total, est.cells_to_run, est.judge_calls) == (18, 0, 6)


def test_a_stored_grading_without_a_verdict_is_reasked(srv: Any, store: lk.Store) -> None:
    ramble = scoring.judge(None, "Ramble about it.", scale=1, name="ramble", reask=False)
    exp([ramble], items=6).run(srv.client(), store=store, progress=False)  # unscored, stored
    reasking = scoring.judge(None, "Ramble about it.", scale=1, name="ramble")
    est = run_as_estimated(exp([reasking], items=6), srv, store)
    assert (est.cells_to_run, est.judge_calls) == (0, 6)  # the gradings cached, the re-asks not


def test_a_rerun_with_every_grading_cached_is_free(srv: Any, store: lk.Store) -> None:
    judged = exp([correct(), brief()], items=6)
    first = run_as_estimated(judged, srv, store)
    assert (first.cells_to_run, first.judge_calls) == (6, 12)
    est = run_as_estimated(judged, srv, store)
    assert (est.calls, est.judge_calls) == (0, 0)
    assert est.credits == est.judge_credits == 0 and str(est.judge_credits) == "0"


def test_a_budget_of_the_estimate_pays_every_grading(srv: Any, store: lk.Store) -> None:
    # The budget reserves each call, gradings included, at the price the estimate used: the
    # estimate's credits are enough for the run, one call less stops it a grading short.
    exp([scoring.contains()], items=6).run(srv.client(), store=store, progress=False)
    short = exp([correct()], items=6).estimate(srv.client(), store=store)
    assert short.calls == short.judge_calls == 6
    stopped = exp([correct()], items=6).run(
        srv.client(), store=store, progress=False, concurrency=1, budget=short.credits - PRICE
    )
    paid = stopped.credits_spent
    assert stopped.status == "budget" and paid == 5 * PRICE
    rest = exp([correct()], items=6).estimate(srv.client(), store=store)
    assert rest.judge_calls == 1
    resumed = exp([correct()], items=6).run(
        srv.client(), store=store, progress=False, concurrency=1, budget=rest.credits
    )
    assert resumed.status == "finished"
    assert resumed.id == stopped.id and resumed.credits_spent - paid == rest.credits == PRICE


def test_a_resumed_run_does_not_grade_its_done_cells_again(srv: Any, store: lk.Store) -> None:
    # The judge's own server fails every grading: the cells the run does are done, unscored.
    with lk.local_server(backend="scripted", credits=10, rules=RULES, fail_rate=1.0) as bad:
        grader = bad.client(retry_policy=RetryPolicy(max_retries=0))
        judged = exp([correct(grader)], items=6)
        stopped = judged.run(
            srv.client(), store=store, progress=False, concurrency=1, budget=3 * PRICE
        )
        assert stopped.status == "budget" and billed(srv) == 3 and billed(bad) == 0
        # The budget stopped the run at the third cell's grading: 2 cells done, unscored.
        done = store.cell_rows(stopped.id, "status = 'done'", (), columns="cell_id")
        assert len(done) == 2
        bad.set_faults(fail_rate=0.0)
        # Resumed, the run skips its done cells (their failed gradings stand): it grades the
        # third cell's cached reply and sends and grades 3 cells. A new run would grade all 6.
        est = judged.estimate(srv.client(), store=store)
        assert (est.cells_to_run, est.judge_calls) == (3, 4)
        run = judged.run(srv.client(), store=store, progress=False, concurrency=1)
        assert run.id == stopped.id and run.status == "finished"
        assert billed(srv) - 3 + billed(bad) == est.calls == 7
