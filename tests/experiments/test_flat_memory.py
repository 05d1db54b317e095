"""Memory flat in the number of cells (issue 17): a run generates its cells at each pass over
them and hands them to its workers a chunk at a time; no list of the run's cells is ever built.
Each test would fail if the cells were materialised again."""

from __future__ import annotations

import time
import tracemalloc
from typing import Any

import pytest
from exp_helpers import client_of, make_experiment

import llamakit as lk
from llamakit.experiment import estimate, runner, runner_calls, runner_feed
from llamakit.store import Store

MODEL = lk._defaults.DEFAULT_MODEL


def _small_chunks(monkeypatch: Any, size: int) -> None:
    monkeypatch.setattr(runner, "PREPARE_CHUNK", size)
    monkeypatch.setattr(runner_feed, "FEED_CHUNK", size)
    monkeypatch.setattr(runner_feed, "LOW_WATER", 2)
    monkeypatch.setattr(runner_calls, "REPLAY_CHUNK", size)
    monkeypatch.setattr(estimate, "CHUNK", size)


def _no_cell_lists(monkeypatch: Any) -> None:
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a run or an estimate listed every cell")

    monkeypatch.setattr(lk.Experiment, "cells", refuse)


def test_estimate_run_stop_and_resume_never_list_the_cells(
    server: Any, tmp_path: Any, monkeypatch: Any
) -> None:
    _no_cell_lists(monkeypatch)
    _small_chunks(monkeypatch, 7)
    store = Store(tmp_path / "s.db")
    exp = make_experiment(items=10, repeats=2)  # 60 cells
    assert exp.estimate(client_of(server), store=store).cells_to_run == 60
    totals: list[int] = []
    # A budget for about half the cells stops the run; the rerun pays only for the rest.
    cost = exp.estimate(client_of(server), store=store).cost_per_call
    first = exp.start(client_of(server), budget=cost * 31, concurrency=4, progress=False,
                      store=store)  # fmt: skip
    first.subscribe(lambda p: totals.append(p.total))
    first.wait()
    assert first.status == "budget" and 0 < first.progress.done < 60
    assert set(totals) == {60}  # the total is known up front, without listing the cells
    paid = server.stats()["billed_calls"]
    assert exp.estimate(client_of(server), store=store).cells_to_run == 60 - paid
    again = exp.run(client_of(server), concurrency=4, progress=False, store=store)
    assert again.id == first.id and again.status == "finished"
    assert server.stats()["billed_calls"] == 60  # no cell paid twice
    frame = again.results  # in the cells' order
    places = [(c.variant, c.item_id, c.repeat) for c in exp.iter_cells(MODEL)]
    assert list(zip(frame["variant"], frame["item_id"], frame["repeat"], strict=True)) == places


def _fill(store: Store, exp: lk.Experiment) -> None:
    """A stored reply for every cell, as if a live run had paid for them."""
    now = time.time()
    batch = []
    for c in exp.iter_cells(MODEL):
        row = {"cell_key": c.cell_key, "model": c.model, "messages": c.messages,
               "params": c.params, "repeat": c.repeat, "text": "cached", "finish_reason": "stop",
               "latency_s": 0.1, "attempts": 1, "started_at": now, "finished_at": now,
               "credits": "0.00063"}  # fmt: skip
        batch.append((row, ()))
    store.record_calls(batch)


def _replay_peak(tmp_path: Any, repeats: int) -> int:
    """Bytes a replay run allocates beyond the built experiment, at its peak (tracemalloc)."""
    items = [{"id": f"i{i}", "q": f"question {i}?"} for i in range(100)]
    exp = lk.Experiment("flat", prompts="{{ q }}", dataset=items, repeats=repeats)
    store = Store(tmp_path / f"r{repeats}.db")
    _fill(store, exp)
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        run = exp.run(None, mode="replay", progress=False, store=store)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert run.status == "finished" and run.progress.done == 100 * repeats
    return peak - base


def test_a_run_eight_times_larger_peaks_no_higher_but_for_a_few_bytes_a_cell(
    tmp_path: Any, monkeypatch: Any
) -> None:
    """The same 100 items, 1,000 then 8,000 cells (repeats): what grows with the cells is the
    bit per cell and the fingerprint's 36-byte records, not ~300-byte Cell objects (7,000 of
    them listed would add 2 MB)."""
    _small_chunks(monkeypatch, 100)
    small = _replay_peak(tmp_path, repeats=10)
    large = _replay_peak(tmp_path, repeats=80)
    assert large - small < 700_000, (small, large)


def test_a_judged_replay_drops_each_preloaded_reply_after_its_last_cell(
    server: Any, tmp_path: Any, monkeypatch: Any
) -> None:
    """With judges, cached cells go through the workers with their replies loaded a chunk at a
    time; two variants asking the same request share a reply across chunks and within one."""
    from llamakit import scoring

    def judged() -> lk.Experiment:
        grader = scoring.judge(None, "Does the answer equal {{ expected }}?", scale=1)
        same = "What is {{ a }} + {{ b }}?"
        data = [{"id": f"q{i}", "a": i, "b": i, "expected": str(2 * i)} for i in range(9)]
        return lk.Experiment("judged", prompts={"one": same, "two": same}, dataset=data,
                             scorers=[grader])  # fmt: skip

    store = Store(tmp_path / "s.db")
    live = judged().run(client_of(server), progress=False, store=store)
    assert live.status == "finished"
    _small_chunks(monkeypatch, 4)
    replay = judged().run(None, mode="replay", progress=False, store=store)
    assert replay.status == "finished" and replay.progress.done == 18
    assert replay._runner.responses.cache == {}  # type: ignore[attr-defined]
    frame = replay.results
    assert list(frame["response"]) == list(live.results["response"])


def test_a_judged_estimate_reads_cached_replies_a_chunk_at_a_time(
    server: Any, tmp_path: Any, monkeypatch: Any
) -> None:
    """With judges, the estimate looks up each chunk's cached replies and their gradings (the
    gradings of cached replies are paid too), never listing the cells nor reading every reply."""
    from llamakit import scoring

    store = Store(tmp_path / "s.db")
    make_experiment(items=10, repeats=1).run(client_of(server), progress=False, store=store)
    grader = scoring.judge(None, "Is the answer {{ expected }}?", scale=1)
    judged = make_experiment(items=12, repeats=1, scorers=[grader])  # 36 cells, 30 cached
    _no_cell_lists(monkeypatch)
    _small_chunks(monkeypatch, 7)
    asked: list[int] = []
    read = Store.cached_responses

    def spy(self: Store, keys: Any, **kw: Any) -> Any:
        keys = list(keys)
        asked.append(len(keys))
        return read(self, keys, **kw)

    monkeypatch.setattr(Store, "cached_responses", spy)
    est = judged.estimate(client_of(server), store=store)
    # The 30 cached replies hold 20 distinct answers (two variants answer alike): 20 gradings,
    # and one for each of the 6 new cells.
    assert (est.cells_to_run, est.judge_calls) == (6, 20 + 6)
    assert len(asked) == 2 * 6 and max(asked) == 7  # 6 chunks: their replies, then gradings


def test_the_fingerprint_is_the_sorted_cells_hash(tmp_path: Any) -> None:
    """The fingerprint, computed from 36-byte records, equals the hash of the cells sorted by
    id that it always was (an unfinished run started before still resumes)."""
    import hashlib

    from llamakit.experiment.cells import canonical_json

    exp = make_experiment(items=7, repeats=3, models=[MODEL, "llama-v3p1-8b-instruct"])
    model = exp.resolve_model(None)
    digest = hashlib.sha256()
    for part in (exp.name, model, "src", canonical_json(exp._scorer_identity())):
        digest.update(part.encode() + b"\0")
    for c in sorted(exp.cells(model, "src"), key=lambda c: c.cell_id):
        digest.update(f"{c.cell_id}:{c.cell_key}:".encode() + canonical_json(c.row).encode())
        digest.update(b"\0")
    assert exp.fingerprint(model, "src") == digest.hexdigest()[:32]
    assert [c.ordinal for c in exp.iter_cells(model, "src")] == list(range(exp.cell_count(model)))


@pytest.mark.parametrize("models", [[MODEL], [MODEL, "llama-v3p1-8b-instruct"]])
def test_a_pass_over_some_cells_generates_those_alone(models: list[str]) -> None:
    exp = make_experiment(items=5, repeats=2, models=models)
    model = exp.resolve_model(None)
    every = exp.cells(model, "src")
    wanted = {1, 2, 7, len(every) - 1}
    some = list(exp.grid.cells(model, "src", wanted=wanted.__contains__))
    assert some == [c for c in every if c.ordinal in wanted]
