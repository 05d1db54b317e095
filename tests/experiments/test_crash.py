"""SIGKILL the runner mid-run (a `llamakit run` process against a server in another process), then
rerun: nothing finished is lost and the server has billed each cell exactly once.

Where the kill lands matters, and the test says so rather than hoping: a call the server has
already billed but whose response the killed process had not yet committed is paid for again on
the rerun (no v1 API can prevent that; it is at most the calls in flight). So before the kill the
test makes every further call fail with a 500 (never billed) and waits until the server's billed
count equals the responses committed in the store: the kill then lands mid-run, with calls in
flight and cells unfinished, but with nothing paid-and-unrecorded.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

pytestmark = pytest.mark.slow  # subprocess servers and runners

KEY = "SG_crashtest_0123456789abcdef"
SPEC = """\
name: crash
dataset: data.csv
prompts:
  plain: "What is {{ a }} + {{ b }}?"
  terse: [{role: system, content: "Number only."}, {role: user, content: "{{ a }} + {{ b }} ="}]
  cot: "Think step by step: {{ a }} plus {{ b }}?"
params: {max_tokens: 16}
repeats: 2
scorers: [contains]
"""


@pytest.fixture
def server_process() -> Iterator[str]:
    yield from _serve("20")


@pytest.fixture
def slow_server_process() -> Iterator[str]:
    yield from _serve("600")


def _serve(latency_ms: str) -> Iterator[str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "llamakit.cli", "serve", "--backend", "scripted", "--port", "0",
         "--api-key", KEY, "--credits", "100", "--latency-ms", latency_ms],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        line = proc.stdout.readline()  # "llamakit serve: http://127.0.0.1:PORT  backend=scripted"
        url = line.split()[2]
        assert url.startswith("http://127.0.0.1:"), line
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)  # beyond serve's own 15 s stop deadline


def _admin(url: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    headers = {"x-api-key": KEY}
    if body is None:
        return httpx.get(url + path, headers=headers).json()
    return httpx.post(url + path, headers=headers, json=body).json()


def _count(db: Path, sql: str) -> int:
    if not db.exists():
        return 0
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    try:
        return conn.execute(sql).fetchone()[0]
    except sqlite3.OperationalError:  # tables not created yet
        return 0
    finally:
        conn.close()


def test_sigkill_mid_run_then_rerun_bills_each_cell_exactly_once(server_process, tmp_path) -> None:
    url = server_process
    (tmp_path / "data.csv").write_text(
        "id,a,b,expected\n" + "".join(f"q{i},{i},{i + 1},{2 * i + 1}\n" for i in range(20))
    )
    (tmp_path / "spec.yaml").write_text(SPEC)
    db = tmp_path / "store.db"
    env = {**os.environ, "SEGMIND_API_KEY": KEY, "SEGMIND_BASE_URL": url + "/v1"}
    command = [sys.executable, "-m", "llamakit.cli", "run", str(tmp_path / "spec.yaml"),
               "--concurrency", "4", "--no-progress", "--store", str(db)]  # fmt: skip
    runner = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while _count(db, "SELECT COUNT(*) FROM run_cells WHERE status = 'done'") < 30:
        assert runner.poll() is None, runner.stderr.read()
        assert time.monotonic() < deadline
        time.sleep(0.02)

    _admin(url, "/_llamakit/faults", {"fail_rate": 1.0})
    # Wait until everything the server billed is committed in the store (stable for a moment).
    stable = 0
    while stable < 5:
        paid = _admin(url, "/_llamakit/stats")["billed_calls"]
        stored = _count(db, "SELECT COUNT(*) FROM responses")
        stable = stable + 1 if paid == stored else 0
        assert time.monotonic() < deadline
        time.sleep(0.02)
    os.kill(runner.pid, signal.SIGKILL)
    runner.wait(timeout=10)
    runner.stderr.close()

    done_at_kill = _count(db, "SELECT COUNT(*) FROM run_cells WHERE status = 'done'")
    assert 30 <= done_at_kill < 120  # killed mid-run
    assert _count(db, "SELECT COUNT(*) FROM runs WHERE status = 'running'") == 1

    _admin(url, "/_llamakit/faults", {"fail_rate": 0.0})
    rerun = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert rerun.returncode == 0, rerun.stderr
    assert "finished; 120/120 cells" in rerun.stdout
    assert _admin(url, "/_llamakit/stats")["billed_calls"] == 120
    assert _count(db, "SELECT COUNT(*) FROM runs") == 1  # the killed run was resumed, not redone
    assert _count(db, "SELECT COUNT(*) FROM run_cells WHERE status = 'done'") == 120
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.close()


def test_ctrl_c_stops_cleanly_and_the_rerun_resumes(server_process, tmp_path) -> None:
    url = server_process
    (tmp_path / "data.csv").write_text(
        "id,a,b,expected\n" + "".join(f"q{i},{i},{i + 1},{2 * i + 1}\n" for i in range(20))
    )
    (tmp_path / "spec.yaml").write_text(SPEC)
    db = tmp_path / "store.db"
    env = {**os.environ, "SEGMIND_API_KEY": KEY, "SEGMIND_BASE_URL": url + "/v1"}
    command = [sys.executable, "-m", "llamakit.cli", "run", str(tmp_path / "spec.yaml"),
               "--concurrency", "2", "--no-progress", "--store", str(db)]  # fmt: skip
    # A shell without job control starts background jobs with SIGINT ignored, and Python keeps
    # ignoring it; restore the default so the runner sees Ctrl-C however the suite was launched.
    runner = subprocess.Popen(
        command,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.monotonic() + 60
    while _count(db, "SELECT COUNT(*) FROM run_cells WHERE status = 'done'") < 10:
        assert runner.poll() is None and time.monotonic() < deadline
        time.sleep(0.02)
    runner.send_signal(signal.SIGINT)
    _, err = runner.communicate(timeout=30)
    assert runner.returncode == 130, err
    assert "interrupted at" in err and "run it again to resume" in err
    # Ctrl-C waited for the calls in flight: everything billed is in the store.
    assert _admin(url, "/_llamakit/stats")["billed_calls"] == _count(
        db, "SELECT COUNT(*) FROM responses"
    )
    assert _count(db, "SELECT COUNT(*) FROM runs WHERE status = 'interrupted'") == 1
    rerun = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert rerun.returncode == 0, rerun.stderr
    assert _admin(url, "/_llamakit/stats")["billed_calls"] == 120


def test_sigkill_with_v2_jobs_in_flight_collects_them_instead_of_paying_again(
    slow_server_process, tmp_path
) -> None:
    """With api=v2 every job is journaled before the runner waits on it. Jobs still generating
    when the runner dies are billed by the server anyway; the rerun collects them by request id.
    (The same kill under v1 would pay for each of them twice.)"""
    url = slow_server_process
    (tmp_path / "data.csv").write_text(
        "id,a,b,expected\n" + "".join(f"q{i},{i},{i + 1},{2 * i + 1}\n" for i in range(20))
    )
    (tmp_path / "spec.yaml").write_text(SPEC)
    db = tmp_path / "store.db"
    env = {**os.environ, "SEGMIND_API_KEY": KEY, "SEGMIND_BASE_URL": url + "/v1"}
    command = [sys.executable, "-m", "llamakit.cli", "run", str(tmp_path / "spec.yaml"), "--api",
               "v2", "--concurrency", "8", "--no-progress", "--store", str(db)]  # fmt: skip
    runner = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 90
    while _count(db, "SELECT COUNT(*) FROM run_cells WHERE status = 'done'") < 16:
        assert runner.poll() is None, runner.stderr.read()
        assert time.monotonic() < deadline
        time.sleep(0.02)
    # New submissions now fail (unbilled); the 8 journaled jobs keep generating for ~0.6 s.
    _admin(url, "/_llamakit/faults", {"fail_rate": 1.0})
    # Settle: a submission answered just before the switch is journaled within milliseconds.
    time.sleep(0.15)
    in_flight = _count(db, "SELECT COUNT(*) FROM inflight")
    os.kill(runner.pid, signal.SIGKILL)
    runner.wait(timeout=10)
    runner.stderr.close()
    assert in_flight > 0  # the kill landed with paid-for jobs still running
    done_at_kill = _count(db, "SELECT COUNT(*) FROM run_cells WHERE status = 'done'")
    assert done_at_kill < 120

    _admin(url, "/_llamakit/faults", {"fail_rate": 0.0, "latency_ms": 20})
    rerun = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert rerun.returncode == 0, rerun.stderr
    assert _admin(url, "/_llamakit/stats")["billed_calls"] == 120
    assert _count(db, "SELECT COUNT(*) FROM inflight") == 0
    assert _count(db, "SELECT COUNT(*) FROM run_cells WHERE status = 'done'") == 120
