"""The runner against the scripted local server over real HTTP: rows, retries, resume, budget,
406, replay, judge cells, credits."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest
from exp_helpers import billed, client_of, make_experiment, requests_total

import llamakit as lk
from llamakit import scoring


def test_three_variants_by_twenty_items_by_two_repeats_yield_120_rows(server) -> None:
    run = make_experiment().run(client_of(server), progress=False)
    frame = run.results
    assert run.status == "finished"
    assert len(frame) == 120
    assert frame.groupby("variant").size().to_dict() == {"cot": 40, "plain": 40, "terse": 40}
    assert sorted(frame["repeat"].unique()) == [0, 1]
    assert frame["cell_key"].nunique() == 120  # repeats are independent samples, not cache hits
    assert frame["error"].isna().all() and frame["response"].notna().all()
    assert billed(server) == 120
    assert "score_contains" in frame and frame["score_contains"].isin([0.0, 1.0]).all()
    assert frame["expected"].tolist()[:2] == ["1", "1"]


def test_twenty_percent_500s_every_cell_finishes_and_is_billed_once(server) -> None:
    server.set_faults(fail_rate=0.2, seed=7)
    run = make_experiment().run(client_of(server), concurrency=8, progress=False)
    frame = run.results
    assert run.status == "finished"
    assert len(frame) == 120 and frame["error"].isna().all()
    assert server.stats()["requests"].get("500", 0) > 0
    assert billed(server) == 120
    assert frame["attempts"].max() > 1
    # every attempt was logged, the failed ones included
    attempts = run.store.attempts(run.id)
    assert sum(1 for a in attempts if a["status"] == 500) == server.stats()["requests"]["500"]
    assert sum(1 for a in attempts if a["status"] == 200) == 120


def test_rerun_of_a_finished_run_sends_zero_requests(server) -> None:
    make_experiment().run(client_of(server), progress=False)
    before = requests_total(server)
    again = make_experiment().run(client_of(server), progress=False)
    assert requests_total(server) == before
    assert again.status == "finished"
    assert len(again.results) == 120 and again.results["cached"].all()
    assert again.credits_spent == 0.0


def test_spend_is_the_providers_balance_delta_and_calls_say_how_precise(server) -> None:
    start = server.balance()
    run = make_experiment(items=4, repeats=1).run(client_of(server), progress=False)
    spent = start - server.balance()
    assert run.credits_spent == spent  # exact: the ledger's debit, to the last digit
    assert run.spend_source == "balance"
    assert run.results["credits"].sum() == spent
    assert set(run.results["credits_precision"]) <= {"exact", "apportioned"}


def test_calls_that_never_overlap_get_exact_credits(server) -> None:
    run = make_experiment(items=3, repeats=1).run(client_of(server), concurrency=1, progress=False)
    frame = run.results
    assert (frame["credits_precision"] == "exact").all()
    assert frame["credits"].tolist() == [Decimal("0.00063")] * len(frame)


def test_budget_stops_the_run_at_or_below_the_budget(server) -> None:
    budget = 0.01  # about 15 calls at 0.00063
    start = server.balance()
    run = make_experiment().run(client_of(server), budget=budget, concurrency=8, progress=False)
    assert run.status == "budget"
    spent_on_server = start - server.balance()
    assert spent_on_server <= budget
    assert run.credits_spent <= budget
    done = run.progress.done
    assert 0 < done < 120 and billed(server) == done


@pytest.mark.parametrize("budget", ["ten", -1, float("nan"), True])
def test_a_bad_budget_is_rejected_before_any_request(server, budget) -> None:
    with pytest.raises(lk.ValidationError, match="budget"):
        make_experiment().run(client_of(server), budget=budget, progress=False)
    assert requests_total(server) == 0


def test_406_mid_run_keeps_finished_rows_and_the_next_run_resumes_after_top_up() -> None:
    with lk.local_server(backend="scripted", credits=0.00063 * 30 + 1e-6, latency_ms=2) as srv:
        exp = make_experiment()
        first = exp.run(client_of(srv), progress=False)
        assert first.status == "insufficient_credits"
        kept = first.results
        assert len(kept) == billed(srv) == 30  # every paid call is a kept row
        assert kept["error"].isna().all()
        srv.set_credits(10.0)
        second = exp.run(client_of(srv), progress=False)
        assert second.id == first.id  # the same run, resumed
        assert second.status == "finished"
        assert len(second.results) == 120
        assert billed(srv) == 120
        assert second.credits_spent == 120 * Decimal("0.00063")


def test_replay_runs_offline_and_fails_on_an_unseen_cell() -> None:
    with lk.local_server(backend="scripted", credits=10.0) as srv:
        live = make_experiment(items=5).run(client_of(srv), progress=False)
    # the server is gone: replay must not need it, nor a client
    replayed = make_experiment(items=5).run(None, mode="replay", progress=False)
    assert replayed.status == "finished"
    assert replayed.results["response"].tolist() == live.results["response"].tolist()
    with pytest.raises(lk.ReplayMissError, match="item='q05'"):
        make_experiment(items=6).run(None, mode="replay", progress=False)


def test_a_scorer_that_raises_is_recorded_per_cell_not_fatal(server) -> None:
    def flaky(text: str, row: dict) -> float:
        if row["id"] == "q01":
            raise ValueError("boom on q01")
        return 1.0

    run = make_experiment(items=3, repeats=1, scorers=[scoring.as_scorer(flaky)]).run(
        client_of(server), progress=False
    )
    frame = run.results
    assert run.status == "finished" and len(frame) == 9
    bad = frame[frame["item_id"] == "q01"]
    assert bad["score_flaky"].isna().all()
    assert bad["scorer_errors"].str.contains("ValueError: boom on q01").all()
    assert (frame[frame["item_id"] != "q01"]["score_flaky"] == 1.0).all()


def test_judge_calls_are_cells_cached_and_costed(server) -> None:
    grader = scoring.judge(None, "Does the answer equal {{ expected }}?", scale=1)
    exp = make_experiment(items=2, repeats=1, scorers=[grader])
    run = exp.run(client_of(server), progress=False)
    frame = run.results
    # One grading call per distinct (response, rubric): identical answers share their grade.
    # The scripted backend's prose has no verdict line, so each grading is re-asked once.
    gradings = len(set(zip(frame["response"], frame["expected"], strict=True)))
    assert billed(server) == 6 + 2 * gradings
    assert run.credits_spent == (6 + 2 * gradings) * Decimal("0.00063")
    assert frame["score_judge"].isna().all() and frame["scorer_errors"].notna().all()
    assert frame["judge_reason"].str.startswith("unscored: UnscoredReply").all()
    assert (
        frame["judge_reason"].str.contains("[asked again for the verdict line]", regex=False).all()
    )
    assert frame["credits"].sum() + frame["judge_credits"].sum() == run.credits_spent
    make_experiment(items=2, repeats=1, scorers=[grader]).run(client_of(server), progress=False)
    # the rerun found the answers, the grades and the re-asks in the store
    assert billed(server) == 6 + 2 * gradings


def test_progress_and_subscribe_follow_a_background_run(server) -> None:
    seen = []
    run = make_experiment(items=5, repeats=1).start(client_of(server), progress=False)
    run.subscribe(seen.append)
    run.wait(timeout=60)
    assert run.status == "finished"
    p = run.progress
    assert p.finished and p.total == p.done == 15 and p.errors == {}
    assert p.credits_spent == 15 * Decimal("0.00063")
    assert seen and seen[-1].finished


def test_stop_ends_a_background_run_cleanly_and_rerun_resumes(server) -> None:
    server.set_faults(latency_ms=30)
    exp = make_experiment()
    run = exp.start(client_of(server), concurrency=2, progress=False)
    run.subscribe(lambda p: run.stop() if p.done >= 10 else None)
    run.wait(timeout=60)
    assert run.status == "stopped"
    assert 10 <= len(run.results) < 120
    server.set_faults(latency_ms=0)
    resumed = exp.run(client_of(server), progress=False)
    assert resumed.id == run.id and resumed.status == "finished"
    assert billed(server) == 120


def test_sync_run_works_inside_a_running_event_loop(server) -> None:
    async def notebook_cell() -> lk.Run:
        return make_experiment(items=2, repeats=1).run(client_of(server), progress=False)

    run = asyncio.run(notebook_cell())
    assert run.status == "finished" and len(run.results) == 6


def test_an_async_client_works_too(server) -> None:
    from exp_helpers import FAST_RETRIES

    client = server.async_client(retry_policy=FAST_RETRIES)
    run = make_experiment(items=2, repeats=1).run(client, progress=False)
    assert run.status == "finished" and len(run.results) == 6
    assert billed(server) == 6


def test_a_wrong_key_fails_the_run_before_any_paid_call(server) -> None:
    bad = lk.Client(api_key="SG_wrong_key_123", base_url=server.url + "/v1")
    with pytest.raises(lk.AuthenticationError):
        make_experiment().run(bad, progress=False)
    assert billed(server) == 0


def test_estimate_projects_cells_credits_and_time(server) -> None:
    exp = make_experiment()
    est = exp.estimate(client_of(server, rpm=600))
    assert est.cells_to_run == 120 and est.cells_finished == 0
    assert est.cost_source == "published"
    assert est.credits == 120 * lk._defaults.PUBLISHED_COST_PER_CALL  # exact Decimals
    assert est.seconds >= 120 * 60 / 600
    assert est.prompt_tokens is None or est.prompt_tokens > 0
    exp.run(client_of(server), budget=0.005, progress=False)
    est2 = exp.estimate(client_of(server))
    assert 0 < est2.cells_finished < 120
    assert est2.cells_to_run == 120 - est2.cells_finished
    assert est2.cost_source == "observed"
    # The mean of the calls' attributed credits: their exact sum over their count.
    assert est2.cost_per_call == Decimal("0.00063")


def test_a_prompt_too_long_for_one_item_is_that_cells_error_and_costs_nothing(server) -> None:
    data = [{"id": "short", "q": "hi"}, {"id": "huge", "q": "lorem ipsum " * 6000}]
    exp = lk.Experiment("ctx", prompts="{{ q }}", dataset=data, params={"max_tokens": 16})
    run = exp.run(client_of(server), progress=False)
    frame = run.results.set_index("item_id")
    assert run.status == "finished"
    assert frame.loc["huge", "error"] == "ValidationError"
    assert "8192" in frame.loc["huge", "error_message"]
    assert frame.loc["short", "response"] and frame.loc["huge", "credits"] == 0.0
    assert billed(server) == 1


def test_the_v2_path_runs_every_cell_once_and_leaves_no_journal(server) -> None:
    server.set_faults(fail_rate=0.2, seed=3)
    run = make_experiment(items=10, repeats=1).run(client_of(server), api="v2", progress=False)
    assert run.status == "finished" and len(run.results) == 30
    assert run.results["error"].isna().all()
    assert billed(server) == 30
    assert run.store.query("SELECT COUNT(*) AS n FROM inflight")[0]["n"] == 0
    # it really went the v2 way: every cell was submitted, then polled for status and result
    assert sum(server.stats()["requests"].values()) >= 30 * 3
    assert run.credits_spent == 30 * Decimal("0.00063")


def test_summary_and_compare_use_the_results(server) -> None:
    run = make_experiment(items=6, repeats=2).run(client_of(server), progress=False)
    summary = run.summary(n_boot=200)
    assert list(summary.index) == ["cot", "plain", "terse"]
    assert (summary["n"] == 12).all()
    comparison = run.compare("plain", "terse", "contains")
    assert comparison.n_items == 6
    assert run.compare("plain", "terse").metric == comparison.metric  # first scorer by default


def test_arun_works_on_the_callers_loop_with_an_async_client_used_there(server) -> None:
    from exp_helpers import FAST_RETRIES

    async def main() -> lk.Run:
        async with server.async_client(retry_policy=FAST_RETRIES) as client:
            await client.chat("warm up on this loop", max_tokens=4)
            return await make_experiment(items=2, repeats=1).arun(client, progress=False)

    run = asyncio.run(main())
    assert run.status == "finished" and len(run.results) == 6
    assert billed(server) == 7
