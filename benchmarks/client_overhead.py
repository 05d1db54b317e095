"""Per-call overhead of llamakit.Client against bare httpx and the openai package, side by side.

One scripted local server runs in a subprocess (so its work does not share this interpreter's
GIL with the clients being timed). The same chat body goes to it through:
  - bare httpx: ``httpx.Client.post`` to ``/v1/{slug}`` + ``response.json()``, the floor;
  - llamakit, with and without the pre-flight token count (``check_context``);
  - the openai package on the OpenAI-compatible route ``/v1/chat/completions``.
Calls are interleaved in rounds (each round runs every client once per call, in rotating
order), so slow drifts of the machine hit all clients alike. Reported: the median per-call time,
its ratio to bare httpx, and the difference (the client's own cost per call).

Usage: ``python benchmarks/client_overhead.py [--calls N] [--warmup N]``
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

import httpx

SERVER = """
import sys, llamakit
with llamakit.local_server(backend="scripted", credits=1e9) as srv:
    print(srv.url, srv.api_key, flush=True)
    sys.stdin.read()
"""

SLUG = "llama-v3-8b-instruct"
MESSAGES = [
    {"role": "system", "content": "You are a terse assistant."},
    {"role": "user", "content": "Name three prime numbers and explain why they are prime."},
]
MAX_TOKENS = 16


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=400, help="timed calls per client")
    parser.add_argument("--warmup", type=int, default=30, help="untimed calls per client first")
    args = parser.parse_args()

    import openai

    import llamakit

    proc = subprocess.Popen(
        [sys.executable, "-c", SERVER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        url, key = proc.stdout.readline().split()
        body = {"messages": MESSAGES, "max_tokens": MAX_TOKENS}

        bare = httpx.Client(headers={"x-api-key": key})
        lk = llamakit.Client(key, base_url=url + "/v1")
        lk_nocheck = llamakit.Client(key, base_url=url + "/v1", check_context=False)
        oai = openai.OpenAI(api_key=key, base_url=url + "/v1")

        def call_bare() -> str:
            r = bare.post(f"{url}/v1/{SLUG}", json=body)
            r.raise_for_status()
            return str(r.json()["choices"][0]["message"]["content"])

        def call_openai() -> str:
            r = oai.chat.completions.create(model=SLUG, messages=MESSAGES, max_tokens=MAX_TOKENS)  # type: ignore[arg-type]
            return r.choices[0].message.content or ""

        clients: dict[str, Callable[[], str]] = {
            "bare httpx": call_bare,
            "llamakit": lambda: lk.chat(MESSAGES, max_tokens=MAX_TOKENS).text,
            "llamakit (check_context=False)": lambda: (
                lk_nocheck.chat(MESSAGES, max_tokens=MAX_TOKENS).text
            ),
            "openai": call_openai,
        }
        for fn in clients.values():
            for _ in range(args.warmup):
                assert fn()

        times: dict[str, list[float]] = {name: [] for name in clients}
        names = list(clients)
        for i in range(args.calls):
            order = names[i % len(names) :] + names[: i % len(names)]
            for name in order:
                start = time.perf_counter()
                clients[name]()
                times[name].append(time.perf_counter() - start)

        floor = statistics.median(times["bare httpx"])
        print(
            f"{args.calls} calls per client, interleaved; scripted server in a subprocess at {url}"
        )
        print(f"{'client':34} {'median':>9} {'p90':>9} {'vs httpx':>9} {'overhead':>10}")
        for name in names:
            ts = sorted(times[name])
            med = statistics.median(ts)
            p90 = ts[int(len(ts) * 0.9)]
            print(
                f"{name:34} {med * 1e3:8.3f}ms {p90 * 1e3:8.3f}ms {med / floor:8.2f}x "
                f"{(med - floor) * 1e6:+9.0f}us"
            )
        for name in names[1:]:
            med = statistics.median(times[name])
            print(
                f"FIGURE {name} per-call time vs bare httpx: {med / floor:.2f} x "
                f"(median of {args.calls}; {(med - floor) * 1e6:+.0f} us per call)"
            )
        lk_med = statistics.median(times["llamakit"])
        print(
            f"FIGURE llamakit vs openai per-call time: {lk_med / statistics.median(times['openai']):.2f} x"
        )
        for c in (bare, lk, lk_nocheck, oai):
            c.close()
    finally:
        if proc.stdin:
            proc.stdin.close()
        proc.wait(timeout=30)


if __name__ == "__main__":
    main()
