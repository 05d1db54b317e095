"""Fail fast when the API cannot be reached (issue 13, point 5), and the CLI's exit codes.

An unreachable API (a closed loopback port) must end `llamakit run` and `llamakit demo` within
seconds with one clear error and a non-zero status, as separate processes, not after retrying
every cell. The breaker must still ride out a short outage once the server has answered.
"""

from __future__ import annotations

import os
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from exp_helpers import billed, client_of, make_experiment

import llamakit as lk
from llamakit.cli import main
from llamakit.experiment.runner_reach import Reachability, is_connect_failure

DATA = Path(__file__).resolve().parents[2] / "data"
# Generous for a loaded 2-core machine; without the breaker this takes minutes.
WITHIN_S = 30.0


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # closed again when the block ends: nothing listens


def _cli(args: list[str], tmp_path: Path) -> tuple[subprocess.CompletedProcess[str], float]:
    env = {
        **os.environ,
        "SEGMIND_API_KEY": "SG_unreachable_0123456789",
        "SEGMIND_BASE_URL": f"http://127.0.0.1:{_closed_port()}/v1",
        "LLAMAKIT_HOME": str(tmp_path / "home"),
    }
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "llamakit.cli", *args],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=240,
    )
    return done, time.monotonic() - started


@pytest.mark.parametrize(
    "args",
    [["run", str(DATA / "demo.yaml"), "--no-progress"], ["demo", "--out", "results"]],
    ids=["run", "demo"],
)
def test_an_unreachable_api_stops_within_seconds_and_exits_non_zero(
    args: list[str], tmp_path: Path
) -> None:
    done, elapsed = _cli(args, tmp_path)
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert elapsed < WITHIN_S, elapsed
    errors = [line for line in done.stderr.splitlines() if ": error: " in line]
    assert len(errors) == 1, done.stderr
    assert "APIUnreachableError" in errors[0] and "127.0.0.1" in errors[0]
    assert "Traceback" not in done.stderr
    # The run is recorded as failed; no cell was marked as an error (none was tried to the end),
    # so a rerun with the network back sends every cell.
    with sqlite3.connect(tmp_path / "home" / "llamakit.db") as db:
        assert db.execute("SELECT status FROM runs").fetchall() == [("failed",)]
        assert db.execute("SELECT COUNT(*) FROM run_cells WHERE status = 'error'").fetchone() == (
            0,
        )


@pytest.mark.parametrize("cls", [lk.Client, lk.AsyncClient])
def test_a_run_against_a_closed_port_raises_one_error_in_python(cls: Any, tmp_path: Path) -> None:
    client = cls("SG_unreachable_0123456789", base_url=f"http://127.0.0.1:{_closed_port()}/v1")
    exp = make_experiment(items=20, repeats=2)
    started = time.monotonic()
    with pytest.raises(lk.APIUnreachableError, match="unreachable") as info:
        exp.run(client, concurrency=8, progress=False, store=lk.Store(tmp_path / "s.db"))
    assert time.monotonic() - started < WITHIN_S
    assert isinstance(info.value, lk.APIConnectionError)  # catchable as what it is
    # The client is left as it was: its own retry policy is back in place.
    assert type(client._core.retry).__name__ == "RetryPolicy"


def _refused() -> lk.APIConnectionError:
    err = lk.APIConnectionError("could not talk to 127.0.0.1:9")
    err.__cause__ = httpx.ConnectError("[Errno 111] Connection refused")
    return err


def test_the_breaker_trips_on_consecutive_refusals_only_while_nothing_answered() -> None:
    now = [0.0]
    breaker = Reachability(after=3, grace_s=30.0, clock=lambda: now[0])
    assert not breaker.observe(_refused()) and not breaker.observe(_refused())
    assert breaker.observe(_refused())  # three in a row, nothing ever answered
    assert breaker.tripped and "3 connection attempts" in str(breaker.error("http://h:1/v1"))


def test_after_an_answer_a_short_outage_is_ridden_out_and_a_long_one_is_not() -> None:
    now = [0.0]
    breaker = Reachability(after=3, grace_s=30.0, clock=lambda: now[0])
    breaker.answered()
    for _ in range(20):  # a server restart: many refusals, but only for a few seconds
        now[0] += 0.2
        assert not breaker.observe(_refused())
    breaker.answered()  # it is back
    now[0] += 1
    assert not breaker.observe(_refused())
    now[0] += 31  # still refusing half a minute later: the network is gone
    assert not breaker.observe(_refused())  # two in a row so far
    assert breaker.observe(_refused())


def test_only_failures_that_never_reached_the_server_count() -> None:
    breaker = Reachability(after=1)
    dropped = lk.APIConnectionError("server disconnected")
    dropped.__cause__ = httpx.RemoteProtocolError("Server disconnected without a response")
    timeout = lk.APITimeoutError("read timeout")
    timeout.__cause__ = httpx.ReadTimeout("read")
    assert not is_connect_failure(dropped) and not is_connect_failure(timeout)
    assert not breaker.observe(dropped) and not breaker.observe(timeout)
    assert not breaker.observe(lk.ServerError("boom", status=500))  # an answer: reachable
    assert Reachability(after=1).observe(_refused())


def test_dropped_connections_and_500s_from_a_live_server_do_not_stop_the_run(server: Any) -> None:
    # The server is reachable but faulty: the run must go on and finish every cell.
    server.set_faults(fail_rate=0.3, drop_rate=0.2, seed=5)
    run = make_experiment(items=6, repeats=1).run(client_of(server), progress=False)
    assert run.status == "finished" and run.results["error"].isna().all()
    assert billed(server) >= 18


@pytest.fixture
def hosted_env(server: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("SEGMIND_API_KEY", server.api_key)
    monkeypatch.setenv("SEGMIND_BASE_URL", server.url + "/v1")
    return server


def test_run_exits_4_when_some_cells_failed_and_0_when_all_are_done(
    hosted_env: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dataset = tmp_path / "d.csv"
    dataset.write_text("id,q,expected\nshort,hi,hi\nhuge," + "lorem ipsum " * 6000 + ",x\n")
    spec = tmp_path / "s.yaml"
    spec.write_text(f"name: mixed\ndataset: {dataset}\nprompts: '{{{{ q }}}}'\n")
    assert main(["run", str(spec), "--no-progress"]) == 4  # the huge prompt's cell failed
    assert "rerun" in capsys.readouterr().out
    small = tmp_path / "small.csv"
    small.write_text("id,q\na,hi\nb,there\n")
    spec.write_text(f"name: fine\ndataset: {small}\nprompts: '{{{{ q }}}}'\n")
    assert main(["run", str(spec), "--no-progress"]) == 0


def test_run_exits_3_when_the_budget_stops_it(hosted_env: Any, capsys: Any) -> None:
    args = ["run", str(DATA / "demo.yaml"), "--no-progress", "--budget", "0.003"]
    assert main(args) == 3
    assert "budget" in capsys.readouterr().out


def test_a_port_that_accepts_and_closes_stops_the_run_too(tmp_path: Path) -> None:
    # Nothing answers, but the connection is taken first: a proxy with nothing behind it.
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    stop = threading.Event()

    def close_every_connection() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            conn.close()

    thread = threading.Thread(target=close_every_connection, daemon=True)
    thread.start()
    port = listener.getsockname()[1]
    client = lk.Client("SG_unreachable_0123456789", base_url=f"http://127.0.0.1:{port}/v1")
    started = time.monotonic()
    try:
        with pytest.raises(lk.APIUnreachableError, match="unreachable"):
            make_experiment(items=20, repeats=2).run(
                client, concurrency=8, progress=False, store=lk.Store(tmp_path / "s.db")
            )
    finally:
        stop.set()
        thread.join(5)
        listener.close()
    assert time.monotonic() - started < WITHIN_S


def test_a_dropped_call_trips_only_after_its_own_retries_while_nothing_answered() -> None:
    dropped = lk.APIConnectionError("server disconnected")
    dropped.__cause__ = httpx.RemoteProtocolError("Server disconnected without a response")
    breaker = Reachability(after=3)
    assert not breaker.observe(dropped, 1) and not breaker.observe(_copy(dropped), 2)
    assert breaker.observe(_copy(dropped), 3)
    answered = Reachability(after=3)
    answered.answered()  # a live, flaky server: drops never stop the run
    assert not answered.observe(_copy(dropped), 5)


def _copy(error: lk.APIConnectionError) -> lk.APIConnectionError:
    again = lk.APIConnectionError(str(error))
    again.__cause__ = error.__cause__
    return again
