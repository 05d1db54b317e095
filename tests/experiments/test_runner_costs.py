"""What the runner costs per cell (issue 17): the tokenizer only when a count is needed, one
commit for several cells, sync clients driven without a thread per call, cached reruns in
chunks. Each test checks the mechanism against the real stand-in server."""

from __future__ import annotations

import json
import math
import sqlite3
import subprocess
import sys
import threading
import time
from typing import Any

import pytest
from exp_helpers import client_of, make_experiment

import llamakit as lk
from llamakit import tokens
from llamakit.errors import StoreError, ValidationError
from llamakit.store import Store

# -- the tokenizer: loaded only when a count is needed --------------------------------------------

TEXTS = [
    "What is 2 + 2?",
    "a" * 500,
    "naïve café déjà vu " * 20,
    "数学の問題を解いてください。" * 30,
    "emoji 🎉🚀🧪 " * 40,
    "<|eot_id|><|start_header_id|>user<|end_header_id|>" * 10,
    "   \n\n\t  spaces and\r\nnewlines   " * 25,
    "12345678901234567890" * 30,
]


@pytest.mark.parametrize("text", TEXTS)
def test_the_byte_bound_is_never_below_the_count(text: str) -> None:
    """surely_fits trusts that a prompt has no more tokens than UTF-8 bytes once rendered: checked
    against the exact count and the estimate, on scripts where a token is many bytes and few."""
    messages = [{"role": "system", "content": text[:50]}, {"role": "user", "content": text}]
    rendered = len(tokens.chat_template.render(messages).encode("utf-8"))
    assert tokens.count_messages(messages) <= rendered
    pairs_estimate = 1 + 4 + sum(4 + 1 + tokens.estimate(m["content"]) for m in messages)
    assert pairs_estimate <= rendered
    window = tokens.count_messages(messages) + 10
    assert tokens.surely_fits(messages, 10, context_window=rendered + 10)
    assert not tokens.surely_fits(messages, 10, context_window=window) or rendered <= window - 10


def test_an_ordinary_run_never_loads_the_tokenizer(server: Any, tmp_path: Any) -> None:
    """A fresh process runs 12 cells through the sync client: the pre-flight check and the runner
    leave the tokenizer unloaded (0.38 s CPU, ~100 MB); reading the results then counts."""
    script = f"""
import llamakit as lk
from llamakit import tokens
from llamakit.store import Store
client = lk.Client("{server.api_key}", base_url="{server.url}/v1")
exp = lk.Experiment("tok", prompts="Say {{{{ w }}}}", dataset=[{{"id": str(i), "w": i}}
                    for i in range(6)], params={{"max_tokens": 8}}, repeats=2)
run = exp.run(client, progress=False, store=Store(r"{tmp_path / "s.db"}"))
assert run.status == "finished", run.status
print("loaded after run:", tokens._loaded)
frame = run.results
print("counts:", sorted(set(frame["local_prompt_tokens"].tolist())))
"""
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True
    ).stdout
    assert "loaded after run: False" in out
    counts = json.loads(out.split("counts:")[1].strip())
    expected = {tokens.count_messages(f"Say {i}") for i in range(6)}
    assert set(counts) == expected


def test_a_prompt_too_long_still_fails_before_any_call(server: Any) -> None:
    client = client_of(server)
    before = server.stats()["billed_calls"]
    with pytest.raises(ValidationError) as err:
        client.chat("word " * 9000, max_tokens=8)
    assert "context window" in str(err.value)
    # Close to the bound: more bytes than the window, fewer tokens: the exact count decides.
    fits = "word " * 1700  # ~1,700 tokens, ~8,500 bytes
    assert not tokens.surely_fits(fits, 8)
    assert client.chat(fits, max_tokens=8).text
    assert server.stats()["billed_calls"] == before + 1


# -- group commit ---------------------------------------------------------------------------------


class CountingStore(Store):
    """A store that counts its write transactions for run cells (size, and whether the caller
    could wait for the lock: False on the event loop) and its checkpoints, which can be made to
    hold the write lock for ``hold_s`` first (a slow disk)."""

    def __init__(self, *args: Any, hold_s: float = 0.0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.batches: list[tuple[int, bool]] = []
        self.checkpoints: list[str] = []
        self.hold_s = hold_s
        self.lock = threading.Lock()

    def record_calls(self, calls: Any, *, wait: bool = True) -> None:
        super().record_calls(calls, wait=wait)
        with self.lock:
            self.batches.append((len(calls), wait))

    def checkpoint(self, mode: str = "TRUNCATE") -> None:
        self.checkpoints.append(mode)
        if self.hold_s:
            with self._db.write("a slow checkpoint"):
                time.sleep(self.hold_s)
        super().checkpoint(mode)


def test_cells_finishing_while_the_writer_is_busy_share_one_commit(
    server: Any, tmp_path: Any
) -> None:
    """A commit is written on the loop when the store is free this instant; cells that finish
    while it is not (here: the writer thread's checkpoint, made slow) queue and share the next
    transaction. Every cell is stored once, whichever way it went."""
    store = CountingStore(tmp_path / "s.db", hold_s=0.3)
    exp = make_experiment(items=20, repeats=2)  # 120 cells
    run = exp.run(client_of(server), concurrency=16, progress=False, store=store)
    assert run.status == "finished"
    assert store.checkpoints
    sizes = [n for n, _ in store.batches]
    assert sum(sizes) == 120 == server.stats()["billed_calls"]
    on_loop = [n for n, wait in store.batches if not wait]
    grouped = [n for n, wait in store.batches if wait]
    assert on_loop and all(n == 1 for n in on_loop), store.batches
    assert grouped and max(grouped) > 1, store.batches
    frame = run.results
    assert frame["response"].notna().all() and not frame["cached"].any()
    assert store.query("SELECT COUNT(*) AS n FROM responses")[0]["n"] == 120


def test_a_run_checkpoints_off_the_loop_and_gives_the_store_its_setting_back(
    server: Any, tmp_path: Any
) -> None:
    """While a run writes, its connection does not checkpoint on commit (that stalled the loop
    for milliseconds); the writer thread checkpoints passively instead, so the log stays bounded,
    and afterwards the store checkpoints on commit again."""
    path = tmp_path / "s.db"
    store = CountingStore(path)
    exp = make_experiment(items=50, repeats=4)  # 400 cells
    run = exp.run(client_of(server), concurrency=16, progress=False, store=store)
    assert run.status == "finished"
    assert store.checkpoints and set(store.checkpoints) == {"PASSIVE"}
    assert len(store.checkpoints) >= len(store.batches) // 40, (store.checkpoints, store.batches)
    # Without checkpoints 400 transactions left 35 MB of log; with them, 2 MB.
    wal = path.with_name(path.name + "-wal")
    assert wal.stat().st_size < 8 * 2**20, wal.stat().st_size
    assert store.query("PRAGMA wal_autocheckpoint")[0]["wal_autocheckpoint"] == 1000


def test_a_commit_that_fails_spills_every_reply_of_its_group(server: Any, tmp_path: Any) -> None:
    """All cells of a failed group commit: replies in the spill file, the run failed with
    StoreError, and reopening the store keeps every paid reply (nothing is paid twice)."""
    path = tmp_path / "s.db"

    class Failing(Store):
        """The disk fails inside the third group's transaction (after some of its rows)."""

        groups = 0

        def record_calls(self, calls: Any, *, wait: bool = True) -> None:
            Failing.groups += 1
            super().record_calls(calls, wait=wait)

        def _write_call(self, tx: Any, response: Any, cells: Any) -> None:
            super()._write_call(tx, response, cells)
            if Failing.groups >= 3:
                raise sqlite3.OperationalError("disk I/O error")

    store = Failing(path)
    exp = make_experiment(items=20, repeats=1)
    with pytest.raises(StoreError):
        exp.run(client_of(server), concurrency=8, progress=False, store=store)
    paid = server.stats()["billed_calls"]
    store.close()
    reopened = Store(path)
    kept = reopened.query("SELECT COUNT(*) AS n FROM responses")[0]["n"]
    assert kept == paid
    again = exp.run(client_of(server), concurrency=8, progress=False, store=reopened)
    assert again.status == "finished"
    assert server.stats()["billed_calls"] == 60


# -- cached reruns --------------------------------------------------------------------------------


def test_a_cached_rerun_larger_than_one_chunk(server: Any, tmp_path: Any, monkeypatch: Any) -> None:
    from llamakit.experiment import runner

    monkeypatch.setattr(runner, "PREPARE_CHUNK", 7)
    store = Store(tmp_path / "s.db")
    exp = make_experiment(items=10, repeats=2)
    first = exp.run(client_of(server), concurrency=4, progress=False, store=store)
    paid = server.stats()["billed_calls"]
    again = make_experiment(items=10, repeats=2).run(
        client_of(server), concurrency=4, progress=False, store=store
    )
    assert server.stats()["billed_calls"] == paid == 60
    assert again.id != first.id and again.status == "finished"
    frame = again.results
    assert len(frame) == 60 and frame["cached"].all()
    assert list(frame["response"]) == list(first.results["response"])


def _size(path: Any) -> int:
    return sum(p.stat().st_size for p in path.parent.glob(path.name + "*"))


def test_a_fully_cached_rerun_adds_no_rows_per_cell(server: Any, tmp_path: Any) -> None:
    """The rerun of a complete run shares its cells (its scorers, run again on the cached
    replies, give the stored scores): the store grows by a run row and a session,
    not by a row per cell, and every reader (results, progress, runs(), resume) sees 120 cells."""
    path = tmp_path / "s.db"
    store = Store(path)
    first = make_experiment(items=20, repeats=2).run(client_of(server), progress=False, store=store)
    store.checkpoint()
    size, rows = _size(path), store.query("SELECT COUNT(*) AS n FROM run_cells")[0]["n"]
    reruns = [
        make_experiment(items=20, repeats=2).run(client_of(server), progress=False, store=store)
        for _ in range(3)
    ]
    store.checkpoint()
    assert store.query("SELECT COUNT(*) AS n FROM run_cells")[0]["n"] == rows == 120
    assert _size(path) - size <= 3 * 4096  # at most a page per rerun, whatever the cell count
    assert server.stats()["billed_calls"] == 120
    for again in reruns:
        assert again.id != first.id and again.status == "finished"
        assert again.progress.done == 120 and again.progress.total == 120
        frame = again.results
        assert len(frame) == 120 and frame["cached"].all() and (frame["run_id"] == again.id).all()
        assert list(frame["response"]) == list(first.results["response"])
        assert again.credits_spent == 0
    table = lk.runs(store)
    assert list(table["cells_done"]) == [120] * 4 and list(table["errors"]) == [0] * 4
    assert store.cells_run(reruns[-1].id) == first.id  # a rerun of a rerun shares the original


def test_a_rerun_of_a_run_with_errors_records_its_own_cells(server: Any, tmp_path: Any) -> None:
    """Only a complete run is shared: a finished run with failed cells is rerun for real (its
    failures retried, paid once each), with rows of its own."""
    store = Store(tmp_path / "s.db")
    server.set_faults(fail_rate=1.0)
    first = make_experiment(items=5, repeats=1, scorers=[]).run(
        client_of(server, max_retries=0), progress=False, store=store
    )
    assert first.status == "finished" and sum(first.progress.errors.values()) == 15
    server.set_faults(fail_rate=0.0)
    again = make_experiment(items=5, repeats=1, scorers=[]).run(
        client_of(server), progress=False, store=store
    )
    assert store.cells_run(again.id) == again.id
    assert again.progress.done == 15 and not again.progress.errors
    assert server.stats()["billed_calls"] == 15
    third = make_experiment(items=5, repeats=1, scorers=[]).run(
        client_of(server), progress=False, store=store
    )
    assert store.cells_run(third.id) == again.id and server.stats()["billed_calls"] == 15


@pytest.mark.parametrize("source", ["", "http://127.0.0.1:1/v1", "llamakit-local/scripted"])
def test_cell_keys_built_in_bulk_equal_the_one_cell_hashes(source: str) -> None:
    """The cache keys of existing stores must not change: CellKeys == cell_key / cell_id."""
    from llamakit.experiment.cells import canonical_json, cell_id, cell_key

    items = [
        {"id": "a", "q": "naïve 数学 🎉", "n": 1},
        {"id": 'quote"d', "q": "line\\nbreak\ttab", "n": 2},
        {"id": "3", "q": " ", "n": 3},
    ]
    exp = lk.Experiment(
        "keys",
        prompts={"one": "{{ q }} {{ n }}", "two": [{"role": "system", "content": "ß"},
                                                  {"role": "user", "content": "{{ q }}"}]},
        dataset=items,
        params={"temperature": [0, 0.5], "max_tokens": 16, "stop": ["\n", "é"]},
        repeats=3,
    )  # fmt: skip
    cells = exp.cells("llama-v3-8b-instruct", source)
    assert len(cells) == 2 * 3 * 2 * 3
    for c in cells:
        assert c.cell_key == cell_key(c.model, c.messages, c.params, c.repeat, source=source)
        assert c.cell_id == cell_id(c.variant, c.item_id, c.params_json, c.repeat, c.model)
        assert c.params_json == canonical_json(c.params)


def test_results_in_chunks_concatenate_to_the_whole_table(server: Any, tmp_path: Any) -> None:
    import pandas as pd

    from llamakit import scoring

    grader = scoring.judge(None, "Does the answer equal {{ expected }}?", scale=1)
    store = Store(tmp_path / "s.db")
    run = make_experiment(items=4, repeats=2, scorers=[grader]).run(
        client_of(server), progress=False, store=store
    )
    whole = run.results
    chunks = list(run.iter_results(chunk=5))
    assert [len(c) for c in chunks] == [5, 5, 5, 5, 4]
    joined = pd.concat(chunks, ignore_index=True)
    pd.testing.assert_frame_equal(joined, whole)
    assert sum(joined["judge_credits"]) == sum(whole["judge_credits"]) > 0


def test_a_replay_finds_an_unseen_cell_past_the_first_chunk(
    server: Any, tmp_path: Any, monkeypatch: Any
) -> None:
    from llamakit.experiment import runner_calls

    monkeypatch.setattr(runner_calls, "REPLAY_CHUNK", 4)
    store = Store(tmp_path / "s.db")
    make_experiment(items=5, repeats=1).run(client_of(server), progress=False, store=store)
    # 18 cells, checked 4 at a time; the 3 unseen ones (item q05) sit in the last chunks.
    with pytest.raises(lk.ReplayMissError, match="item='q05'"):
        make_experiment(items=6, repeats=1).run(None, mode="replay", progress=False, store=store)
    judged = make_experiment(items=5, repeats=1, scorers=[_grader()])
    with pytest.raises(lk.ReplayMissError, match="judge 'judge' never graded"):
        judged.run(None, mode="replay", progress=False, store=store)


def _grader() -> Any:
    from llamakit import scoring

    return scoring.judge(None, "Does the answer equal {{ expected }}?", scale=1)


def test_results_walk_in_order_across_chunks_with_rows_older_than_ordinals(
    server: Any, tmp_path: Any
) -> None:
    """Rows without an ordinal (stores written before it existed) come first, in the order they
    were written, then the rest by ordinal, whatever the chunk size."""
    store = Store(tmp_path / "s.db")
    run = make_experiment(items=4, repeats=1).run(client_of(server), progress=False, store=store)
    db = sqlite3.connect(store.path)
    with db:
        db.execute(
            "UPDATE run_cells SET ordinal = NULL WHERE run_id = ? AND item_id IN ('q01', 'q03')",
            (run.id,),
        )
    expected = [
        r[0]
        for r in db.execute(
            "SELECT cell_id FROM run_cells WHERE run_id = ? "
            "ORDER BY ordinal IS NOT NULL, ordinal, rowid",
            (run.id,),
        )
    ]
    db.close()
    for chunk in (1, 2, 5, 6, 7, 100):
        walked = [r["cell_id"] for rows in store.iter_run_cells(run.id, chunk) for r in rows]
        assert walked == expected, chunk
        assert all(len(rows) <= chunk for rows in store.iter_run_cells(run.id, chunk))


def test_the_results_walk_seeks_by_index_instead_of_sorting(tmp_path: Any) -> None:
    """Each chunk of a results walk seeks past the last one on the run_cells_order index; a
    plan that sorts would re-sort the whole run for every chunk (quadratic at 200,000 cells)."""
    from llamakit.store import _store

    store = Store(tmp_path / "s.db")
    assert "m006_run_cells_order" in store.migrations()
    for where, args in (
        ("c.ordinal IS NULL AND c.rowid > ? ORDER BY c.rowid", ("r", 0)),
        ("(c.ordinal, c.rowid) > (?, ?) ORDER BY c.ordinal, c.rowid", ("r", 0, 0)),
    ):
        select = _store._CELLS_WITH_REPLIES.format(columns=_store._CELL_AND_REPLY_COLUMNS)
        sql = "EXPLAIN QUERY PLAN " + select + where + " LIMIT 10"
        plan = " / ".join(str(tuple(r)[-1]) for r in store._db.query(sql, args))
        assert "run_cells_order" in plan and "TEMP B-TREE" not in plan, plan


def test_a_cell_keeps_no_copy_of_its_prompt_json(server: Any, tmp_path: Any) -> None:
    """A cell is slotted and encodes its prompt and row when recorded, not when built: a run of
    200,000 cells does not hold 200,000 JSON copies of its prompts."""
    from llamakit.experiment.cells import canonical_json

    store = Store(tmp_path / "s.db")
    exp = make_experiment(items=2, repeats=1)
    cell = exp.cells(lk._defaults.DEFAULT_MODEL)[0]
    assert not hasattr(cell, "__dict__")
    run = exp.run(client_of(server), progress=False, store=store)
    rows = store.query("SELECT cell_id, prompt, row FROM run_cells WHERE run_id = ?", (run.id,))
    by_id = {c.cell_id: c for c in exp.cells(lk._defaults.DEFAULT_MODEL)}
    assert len(rows) == len(by_id) == 6
    for r in rows:
        c = by_id[r["cell_id"]]
        assert r["prompt"] == canonical_json(c.messages)
        assert json.loads(r["row"]) == c.row


def test_a_rerun_sharing_cells_is_kept_whole_in_a_run_file(server: Any, tmp_path: Any) -> None:
    """A run file of a fully cached rerun carries its cells (they live under the run it repeats),
    and imported into another store, or loaded alone, it reads like the original."""
    store = Store(tmp_path / "s.db")
    first = make_experiment(items=3, repeats=1, scorers=[]).run(
        client_of(server), progress=False, store=store
    )
    again = make_experiment(items=3, repeats=1, scorers=[]).run(
        client_of(server), progress=False, store=store
    )
    assert store.cells_run(again.id) == first.id
    path = again.save(tmp_path / "again.jsonl")
    loaded = lk.load_run(path)
    imported = lk.import_run(path, store=Store(tmp_path / "other.db"))
    for other in (loaded, imported):
        frame = other.results
        assert len(frame) == 9 and frame["cached"].all()
        assert list(frame["response"]) == list(first.results["response"])
        assert other.progress.done == 9
    # Imported back into the store it came from: already there, nothing added.
    rows = store.query("SELECT COUNT(*) AS n FROM run_cells")[0]["n"]
    assert lk.import_run(path, store=store).id == again.id
    assert store.query("SELECT COUNT(*) AS n FROM run_cells")[0]["n"] == rows == 9


def test_only_the_store_reads_a_runs_cells_by_its_id() -> None:
    """A fully cached rerun's cells live under the run it repeats, so a query of ``run_cells``
    by run id outside the store would find none: every reader goes through
    ``Store.cell_rows`` / ``iter_run_cells`` (which resolve ``cells_run``)."""
    import pathlib
    import re

    package = pathlib.Path(lk.__file__).parent
    # estimate.py averages latency over every run's own paid cells: a rerun paid for none.
    allowed = {package / "experiment" / "estimate.py"}
    offenders = [
        str(path.relative_to(package))
        for path in package.rglob("*.py")
        if package / "store" not in path.parents
        and path not in allowed
        and re.search(r"FROM\s+run_cells", path.read_text(), re.IGNORECASE)
    ]
    assert offenders == []


def test_a_rerun_with_scorers_scores_its_cached_replies_again(server: Any, tmp_path: Any) -> None:
    """Scores depend on more than the fingerprint holds (a built-in scorer's arguments, a
    scorer's code): a rerun with scorers scores the cached replies with today's scorers, in
    rows of its own, paying for nothing."""
    from llamakit import scoring

    store = Store(tmp_path / "s.db")

    def exp(hi: int, fixed: bool) -> lk.Experiment:
        def mine(text: str, row: dict[str, Any]) -> float:
            if not fixed:
                raise ValueError("a bug in my scorer")
            return 1.0

        scorers = [scoring.length_between(1, hi, name="short"), scoring.as_scorer(mine, "mine")]
        return make_experiment(items=3, repeats=1, scorers=scorers)

    first = exp(2, fixed=False).run(client_of(server), progress=False, store=store)
    assert (first.results["score_short"] == 0).all() and first.results["score_mine"].isna().all()
    again = exp(10_000, fixed=True).run(client_of(server), progress=False, store=store)
    assert store.cells_run(again.id) == again.id
    assert (again.results["score_short"] == 1).all() and (again.results["score_mine"] == 1).all()
    assert again.results["cached"].all() and server.stats()["billed_calls"] == 9
    # Scored again with the same scorers: the scores match, so the next rerun shares its cells.
    third = exp(10_000, fixed=True).run(client_of(server), progress=False, store=store)
    assert store.cells_run(third.id) == again.id
    assert (third.results["score_mine"] == 1).all() and server.stats()["billed_calls"] == 9


def test_a_rerun_with_a_judge_grades_again_in_rows_of_its_own(server: Any, tmp_path: Any) -> None:
    """A judge's grading may have failed for a reason that has passed: a rerun with one never
    shares cells (its gradings come from the cache when they succeeded, free)."""
    store = Store(tmp_path / "s.db")
    first = make_experiment(items=2, repeats=1, scorers=[_grader()]).run(
        client_of(server), progress=False, store=store
    )
    paid = server.stats()["billed_calls"]
    again = make_experiment(items=2, repeats=1, scorers=[_grader()]).run(
        client_of(server), progress=False, store=store
    )
    assert store.cells_run(again.id) == again.id != first.id
    assert server.stats()["billed_calls"] == paid and again.results["cached"].all()


def test_a_scorer_that_changes_its_row_changes_nothing_stored(server: Any, tmp_path: Any) -> None:
    def shouting(text: str, row: dict[str, Any]) -> float:
        row["expected"] = str(row["expected"]) + "!"
        row.setdefault("meta", []).append(1)
        return 1.0

    exp = make_experiment(items=3, repeats=2, scorers=[lk.scoring.as_scorer(shouting, "loud")])
    model = lk._defaults.DEFAULT_MODEL
    before = exp.fingerprint(model, client_of(server).source)
    run = exp.run(client_of(server), concurrency=1, progress=False, store=Store(tmp_path / "s.db"))
    assert exp.fingerprint(model, client_of(server).source) == before
    assert not any(str(e).endswith("!") for e in run.results["expected"])
    assert all("meta" not in item.row for item in exp.items)


def test_results_in_chunks_equal_the_table_with_sparse_columns_and_errors(
    tmp_path: Any,
) -> None:
    """Chunks concatenate to ``run.results`` exactly (columns, order, dtypes), even when a
    dataset field appears in one row only and a whole chunk holds failed calls."""
    import pandas as pd

    items = [{"id": f"q{i}", "q": f"question {i}?", "expected": "4"} for i in range(6)]
    items[-1]["expected_alt"] = "four"
    exp = lk.Experiment(
        "sparse",
        prompts={"a": "{{ q }}", "b": "Answer: {{ q }}"},
        dataset=items,
        params={"max_tokens": 8},
        repeats=2,
        scorers=[lk.scoring.contains("expected")],
    )
    with lk.local_server(backend="scripted", credits=10.0, fail_rate=0.3, seed=3) as srv:
        client = srv.client(retry_policy=lk.client.retry.RetryPolicy(max_retries=0))
        run = exp.run(client, progress=False, store=Store(tmp_path / "s.db"))
    whole = run.results
    assert whole["error"].notna().any() and whole["error"].isna().any()
    assert "expected_alt" in whole.columns
    for chunk in (1, 3, 7, 1000):
        joined = pd.concat(list(run.iter_results(chunk)), ignore_index=True)
        pd.testing.assert_frame_equal(joined, whole)


def test_two_variants_asking_the_same_pay_once_with_replies_not_kept(
    server: Any, tmp_path: Any
) -> None:
    """Two variants whose prompts render the same share one request: paid once, whether the
    second asks while the first is in flight or after its reply was committed (and dropped
    from the runner's memory); then a replay finds both."""

    def exp(concurrency: int) -> lk.Experiment:
        items = [{"id": f"q{i}", "q": f"same {i} at {concurrency}?"} for i in range(30)]
        return lk.Experiment(
            "twins",
            prompts={"a": "{{ q }}", "b": "{{ q }}"},
            dataset=items,
            params={"max_tokens": 8},
            scorers=[lk.scoring.length_between(1, None)],
        )

    paid = 0
    for concurrency in (1, 8):
        store = Store(tmp_path / f"s{concurrency}.db")
        run = exp(concurrency).run(
            client_of(server), concurrency=concurrency, progress=False, store=store
        )
        paid += 30
        assert run.status == "finished" and server.stats()["billed_calls"] == paid
        assert store.query("SELECT COUNT(*) AS n FROM responses")[0]["n"] == 30
        replayed = exp(concurrency).run(None, mode="replay", progress=False, store=store)
        assert replayed.status == "finished" and len(replayed.results) == 60


def test_cells_about_to_be_sent_are_claimed_together(server: Any, tmp_path: Any) -> None:
    """A worker taking an unclaimed cell claims the next round's cells (up to the concurrency)
    in one transaction: far fewer claim transactions than cells, each cell paid once."""

    class Claims(Store):
        single = 0
        grouped: list[int] = []

        def claim_cell(self, key: Any, lease: Any) -> Any:
            Claims.single += 1
            return super().claim_cell(key, lease)

        def claim_cells(self, keys: Any, lease: Any) -> Any:
            Claims.grouped.append(len(keys))
            return super().claim_cells(keys, lease)

    store = Claims(tmp_path / "s.db")
    run = make_experiment(items=20, repeats=2).run(  # 120 cells
        client_of(server), concurrency=8, progress=False, store=store
    )
    assert run.status == "finished" and server.stats()["billed_calls"] == 120
    assert sum(Claims.grouped) + Claims.single >= 120
    assert len(Claims.grouped) + Claims.single <= 120 // 4, (Claims.grouped, Claims.single)
    assert max(Claims.grouped) <= 8
    assert store.live_claims() == []


def test_the_heap_is_frozen_only_while_runs_execute(server: Any, tmp_path: Any) -> None:
    """``gc.freeze`` keeps the collector off the cells during a run; everything is collectable
    again when the last run executing ends (nested or concurrent runs included)."""
    import gc

    from llamakit.experiment.runner_gc import frozen_heap

    assert gc.get_freeze_count() == 0
    with frozen_heap():
        assert gc.get_freeze_count() > 0
        with frozen_heap():
            pass
        assert gc.get_freeze_count() > 0  # the outer run still executes
    assert gc.get_freeze_count() == 0
    seen: list[int] = []

    def watch(text: str, row: dict[str, Any]) -> float:
        seen.append(gc.get_freeze_count())
        return 1.0

    exp = make_experiment(items=2, repeats=1, scorers=[lk.scoring.as_scorer(watch, "watch")])
    exp.run(client_of(server), progress=False, store=Store(tmp_path / "s.db"))
    assert seen and min(seen) > 0 and gc.get_freeze_count() == 0


def _shared(store: Store, run: Any) -> bool:
    return bool(store.cells_run(run.id) != run.id)


def test_a_rerun_shares_only_what_a_fresh_run_would_score_the_same(
    server: Any, tmp_path: Any
) -> None:
    """The rerun's check scores as a live run does: each scorer on its own copy of the item's
    row as the dataset gives it (not the stored JSON), NaN equal to NaN."""
    from llamakit import scoring

    def scores(scorers: list[Any], dataset: Any, store: Store) -> tuple[list[float], bool]:
        exp = lk.Experiment(
            "check", prompts="{{ q }}", dataset=dataset, params={"max_tokens": 8}, scorers=scorers
        )
        run = exp.run(client_of(server), progress=False, store=store)
        return run.results["score_b"].tolist(), _shared(store, run)

    def mutate(text: str, row: dict[str, Any]) -> float:
        row["expected"] = "MUT"
        return 1.0

    rows = [{"id": f"q{i}", "q": f"check {i}?", "expected": "x"} for i in range(3)]
    one = lambda text, row: 1.0  # noqa: E731
    sees = lambda text, row: float(row["expected"] == "MUT")  # noqa: E731
    store = Store(tmp_path / "a.db")
    scores([scoring.as_scorer(mutate, "a"), scoring.as_scorer(one, "b")], rows, store)
    again, shared = scores(
        [scoring.as_scorer(mutate, "a"), scoring.as_scorer(sees, "b")], rows, store
    )
    assert again == [0.0] * 3 and not shared  # b never sees a's change, live or in the check

    # A JSONL number written 2.50 instead of 2.5: the stored JSON is the same, the row is not.
    path = tmp_path / "d.jsonl"
    is_25 = scoring.as_scorer(lambda text, row: float(str(row["expected"]) == "2.5"), "b")
    store = Store(tmp_path / "b.db")
    path.write_text('{"id": "q0", "q": "number?", "expected": 2.5}\n')
    assert scores([is_25], str(path), store) == ([1.0], False)
    path.write_text('{"id": "q0", "q": "number?", "expected": 2.50}\n')
    assert scores([is_25], str(path), store) == ([0.0], False)
    assert scores([is_25], str(path), store) == ([0.0], True)  # unchanged now: shared

    nan = scoring.as_scorer(lambda text, row: math.nan, "b")
    store = Store(tmp_path / "c.db")
    scores([nan], rows, store)
    assert scores([nan], rows, store)[1]  # NaN again is the same score


def test_infinite_values_in_rows_keep_their_expected_columns_in_chunks(
    server: Any, tmp_path: Any
) -> None:
    import pandas as pd

    frame = pd.DataFrame(
        {"id": ["q0", "q1"], "q": ["a?", "b?"], "expected": ["3", "4"], "weight": [math.inf, 1.0]}
    )
    exp = lk.Experiment("inf", prompts="{{ q }}", dataset=frame, params={"max_tokens": 8})
    run = exp.run(client_of(server), progress=False, store=Store(tmp_path / "s.db"))
    whole = run.results
    assert "expected" in whole.columns
    for chunk in (1, 10):
        pd.testing.assert_frame_equal(
            pd.concat(list(run.iter_results(chunk)), ignore_index=True), whole
        )


def test_runs_table_counts_a_runs_own_cells_when_its_base_is_elsewhere(
    server: Any, tmp_path: Any
) -> None:
    store = Store(tmp_path / "s.db")
    run = make_experiment(items=2, repeats=1).run(client_of(server), progress=False, store=store)
    db = sqlite3.connect(store.path)
    with db:  # as a hand-edited run file would import it: rerun_of a run this store lacks
        db.execute(
            "UPDATE runs SET config = json_set(config, '$.rerun_of', 'elsewhere') WHERE run_id = ?",
            (run.id,),
        )
    db.close()
    reopened = Store(tmp_path / "s.db")
    assert reopened.cells_run(run.id) == run.id
    assert list(lk.runs(reopened)["cells_done"]) == [6]


SHARED_RUNNER = """
import sys
import llamakit as lk
from llamakit.store import Store
key, url, source, path, items = sys.argv[1:6]
rows = [{"id": f"q{i}", "a": i, "b": i + 1} for i in range(int(items))]
exp = lk.Experiment("shared-wal", prompts={"plain": "What is {{ a }} + {{ b }}?",
                    "terse": "{{ a }} + {{ b }} ="}, dataset=rows, params={"max_tokens": 8},
                    repeats=2)
client = lk.Client(key, base_url=url + "/v1", source=source)
run = exp.run(client, concurrency=8, progress=False, store=Store(path))
print(run.status, run.progress.done)
"""


def test_processes_sharing_a_store_keep_its_log_bounded(tmp_path: Any) -> None:
    """Three processes running one experiment on one store: once a run sees another connection
    commit, the store checkpoints itself again and commits go to the writer thread. With each
    process checkpointing passively on its own, this log grew to 73-125 MB (6 MB now, 15 MB
    before commits were written on the loop)."""
    path = tmp_path / "s.db"
    wal = path.with_name(path.name + "-wal")
    with lk.local_server(backend="scripted", credits=1000.0, latency_ms=5) as srv:
        procs = [
            subprocess.Popen(
                [
                    sys.executable,
                    "-c",
                    SHARED_RUNNER,
                    srv.api_key,
                    srv.url,
                    srv.source,
                    str(path),
                    "600",
                ],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )  # fmt: skip
            for _ in range(3)
        ]
        peak = 0
        while any(p.poll() is None for p in procs):
            if wal.exists():
                peak = max(peak, wal.stat().st_size)
            time.sleep(0.02)
        outs = [p.communicate() for p in procs]
        assert all(p.returncode == 0 for p in procs), [err for _, err in outs]
        assert all(out.split() == ["finished", "2400"] for out, _ in outs), outs
        assert srv.stats()["billed_calls"] == 2400
    assert peak < 32 * 2**20, f"peak log {peak / 2**20:.0f} MB"
    store = Store(path)
    assert store.query("SELECT COUNT(*) AS n FROM responses")[0]["n"] == 2400
