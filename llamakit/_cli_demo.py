"""`llamakit demo`: the main job behind `make run`.

Runs the demo experiment in ``data/demo.yaml`` against the embedded default (a local stand-in
server with the real SmolLM2 model when installed, else the scripted backend; the hosted API when
``SEGMIND_API_KEY`` is set), prints the comparison table, and writes the CSV and the credit-spend
plot to a results folder. Rerunning resumes: finished cells are never sent (or paid for) twice.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ._cli_exit import EXIT_ERROR, EXIT_INTERRUPTED, run_exit_code

DEFAULT_SPEC = Path(__file__).resolve().parent.parent / "data" / "demo.yaml"


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="run the demo experiment and write its table, CSV and credit-spend plot",
        description=__doc__.split("\n\n")[1],
    )
    parser.add_argument("--spec", default=str(DEFAULT_SPEC), help="experiment spec (YAML)")
    parser.add_argument("--out", default="results", help="folder for the CSV and the PNG")
    parser.add_argument(
        "--backend", choices=("smollm2", "scripted"), default=None, help="local backend to use"
    )
    parser.add_argument("--concurrency", type=int, default=None, help="calls in flight")
    parser.set_defaults(func=run_demo)


def run_demo(args: argparse.Namespace) -> int:
    import sys

    from .errors import LlamakitError

    try:
        return _run_demo(args)
    except LlamakitError as exc:
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


def _run_demo(args: argparse.Namespace) -> int:
    import pandas as pd

    from . import plots
    from ._connect import connect
    from .run import runs
    from .spec import load_spec

    spec = load_spec(args.spec)
    experiment = spec.experiment()
    client = connect(backend=args.backend)
    print(f"\n{experiment!r}")
    print(experiment.estimate(client))
    run = experiment.run(client, concurrency=args.concurrency or spec.concurrency or 8)

    out = Path(args.out) / f"{run.name}-{run.id}"
    out.mkdir(parents=True, exist_ok=True)
    csv_path = run.to_csv(out / "results.csv")
    figure = plots.credit_spend(runs()).figure
    png_path = out / "credit_spend.png"
    figure.savefig(png_path, dpi=120, bbox_inches="tight")

    print(f"\nRun {run.id}: {run.status}, {run.credits_spent} credits spent")
    with pd.option_context("display.width", 200, "display.max_columns", 30):
        print(_compact(run.summary()).to_string())
    print(f"\nresults table: {csv_path}\ncredit-spend plot: {png_path}")
    print(f"every call is in the store: {run.store.path}")
    code = run_exit_code(run)
    if code:
        print(f"not every cell is done ({run.progress.error_count} failed); rerun to resume")
    return code


def _compact(summary: Any) -> Any:
    """The columns a reader compares first: score means with their 95% CI, errors, latency, cost."""
    keep = ["n", "errors"]
    for column in summary.columns:
        if column.startswith("score_") and column.endswith(("_mean", "_ci_low", "_ci_high")):
            keep.append(column)
    keep += [c for c in ("latency_p50", "credits") if c in summary.columns]
    table = summary[keep].copy()
    table.columns = [c.removeprefix("score_") for c in keep]
    return table.round(4)
