"""`llamakit runs`: every run in the store, with its cells, errors and credit spend."""

from __future__ import annotations

import argparse
import os
from typing import Any

from .args import existing_store


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "runs", help="list runs in the store", description="List every run in the store."
    )
    parser.add_argument(
        "--store", default=None, type=existing_store, metavar="PATH", help="SQLite store path"
    )
    parser.add_argument("--wide", action="store_true", help="print every column")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from .._defaults import ENV_HOME
    from ..experiment.run import runs
    from ..store import Store, default_path
    from ..store._paths import check_store_path
    from .tables import compact_runs, render

    if args.store is None:
        check_store_path(default_path(), from_home=bool(os.environ.get(ENV_HOME)))
    if args.store is None and not default_path().exists():
        print(f"no runs yet (no store at {default_path()})")
        return 0
    # Listing never creates a store: a mistyped path is an error, not an empty new file.
    frame = runs(Store(args.store or None, create=False))
    if frame.empty:
        print("no runs yet")
        return 0
    print(render(frame if args.wide else compact_runs(frame), index=False))
    return 0
