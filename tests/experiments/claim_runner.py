"""A runner process for the exactly-once tests: runs one experiment per trial, in lockstep with the
other runner processes the test started, on a fresh store per trial.

Usage: python claim_runner.py URL WORKDIR NAME TRIALS ITEMS
The API key comes from SEGMIND_API_KEY. For each trial T it writes WORKDIR/ready-T-NAME, waits for
WORKDIR/go-T, runs the experiment on WORKDIR/store-T.db and prints one JSON line:
{"trial": T, "name": NAME, "status": ..., "done": ..., "total": ..., "paid": ...} where ``paid`` is
the number of replies this process's sessions stored (the calls it paid for).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import llamakit as lk
from llamakit.store import Store


def experiment(items: int) -> lk.Experiment:
    rows = [{"id": f"q{i}", "a": i, "b": i + 1} for i in range(items)]
    return lk.Experiment(
        "claims",
        prompts={"plain": "What is {{ a }} + {{ b }}?", "terse": "{{ a }} + {{ b }} ="},
        dataset=rows,
        params={"max_tokens": 8},
        repeats=2,
    )


def main() -> int:
    url, workdir, name, trials, items = sys.argv[1:6]
    work = Path(workdir)
    client = lk.Client(os.environ["SEGMIND_API_KEY"], base_url=url + "/v1")
    exp = experiment(int(items))
    for trial in range(int(trials)):
        (work / f"ready-{trial}-{name}").touch()
        while not (work / f"go-{trial}").exists():
            time.sleep(0.001)
        store = Store(work / f"store-{trial}.db")
        run = exp.run(client, concurrency=4, progress=False, store=store)
        sessions = [s["session"] for s in store.sessions(run.id) if s["pid"] == os.getpid()]
        marks = ",".join("?" * len(sessions))
        paid = store.query(
            f"SELECT COUNT(*) AS n FROM responses WHERE run_id = ? AND session IN ({marks})",
            (run.id, *sessions),
        )[0]["n"]
        p = run.progress
        line = {"trial": trial, "name": name, "status": run.status, "done": p.done,
                "total": p.total, "paid": paid, "run": run.id}  # fmt: skip
        print(json.dumps(line), flush=True)
        store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
