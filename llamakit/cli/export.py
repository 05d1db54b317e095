"""`llamakit export RUN_ID --csv FILE`: a run's results as tidy CSV."""

from __future__ import annotations

import argparse
from typing import Any

from .args import existing_store, output_file


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "export", help="export a run's results", description="Write a run's results as CSV."
    )
    parser.add_argument("run_id")
    parser.add_argument(
        "--csv", required=True, type=output_file, metavar="FILE", help="output CSV path"
    )
    parser.add_argument(
        "--excel",
        action="store_true",
        help="spreadsheet-safe: UTF-8 BOM, and cells starting with = + - @ tab CR shown as text",
    )
    parser.add_argument(
        "--store", default=None, type=existing_store, metavar="PATH", help="SQLite store path"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..experiment.run import load_run
    from ..store import Store

    result = load_run(args.run_id, Store(args.store, create=False) if args.store else Store())
    result.to_csv(args.csv, excel=args.excel)
    print(f"wrote {args.csv} ({len(result.results)} rows)")
    return 0
