"""`llamakit export RUN --csv FILE` (tidy results) or `--format jsonl|parquet [-o FILE]` (a run
file that `llamakit import` and `llamakit.load_run` read back, on any machine)."""

from __future__ import annotations

import argparse
from typing import Any

from .args import existing_store, output_file


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "export",
        help="export a run's results (CSV) or the whole run (run file)",
        description="Write a run's results as CSV (--csv FILE), or the whole run as one portable "
        "run file (--format jsonl|parquet): config, every cell, reply, usage, credits, scores, "
        "timings and reproducibility metadata.",
    )
    parser.add_argument("run_id")
    parser.add_argument("--csv", type=output_file, metavar="FILE", help="output CSV path")
    parser.add_argument(
        "--format",
        choices=("jsonl", "parquet"),
        default=None,
        help="write a run file (parquet needs pyarrow: pip install 'llamakit[parquet]')",
    )
    parser.add_argument(
        "-o",
        "--out",
        type=output_file,
        default=None,
        metavar="FILE",
        help="run file path (default RUN_ID.jsonl / RUN_ID.parquet)",
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
    from ..errors import ValidationError
    from ..experiment.run import load_run
    from ..store import Store

    if not args.csv and not args.format and not args.out:
        raise ValidationError("say what to write: --csv FILE, or --format jsonl|parquet [-o FILE]")
    if args.csv and (args.format or args.out):
        raise ValidationError("--csv writes results; --format/-o a run file: use one of them")
    result = load_run(args.run_id, Store(args.store, create=False) if args.store else Store())
    if args.csv:
        result.to_csv(args.csv, excel=args.excel)
        print(f"wrote {args.csv} ({len(result.results)} rows)")
        return 0
    out = args.out or f"{result.id}.{args.format or 'jsonl'}"
    path = result.save(out, format=args.format)
    print(f"wrote run file {path} (run {result.id}, {result.progress.total} cells)")
    return 0
