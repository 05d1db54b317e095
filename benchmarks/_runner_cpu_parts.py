"""Where the runner's CPU per call goes, against the bare-httpx floor (a profiling aid, not part
of ``make bench``: a leading underscore keeps ``run_all.py`` from running it).

One scripted server with ``--latency-ms L``; a warm-up of each, then the floor (bare
``httpx.AsyncClient`` + semaphore) and ``Experiment.arun(lk.AsyncClient)`` on N fresh cells.
For each it prints: CPU per call (every thread of this process), the cyclic garbage collector's
share (``gc.callbacks``), and for the runner the CPU of each SQLite statement kind and of
BEGIN+COMMIT (``Transaction.execute``/``Database.write`` wrapped with ``time.thread_time``).

    .venv/bin/python benchmarks/_runner_cpu_parts.py [N] [LATENCY_MS]

How issue 17's runner figures were found with it: BEGIN+COMMIT ~240 us per transaction (so
claims are taken a round at a time and cells committed in groups), the collector ~160 us per
call (so runs freeze the heap). For a sampled view of every thread, py-spy:
``py-spy record --threads -r 200 -f raw -o /tmp/r.txt -- .venv/bin/python
benchmarks/_runner_cpu_parts.py`` and sum the samples per leaf frame.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import gc
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import runner_throughput as rt

import llamakit as lk
from llamakit.client.retry import RetryPolicy
from llamakit.store import Store, _connection

SQL: collections.Counter[str] = collections.Counter()
COUNT: collections.Counter[str] = collections.Counter()


def _instrument() -> None:
    tx, db = _connection.Transaction, _connection.Database
    execute, many, write = tx.execute, tx.executemany, db.write

    def timed_execute(self: Any, sql: str, *args: Any) -> Any:
        t = time.thread_time()
        try:
            return execute(self, sql, *args)
        finally:
            SQL[sql[:50]] += time.thread_time() - t
            COUNT[sql[:50]] += 1

    def timed_many(self: Any, sql: str, *args: Any) -> Any:
        t = time.thread_time()
        try:
            return many(self, sql, *args)
        finally:
            SQL["(many) " + sql[:43]] += time.thread_time() - t
            COUNT["(many) " + sql[:43]] += 1

    @contextlib.contextmanager
    def timed_write(self: Any, *args: Any, **kwargs: Any) -> Iterator[Any]:
        t0 = time.thread_time()
        with write(self, *args, **kwargs) as t:
            t1 = time.thread_time()
            yield t
            t2 = time.thread_time()
        SQL["BEGIN + COMMIT"] += (t1 - t0) + (time.thread_time() - t2)
        COUNT["BEGIN + COMMIT"] += 1

    tx.execute, tx.executemany, db.write = timed_execute, timed_many, timed_write  # type: ignore[method-assign]


def main() -> None:
    cells = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    latency = float(sys.argv[2]) if len(sys.argv) > 2 else 100.0
    gc_s = [0.0, 0.0]
    gc.callbacks.append(
        lambda phase, _: gc_s.__setitem__(*(
            (1, time.perf_counter()) if phase == "start" else (0, gc_s[0] + time.perf_counter() - gc_s[1])
        ))
    )  # fmt: skip
    _instrument()
    server, url = rt.start_server(latency)
    store = Store(Path(tempfile.mkdtemp()) / "s.db")

    async def runner(tag: str) -> None:
        client = lk.AsyncClient(
            rt.KEY, base_url=url + "/v1", retry_policy=RetryPolicy(max_retries=6)
        )
        run = await rt.experiment(tag, cells).arun(
            client, concurrency=rt.CONCURRENCY, progress=False, store=store
        )
        assert run.status == "finished", run.status
        await client.close()

    try:
        asyncio.run(runner("warm"))
        asyncio.run(rt.bare_floor(url, "warm-floor", cells))
        for kind in ("floor", "runner"):
            SQL.clear(), COUNT.clear()
            gc_s[0] = 0.0
            c0 = time.process_time()
            asyncio.run(rt.bare_floor(url, "floor", cells) if kind == "floor" else runner("run"))
            cpu = time.process_time() - c0
            print(f"{kind}: {cpu / cells * 1e6:.0f} us CPU per call, of which the collector "
                  f"{gc_s[0] / cells * 1e6:.0f} us")  # fmt: skip
            for sql, s in SQL.most_common(8):
                print(f"    {s / cells * 1e6:6.0f} us/call  {COUNT[sql]:6d} x  {sql}")
    finally:
        server.terminate()


if __name__ == "__main__":
    main()
