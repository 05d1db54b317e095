"""`llamakit run SPEC.yaml`: run (or resume, or replay) an experiment spec and print its summary."""

from __future__ import annotations

import argparse
import sys
from decimal import Decimal
from typing import Any

from ._cli_exit import EXIT_ERROR, EXIT_INTERRUPTED, run_exit_code


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "run",
        help="run an experiment spec (resumes unfinished work)",
        description="Run the experiment in SPEC.yaml. Finished cells are never sent again, so "
        "rerunning after a crash, Ctrl-C, a budget stop or a 406 resumes where it stopped.",
    )
    parser.add_argument("spec", help="experiment spec (YAML)")
    parser.add_argument("--concurrency", type=int, default=None, help="calls in flight (default 8)")
    parser.add_argument("--budget", default=None, help="credits this invocation may spend")
    parser.add_argument("--out", default=None, metavar="FILE.csv", help="write results as CSV")
    parser.add_argument("--replay", action="store_true", help="serve every cell from the store")
    parser.add_argument(
        "--api",
        choices=("v1", "v2"),
        default="v1",
        help="v2: submit+poll jobs, journaled so a killed run collects them instead of repaying",
    )
    parser.add_argument("--store", default=None, metavar="PATH", help="SQLite store path")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)


def _budget(text: Any) -> Any:
    if text is None or not isinstance(text, str):
        return text
    try:
        return Decimal(text) if Decimal(text).is_finite() else text  # exact, as typed
    except ArithmeticError:
        return text  # Experiment.run names the problem


def run(args: argparse.Namespace) -> int:
    from .errors import LlamakitError
    from .spec import load_spec
    from .store import Store

    try:
        spec = load_spec(args.spec)
        experiment = spec.experiment()
        budget = _budget(args.budget if args.budget is not None else spec.budget)
        concurrency = args.concurrency or spec.concurrency or 8
        store = Store(args.store) if args.store else Store()
        client = None
        if not args.replay:
            from ._connect import connect

            client = connect(quiet=False)
        try:
            run = experiment.run(
                client,
                concurrency=concurrency,
                budget=budget,
                progress=not args.no_progress,
                mode="replay" if args.replay else "live",
                store=store,
                api=args.api,
            )
        except KeyboardInterrupt:
            return EXIT_INTERRUPTED
        _report(run)
        if args.out:
            run.to_csv(args.out)
            print(f"wrote {args.out}")
    except LlamakitError as exc:
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_ERROR
    return run_exit_code(run)


def _report(run: Any) -> None:
    import pandas as pd

    p = run.progress
    errors = ", ".join(f"{k} x{v}" for k, v in sorted(p.errors.items())) or "none"
    print(
        f"run {run.id} ({run.name}): {run.status}; {p.done}/{p.total} cells, errors: {errors}; "
        f"credits spent {run.credits_spent} ({run.spend_source})"
    )
    if run.status in ("budget", "insufficient_credits", "stopped") or p.error_count:
        print("rerun the same command to resume: finished cells are kept and not paid again")
    if p.done:
        with pd.option_context("display.width", 160, "display.max_columns", 30):
            print(run.summary())
