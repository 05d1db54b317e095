"""Helpers shared by the experiment tests (a module with a unique name: several test folders
have a conftest.py, so `from conftest import ...` would be ambiguous)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import llamakit as lk
from llamakit.client.retry import RetryPolicy

# Retries fast enough for a 20% fault rate to stay quick, deep enough that a cell failing every
# attempt (0.2 ** 11) never happens in practice.
FAST_RETRIES = RetryPolicy(max_retries=10, base_delay=0.002, max_delay=0.02)


def client_of(srv: Any, **kw: Any) -> Any:
    return srv.client(retry_policy=FAST_RETRIES, **kw)


def rows(n: int = 20) -> list[dict[str, Any]]:
    return [{"id": f"q{i:02d}", "a": i, "b": i + 1, "expected": str(2 * i + 1)} for i in range(n)]


def make_experiment(
    *, items: int = 20, repeats: int = 2, scorers: Any = None, name: str = "arith", **kw: Any
) -> lk.Experiment:
    from llamakit import scoring

    prompts = {
        "plain": "What is {{ a }} + {{ b }}?",
        "terse": [
            {"role": "system", "content": "Answer with a number only."},
            {"role": "user", "content": "{{ a }} + {{ b }} ="},
        ],
        "cot": "Think step by step: what is {{ a }} plus {{ b }}?",
    }
    return lk.Experiment(
        name,
        prompts=prompts,
        dataset=rows(items),
        params=kw.pop("params", {"max_tokens": 16}),
        repeats=repeats,
        scorers=[scoring.contains()] if scorers is None else scorers,
        **kw,
    )


def billed(srv: Any) -> int:
    return int(srv.stats()["billed_calls"])


def requests_total(srv: Any) -> int:
    return sum(srv.stats()["requests"].values())


LOCK_HOLDER = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
sys.stdin.read()  # until the test closes our stdin
conn.execute("COMMIT")
"""


@contextmanager
def write_lock_held_elsewhere(
    path: Path, script: str = LOCK_HOLDER
) -> Iterator[subprocess.Popen[str]]:
    """Another process holds the SQLite write lock of ``path`` for the block (``script``, which
    prints "locked" once it holds it and lets go when its stdin closes; by default BEGIN
    IMMEDIATE, then a commit), then exits; yields that process."""
    holder = subprocess.Popen(
        [sys.executable, "-c", script, str(path)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        yield holder
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(timeout=30)
