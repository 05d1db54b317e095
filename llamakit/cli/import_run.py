"""`llamakit import FILE`: read a run file into the store (a second import adds nothing)."""

from __future__ import annotations

import argparse
from typing import Any

from .args import input_file, store_path


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "import",
        help="import a run file into the store",
        description="Read a run file (.jsonl or .parquet, from `llamakit export --format` or "
        "run.save) into the store, so `llamakit runs`, `export`, `report` and `run --replay` "
        "see it. Importing the same file twice adds nothing.",
    )
    parser.add_argument("file", type=input_file, metavar="FILE")
    parser.add_argument(
        "--store", default=None, type=store_path, metavar="PATH", help="SQLite store path"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..experiment.runfile import import_run_file
    from ..store import Store

    store = Store(args.store) if args.store else Store()
    run_id, created = import_run_file(args.file, store)
    if created:
        print(f"imported run {run_id} from {args.file} into {store.path}")
    else:
        print(f"run {run_id} is already in {store.path}; nothing added")
    return 0
