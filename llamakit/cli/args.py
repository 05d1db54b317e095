"""Argument types shared by the `llamakit` subcommands.

Each is an argparse ``type=``: it runs while the command line is parsed, so a bad value is refused
in one line (``llamakit run: error: argument --budget: ...``) before any server starts or any credit
is spent. A ``ValueError`` or ``argparse.ArgumentTypeError`` raised here becomes that line.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any


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
    """A message with something in it: an empty (or invisible-only) request would still be billed.
    The test is the client's own (``client.messages.is_blank``), so Python callers get the same."""
    from ..client.messages import is_blank

    if is_blank(text):
        raise argparse.ArgumentTypeError(
            "the message is empty (or only invisible characters); pass the text to send"
        )
    return text


def sampling_param(name: str, kind: type[int] | type[float]) -> Callable[[str], Any]:
    """A sampling parameter (``max_tokens``, ``temperature``...) parsed from text and checked by
    the client's own rules (``client.messages.validate_params``), so the CLI refuses at parse time
    exactly what the client would refuse after a server started."""

    def check(text: str) -> Any:
        from ..client.messages import validate_params
        from ..errors import ValidationError

        try:
            value = kind(text)
        except ValueError:
            what = "a whole number" if kind is int else "a number"
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        try:
            return validate_params({name: value})[name]
        except ValidationError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return check


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
    """A store file: refused now if it is a folder, not an SQLite database, or in a folder that
    does not exist (a typo would otherwise quietly create a tree of folders, as ``--out`` refuses)."""
    from ..errors import StoreError
    from ..store import check_store_path

    path = Path(text).expanduser()
    try:
        check_store_path(path)
    except StoreError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if not path.parent.is_dir():
        raise argparse.ArgumentTypeError(
            f"folder {path.parent} does not exist; create it first (mkdir -p {path.parent})"
        )
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


def rules_file(text: str) -> str:
    """A scripted backend's reply rules, read and checked now by the backend's own loader (so a
    bad file is one line naming the rule, not a traceback from a server that half started)."""
    from ..errors import ValidationError
    from ..server.backends.rules import load_rules

    input_file(text)
    try:
        load_rules(Path(text).expanduser())
    except ValidationError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def port(text: str) -> int:
    """A TCP port, 0 (any free one) to 65535."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, got {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(
            f"a port is 0 (any free one) to 65535, got {value}; 8000 is the usual choice"
        )
    return value


def _number(text: str, *, positive: bool) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value) or value < 0 or (positive and value == 0):
        least = "more than 0" if positive else "0 or more"
        raise argparse.ArgumentTypeError(f"must be a finite number, {least}, got {text!r}")
    return value


def nonnegative_credits(text: str) -> Decimal:
    """Credits or a price (USD), a finite number >= 0, exact as typed: 0.00063 stays 0.00063, not
    the binary float nearest to it."""
    try:
        value = Decimal(text.strip())
    except ArithmeticError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value.is_finite() or value < 0:
        raise argparse.ArgumentTypeError(f"must be a finite number, 0 or more, got {text!r}")
    return value


def nonnegative_number(text: str) -> float:
    """A finite number >= 0 (delays, latencies; credits use ``nonnegative_credits``)."""
    return _number(text, positive=False)


def positive_number(text: str) -> float:
    """A finite number > 0 (timeouts, expiry)."""
    return _number(text, positive=True)


def bounded_number(low: float, high: float) -> Callable[[str], float]:
    """A finite number in [low, high] (a sampling temperature, a probability)."""

    def check(text: str) -> float:
        value = _finite(text)
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be from {low:g} to {high:g}, got {text!r}")
        return value

    return check


def _finite(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return value


def api_key(text: str) -> str:
    """A key for the local server: printable, no spaces (it travels in an HTTP header)."""
    if not text or any(ch.isspace() or not ch.isprintable() for ch in text):
        raise argparse.ArgumentTypeError(
            "a key must be non-empty printable text without spaces (it is sent in a header); "
            "omit --api-key to get a generated SG_local_ key"
        )
    return text


def nonempty_name(text: str) -> str:
    """A name that is not blank (a model slug)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("must not be empty")
    return text.strip()
