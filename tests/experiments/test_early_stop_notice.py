"""A run that stops short of its cells for want of money says so on stderr, from the Python API
as the CLI does: a notebook user otherwise saw only a bar stuck short of the end."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from exp_helpers import FAST_RETRIES, billed, make_experiment

import llamakit as lk
from llamakit.store import Store


def test_a_budget_stop_is_announced_with_what_to_do(
    server: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    exp = make_experiment(items=10, repeats=1, scorers=[])
    run = exp.run(server.client(retry_policy=FAST_RETRIES), concurrency=2, budget=0.005,
                  progress=False, store=Store(tmp_path / "s.db"))  # fmt: skip
    assert run.status == "budget"
    err = capsys.readouterr().err
    p = run.progress
    assert f"run {run.id} stopped at {p.done}/{p.total} cells" in err, err
    assert "larger budget=" in err and "not paid again" in err


def test_running_out_of_credits_is_announced_from_arun(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with lk.local_server(backend="scripted", credits=0.004) as srv:
        exp = make_experiment(items=10, repeats=1, scorers=[])

        async def main() -> lk.Run:
            client = srv.async_client(retry_policy=FAST_RETRIES)
            return await exp.arun(client, concurrency=1, progress=False,
                                  store=Store(tmp_path / "s.db"))  # fmt: skip

        run = asyncio.run(main())
        assert run.status == "insufficient_credits" and 0 < billed(srv) < 30
    err = capsys.readouterr().err
    assert "ran out of credits (406)" in err and "a judge's own client" in err


def test_a_finished_run_says_nothing(
    server: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    exp = make_experiment(items=2, repeats=1, scorers=[])
    run = exp.run(server.client(), progress=False, store=Store(tmp_path / "s.db"))
    assert run.status == "finished"
    assert "stopped at" not in capsys.readouterr().err
