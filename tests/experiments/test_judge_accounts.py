"""A judge with its own client may pay from another account (a second key on the same server, or
another server): each call's credits come from its own account's balance figures only, checked
against the server's ledger. Before, the judge's ``x-remaining-credits`` headers were read as the
run's, subtracted from the run's balance: judge_credits of ~50 per cell (the gap between two
accounts' balances), the run's cells unpriced, a poisoned cost per call that refused any later
budget ("below the cost of one call (32.256256)"), and a budgeted run stopped at once."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from exp_helpers import FAST_RETRIES, client_of, make_experiment

import llamakit as lk
from llamakit import scoring
from llamakit.server.config import key_label
from llamakit.store import Store

RUBRIC = "Is the answer {{ expected }}?"
JUDGE_KEY = "SG_judge_key_0123456789abcdef"


def _billed(srv: Any, api_key: str) -> Decimal:
    return Decimal(srv.stats()["per_key"][key_label(api_key)]["credits_spent"])


def _total(values: Any) -> Decimal:
    assert all(v is not None for v in values), list(values)
    return sum((Decimal(str(v)) for v in values), Decimal(0))


def _run(judge_client: Any, client: Any, store: Store, **kw: Any) -> Any:
    judge = scoring.judge(judge_client, RUBRIC, name="grade", reask=False)
    exp = make_experiment(items=10, repeats=1, scorers=[judge], name=kw.pop("name", "arith"))
    return exp.run(client, progress=False, store=store, **kw)


def _check(run: Any, store: Store, run_billed: Decimal, judge_billed: Decimal) -> None:
    results = run.results
    print(
        f"ledger run={run_billed} judge={judge_billed} | credits={_total(results['credits'])} "
        f"judge_credits={_total(results['judge_credits'])} spent={run.credits_spent}"
    )
    assert run_billed > 0 and judge_billed > 0
    assert run.credits_spent == run_billed
    assert _total(results["credits"]) == run_billed
    assert _total(results["judge_credits"]) == judge_billed
    listed = lk.runs(store).set_index("run_id").loc[run.id]
    assert listed["credits_spent"] == run_billed
    assert listed["judge_credits"] == judge_billed
    # No call is priced above what any call costs here (a delta across accounts was ~50).
    assert (store.observed_cost_per_call(None) or 0) < Decimal("0.01")


def test_judge_on_a_second_key_of_the_same_server(tmp_path: Path) -> None:
    with lk.local_server(backend="scripted", credits=100) as srv:
        srv.add_key(JUDGE_KEY, 50)
        judge_client = client_of(srv, api_key=JUDGE_KEY)
        store = Store(tmp_path / "s.db")
        run = _run(judge_client, client_of(srv), store, concurrency=1)
        _check(run, store, _billed(srv, srv.api_key), _billed(srv, JUDGE_KEY))
        # The store's cost per call is sane: a small budget is accepted and honoured.
        again = _run(judge_client, client_of(srv), store, name="arith2", budget=0.1)
        assert again.status == "finished"


def test_judge_on_a_second_server_interleaved(tmp_path: Path) -> None:
    # Concurrency 4: the run's calls and the judge's overlap, their headers interleave.
    with (
        lk.local_server(backend="scripted", credits=100) as srv,
        lk.local_server(backend="scripted", credits=100) as judge_srv,
    ):
        store = Store(tmp_path / "s.db")
        run = _run(client_of(judge_srv), client_of(srv), store, concurrency=4)
        _check(run, store, _billed(srv, srv.api_key), _billed(judge_srv, judge_srv.api_key))


@pytest.mark.parametrize("concurrency", [1, 4])
def test_budget_is_not_spent_by_another_accounts_balance(tmp_path: Path, concurrency: int) -> None:
    # The budget counts both accounts' real spend; the judge's balance (50 below the run's)
    # is not read as 50 credits spent, which stopped the run after its first grading.
    with lk.local_server(backend="scripted", credits=100) as srv:
        srv.add_key(JUDGE_KEY, 50)
        store = Store(tmp_path / "s.db")
        judge_client = client_of(srv, api_key=JUDGE_KEY)
        run = _run(judge_client, client_of(srv), store, concurrency=concurrency, budget=1)
        print(f"status={run.status} done={run.progress.done}/{run.progress.total}")
        assert run.status == "finished"
        _check(run, store, _billed(srv, srv.api_key), _billed(srv, JUDGE_KEY))


@pytest.mark.parametrize("concurrency", [1, 4])
def test_one_key_on_one_server_spelled_two_ways_is_one_account(
    tmp_path: Path, concurrency: int
) -> None:
    """The judge sent to localhost and the run to 127.0.0.1, one key: one balance. Counted as
    two accounts, each call was priced twice (0.0630 reported for a ledger of 0.0315) and a
    budget stopped the run at half its amount."""
    with lk.local_server(backend="scripted", credits=100) as srv:
        alias = srv.url.replace("127.0.0.1", "localhost") + "/v1"
        judge_client = lk.Client(srv.api_key, base_url=alias, retry_policy=FAST_RETRIES)
        client = client_of(srv)
        assert judge_client.account == client.account
        store = Store(tmp_path / "s.db")
        run = _run(judge_client, client, store, concurrency=concurrency)
        billed = _billed(srv, srv.api_key)
        summary_credits = _total(run.summary()["credits"])
        print(f"ledger={billed} summary credits={summary_credits} spent={run.credits_spent}")
        assert run.credits_spent == billed == summary_credits
        assert _total(run.results["judge_credits"]) < billed
        again = _run(judge_client, client, store, name="alias2", budget=Decimal("0.015"))
        # 20 paid calls cost 0.0126 here: a budget of 0.015 covers them once, not twice.
        assert again.status == "finished", again.progress
