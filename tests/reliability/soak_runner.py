"""The process the soak test kills: runs (or resumes) one experiment against a local server.

Usage: python soak_runner.py URL STORE_PATH CELLS
The API key comes from SEGMIND_API_KEY (never from argv, where `ps` would show it).
Prints one line `RESULT <status> <done> <total>` when the run ends.
"""

from __future__ import annotations

import os
import sys

import llamakit as lk
from llamakit import scoring
from llamakit.client.retry import RetryPolicy
from llamakit.store import Store

# The client gives up on a reply after this long; the soak test's slow bodies take longer.
CLIENT_TIMEOUT_S = 2.0
CONCURRENCY = 8


def experiment(cells: int) -> lk.Experiment:
    # Two variants over cells/2 items: every cell renders a distinct prompt.
    items = [
        {"id": f"i{i:04d}", "q": f"soak question {i}", "expected": f"{i}"}
        for i in range(cells // 2)
    ]
    return lk.Experiment(
        "soak",
        prompts={"plain": "{{ q }}", "polite": "Please answer: {{ q }}"},
        dataset=items,
        params={"max_tokens": 16},
        scorers=[scoring.contains()],
    )


def main() -> int:
    url, store_path, cells = sys.argv[1], sys.argv[2], int(sys.argv[3])
    client = lk.Client(
        os.environ["SEGMIND_API_KEY"],
        base_url=url + "/v1",
        timeout=CLIENT_TIMEOUT_S,
        # Enough retries that a run of 1,000+ cells under ~17% faults per attempt never gives up.
        # retry_maybe_billed: the slow-body windows exist to make the client resend calls the
        # server already billed, so the test can check the store accounts for them (by default a
        # paid call that timed out after it was sent is not resent).
        retry_policy=RetryPolicy(
            max_retries=12, base_delay=0.05, max_delay=0.5, retry_maybe_billed=True
        ),
    )
    run = experiment(cells).run(
        client, concurrency=CONCURRENCY, progress=False, store=Store(store_path)
    )
    p = run.progress
    print(f"RESULT {run.status} {p.done} {p.total}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
