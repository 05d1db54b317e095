"""`llamakit ...` command line: one module per command (`demo`, `chat`, `credits`, `serve`, `run`,
`runs`, `compare`, `export`, `import`, `report`), each with ``add_parser(subparsers)``; `python -m
llamakit.cli` runs it too.

The top layer: it may import every other layer, and nothing in llamakit imports it.

Every way a command can end is one line, never a traceback: a bad argument is refused while parsing
(exit 2), a LlamakitError or a file-system error is printed as ``llamakit CMD: error: ...`` (exit 1),
and Ctrl-C says what was kept (exit 130). The handler lives here, once, for every subcommand.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from typing import NoReturn

from .exit import EXIT_ERROR, EXIT_INTERRUPTED, EXIT_USAGE

# Subcommand modules, in the order `llamakit --help` lists them. Each exposes add_parser(subparsers),
# which registers its parser and sets `func(args) -> int` as the default.
_COMMANDS: list[str] = [
    "demo",
    "chat",
    "credits",
    "serve",
    "run",
    "runs",
    "compare",
    "export",
    "import_run",
    "report",
]

INTERRUPTED = "interrupted: finished cells are kept; rerun the same command to resume"
# What Ctrl-C means depends on the command: only runs keep cells to resume.
_INTERRUPTED_BY_COMMAND = {
    "run": INTERRUPTED,
    "demo": INTERRUPTED,
    "chat": "interrupted: a message already sent may still be billed (`llamakit credits` shows "
    "the balance)",
}
_INTERRUPTED_OTHERWISE = "interrupted"


class _Parser(argparse.ArgumentParser):
    """Argument errors in one line that names the argument (argparse prints the whole usage)."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="llamakit",
        description="Research toolkit for Llama 3 8B Instruct on Segmind (or the local stand-in).",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in _COMMANDS:
        importlib.import_module(f"llamakit.cli.{name}").add_parser(subparsers)
    return parser


def one_line(exc: BaseException) -> str:
    """The exception's message with its line breaks folded (YAML and server messages carry them)."""
    return " ".join(str(exc).split()) or type(exc).__name__


def main(argv: Sequence[str] | None = None) -> int:
    """Run one `llamakit` command; its exit status (see ``exit``). Ctrl-C at any moment, the
    imports and argument parsing included, is one line and exit 130, never a traceback."""
    command: list[str] = []
    try:
        _take_over_ctrl_c()
        return _main(argv, command)
    except KeyboardInterrupt:
        name = command[0] if command else None
        prog = f"llamakit {name}" if name else "llamakit"
        said = _INTERRUPTED_BY_COMMAND.get(name or "", _INTERRUPTED_OTHERWISE)
        print(f"\n{prog}: {said}", file=sys.stderr)
        return EXIT_INTERRUPTED


def _take_over_ctrl_c() -> None:
    # The package's startup guard exits at Ctrl-C while modules load; from here on a
    # KeyboardInterrupt is caught below and reported for the command that was running.
    import signal

    import llamakit

    if signal.getsignal(signal.SIGINT) is getattr(llamakit, "_interrupted_while_loading", None):
        signal.signal(signal.SIGINT, signal.default_int_handler)


def _main(argv: Sequence[str] | None, command: list[str]) -> int:
    from ..errors import LlamakitError

    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # --help, or a usage error already printed in one line
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    command.append(args.command)
    prog = f"llamakit {args.command}"
    try:
        return int(args.func(args) or 0)
    except LlamakitError as exc:
        print(f"{prog}: error: {type(exc).__name__}: {one_line(exc)}", file=sys.stderr)
        return EXIT_ERROR
    except OSError as exc:  # a file that cannot be read or written: the user's environment
        print(f"{prog}: error: {one_line(exc)}", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
