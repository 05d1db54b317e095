"""How many characters a format operation will produce, worked out from the format string and its
arguments before Python allocates anything: ``fmt % args`` (and Jinja's ``format`` filter),
``fmt.format(...)`` / ``fmt.format_map(...)`` including widths and precisions given as arguments
(``'%*d'``, ``'%.*f'``, ``'{0:{1}}'``), and ``str.translate`` tables that map one character to
many. ``limits`` refuses the operation when the estimate passes MAX_PROMPT_CHARS.

Grammar sources: the Python Library Reference, "printf-style String Formatting" and "Format
Specification Mini-Language". The estimates are upper bounds for text (a field is at least as
wide as its width or its value) and generous for numbers (digits + precision + sign and point).
"""

from __future__ import annotations

import math
import re
import string
from collections.abc import Callable, Iterable, Mapping
from typing import Any

# %[(name)][flags][width|*][.precision|.*][length modifier]conversion
_PERCENT = re.compile(r"%(?:\(([^)]*)\))?([#0 +\-]*)(\*|\d+)?(?:\.(\*|\d*))?[hlL]?(.?)", re.S)
# [[fill]align][sign][z][#][0][width][grouping][.precision][type]
_SPEC = re.compile(r"(?:.?[<>=^])?[+\- ]?z?#?0?(\d*)[,_]?(?:\.(\d*))?[a-zA-Z%]?", re.S)
# More digits than this in a literal width or precision: past any bound, no need to parse it.
_MAX_DIGITS = 9
_FORMATTER = string.Formatter()


class FormatTooWide(ValueError):
    """A width or precision, or the output of a format, past ``bound``."""

    def __init__(self, what: str, amount: int) -> None:
        super().__init__(what)
        self.what = what
        self.amount = amount


def _number(text: str | None) -> int:
    if not text or text == "*":
        return 0
    return 10**_MAX_DIGITS if len(text) > _MAX_DIGITS else int(text)


def _digits(value: Any, precision: int) -> int:
    """Characters a number prints with ``precision`` digits after the point, generously."""
    if isinstance(value, bool):
        return 5
    if isinstance(value, int):
        return value.bit_length() * 3 // 10 + 2 + precision
    if isinstance(value, float) and math.isfinite(value) and value != 0:
        return max(0, int(math.log10(abs(value)))) + precision + 8
    return precision + 8


def percent_size(template: str, args: Any, weight: Callable[[Any], int], bound: int) -> int:
    """Characters ``template % args`` produces (an upper bound); FormatTooWide naming the first
    width or precision past ``bound``. ``weight`` estimates the text of one value."""
    if isinstance(args, Mapping):
        positional: list[Any] = []
        named: Mapping[Any, Any] = args
    else:
        positional, named = list(args) if isinstance(args, tuple) else [args], {}
    total, index = 0, 0

    def take() -> Any:
        nonlocal index
        index += 1
        return positional[index - 1] if index <= len(positional) else None

    last = 0
    for match in _PERCENT.finditer(template):
        total += match.start() - last
        last = match.end()
        key, _flags, width_text, precision_text, conversion = match.groups()
        if conversion == "%":
            total += 1
            continue
        if width_text == "*":
            given = take()
            width = abs(given) if isinstance(given, int) else 0
        else:
            width = _number(width_text)
        precision = _number(precision_text)
        if precision_text == "*":
            given = take()
            precision = abs(given) if isinstance(given, int) else 0
        value = named.get(key) if key is not None else take()
        for amount, kind in ((width, "width"), (precision, "precision")):
            if amount > bound:
                raise FormatTooWide(f"a {kind} of {amount:,} in the %-format", amount)
        if conversion in "sra":
            text = weight(value)
            field = min(text, precision) if precision_text is not None else text
        elif conversion == "c":
            field = 1
        else:
            field = _digits(value, precision or 6)
        total += max(width, field)
        if total > bound:
            raise FormatTooWide("the %-format's output", total)
    return total + len(template) - last


def format_size(
    template: str,
    args: tuple[Any, ...],
    kwargs: Mapping[str, Any],
    weight: Callable[[Any], int],
    bound: int,
    get_field: Callable[[str, tuple[Any, ...], Mapping[str, Any]], Any] | None = None,
) -> int:
    """Characters ``template.format(*args, **kwargs)`` produces (an upper bound), nested
    replacement fields in a spec (``'{0:{1}}'``, ``'{0:{w[0]}}'``) resolved from the arguments
    (``get_field``: how the caller's formatter reads ``w[0]`` or ``w.x``, safely); FormatTooWide
    naming the first width or precision past ``bound``. A malformed format string is left to
    Python to refuse."""
    counter = [0]
    widest = max((weight(v) for v in _distinct([*args, *kwargs.values()])), default=0)

    def lookup(name: str) -> tuple[Any, bool]:
        head = re.split(r"[.\[]", name, maxsplit=1)[0]
        if head == "":
            name = str(counter[0]) + name
            head, counter[0] = str(counter[0]), counter[0] + 1
        if head != name:  # an attribute or item of an argument
            if get_field is None:
                return None, False
            try:
                return get_field(name, args, kwargs), True
            except Exception:  # Python's own format call will raise the same, or refuse it
                return None, False
        if head.isdigit():
            position = int(head)
            return (args[position] if position < len(args) else None), True
        return kwargs.get(head), True

    total = 0
    try:
        fields = list(_FORMATTER.parse(template))
    except ValueError:
        return len(template)
    for literal, name, spec, _conversion in fields:
        total += len(literal)
        if name is None:
            continue
        value, simple = lookup(name)
        resolved = spec or ""
        if "{" in resolved:
            parts = []
            for inner_literal, inner_name, _s, _c in _FORMATTER.parse(resolved):
                parts.append(inner_literal)
                if inner_name is not None:
                    inner, _ = lookup(inner_name)
                    if weight(inner) > bound:
                        raise FormatTooWide("a nested format field", weight(inner))
                    parts.append(str(inner))
            resolved = "".join(parts)
        found = _SPEC.fullmatch(resolved)
        width = _number(found.group(1)) if found else 0
        precision = _number(found.group(2)) if found else 0
        for amount, kind in ((width, "width"), (precision, "precision")):
            if amount > bound:
                raise FormatTooWide(
                    f"a {kind} of {amount:,} in the format field {{{name}}}", amount
                )
        text = weight(value) if simple else widest
        if isinstance(value, (int, float)) and not isinstance(value, bool) and simple:
            text = _digits(value, precision or 6)
        total += max(width, text)
        if total > bound:
            raise FormatTooWide("str.format()'s output", total)
    return total


def translate_size(text: str, table: Any) -> int:
    """Characters ``text.translate(table)`` produces at most: each character replaced by the
    longest string in the table."""
    values: Iterable[Any]
    if isinstance(table, Mapping):
        values = table.values()
    elif isinstance(table, (list, tuple)):
        values = table
    else:
        return len(text)
    longest = max((len(v) for v in _distinct(values) if isinstance(v, str)), default=1)
    return len(text) * max(longest, 1)


def _distinct(values: Iterable[Any]) -> list[Any]:
    return list({id(v): v for v in values}.values())
