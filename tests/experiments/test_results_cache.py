"""``run.results`` is kept between reads while the store is unchanged (``results_cache``): read
again, it is not rebuilt; any commit to the store, from this process or another, rebuilds it; each
read is a copy of its own; a table past the size bound is not kept. Against the real stand-in."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from exp_helpers import client_of, make_experiment

from llamakit.experiment import results_cache
from llamakit.experiment.run import Run
from llamakit.store import Store

HERE = Path(__file__).parent


@pytest.fixture
def builds(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    seen: list[str] = []
    original = Run._build_results

    def counting(self: Run) -> Any:
        seen.append(self.id)
        return original(self)

    monkeypatch.setattr(Run, "_build_results", counting)
    return seen


def test_reading_again_does_not_rebuild_and_each_read_is_a_copy(
    server: Any, tmp_path: Path, builds: list[str]
) -> None:
    run = make_experiment(items=5, repeats=1).run(
        client_of(server), progress=False, store=Store(tmp_path / "s.db")
    )
    first = run.results
    first["response"] = "changed by the caller"
    first["extra"] = 1
    second = run.results
    run.summary()
    run.to_csv(tmp_path / "r.csv")
    assert len(builds) == 1
    assert "extra" not in second.columns
    assert second["response"].notna().all()
    assert (second["response"] != "changed by the caller").all()


def test_a_commit_from_this_process_rebuilds(
    server: Any, tmp_path: Path, builds: list[str]
) -> None:
    store = Store(tmp_path / "s.db")
    exp = make_experiment(items=5, repeats=1)
    run = exp.run(client_of(server), progress=False, store=store)
    before = run.results
    make_experiment(items=2, repeats=1, name="other").run(
        client_of(server), progress=False, store=store
    )
    after = run.results
    assert len(builds) == 2
    assert before.equals(after)


def test_another_process_finishing_the_run_shows_in_the_next_read(
    server: Any, tmp_path: Path, builds: list[str]
) -> None:
    """A run stopped by its budget, read here; another process resumes it to the end on the same
    store file: the next read here shows every cell, not the kept partial table."""
    path = tmp_path / "s.db"
    exp = make_experiment(items=20, repeats=1)  # 60 cells
    run = exp.run(client_of(server), budget=0.01, concurrency=4, progress=False, store=Store(path))
    assert run.status == "budget"
    partial = len(run.results)
    assert 0 < partial < 60
    assert len(run.results) == partial and len(builds) == 1
    code = (
        "import sys; sys.path.insert(0, sys.argv[3])\n"
        "import llamakit as lk\n"
        "from exp_helpers import FAST_RETRIES, make_experiment\n"
        "from llamakit.store import Store\n"
        "client = lk.Client(sys.argv[1], base_url=sys.argv[2] + '/v1', source=sys.argv[5],\n"
        "                   retry_policy=FAST_RETRIES)\n"
        "run = make_experiment(items=20, repeats=1).run(client, progress=False,"
        " store=Store(sys.argv[4]))\n"
        "print(run.id, run.status)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, server.api_key, server.url, str(HERE), str(path), server.source],
        capture_output=True, text=True, timeout=120, env={**os.environ},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [run.id, "finished"]
    whole = run.results
    assert len(whole) == 60 and whole["response"].notna().all()
    assert len(builds) == 2


def test_a_table_past_the_bound_is_built_on_each_read(
    server: Any, tmp_path: Path, builds: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(results_cache, "MAX_CACHED_BYTES", 1000)
    run = make_experiment(items=5, repeats=1).run(
        client_of(server), progress=False, store=Store(tmp_path / "s.db")
    )
    assert run.results.equals(run.results)
    assert len(builds) == 2


def test_a_loaded_run_reads_the_same_table_as_the_live_one(server: Any, tmp_path: Path) -> None:
    store = Store(tmp_path / "s.db")
    run = make_experiment(items=5, repeats=1).run(client_of(server), progress=False, store=store)
    loaded = Run(run.id, store)
    assert loaded.results.equals(run.results)
