"""A process that runs one experiment with ``Experiment.arun`` under ``asyncio.run``, for the tests
that interrupt it (``test_arun_interrupt``): SIGINT reaches it as it would from Ctrl-C.

Usage: python arun_child.py URL STORE ITEMS
The API key comes from SEGMIND_API_KEY. On success it prints one JSON line:
{"status": ..., "done": ..., "total": ...}. An interrupt is left to ``asyncio.run``, so the exit
(status, traceback) is exactly what a script calling ``asyncio.run`` gets.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys

import llamakit as lk
from llamakit.store import Store


def experiment(items: int) -> lk.Experiment:
    rows = [{"id": f"q{i}", "a": i, "b": i + 1} for i in range(items)]
    return lk.Experiment(
        "arun-interrupt",
        prompts={"plain": "What is {{ a }} + {{ b }}?", "terse": "{{ a }} + {{ b }} ="},
        dataset=rows,
        params={"max_tokens": 8},
    )


async def main(url: str, store_path: str, items: int) -> None:
    store = Store(store_path)
    async with lk.AsyncClient(os.environ["SEGMIND_API_KEY"], base_url=url + "/v1") as client:
        run = await experiment(items).arun(client, store=store, concurrency=16, progress=False)
    p = run.progress
    print(json.dumps({"status": run.status, "done": p.done, "total": p.total}), flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
