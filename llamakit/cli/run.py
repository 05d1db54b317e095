"""`llamakit run SPEC.yaml`: run (or resume, or replay) an experiment spec and print its summary."""

from __future__ import annotations

import argparse
from decimal import Decimal
from typing import Any

from .args import input_file, output_file, positive_credits, positive_int, rules_file, store_path
from .exit import run_exit_code


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "run",
        help="run an experiment spec (resumes unfinished work)",
        description="Run the experiment in SPEC.yaml. Finished cells are never sent again, so "
        "rerunning after a crash, Ctrl-C, a budget stop or a 406 resumes where it stopped.",
    )
    parser.add_argument("spec", help="experiment spec (YAML)")
    parser.add_argument(
        "--concurrency", type=positive_int, default=None, help="calls in flight (default 8)"
    )
    parser.add_argument(
        "--budget", type=positive_credits, default=None, help="credits this invocation may spend"
    )
    parser.add_argument(
        "--out", type=output_file, default=None, metavar="FILE.csv", help="write results as CSV"
    )
    parser.add_argument("--replay", action="store_true", help="serve every cell from the store")
    parser.add_argument(
        "--from",
        dest="run_file",
        type=input_file,
        default=None,
        metavar="RUN_FILE",
        help="import this run file (.jsonl/.parquet) into the store first; with --replay, "
        "re-executes a committed run offline (no key, no server)",
    )
    pilot = parser.add_mutually_exclusive_group()
    pilot.add_argument(
        "--limit", type=positive_int, default=None, metavar="N", help="pilot: the first N rows"
    )
    pilot.add_argument(
        "--sample", type=positive_int, default=None, metavar="N", help="pilot: N random rows"
    )
    parser.add_argument(
        "--seed", type=int, default=0, metavar="S", help="the --sample draw's seed (default 0)"
    )
    parser.add_argument(
        "--api",
        choices=("v1", "v2"),
        default="v1",
        help="v2: submit+poll jobs, journaled so a killed run collects them instead of repaying",
    )
    parser.add_argument(
        "--store", default=None, type=store_path, metavar="PATH", help="SQLite store path"
    )
    parser.add_argument(
        "--rules",
        type=rules_file,
        default=None,
        metavar="FILE",
        help="YAML/JSON reply rules for the local scripted backend (no key set)",
    )
    parser.add_argument(
        "--stop",
        default=None,
        metavar="RULE",
        help="stop when answered: compare:A,B,METRIC[,ALPHA[,MARGIN]] or best:METRIC[,ALPHA] "
        "(overrides the spec's stop:)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--wide", action="store_true", help="print every summary column")
    parser.set_defaults(func=run)


def _budget(text: Any) -> Any:
    if text is None or not isinstance(text, str):
        return text
    try:
        return Decimal(text) if Decimal(text).is_finite() else text  # exact, as typed
    except ArithmeticError:
        return text  # Experiment.run names the problem


def run(args: argparse.Namespace) -> int:
    # LlamakitError and Ctrl-C end in one line each, printed by llamakit.cli.main.
    from ..errors import ValidationError
    from ..experiment.sequential import check_rule
    from ..experiment.spec import load_spec
    from ..store import Store

    spec = load_spec(args.spec)
    experiment = spec.experiment(limit=args.limit, sample=args.sample, seed=args.seed)
    budget = _budget(args.budget if args.budget is not None else spec.budget)
    if args.budget is None and isinstance(budget, (int, float)) and budget <= 0:
        # Same rule as --budget: a zero budget sends nothing, so "rerun to resume" would loop.
        raise ValidationError(
            f"{spec.path.name}: budget must be more than 0 credits (USD), got {budget!r}; "
            "remove it for no limit",
            field="budget",
        )
    concurrency = args.concurrency or spec.concurrency or 8
    stop = args.stop if args.stop is not None else spec.stop
    check_rule(stop, experiment)  # a bad rule fails before any server starts or call is sent
    store = Store(args.store) if args.store else Store()
    if args.run_file:
        from ..experiment.runfile import import_run_file

        run_id, created = import_run_file(args.run_file, store)
        print(f"{'imported' if created else 'already had'} run {run_id} from {args.run_file}")
    client = None
    if not args.replay:
        from ..server.connect import connect

        client = connect(quiet=False, **_rules_backend(args.rules))
    run = experiment.run(
        client,
        concurrency=concurrency,
        budget=budget,
        progress=not args.no_progress,
        mode="replay" if args.replay else "live",
        store=store,
        api=args.api,
        stop=stop,
    )
    _report(run, wide=args.wide)
    if args.out:
        run.to_csv(args.out)
        print(f"wrote {args.out}")
    return run_exit_code(run)


def _rules_backend(rules: str | None) -> dict[str, Any]:
    """``--rules`` asks for the local scripted backend, the only one that follows rules."""
    import os

    from .._defaults import ENV_API_KEY
    from ..errors import ValidationError

    if rules is None:
        return {}
    if os.environ.get(ENV_API_KEY):
        raise ValidationError(
            f"--rules steers the local scripted backend, but {ENV_API_KEY} is set (the hosted "
            f"API answers); unset it or drop --rules",
            field="rules",
        )
    return {"backend": "scripted", "rules": rules}


def _report(run: Any, *, wide: bool = False) -> None:
    from .tables import compact_summary, render

    p = run.progress
    errors = ", ".join(f"{k} x{v}" for k, v in sorted(p.errors.items())) or "none"
    print(
        f"run {run.id} ({run.name}): {run.status}; {p.done}/{p.total} cells, errors: {errors}; "
        f"credits spent {run.credits_spent} ({run.spend_source}); "
        f"model {run.model}, answered by {run.source or 'unknown'}"
    )
    if run.status in ("budget", "insufficient_credits", "stopped") or p.error_count:
        print("rerun the same command to resume: finished cells are kept and not paid again")
    if p.done:  # summary() also prints a sequential run's decision and saving
        summary = run.summary()
        print(render(summary if wide else compact_summary(summary)))
