"""`llamakit runs`: every run in the store, with its cells, errors and credit spend."""

from __future__ import annotations

import argparse
import sys
from typing import Any


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "runs", help="list runs in the store", description="List every run in the store."
    )
    parser.add_argument("--store", default=None, metavar="PATH", help="SQLite store path")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import pandas as pd

    from .errors import LlamakitError
    from .run import runs
    from .store import Store, default_path

    if args.store is None and not default_path().exists():
        print(f"no runs yet (no store at {default_path()})")
        return 0
    try:
        # Listing never creates a store: a mistyped path is an error, not an empty new file.
        frame = runs(Store(args.store or None, create=False))
    except LlamakitError as exc:
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    if frame.empty:
        print("no runs yet")
        return 0
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(frame.to_string(index=False))
    return 0
