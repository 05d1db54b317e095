"""Runner throughput against its floor, measured side by side in one run (figures, never asserted).

One ``llamakit serve --backend scripted`` process adds a fixed latency to every call; against it,
in interleaved rounds (medians reported), the same number of fresh calls at concurrency 32 go:

- floor: a bare ``httpx.AsyncClient`` with an ``asyncio.Semaphore(32)``, the same JSON body, no
  retries, no store: what Python, httpx and this machine allow;
- sync floor: a bare ``httpx.Client`` shared by 32 threads, the floor a run with a sync client
  is compared with too (a thread per call in flight costs GIL hand-offs and wake-ups);
- the same floor on llamakit's own HTTP layer (``llamakit.client.transport``: httpcore with a
  linear pool pass, the asyncio network layer of ``aio_network``, requests handed to the
  transport directly): how much of the runner's CPU is that layer and how much its own work;
- runner, sync client: ``Experiment.run(lk.Client)`` (32 worker threads, the store, the claims);
- runner, async client: ``Experiment.arun(lk.AsyncClient)``.

Each is measured as wall time over the ideal ceil(cells / 32) x latency and as CPU per call (this
process's CPU time, every thread; the server is another process). The ratios printed are runner /
floor from the same rounds. Then: the rpm-paced runner (client at rpm=600, server enforcing
600/min) and a fully cached rerun of 10,000 cells (the store filled through the Store API first):
wall time, and bytes the rerun adds to the store per cell.

Usage: .venv/bin/python benchmarks/runner_throughput.py [--quick] [--rounds N] [--latency-ms MS]

Profiling (how the causes were found; ``pip install py-spy``). The run works on threads of its
own, so cProfile (main thread only) misses it; sample every thread holding the GIL instead:

    py-spy record --gil -r 200 -f raw -o /tmp/runner.txt -- .venv/bin/python \
        benchmarks/runner_throughput.py --only runner --rounds 1
    # then add up the samples per leaf frame (self) and per llamakit frame (inclusive):
    python -c "import collections,sys; c=collections.Counter(); [c.update({l.rsplit(' ',1)[0]\
.split(';')[-1]: int(l.rsplit(' ',1)[1])}) for l in open('/tmp/runner.txt')]; \
print(*c.most_common(15), sep='\\n')"

A fully cached rerun is profiled with cProfile by awaiting ``exp.arun(None, mode="replay",
store=...)`` on the main thread (``Experiment.run`` works on a thread of its own) and printing
``pstats.Stats(profile).sort_stats("cumtime")``.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

import llamakit as lk
from llamakit.client import transport as llamakit_transport
from llamakit.client.retry import RetryPolicy
from llamakit.store import Store

KEY = "SG_bench_0123456789abcdef"
CONCURRENCY = 32


def experiment(name: str, cells: int, repeats: int = 1, scored: bool = False) -> lk.Experiment:
    # The name goes into the prompt so scenarios never share cache entries.
    items = [{"id": f"i{i}", "q": f"{name}: question number {i}?", "expected": "cached"}
             for i in range(cells // repeats)]  # fmt: skip
    scorers = [lk.scoring.contains()] if scored else []
    return lk.Experiment(
        name, prompts="{{ q }}", dataset=items, params={"max_tokens": 8}, repeats=repeats,
        scorers=scorers,
    )  # fmt: skip


def measure(fn: Callable[[], Any]) -> tuple[float, float]:
    """(wall s, CPU s of this process, all threads) of one call."""
    c0, t0 = time.process_time(), time.perf_counter()
    fn()
    return time.perf_counter() - t0, time.process_time() - c0


async def bare_floor(url: str, tag: str, cells: int, lean: bool = False) -> None:
    """The floor; ``lean``: the same loop on llamakit's own HTTP layer (its transport: the
    linear pool pass and the asyncio network layer, sent to directly as the client does), to
    show how much of the runner's CPU is that layer and how much is llamakit's own work."""
    limit = asyncio.Semaphore(CONCURRENCY)
    target = f"{url}/v1/{lk._defaults.DEFAULT_MODEL}"
    headers = {"x-api-key": KEY}
    if lean:
        transport = llamakit_transport.async_transport()
        timeouts = {"timeout": httpx.Timeout(60).as_dict()}

        async def post(body: dict[str, Any]) -> httpx.Response:
            request = httpx.Request("POST", target, json=body, headers=headers,
                                    extensions=timeouts)  # fmt: skip
            resp = await transport.handle_async_request(request)
            resp.request = request
            await resp.aread()
            return resp

        try:
            await _bare_calls(tag, cells, limit, post)
        finally:
            await transport.aclose()
        return
    limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
    async with httpx.AsyncClient(transport=httpx.AsyncHTTPTransport(limits=limits),
                                 timeout=60) as http:  # fmt: skip
        await _bare_calls(tag, cells, limit,
                          functools.partial(_post, http, target, headers))  # fmt: skip


async def _post(
    http: httpx.AsyncClient, target: str, headers: dict[str, str], body: dict[str, Any]
) -> httpx.Response:
    return await http.post(target, json=body, headers=headers)


async def _bare_calls(
    tag: str, cells: int, limit: asyncio.Semaphore, post: Callable[[dict[str, Any]], Any]
) -> None:
    async def one(i: int) -> None:
        body = {"messages": [{"role": "user", "content": f"{tag}: question {i}?"}],
                "max_tokens": 8}  # fmt: skip
        async with limit:
            resp = await post(body)
            resp.raise_for_status()
            resp.json()

    await asyncio.gather(*(one(i) for i in range(cells)))


def bare_sync_floor(url: str, tag: str, cells: int) -> None:
    """The floor for a sync client: one bare ``httpx.Client`` shared by ``CONCURRENCY`` threads,
    as a runner with ``lk.Client`` has a thread per call in flight (threads cost GIL hand-offs
    and wake-ups that one event loop does not)."""
    target = f"{url}/v1/{lk._defaults.DEFAULT_MODEL}"
    headers = {"x-api-key": KEY}
    limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
    with httpx.Client(transport=httpx.HTTPTransport(limits=limits), timeout=60) as http:

        def one(i: int) -> None:
            body = {"messages": [{"role": "user", "content": f"{tag}: question {i}?"}],
                    "max_tokens": 8}  # fmt: skip
            resp = http.post(target, json=body, headers=headers)
            resp.raise_for_status()
            resp.json()

        with ThreadPoolExecutor(CONCURRENCY) as pool:
            list(pool.map(one, range(cells)))


def start_server(latency_ms: float, *extra: str) -> tuple[subprocess.Popen[str], str]:
    server = subprocess.Popen(
        [sys.executable, "-m", "llamakit.cli", "serve", "--backend", "scripted", "--port", "0",
         "--api-key", KEY, "--credits", "100000", "--latency-ms", str(latency_ms), *extra],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert server.stdout is not None
    return server, server.stdout.readline().split()[2]


def billed(url: str) -> int:
    stats = httpx.get(url + "/_llamakit/stats", headers={"x-api-key": KEY}).json()
    return int(stats["billed_calls"])


def against_floor(
    cells: int, rounds: int, latency_ms: float, store: Store
) -> dict[str, list[tuple[float, float]]]:
    server, url = start_server(latency_ms)
    out: dict[str, list[tuple[float, float]]] = {
        "floor": [],
        "sync floor": [],
        "lean": [],
        "sync": [],
        "async": [],
    }
    try:
        sync = lk.Client(KEY, base_url=url + "/v1", retry_policy=RetryPolicy(max_retries=6))
        sync.chat("warm up", max_tokens=8)

        def runner_sync(tag: str) -> None:
            run = experiment(tag, cells).run(
                sync, concurrency=CONCURRENCY, progress=False, store=store
            )
            assert run.status == "finished", run.status

        def runner_async(tag: str) -> None:
            async def go() -> None:
                client = lk.AsyncClient(
                    KEY, base_url=url + "/v1", retry_policy=RetryPolicy(max_retries=6)
                )
                run = await experiment(tag, cells).arun(
                    client, concurrency=CONCURRENCY, progress=False, store=store
                )
                assert run.status == "finished", run.status
                await client.close()

            asyncio.run(go())

        kinds: dict[str, Callable[[str], None]] = {
            "floor": lambda tag: asyncio.run(bare_floor(url, tag, cells)),
            "sync floor": lambda tag: bare_sync_floor(url, tag, cells),
            "lean": lambda tag: asyncio.run(bare_floor(url, tag, cells, lean=True)),
            "sync": runner_sync,
            "async": runner_async,
        }
        order = list(kinds)
        for kind, go in kinds.items():  # warm up: imports, connections, the server's caches
            go(f"warm-{kind}")
        before = billed(url)
        for r in range(rounds):
            shift = r % len(order)  # rotate so no kind always goes first
            for kind in order[shift:] + order[:shift]:
                out[kind].append(measure(functools.partial(kinds[kind], f"r{r}-{kind}")))
        assert billed(url) - before == len(order) * rounds * cells, (
            billed(url) - before,
            len(order) * rounds * cells,
        )
    finally:
        server.terminate()
        server.wait(10)
    return out


def rate_bound(cells: int, store: Store) -> dict[str, float]:
    with lk.local_server(backend="scripted", credits=1000.0, rpm=60, rpm_window_s=6.0) as srv:
        client = srv.client(rpm=600, retry_policy=RetryPolicy(max_retries=6))
        exp = experiment("bench-rpm", cells)
        t0 = time.perf_counter()
        run = exp.run(client, concurrency=CONCURRENCY, progress=False, store=store)
        wall = time.perf_counter() - t0
        stats = srv.stats()
        assert run.status == "finished" and stats["billed_calls"] == cells
    ideal = cells / 600 * 60
    return {"cells": cells, "wall_s": wall, "ideal_s": ideal, "ratio": wall / ideal,
            "429s": stats["requests"].get("429", 0)}  # fmt: skip


def fill_cache(store: Store, exp: lk.Experiment) -> None:
    """Stored replies for every cell of ``exp``, as if a live run had paid for them."""
    model = lk._defaults.DEFAULT_MODEL
    now = time.time()
    batch = [
        {"cell_key": c.cell_key, "model": model, "messages": c.messages, "params": c.params,
         "repeat": c.repeat, "text": "cached answer", "finish_reason": "stop", "latency_s": 0.1,
         "attempts": 1, "started_at": now, "finished_at": now, "credits": "0.00063"}
        for c in exp.cells(model)
    ]  # fmt: skip
    for start in range(0, len(batch), 1000):
        store.record_calls([(row, ()) for row in batch[start : start + 1000]])


def store_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.parent.glob(path.name + "*"))


def cached_rerun(cells: int, store: Store, scored: bool = False) -> dict[str, float]:
    name = "bench-cached-scored" if scored else "bench-cached"
    exp = experiment(name, cells, repeats=2, scored=scored)
    fill_cache(store, exp)
    experiment(name, cells, repeats=2, scored=scored).run(
        None, mode="replay", progress=False, store=store
    )
    store.checkpoint()
    size0 = store_bytes(store.path)
    t0 = time.perf_counter()
    run = experiment(name, cells, repeats=2, scored=scored).run(
        None, mode="replay", progress=False, store=store
    )
    wall = time.perf_counter() - t0
    assert run.status == "finished" and run.progress.done == cells
    store.checkpoint()
    grown = store_bytes(store.path) - size0
    t1 = time.perf_counter()
    rows = len(run.results)
    frame_s = time.perf_counter() - t1
    assert rows == cells
    return {"cells": cells, "wall_s": wall, "per_10k_s": wall * 10000 / cells,
            "bytes_per_cell": grown / cells, "results_s": frame_s}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="a tenth of the cells (smoke test)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--latency-ms", type=float, default=100.0)
    parser.add_argument("--only", choices=["runner", "rpm", "cached"], default=None)
    args = parser.parse_args()
    scale = 10 if args.quick else 1
    import pandas  # noqa: F401  (imported up front: its import is not the results frame's cost)

    cells = 2000 // scale
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["LLAMAKIT_HOME"] = tmp
        store = Store(Path(tmp) / "bench.db")
        a = (
            against_floor(cells, args.rounds, args.latency_ms, store)
            if args.only in (None, "runner")
            else None
        )
        b = rate_bound(500 // scale, store) if args.only in (None, "rpm") else None
        cached = [
            (label, cached_rerun(10000 // scale, Store(Path(tmp) / f"cached{i}.db"), scored))
            for i, (label, scored) in enumerate((("", False), (", scored (contains)", True)))
            if args.only in (None, "cached")
        ]
    print(f"runner throughput  ({platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"Python {platform.python_version()})")  # fmt: skip
    if a is not None:
        ideal = math.ceil(cells / CONCURRENCY) * args.latency_ms / 1000
        med = {k: (statistics.median(w for w, _ in v), statistics.median(c for _, c in v))
               for k, v in a.items()}  # fmt: skip
        print(f"{cells} calls, concurrency {CONCURRENCY}, +{args.latency_ms:.0f} ms, "
              f"medians of {args.rounds} interleaved rounds; ideal wall {ideal:.2f} s")  # fmt: skip
        print(f"{'':<32} {'wall s':>8} {'wall/ideal':>10} {'CPU us/call':>12} {'CPU / floor':>12}"
              f" {'/ lean':>9}")  # fmt: skip
        floor_cpu, lean_cpu = med["floor"][1], med["lean"][1]
        for kind, label in (("floor", "bare httpx.AsyncClient"),
                            ("sync floor", "bare httpx.Client, 32 threads"),
                            ("lean", "bare, llamakit's transport"),
                            ("sync", "runner, sync Client"),
                            ("async", "runner, AsyncClient")):  # fmt: skip
            wall, cpu = med[kind]
            print(f"{label:<32} {wall:>8.2f} {wall / ideal:>10.2f} {cpu / cells * 1e6:>12.0f} "
                  f"{cpu / floor_cpu:>12.2f} {cpu / lean_cpu:>9.2f}")  # fmt: skip
        note = f"{cells} calls, concurrency {CONCURRENCY}, medians of {args.rounds} rounds"
        for kind, label in (("sync", "sync Client"), ("async", "AsyncClient")):
            wall, cpu = med[kind]
            bench_row(f"runner CPU per call, {label}", cpu / cells * 1e6, "us",
                      ("bare httpx", med["floor"][1] / cells * 1e6), 1.2, note)  # fmt: skip
            bench_row(f"runner CPU per call, {label}, vs a floor on llamakit's transport",
                      cpu / cells * 1e6, "us",
                      ("bare, llamakit's transport", med["lean"][1] / cells * 1e6), None,
                      note)  # fmt: skip
            if kind == "sync":
                bench_row("runner CPU per call, sync Client, vs a floor with threads",
                          cpu / cells * 1e6, "us",
                          ("bare httpx.Client, 32 threads", med["sync floor"][1] / cells * 1e6),
                          None, note)  # fmt: skip
            bench_row(f"runner wall, {label}, +{args.latency_ms:.0f} ms", wall, "s",
                      ("bare httpx", med["floor"][0]), None,
                      f"{note}; bare at {med['floor'][0] / ideal:.2f} x ideal")  # fmt: skip
    if b is not None:
        print(f"rpm=600 (client paced, server enforces): {b['cells']} cells, {b['wall_s']:.2f} s, "
              f"{b['ratio']:.2f} x ideal, 429s: {b['429s']}")  # fmt: skip
        print(f"FIGURE runner wall/ideal at rpm=600: {b['ratio']:.2f} x "
              f"({b['cells']} cells; {b['429s']} 429s)")  # fmt: skip
    for label, c in cached:
        print(f"fully cached rerun{label} (replay): {c['cells']} cells in {c['wall_s']:.2f} s "
              f"({c['per_10k_s']:.2f} s per 10,000), store +{c['bytes_per_cell']:.1f} B/cell; "
              f"results frame {c['results_s']:.2f} s")  # fmt: skip
        print(f"FIGURE fully cached rerun{label}: {c['per_10k_s']:.2f} s per 10k cells "
              f"(target 0.5; {c['cells']} cells, experiment built and run)")  # fmt: skip
        print(f"FIGURE fully cached rerun{label}, store growth: {c['bytes_per_cell']:.1f} "
              f"B/cell (target: a few bytes)")  # fmt: skip


def bench_row(figure: str, value: float, unit: str, floor: tuple[str, float],
              target: float | None, note: str) -> None:  # fmt: skip
    """One row of ``make bench``'s table (benchmarks/README.md, "How a script adds rows")."""
    row: dict[str, Any] = {"figure": figure, "value": round(value, 4), "unit": unit,
                           "floor": {"name": floor[0], "value": round(floor[1], 4)}, "note": note}  # fmt: skip
    if target is not None:
        row["target"] = target
    print("BENCH " + json.dumps(row))


if __name__ == "__main__":
    main()
