"""Peak memory of a run against the number of cells (figures, never asserted).

For each size (1k, 10k, 50k, 200k cells by default) a fresh interpreter fills a store with a reply
for every cell (through the Store API, as a live run would have), then another fresh interpreter
runs the experiment against that store (``mode="replay"``: the runner's whole path, cached cells,
store writes and progress, without paying for 200,000 calls), then walks its results in chunks
(``run.iter_results()``), and reports its peak RSS (``ru_maxrss``). A third figure,
``len(run.results)``, builds the whole table in memory: that one grows with the run by nature.

Usage: .venv/bin/python benchmarks/runner_memory.py [--sizes 1000,10000,50000,200000]

Profiling memory (where the bytes go):

    .venv/bin/python -X importtime -c "import llamakit"           # the import floor
    .venv/bin/python -m tracemalloc ...  or, in the child below, tracemalloc.start() and
    tracemalloc.take_snapshot().statistics("lineno")[:15] after the run
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHILD_FILL = """
import sys, time
import llamakit as lk
from llamakit.store import Store
n, path = int(sys.argv[1]), sys.argv[2]
items = [{"id": f"i{i}", "q": f"memory: question number {i}?"} for i in range(n)]
exp = lk.Experiment("bench-memory", prompts="{{ q }}", dataset=items, params={"max_tokens": 8})
store = Store(path)
now = time.time()
batch = []
for c in exp.cells(lk._defaults.DEFAULT_MODEL):
    batch.append(({"cell_key": c.cell_key, "model": c.model, "messages": c.messages,
                   "params": c.params, "repeat": c.repeat, "text": "cached answer",
                   "finish_reason": "stop", "latency_s": 0.1, "attempts": 1,
                   "started_at": now, "finished_at": now, "credits": "0.00063"}, ()))
    if len(batch) == 2000:
        store.record_calls(batch)
        batch = []
store.record_calls(batch)
"""

CHILD_RUN = """
import json, resource, sys, time
import llamakit as lk
from llamakit.store import Store
n, path, whole = int(sys.argv[1]), sys.argv[2], sys.argv[3] == "1"
import pandas  # the import floor is the same at every size
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
items = [{"id": f"i{i}", "q": f"memory: question number {i}?"} for i in range(n)]
exp = lk.Experiment("bench-memory", prompts="{{ q }}", dataset=items, params={"max_tokens": 8})
t0 = time.perf_counter()
run = exp.run(None, mode="replay", progress=False, store=Store(path))
wall = time.perf_counter() - t0
assert run.status == "finished", run.status
after_run = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
rows = 0
if whole:
    rows = len(run.results)
elif hasattr(run, "iter_results"):
    for chunk in run.iter_results():
        rows += len(chunk)
else:
    rows = len(run.results)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"base_kb": base, "run_kb": after_run, "peak_kb": peak, "rows": rows,
                  "wall_s": wall}))
"""


def measure(n: int, tmp: Path, whole: bool) -> dict[str, float]:
    path = tmp / f"mem{n}.db"
    if not path.exists():
        subprocess.run([sys.executable, "-c", CHILD_FILL, str(n), str(path)], check=True)
    out = subprocess.run(
        [sys.executable, "-c", CHILD_RUN, str(n), str(path), "1" if whole else "0"],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    # Each run after the first finds the last one finished and records a rerun.
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="1000,10000,50000,200000")
    parser.add_argument("--whole", action="store_true", help="also build len(run.results)")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    print(f"peak RSS (MB) of a fresh interpreter running N cells (replay), {sys.platform}")
    print(f"{'cells':>8} {'import':>8} {'after run':>10} {'+ results':>10} {'whole table':>12}"
          f" {'run s':>7}")  # fmt: skip
    peaks: dict[int, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for n in sizes:
            t0 = time.perf_counter()
            chunked = measure(n, Path(tmp), whole=False)
            whole = measure(n, Path(tmp), whole=True) if args.whole else None
            peaks[n] = chunked["peak_kb"] / 1024
            print(f"{n:>8} {chunked['base_kb'] / 1024:>8.0f} {chunked['run_kb'] / 1024:>10.0f} "
                  f"{chunked['peak_kb'] / 1024:>10.0f} "
                  f"{(whole['peak_kb'] / 1024 if whole else float('nan')):>12.0f} "
                  f"{chunked['wall_s']:>7.2f}   ({time.perf_counter() - t0:.0f} s)",
                  flush=True)  # fmt: skip
    if 1000 in peaks:
        for n in sizes:
            if n != 1000:
                row = {"figure": f"runner peak RSS, {n:,} cells", "value": round(peaks[n], 1),
                       "unit": "MB", "floor": {"name": "1,000 cells", "value": round(peaks[1000], 1)},
                       "note": "replay run, then results walked in chunks; fresh interpreter each"}  # fmt: skip
                if n == 50000:
                    row["target"] = 1.3
                print("BENCH " + json.dumps(row))


if __name__ == "__main__":
    main()
