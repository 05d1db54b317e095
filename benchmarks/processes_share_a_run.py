"""Processes that share one run: wall time of 1, 2 and 4 runner processes started at once on one
experiment and one store, and what the server billed (it must equal the cells every time).

The server (scripted, in this process) answers each call after ``--latency-ms``, so calls are
network-bound as on the hosted API; each runner uses concurrency 4. The runners are
``tests/experiments/claim_runner.py``, started together and released by one file.

Usage: ``python benchmarks/processes_share_a_run.py [--items N] [--latency-ms MS]``
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import llamakit as lk

RUNNER = Path(__file__).resolve().parent.parent / "tests" / "experiments" / "claim_runner.py"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=40, help="items (x 2 variants x 2 repeats)")
    parser.add_argument("--latency-ms", type=int, default=300)
    args = parser.parse_args()
    cells = args.items * 4
    times: dict[int, float] = {}
    with lk.local_server(backend="scripted", credits=1e6, latency_ms=args.latency_ms) as srv:
        env = {**os.environ, "SEGMIND_API_KEY": srv.api_key}
        for n in (1, 2, 4):
            work = Path(tempfile.mkdtemp(prefix="llamakit-bench-"))
            names = [f"p{i}" for i in range(n)]
            before = srv.stats()["billed_calls"]
            procs = [
                subprocess.Popen(
                    [sys.executable, str(RUNNER), srv.url, str(work), name, "1", str(args.items)],
                    env=env,
                    stdout=subprocess.PIPE,
                    text=True,
                )  # fmt: skip
                for name in names
            ]
            while not all((work / f"ready-0-{name}").exists() for name in names):
                time.sleep(0.01)
            started = time.monotonic()
            (work / "go-0").touch()
            split = [json.loads(p.stdout.readline())["paid"] for p in procs]  # type: ignore[union-attr]
            times[n] = time.monotonic() - started
            for p in procs:
                p.wait()
                p.stdout.close()  # type: ignore[union-attr]
            paid = srv.stats()["billed_calls"] - before
            print(
                f"FIGURE {n} process(es), {cells} cells: {times[n]:.2f} s "
                f"(billed {paid}, paid per process {split})"
            )
            if paid != cells:
                print(f"billed {paid} calls for {cells} cells", file=sys.stderr)
                return 1
    print(f"FIGURE speed-up with 2 processes: {times[1] / times[2]:.2f} x")
    print(f"FIGURE speed-up with 4 processes: {times[1] / times[4]:.2f} x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
