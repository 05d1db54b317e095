"""Argument types shared by the `llamakit` subcommands.

Each is an argparse ``type=``: it runs while the command line is parsed, so a bad value is refused
in one line (``llamakit run: error: argument --budget: ...``) before any server starts or any credit
is spent. A ``ValueError`` or ``argparse.ArgumentTypeError`` raised here becomes that line.
"""

from __future__ import annotations

import argparse
from decimal import Decimal
from pathlib import Path


def positive_int(text: str) -> int:
    """A whole number >= 1 (calls in flight, tokens)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def positive_credits(text: str) -> Decimal:
    """A budget in credits (USD), > 0, exact as typed: a budget of 0 could never send a call, so a
    rerun would not resume anything either."""
    try:
        value = Decimal(text.strip())
    except ArithmeticError:
        raise argparse.ArgumentTypeError(
            f"budget must be a number of credits (USD) such as 0.05, got {text!r}"
        ) from None
    if not value.is_finite() or value <= 0:
        raise argparse.ArgumentTypeError(
            f"budget must be more than 0 credits (USD), got {text!r}; omit --budget for no limit"
        )
    return value


def nonempty_text(text: str) -> str:
    """A message with something in it: an empty request would still be billed."""
    if not text.strip():
        raise argparse.ArgumentTypeError("the message is empty; pass the text to send")
    return text


def input_file(text: str) -> str:
    """A file to read, which exists and is not a folder."""
    path = Path(text).expanduser()
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a folder; give a file in it")
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"no such file: {text}")
    return text


def output_file(text: str) -> str:
    """A file to write: its folder must exist (checked now, not after a paid run) and it must not be
    a folder itself."""
    path = Path(text).expanduser()
    if path.is_dir():
        raise argparse.ArgumentTypeError(
            f"{text} is a folder; give a file name such as {path}/results.csv"
        )
    folder = path.parent
    if not folder.is_dir():
        raise argparse.ArgumentTypeError(
            f"folder {folder} does not exist; create it first (mkdir -p {folder})"
        )
    return text


def output_folder(text: str) -> str:
    """A folder to write into (created later if missing), which is not a file."""
    path = Path(text).expanduser()
    for candidate in (path, *path.parents):
        if candidate.exists():
            if not candidate.is_dir():
                raise argparse.ArgumentTypeError(
                    f"{candidate} is a file, so {text} cannot be a folder; choose another path"
                )
            break
    return text


def store_path(text: str) -> str:
    """A store file: refused now if it is a folder or not an SQLite database."""
    from ..errors import StoreError
    from ..store import check_store_path

    try:
        check_store_path(Path(text).expanduser())
    except StoreError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def existing_store(text: str) -> str:
    """A store to read (``runs``, ``export``): it must exist, or a typo would create an empty one
    and report "no runs"."""
    if not Path(text).expanduser().exists():
        raise argparse.ArgumentTypeError(
            f"no store at {text}; give the path `llamakit run --store` wrote to (default: "
            "$LLAMAKIT_HOME/llamakit.db, else ./.llamakit/llamakit.db)"
        )
    return store_path(text)
