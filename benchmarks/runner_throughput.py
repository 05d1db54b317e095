"""Runner throughput, measured side by side in one run (figures, never asserted).

1. 2,000 cells at concurrency 32 against a `llamakit serve` process adding 100 ms to every call:
   wall time as a fraction of the ideal ceil(2000 / 32) x 0.1 s.
2. The same runner under a 600 requests/minute limit: the client paces at rpm=600 and the server
   enforces 600/min (as 60 per 6 s, so a burst would be caught within the run); scaled down to
   500 cells (ideal 50 s instead of 200 s for 2,000) to keep the benchmark near a minute; with the
   server's count of 429s.
3. A fully cached rerun of 10,000 cells (the store is filled through the Store API first, not by
   10,000 live calls): wall time and cells per second.

Usage: .venv/bin/python benchmarks/runner_throughput.py [--quick]
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

import llamakit as lk
from llamakit.client.retry import RetryPolicy
from llamakit.store import Store

KEY = "SG_bench_0123456789abcdef"


def experiment(name: str, cells: int, repeats: int = 1) -> lk.Experiment:
    # The name goes into the prompt so scenarios never share cache entries.
    items = [{"id": f"i{i}", "q": f"{name}: question number {i}?"} for i in range(cells // repeats)]
    return lk.Experiment(
        name, prompts="{{ q }}", dataset=items, params={"max_tokens": 8}, repeats=repeats
    )


def latency_bound(cells: int, concurrency: int, store: Store) -> dict[str, float]:
    server = subprocess.Popen(
        [sys.executable, "-m", "llamakit.cli", "serve", "--backend", "scripted", "--port", "0",
         "--api-key", KEY, "--credits", "1000", "--latency-ms", "100"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        url = server.stdout.readline().split()[2]
        client = lk.Client(KEY, base_url=url + "/v1", retry_policy=RetryPolicy(max_retries=6))
        client.chat("warm up", max_tokens=8)
        exp = experiment("bench-latency", cells)
        t0 = time.perf_counter()
        run = exp.run(client, concurrency=concurrency, progress=False, store=store)
        wall = time.perf_counter() - t0
        billed = httpx.get(url + "/_llamakit/stats", headers={"x-api-key": KEY}).json()[
            "billed_calls"
        ]
        assert run.status == "finished" and billed == cells + 1, (run.status, billed)
        # The same calls with no runner at all (no store, no scoring): what the server and the
        # client allow on this machine, so the runner's own cost can be told apart.
        t0 = time.perf_counter()
        with ThreadPoolExecutor(concurrency) as pool:
            list(pool.map(lambda i: client.chat(f"bare {i}", max_tokens=8), range(cells)))
        bare = time.perf_counter() - t0
    finally:
        server.terminate()
        server.wait(10)
    ideal = math.ceil(cells / concurrency) * 0.1
    return {"cells": cells, "wall_s": wall, "ideal_s": ideal, "ratio": wall / ideal,
            "bare_s": bare, "bare_ratio": bare / ideal}  # fmt: skip


def rate_bound(cells: int, concurrency: int, store: Store) -> dict[str, float]:
    with lk.local_server(backend="scripted", credits=1000.0, rpm=60, rpm_window_s=6.0) as srv:
        client = srv.client(rpm=600, retry_policy=RetryPolicy(max_retries=6))
        exp = experiment("bench-rpm", cells)
        t0 = time.perf_counter()
        run = exp.run(client, concurrency=concurrency, progress=False, store=store)
        wall = time.perf_counter() - t0
        stats = srv.stats()
        assert run.status == "finished" and stats["billed_calls"] == cells
    ideal = cells / 600 * 60
    return {"cells": cells, "wall_s": wall, "ideal_s": ideal, "ratio": wall / ideal,
            "429s": stats["requests"].get("429", 0)}  # fmt: skip


def cached_rerun(cells: int, store: Store) -> dict[str, float]:
    exp = experiment("bench-cached", cells, repeats=2)
    model = lk._defaults.DEFAULT_MODEL
    now = time.time()
    batch = [
        {"cell_key": c.cell_key, "model": model, "messages": c.messages, "params": c.params,
         "repeat": c.repeat, "text": "cached answer", "finish_reason": "stop", "latency_s": 0.1,
         "attempts": 1, "started_at": now, "finished_at": now, "credits": 0.00063}
        for c in exp.cells(model)
    ]  # fmt: skip
    for row in batch:  # one transaction per row, as live calls would commit them
        store.record_call(row)
    t0 = time.perf_counter()
    run = experiment("bench-cached", cells, repeats=2).run(
        None, mode="replay", progress=False, store=store
    )
    wall = time.perf_counter() - t0
    assert run.status == "finished" and run.progress.done == cells
    t1 = time.perf_counter()
    rows = len(run.results)
    frame_s = time.perf_counter() - t1
    return {
        "cells": cells,
        "wall_s": wall,
        "cells_per_s": cells / wall,
        "results_s": frame_s,
        "rows": rows,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="a tenth of the cells (smoke test)")
    args = parser.parse_args()
    scale = 10 if args.quick else 1
    import pandas  # noqa: F401  (imported up front: its import is not the results frame's cost)

    from llamakit import tokens

    t0 = time.perf_counter()
    tokens.count("load the tokenizer once, outside the timings")
    load_s = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["LLAMAKIT_HOME"] = tmp
        store = Store(Path(tmp) / "bench.db")
        a = latency_bound(2000 // scale, 32, store)
        b = rate_bound(500 // scale, 32, store)
        c = cached_rerun(10000 // scale, store)
    print(f"runner throughput  ({platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"Python {platform.python_version()})")  # fmt: skip
    print(f"{'scenario':<44} {'cells':>6} {'wall s':>8} {'ideal s':>8} {'wall/ideal':>10}  extra")
    print(f"{'concurrency 32, +100 ms latency':<44} {a['cells']:>6} {a['wall_s']:>8.2f} "
          f"{a['ideal_s']:>8.2f} {a['ratio']:>10.2f}")  # fmt: skip
    print(f"{'  same calls, bare Client.chat x 32 threads':<44} {a['cells']:>6} {a['bare_s']:>8.2f} "
          f"{a['ideal_s']:>8.2f} {a['bare_ratio']:>10.2f}  (no runner, no store)")  # fmt: skip
    print(f"{'rpm=600 (client paced, server enforces)':<44} {b['cells']:>6} {b['wall_s']:>8.2f} "
          f"{b['ideal_s']:>8.2f} {b['ratio']:>10.2f}  429s: {b['429s']}")  # fmt: skip
    print(f"{'fully cached rerun (replay)':<44} {c['cells']:>6} {c['wall_s']:>8.2f} {'-':>8} "
          f"{'-':>10}  {c['cells_per_s']:,.0f} cells/s; results frame {c['results_s']:.2f} s")  # fmt: skip
    print(f"(one-time Llama 3 tokenizer load, excluded above: {load_s:.2f} s)")
    # For `make bench` (benchmarks/run_all.py collects FIGURE lines).
    print(f"FIGURE runner wall/ideal, concurrency 32 +100 ms: {a['ratio']:.2f} x "
          f"({a['cells']} cells; bare Client.chat threads {a['bare_ratio']:.2f} x)")  # fmt: skip
    print(f"FIGURE runner wall/ideal at rpm=600: {b['ratio']:.2f} x "
          f"({b['cells']} cells; {b['429s']} 429s)")  # fmt: skip
    print(f"FIGURE fully cached rerun: {c['cells_per_s']:.0f} cells/s ({c['cells']} cells)")


if __name__ == "__main__":
    main()
