"""The same small eval through llamakit, bare httpx, promptfoo and Inspect AI, side by side.

One ``llamakit serve --backend scripted --latency-ms L`` serves every tool; each tool sends the
same N prompts (``max_tokens`` 16) at the same concurrency, as a process of its own timed from
spawn to exit (interpreter or node start, imports and writing results included: what a person
waits for). Rounds are interleaved (every tool once per round, in rotating order) and the figure
is each tool's median wall time. The server's ledger checks that every tool was billed exactly N
calls per run, so no tool is timed on cached or skipped work.

- llamakit: ``Experiment.run`` (the runner, a fresh store each run, so nothing is cached);
- the floor: ``httpx.AsyncClient`` with a semaphore, posting ``/v1/{slug}``, nothing stored;
- promptfoo (npm) and Inspect AI (PyPI) on the server's OpenAI-compatible route, installed into
  ``benchmarks/.peers`` on first use (see ``_peers.py``); skipped with a notice when they cannot be.

Usage: ``python benchmarks/peers_wall_time.py [--prompts 200] [--concurrency 16]
[--latency-ms 250] [--rounds 3] [--no-peers]``
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _peers  # noqa: E402  (a helper beside this script, not a package)

KEY = "SG_bench_peers_0123456789"
SLUG = "llama-v3-8b-instruct"
MAX_TOKENS = 16


def prompt(i: int) -> str:
    return f"Give one tip about topic number {i}."


LLAMAKIT = """
import os, sys, tempfile
from pathlib import Path
n, c, url, key = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
import llamakit as lk
from llamakit.store import Store
with tempfile.TemporaryDirectory() as tmp:
    os.environ["LLAMAKIT_HOME"] = tmp
    items = [{"id": f"i{i}", "q": f"Give one tip about topic number {i}."} for i in range(n)]
    exp = lk.Experiment("peers", prompts="{{ q }}", dataset=items, params={"max_tokens": 16})
    client = lk.Client(key, base_url=url + "/v1")
    run = exp.run(client, concurrency=c, progress=False, store=Store(Path(tmp) / "bench.db"))
    assert run.status == "finished" and run.progress.done == n, run.status
"""

BARE = """
import asyncio, sys
import httpx
n, c, url, key = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
async def main():
    sem = asyncio.Semaphore(c)
    limits = httpx.Limits(max_connections=c, max_keepalive_connections=c)
    async with httpx.AsyncClient(headers={"x-api-key": key}, limits=limits, timeout=60) as http:
        async def one(i):
            async with sem:
                body = {"messages": [{"role": "user",
                        "content": f"Give one tip about topic number {i}."}], "max_tokens": 16}
                r = await http.post(f"{url}/v1/llama-v3-8b-instruct", json=body)
                r.raise_for_status()
                return r.json()["choices"][0]["message"]["content"]
        await asyncio.gather(*(one(i) for i in range(n)))
asyncio.run(main())
"""

INSPECT_TASK = """
import os
from inspect_ai import Task, task
from inspect_ai.dataset import Sample
from inspect_ai.solver import generate

@task
def bench():
    n = int(os.environ["BENCH_PROMPTS"])
    return Task(
        dataset=[Sample(input=f"Give one tip about topic number {i}.") for i in range(n)],
        solver=generate(),
    )
"""


def billed(url: str) -> int:
    stats = httpx.get(url + "/_llamakit/stats", headers={"x-api-key": KEY}, timeout=10).json()
    return int(stats["billed_calls"])


def timed(cmd: list[str], url: str, n: int, env: dict[str, str], cwd: Path) -> float:
    """Wall seconds of one run of `cmd`; raises unless the server billed exactly `n` calls."""
    before = billed(url)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=cwd, timeout=600)
    wall = time.perf_counter() - t0
    calls = billed(url) - before
    if proc.returncode != 0 or calls != n:
        tail = (proc.stdout + proc.stderr).strip().splitlines()[-5:]
        raise RuntimeError(f"{cmd[0]}: exit {proc.returncode}, {calls} of {n} calls: {tail}")
    return wall


def promptfoo_runner(
    binary: list[str], tmp: Path, n: int, c: int, url: str
) -> Callable[[], list[str]]:
    config = {
        "description": "llamakit bench",
        "prompts": ["{{q}}"],
        "providers": [
            {
                "id": f"openai:chat:{SLUG}",
                "config": {"apiBaseUrl": url + "/v1", "apiKey": KEY, "max_tokens": MAX_TOKENS},
            }
        ],
        "tests": [{"vars": {"q": prompt(i)}} for i in range(n)],
    }
    path = tmp / "promptfooconfig.json"
    path.write_text(json.dumps(config))
    cmd = [*binary, "eval", "-c", str(path), "--max-concurrency", str(c), "--no-cache"]
    cmd += ["--no-write", "--no-table", "--no-progress-bar"]
    return lambda: cmd


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--latency-ms", type=float, default=250.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-peers", action="store_true", help="llamakit and the floor only")
    args = parser.parse_args()
    n, c = args.prompts, args.concurrency

    peers: dict[str, list[str] | None] = {}
    if not args.no_peers:
        for name, find in (("promptfoo", _peers.promptfoo), ("Inspect AI", _peers.inspect_ai)):
            binary, why = find()
            peers[name] = binary
            if binary is None:
                print(f"NOTICE {why}")

    serve = [sys.executable, "-m", "llamakit.cli", "serve", "--backend", "scripted", "--port", "0",
             "--api-key", KEY, "--credits", "1000000", "--latency-ms", f"{args.latency_ms:g}"]  # fmt: skip
    server = subprocess.Popen(serve, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert server.stdout is not None
        url = server.stdout.readline().split()[2]
        with tempfile.TemporaryDirectory() as tmpdir:
            tmp = Path(tmpdir)
            base_env = {**os.environ, "HOME": str(tmp)}  # peers write their config dirs here
            argv = [str(n), str(c), url, KEY]
            tools: dict[str, tuple[list[str], dict[str, str]]] = {
                "llamakit": ([sys.executable, "-c", LLAMAKIT, *argv], base_env),
                "bare httpx": ([sys.executable, "-c", BARE, *argv], base_env),
            }
            pf = peers.get("promptfoo")
            if pf is not None:
                pf_env = {**base_env, "PROMPTFOO_DISABLE_TELEMETRY": "1",
                          "PROMPTFOO_DISABLE_UPDATE": "1", "PROMPTFOO_CONFIG_DIR": str(tmp / "pf")}  # fmt: skip
                tools["promptfoo"] = (promptfoo_runner(pf, tmp, n, c, url)(), pf_env)
            ia = peers.get("Inspect AI")
            if ia is not None:
                (tmp / "bench_task.py").write_text(INSPECT_TASK)
                ia_env = {**base_env, "OPENAI_API_KEY": KEY, "BENCH_PROMPTS": str(n),
                          "INSPECT_LOG_DIR": str(tmp / "inspect-logs")}  # fmt: skip
                # Relative: Inspect globs the task path, and pathlib refuses absolute globs.
                cmd = [*ia, "eval", "bench_task.py", "--model", f"openai/{SLUG}",
                       "--model-base-url", url + "/v1", "--max-connections", str(c),
                       "--max-tokens", str(MAX_TOKENS), "--display", "none", "--no-score",
                       # The chat completions route: Inspect's default for OpenAI models is the
                       # Responses API, which the stand-in (like Segmind) does not serve.
                       "-M", "responses_api=false"]  # fmt: skip
                tools["Inspect AI"] = (cmd, ia_env)
            walls: dict[str, list[float]] = {name: [] for name in tools}
            failed: dict[str, str] = {}
            names = list(tools)
            for r in range(args.rounds):
                for name in names[r % len(names) :] + names[: r % len(names)]:
                    if name in failed:
                        continue
                    cmd, env = tools[name]
                    try:
                        walls[name].append(timed(cmd, url, n, env, tmp))
                    except (RuntimeError, subprocess.TimeoutExpired) as exc:
                        if name in ("llamakit", "bare httpx"):
                            raise
                        failed[name] = str(exc)[:300]
                        print(f"NOTICE {name} skipped: its run failed ({failed[name]})")
    finally:
        server.terminate()
        server.wait(15)

    med = {name: statistics.median(w) for name, w in walls.items() if w}
    ideal = -(-n // c) * args.latency_ms / 1000
    print(f"{n} prompts, concurrency {c}, +{args.latency_ms:g} ms per call (ideal {ideal:.2f} s);")
    print(f"process wall time, median of {args.rounds} interleaved rounds:")
    for name, w in walls.items():
        shown = f"{med[name]:7.2f} s" if name in med else "skipped"
        print(f"  {name:12} {shown}   runs: {', '.join(f'{x:.2f}' for x in w)}")
    row = {
        "figure": f"eval wall time, {n} prompts at +{args.latency_ms:g} ms, concurrency {c}",
        "value": med["llamakit"],
        "unit": "s",
        "floor": {"name": "bare httpx", "value": med["bare httpx"]},
        "peers": {p: med.get(p) for p in peers},  # None: could not be installed or run
        "note": f"process wall, median of {args.rounds} interleaved rounds; ideal {ideal:.2f} s",
    }
    print("BENCH " + json.dumps(row))


if __name__ == "__main__":
    main()
