"""`make bench` (benchmarks/run_all.py): runs every script, parses FIGURE lines, shows the machine."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
RUNNER = REPO / "benchmarks" / "run_all.py"

sys.path.insert(0, str(RUNNER.parent))
import run_all  # noqa: E402


def test_figure_lines_parse_with_and_without_unit_and_note() -> None:
    out = run_all.parse_figures(
        "noise\n"
        "FIGURE exact count throughput: 1.9e6 tokens/s (best of 5)\n"
        "FIGURE async vs sync speed-up: 3.8 x\n"
        "FIGURE cells lost: 0\n"
        "FIGURE: malformed\n"
        "  FIGURE padded: 12.5 ms (p95, 200 calls (cold))  \n"
    )
    assert out == [
        run_all.Figure("exact count throughput", "1.9e6", "tokens/s", "best of 5"),
        run_all.Figure("async vs sync speed-up", "3.8", "x", ""),
        run_all.Figure("cells lost", "0", "", ""),
        run_all.Figure("padded", "12.5", "ms", "p95, 200 calls (cold)"),
    ]


def _script(folder: Path, name: str, body: str) -> None:
    (folder / name).write_text(textwrap.dedent(body))


def test_runs_every_script_and_prints_one_table(tmp_path: Path) -> None:
    _script(
        tmp_path, "a_figures.py", 'print("warming up")\nprint("FIGURE speed-up: 2.5 x (n=10)")\n'
    )
    _script(tmp_path, "b_plain.py", "for i in range(20):\n    print(f'row-{i:02d}')\n")
    _script(
        tmp_path, "c_broken.py", "import sys\nprint('about to fail')\nsys.exit('boom: bad input')\n"
    )
    _script(tmp_path, "_helper.py", "raise SystemExit('helpers are not benchmarks')\n")
    proc = subprocess.run(
        [sys.executable, str(RUNNER), "--dir", str(tmp_path), "--timeout", "60"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    out = proc.stdout
    assert proc.returncode == 1, out  # one script failed
    assert "a_figures.py [ok" in out and "speed-up" in out and "2.5" in out and "n=10" in out
    assert "warming up" not in out  # scripts with FIGURE lines show only their figures
    # The tail, verbatim, of plain scripts.
    assert "row-19" in out and "row-10" in out and "row-09" not in out
    assert "c_broken.py [FAILED (1)" in out and "boom: bad input" in out
    assert "_helper" not in out
    machine = out.strip().splitlines()[-1]
    assert machine.startswith("machine: cpu ") and "cores" in machine and "GiB" in machine
    assert f"python CPython {sys.version_info.major}.{sys.version_info.minor}" in machine


def test_a_hanging_script_times_out_and_is_reported(tmp_path: Path) -> None:
    _script(tmp_path, "hang.py", "import time\nprint('started', flush=True)\ntime.sleep(60)\n")
    results = [run_all.run_script(p, timeout=1.0) for p in run_all.discover(tmp_path)]
    assert [r.returncode for r in results] == [None]
    table = run_all.render(results, {"cpu": "x"})
    assert "hang.py [TIMEOUT" in table and "started" in table and "timed out after 1 s" in table


@pytest.mark.parametrize("only,expected", [(None, ["a.py", "b.py"]), ("b", ["b.py"])])
def test_discover_skips_the_runner_and_private_helpers(
    tmp_path: Path, only: str | None, expected: list[str]
) -> None:
    for name in ("a.py", "b.py", "_shared.py", "run_all.py", "notes.txt"):
        (tmp_path / name).write_text("")
    assert [p.name for p in run_all.discover(tmp_path, only)] == expected


def test_bench_lines_carry_the_floor_and_peers() -> None:
    out = run_all.parse_figures(
        'BENCH {"figure": "CPU per call", "value": 1.2, "unit": "ms", '
        '"floor": {"name": "bare httpx", "value": 0.8}, "target": 1.2, '
        '"peers": {"promptfoo": 2.4, "Inspect AI": null}, "note": "n=10"}\n'
        'BENCH {"figure": "no floor", "value": 3}\n'
        "BENCH {not json}\n"
        'BENCH {"figure": "no value"}\n'
        'BENCH {"figure": "nan value", "value": NaN}\n'
        'BENCH {"value": 1}\n'
    )
    assert out == [
        run_all.Figure(
            "CPU per call",
            "1.2",
            "ms",
            "n=10",
            floor=("bare httpx", 0.8),
            peers=(("promptfoo", 2.4), ("Inspect AI", None)),
            target=1.2,
        ),
        run_all.Figure("no floor", "3"),
    ]


def test_one_table_merges_rows_of_every_script_with_ratios(tmp_path: Path) -> None:
    _script(
        tmp_path,
        "a_server.py",
        """
        import json
        print("NOTICE Inspect AI skipped: offline")
        row = {"figure": "stand-in CPU", "value": 3.0, "unit": "ms", "target": 2.0,
               "floor": {"name": "bare Starlette", "value": 1.0}}
        print("BENCH " + json.dumps(row))
        print("FIGURE plain throughput: 120 requests/s")
        """,
    )
    _script(
        tmp_path,
        "b_runner.py",
        """
        import json
        row = {"figure": "eval wall", "value": 6.0, "unit": "s",
               "floor": {"name": "bare httpx", "value": 5.0},
               "peers": {"promptfoo": 12.0, "Inspect AI": None}}
        print("BENCH " + json.dumps(row))
        """,
    )
    proc = subprocess.run(
        [sys.executable, str(RUNNER), "--dir", str(tmp_path), "--timeout", "60"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    header = lines[0]
    assert "vs floor" in header and "vs promptfoo" in header and "vs Inspect AI" in header
    cpu = next(line for line in lines if "stand-in CPU" in line)
    assert "bare Starlette 3.00x! (1)" in cpu and "[target <= 2x floor]" in cpu
    wall = next(line for line in lines if "eval wall" in line)
    assert "bare httpx 1.20x (5)" in wall and "0.50x (12)" in wall and "skipped" in wall
    plain = next(line for line in lines if "plain throughput" in line)
    assert "120" in plain and "x (" not in plain
    assert "notice: a_server.py: Inspect AI skipped: offline" in proc.stdout
    assert sum(line.startswith("script") for line in lines) == 1  # one table
