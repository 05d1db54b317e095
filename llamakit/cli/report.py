"""`llamakit report RUN [RUN...] -o report.html`: one self-contained HTML page for runs."""

from __future__ import annotations

import argparse
from typing import Any

from .args import existing_store, output_file


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "report",
        help="write a self-contained HTML report of runs",
        description="Write one HTML file (no server, no network) with the runs' summaries and "
        "CIs, plots, credit spend and every cell per item with scores and reasons. Each RUN is a "
        "run id in the store or a run file (.jsonl/.parquet).",
    )
    parser.add_argument("runs", nargs="+", metavar="RUN")
    parser.add_argument(
        "-o", "--out", type=output_file, default="report.html", metavar="FILE", help="HTML path"
    )
    parser.add_argument("--title", default=None, help="page title (default: the runs' names)")
    parser.add_argument(
        "--store", default=None, type=existing_store, metavar="PATH", help="SQLite store path"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..experiment.report import write_report
    from ..experiment.run import load_run
    from ..experiment.runfile import looks_like_run_file
    from ..store import Store

    store = None
    runs = []
    for ref in args.runs:
        if looks_like_run_file(ref):
            runs.append(load_run(ref))  # a private store: reporting a file writes nowhere else
        else:
            store = store or (Store(args.store, create=False) if args.store else Store())
            runs.append(load_run(ref, store))
    path = write_report(runs, args.out, title=args.title)
    cells = sum(r.progress.total for r in runs)
    print(f"wrote {path} ({len(runs)} run{'s' if len(runs) > 1 else ''}, {cells} cells)")
    return 0
