"""`llamakit demo`: the main job behind `make run`.

Runs the demo experiment in ``data/demo.yaml`` against the embedded default (a local stand-in
server with the real SmolLM2 model when installed, else the scripted backend; the hosted API when
``SEGMIND_API_KEY`` is set), prints the comparison table, and writes the CSV and the credit-spend
plot to a results folder. Rerunning resumes: finished cells are never sent (or paid for) twice.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from matplotlib.figure import Figure

from .args import output_folder, positive_int, rules_file
from .exit import run_exit_code

DATA = Path(__file__).resolve().parent.parent.parent / "data"
DEFAULT_SPEC = DATA / "demo.yaml"
# Steer the scripted backend (used when llama-cpp-python is missing) so the demo's scores are not all
# zero; SmolLM2 and the hosted API ignore them.
DEFAULT_RULES = DATA / "demo_rules.yaml"


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="run the demo experiment and write its table, CSV and credit-spend plot",
        description=__doc__.split("\n\n")[1],
    )
    parser.add_argument("--spec", default=str(DEFAULT_SPEC), help="experiment spec (YAML)")
    parser.add_argument(
        "--out", type=output_folder, default="results", help="folder for the CSV and the PNG"
    )
    parser.add_argument(
        "--backend", choices=("smollm2", "scripted"), default=None, help="local backend to use"
    )
    parser.add_argument("--concurrency", type=positive_int, default=None, help="calls in flight")
    parser.add_argument(
        "--rules",
        type=rules_file,
        default=str(DEFAULT_RULES),
        help="reply rules for the scripted backend (default %(default)s)",
    )
    parser.add_argument("--wide", action="store_true", help="print every summary column")
    parser.set_defaults(func=run_demo)


def run_demo(args: argparse.Namespace) -> int:
    from .. import plots
    from ..experiment.run import runs
    from ..experiment.spec import load_spec
    from ..server.connect import connect
    from .tables import compact_summary, render

    spec = load_spec(args.spec)
    experiment = spec.experiment()
    client = connect(backend=args.backend, rules=args.rules)
    print(f"\n{experiment!r}")
    print(experiment.estimate(client))
    run = experiment.run(client, concurrency=args.concurrency or spec.concurrency or 8)

    out = Path(args.out) / f"{run.name}-{run.id}"
    out.mkdir(parents=True, exist_ok=True)
    csv_path = run.to_csv(out / "results.csv")
    figure = cast("Figure", plots.credit_spend(runs()).figure)  # its own figure, not a subfigure
    png_path = out / "credit_spend.png"
    figure.savefig(png_path, dpi=120, bbox_inches="tight")

    print(
        f"\nRun {run.id}: {run.status}, {run.credits_spent} credits spent; "
        f"model {run.model}, answered by {run.source or 'unknown'}"
    )
    summary = run.summary()
    print(render(summary if args.wide else compact_summary(summary)))
    print(f"\nresults table: {csv_path}\ncredit-spend plot: {png_path}")
    print(f"every call is in the store: {run.store.path}")
    code = run_exit_code(run)
    if code:
        print(f"not every cell is done ({run.progress.error_count} failed); rerun to resume")
    return code
