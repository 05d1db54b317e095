"""Who answered (``source`` next to ``model`` in every results table) and how long a run will take
(estimates from the latency observed for that source; a progress ETA that follows the real rate)."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pandas as pd
import pytest
from exp_helpers import client_of, make_experiment

import llamakit as lk
from llamakit.cli import main
from llamakit.experiment.estimate import LOCAL_CALL_S, PUBLISHED_LATENCY_S, observed_latency
from llamakit.experiment.run import RunProgress
from llamakit.experiment.runner_progress import ProgressBar

DATA = Path(__file__).resolve().parents[2] / "data"


def test_results_and_csv_say_which_server_answered(server, tmp_path) -> None:
    run = make_experiment(items=2, repeats=1).run(client_of(server), progress=False)
    frame = run.results
    columns = list(frame.columns)
    assert columns.index("source") == columns.index("model") + 1
    assert set(frame["source"]) == {server.source} and server.source.startswith("llamakit-local/")
    run.to_csv(tmp_path / "r.csv")
    assert set(pd.read_csv(tmp_path / "r.csv")["source"]) == {server.source}
    # A run loaded back from the store says the same.
    assert set(lk.load_run(run.id, run.store).results["source"]) == {server.source}


def test_the_estimate_uses_the_latency_observed_for_that_source(tmp_path) -> None:
    store = lk.Store(tmp_path / "s.db")
    exp = make_experiment(items=4, repeats=1, name="timed")  # 12 cells
    with lk.local_server(backend="scripted", credits=10.0, latency_ms=120) as slow:
        client = client_of(slow)
        before = exp.estimate(client, concurrency=2, store=store)
        # Nothing observed yet for this source: the scripted fallback, not the hosted API's.
        assert before.seconds == pytest.approx(6 * LOCAL_CALL_S["llamakit-local/scripted"])
        exp.run(client, concurrency=2, progress=False, store=store)
        seen = observed_latency(store, slow.source)
        assert seen is not None and seen >= 0.12
        bigger = make_experiment(items=8, repeats=1, name="timed")  # 12 more cells to run
        after = bigger.estimate(client, concurrency=2, store=store)
        assert after.cells_to_run == 12
        assert after.seconds == pytest.approx(6 * seen)
    # Another source (other rules, so other replies) has observed nothing: its own fallback.
    rules = [{"pattern": "zzz", "reply": "other"}]
    with lk.local_server(backend="scripted", credits=10.0, rules=rules) as other:
        assert other.source != slow.source
        est = bigger.estimate(client_of(other), concurrency=2, store=store)
        assert est.seconds < 1.0
    # The hosted API with nothing observed: Segmind's published latency per batch.
    hosted = lk.Client(api_key="SG_not_used_0000", base_url="https://api.segmind.com/v1")
    est = bigger.estimate(hosted, concurrency=4, store=store)
    assert est.seconds == pytest.approx(6 * PUBLISHED_LATENCY_S)  # 24 cells in batches of 4


def test_a_local_smollm2_source_with_no_history_is_charged_call_by_call(tmp_path) -> None:
    from llamakit.experiment.estimate import _seconds

    store = lk.Store(tmp_path / "s.db")
    per_call = LOCAL_CALL_S["llamakit-local/smollm2"]
    # It answers one call at a time: more calls in flight do not make the run shorter.
    assert _seconds(store, "llamakit-local/smollm2", 10, 8) == pytest.approx(10 * per_call)


def _eta_seconds(bar: ProgressBar) -> int:
    text = str(bar._bar)  # e.g. " 52%|#####| 52/100 [00:00<00:04, 10.1cell/s]"
    minutes, seconds = re.search(r"<(\d+):(\d+)", text).groups()
    return int(minutes) * 60 + int(seconds)


def _snapshot(done: int) -> RunProgress:
    return RunProgress(total=100, done=done, errors={}, credits_spent=0.0, credits_left=None)


def test_the_eta_follows_the_rate_of_the_calls_sent_not_the_resumed_cells() -> None:
    bar = ProgressBar()
    bar.open(total=100, desc="resume")
    bar.show(_snapshot(50))  # finished before this session: counted at once
    bar.begin(50)
    time.sleep(0.5)
    bar.show(_snapshot(55))  # five calls in 0.5 s: ~10 cells/s, 45 to go
    eta = _eta_seconds(bar)
    bar.close()
    # ~4.5 s (more if the machine is slow to wake from the sleep); counting the 50 resumed cells
    # in the rate would say 0 s.
    assert 2 <= eta <= 60, eta


def test_cli_tables_are_compact_unless_wide(server, monkeypatch, capsys) -> None:
    monkeypatch.setenv("SEGMIND_API_KEY", server.api_key)
    monkeypatch.setenv("SEGMIND_BASE_URL", server.url + "/v1")
    assert main(["run", str(DATA / "demo.yaml"), "--no-progress"]) == 0
    compact = capsys.readouterr().out
    assert f"answered by {server.url}/v1" in compact
    table = compact.splitlines()[-5:]
    assert table[0].split() == ["n", "errors", "contains", "concise", "latency_p50_s", "credits"]
    assert max(len(line) for line in table) <= 100  # one line per variant in a terminal
    assert re.search(r"terse +48 +0 +\d\.\d\d \[\d\.\d\d, \d\.\d\d\]", compact)
    assert "consistency" not in compact
    assert main(["run", str(DATA / "demo.yaml"), "--no-progress", "--replay", "--wide"]) == 0
    wide = capsys.readouterr().out
    assert "score_contains_consistency" in wide and "\\" not in wide  # one block, never wrapped
    assert main(["runs"]) == 0
    runs = capsys.readouterr().out
    assert "source" in runs.splitlines()[0] and server.url in runs
    assert "balance_before" not in runs
    assert main(["runs", "--wide"]) == 0
    assert "balance_before" in capsys.readouterr().out


@pytest.fixture
def fresh_local():
    """connect()'s process-wide local server, stopped before and after the test."""
    from llamakit.server import connect as _connect

    _connect._shutdown()
    yield
    _connect._shutdown()


def test_run_rules_steer_the_scripted_backend(fresh_local, tmp_path) -> None:
    assert main(["run", str(DATA / "demo.yaml"), "--no-progress", "--rules",
                 str(DATA / "demo_rules.yaml"), "--out", str(tmp_path / "r.csv")]) == 0  # fmt: skip
    frame = pd.read_csv(tmp_path / "r.csv")
    assert set(frame["source"]) == {frame["source"][0]}
    assert frame["source"][0].startswith("llamakit-local/scripted#")
    means = frame.groupby("variant")[["score_contains", "score_concise"]].mean()
    # The variants differ, as the demo should show: not all zeros, not all the same.
    assert means.loc["step_by_step", "score_contains"] == 1.0
    assert means.loc["step_by_step", "score_concise"] == 0.0
    assert 0 < means.loc["bare", "score_contains"] < 1
    assert means.loc["terse", "score_concise"] == 1.0
