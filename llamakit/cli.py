"""`llamakit ...` command line. Each subcommand lives in its own `_cli_<name>` module."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# Subcommand modules, in the order `llamakit --help` lists them. Each exposes add_parser(subparsers),
# which registers its parser and sets `func(args) -> int` as the default.
_COMMANDS: list[str] = ["demo", "chat", "credits", "serve", "run", "runs", "export"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="llamakit",
        description="Research toolkit for Llama 3 8B Instruct on Segmind (or the local stand-in).",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in _COMMANDS:
        importlib.import_module(f"llamakit._cli_{name}").add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
