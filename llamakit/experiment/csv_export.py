"""Writing a run's results as CSV: exact by default, spreadsheet-safe on request.

Replies are untrusted text: they can hold a bare ``\\r``, ``\\r\\n``, NUL, quotes, megabytes,
any script, or a spreadsheet formula.

- Default (exact): RFC 4180 CSV in UTF-8 with CRLF row ends. Every field holding a quote, a comma,
  ``\\r`` or ``\\n`` is quoted (pandas' default ``\\n`` row end leaves a bare ``\\r`` unquoted,
  which readers take as a row break). ``pandas.read_csv(path)`` gives back every reply exactly,
  except the values pandas itself reads as missing or numbers by default (an empty reply,
  ``"NA"``, ``"null"``, ``"42"``); ``read_csv(path, dtype={"response": str},
  keep_default_na=False)`` gives back those too (an error cell's reply is then ``""``: see its
  ``error`` column).
- ``excel=True`` (spreadsheet-safe): the same, plus a UTF-8 byte-order mark so Excel decodes
  non-ASCII text, every text field quoted, and every text cell that begins with ``=``, ``+``,
  ``-``, ``@``, a tab or a carriage return prefixed with ``'`` so a spreadsheet shows it as text
  instead of running it as a formula (OWASP, "CSV Injection"). Those cells are then no longer
  byte-exact, so use this mode for opening in a spreadsheet, not for analysis.
"""

from __future__ import annotations

import csv
import os
from typing import Any

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def neutralise(value: Any) -> Any:
    """A text cell a spreadsheet would run as a formula, prefixed with ``'``; others unchanged."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def write_csv(frame: Any, path: str | os.PathLike[str], *, excel: bool = False) -> str:
    """Write ``frame`` (a results DataFrame) to ``path`` as described above; returns the path."""
    if excel:
        from pandas.api.types import is_object_dtype, is_string_dtype

        frame = frame.copy()
        for column in frame.columns:
            if is_object_dtype(frame[column].dtype) or is_string_dtype(frame[column].dtype):
                frame[column] = frame[column].map(neutralise)
    frame.to_csv(
        path,
        index=False,
        encoding="utf-8-sig" if excel else "utf-8",
        lineterminator="\r\n",
        quoting=csv.QUOTE_NONNUMERIC if excel else csv.QUOTE_MINIMAL,
    )
    return os.fspath(path)
