"""Record the run files notebook 04 gates: the committed baseline and the current run.

In a project the baseline is a run kept from an earlier day and the current run is recorded by
whoever changed the prompt (with a key); CI then replays the current file offline and gates it
against the baseline. Here both come from the scripted stand-in with ``data/models_rules.yaml``,
so they can be re-recorded after a run-file format change::

    LLAMAKIT_BACKEND=scripted .venv/bin/python data/runs/record.py

The experiment must stay the one notebook 04 builds (``capitals_gate``): a replay of a changed
experiment fails with ReplayMissError, which is the point of the CI check.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import llamakit as lk
from llamakit import scoring

HERE = Path(__file__).resolve().parent
BASELINE_PROMPT = "Answer with the name of the city only, no punctuation."
CURRENT_PROMPT = "Give the city only, nothing else."


def capitals_gate(system: str, model: str = "llama-v3-8b-instruct") -> lk.Experiment:
    prompt = [
        {"role": "system", "content": system},
        {"role": "user", "content": "What is the capital of {{ country }}?"},
    ]
    return lk.Experiment(
        "capitals-gate",
        prompts={"city": prompt},
        dataset=HERE.parent / "capitals.csv",
        model=model,
        scorers=[scoring.contains()],
    )


def main() -> None:
    os.environ["LLAMAKIT_HOME"] = tempfile.mkdtemp(prefix="llamakit-record-")
    client = lk.connect(rules=str(HERE.parent / "models_rules.yaml"))
    for name, system in (("baseline", BASELINE_PROMPT), ("current", CURRENT_PROMPT)):
        run = capitals_gate(system).run(client, concurrency=1, progress=False)
        path = Path(run.save(HERE / f"capitals_{name}.jsonl"))
        print(f"{path.name}: {run.progress.done} cells, {path.stat().st_size:,} bytes")


if __name__ == "__main__":
    main()
