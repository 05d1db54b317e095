"""Client-side rate limiting against the local server's own RPM limit: wall time and 429s.

Three cases, each a fresh local server (scripted backend) whose per-key limit is a sliding window,
and N concurrent calls from one ``AsyncClient``:
  - non-binding: 60 calls under rpm=120 (the server allows 120 per 60 s). The limit never binds,
    so the calls should take as long as the calls themselves; a limiter that spaces every call
    60/rpm s apart needs 29.5 s for them (printed for comparison, not run).
  - binding: the limit binds; the client is told the server's limit (rpm= and rpm_window_s=).
    Scaled down to a 2 s window (10 calls per 2 s, i.e. 300 RPM) so the run takes seconds:
    ideal wall = (ceil(N / 10) - 1) x 2 s, with zero 429s.
  - adaptive: the client is not told the limit and starts 4x too fast (adaptive=True); the
    server allows 20 calls per 2 s window; calls go 8 at a time, as ``exp.run`` sends them. Reported: where the learned rate ends relative to the
    real limit, and 429s in total and in the second half of the run.
The 429 counts are the server's (``stats()["requests"]["429"]``), not the client's.

Usage: ``python benchmarks/rate_limits.py [--binding-calls N] [--adaptive-calls N]``
"""

from __future__ import annotations

import argparse
import asyncio
import math
import time
from typing import Any

import llamakit
from llamakit.client.ratelimit import AdaptiveRate
from llamakit.client.retry import RetryPolicy

PATIENT = RetryPolicy(max_retries=50, base_delay=0.01, max_delay=0.1, max_retry_after=10)


async def burst(client: Any, n: int, concurrency: int) -> list[Any]:
    gate = asyncio.Semaphore(concurrency)

    async def one(i: int) -> Any:
        async with gate:
            return await client.chat(f"q{i}", max_tokens=4)

    async with client:
        return await asyncio.gather(*(one(i) for i in range(n)))


def run(server: Any, client: Any, n: int, concurrency: int) -> tuple[float, int, list[Any]]:
    start = time.perf_counter()
    replies = asyncio.run(burst(client, n, concurrency))
    wall = time.perf_counter() - start
    return wall, int(server.stats()["requests"].get("429", 0)), replies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--binding-calls", type=int, default=40)
    parser.add_argument("--adaptive-calls", type=int, default=160)
    parser.add_argument(
        "--concurrency", type=int, default=8, help="adaptive case (exp.run's default is 8)"
    )
    args = parser.parse_args()

    n = 60
    with llamakit.local_server(backend="scripted", credits=1e6, rpm=120) as srv:
        wall, n429, _ = run(srv, srv.async_client(rpm=120, check_context=False), n, n)
    note = f"{n} concurrent calls, rpm=120, server 120 per 60 s"
    print(f"FIGURE non-binding wall: {wall:.2f} s ({note})")
    print(f"FIGURE non-binding 429s: {n429} count (server-side)")
    print(f"FIGURE non-binding wall if spaced 60/rpm: {(n - 1) * 0.5:.1f} s (computed)")

    n, per_window, window = args.binding_calls, 10, 2.0
    rpm = per_window * 60 / window
    with llamakit.local_server(
        backend="scripted", credits=1e6, rpm=per_window, rpm_window_s=window
    ) as srv:
        client = srv.async_client(rpm=rpm, rpm_window_s=window, max_retries=0, check_context=False)
        wall, n429, _ = run(srv, client, n, n)
    ideal = (math.ceil(n / per_window) - 1) * window
    note = f"{n} concurrent calls, {per_window} per {window:g} s window; ideal {ideal:.1f} s"
    print(f"FIGURE binding wall: {wall:.2f} s ({note})")
    print(f"FIGURE binding 429s: {n429} count (server-side)")

    n, limit, window = args.adaptive_calls, 20, 2.0
    real_rpm = limit * 60 / window
    seen: list[Any] = []
    with llamakit.local_server(
        backend="scripted", credits=1e6, rpm=limit, rpm_window_s=window
    ) as srv:
        client = srv.async_client(
            adaptive=AdaptiveRate(start=4 * real_rpm, cooldown_s=window),
            rpm_window_s=window,
            retry_policy=PATIENT,
            on_attempt=seen.append,
            check_context=False,
        )
        wall, n429, _ = run(srv, client, n, args.concurrency)
    seen.sort(key=lambda a: a.started_at)
    late = sum(1 for a in seen[len(seen) // 2 :] if a.status == 429)
    ratio = (client.rpm or 0) / real_rpm
    note = f"{n} calls, concurrency {args.concurrency}, server {limit} per {window:g} s, start 4x"
    print(f"FIGURE adaptive final rate / real limit: {ratio:.2f} x ({note})")
    print(f"FIGURE adaptive 429s: {n429} count (server-side; {late} in the second half)")
    print(f"FIGURE adaptive wall: {wall:.2f} s (ideal {(math.ceil(n / limit) - 1) * window:.1f} s)")


if __name__ == "__main__":
    main()
