"""The Jinja sandbox prompts render in, with a bound on how much text a template may produce.

Jinja's sandbox keeps templates away from Python internals but not from memory: ``{{ q * 10**9 }}``
or ``{{ q | center(10**9) }}`` in a shared spec file would allocate gigabytes before the context
pre-flight could reject the prompt. A prompt never needs more than a few tens of thousands of
characters (8,192 tokens), so anything that would exceed MAX_PROMPT_CHARS is refused up front: string
and list repetition, huge powers, huge widths or counts passed to filters and methods, format
strings with huge widths, ``replace`` that would grow past the bound, and the rendered output itself.
Not bounded: CPU time (a template can still loop 100,000 x 100,000 times over nothing).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable
from typing import Any

from jinja2.sandbox import ImmutableSandboxedEnvironment

MAX_PROMPT_CHARS = 1_000_000
# A width or precision of 1,000,000 or more in a %-format or a str.format replacement field.
_HUGE_NUMBER_IN_FORMAT = re.compile(r"%[#0 +\-]*\d*\.?\d{7,}|\{[^{}]*:[^{}]*\d{7,}[^{}]*\}")
# Filters and str methods whose int arguments are output widths: those are what can blow up. Other
# calls may take big numbers freely ("{:,}".format(1234567890) is a fine prompt).
_WIDTH_TAKERS = frozenset({"center", "ljust", "rjust", "zfill", "expandtabs", "indent", "wordwrap"})


class PromptTooLarge(ValueError):
    """A template would produce more than MAX_PROMPT_CHARS characters."""


def _refuse(what: str) -> PromptTooLarge:
    return PromptTooLarge(
        f"{what} would exceed {MAX_PROMPT_CHARS:,} characters, far beyond the model's "
        "8,192-token context; check the template"
    )


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_numbers(values: Iterable[Any], where: str) -> None:
    for value in values:
        if _is_int(value) and abs(value) > MAX_PROMPT_CHARS:
            raise _refuse(f"{where} with {value:,}")


def _check_format_string(template: Any) -> None:
    if isinstance(template, str) and _HUGE_NUMBER_IN_FORMAT.search(template):
        raise _refuse("a format width or precision in " + repr(template[:40]))


def _check_replace(value: Any, args: tuple[Any, ...]) -> None:
    if isinstance(value, str) and len(args) >= 2 and isinstance(args[0], str):
        old, new = args[0], str(args[1])
        count = value.count(old) if old else len(value) + 1
        if len(args) >= 3 and _is_int(args[2]) and args[2] >= 0:
            count = min(count, args[2])
        if len(value) + count * (len(new) - len(old)) > MAX_PROMPT_CHARS:
            raise _refuse("replace()")


def _check_repeat(left: Any, right: Any) -> None:
    for seq, times in ((left, right), (right, left)):
        if (
            isinstance(seq, (str, list, tuple))
            and _is_int(times)
            and len(seq) * times > MAX_PROMPT_CHARS
        ):
            raise _refuse(f"repeating {len(seq):,} items {times:,} times")


def _check_power(base: Any, exponent: Any) -> None:
    if _is_int(base) and _is_int(exponent) and abs(base) > 1 and exponent > 0:
        digits = exponent * math.log10(abs(base))
        if digits > MAX_PROMPT_CHARS:
            raise _refuse(f"{base} ** {exponent:,} ({digits:,.0f} digits)")


def _guarded_filter(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    def guarded(*args: Any, **kwargs: Any) -> Any:
        # Filters get the value first; some also get the context or environment before it.
        plain = [a for a in args if not hasattr(a, "environment") and not hasattr(a, "filters")]
        if name in _WIDTH_TAKERS:
            _check_numbers([*plain[1:], *kwargs.values()], f"the {name} filter")
        if plain and name == "format":
            _check_format_string(plain[0])
        if plain and name == "replace":
            _check_replace(plain[0], tuple(plain[1:]))
        return fn(*args, **kwargs)

    # Jinja inspects these markers to decide what to pass the filter.
    guarded.__dict__.update(getattr(fn, "__dict__", {}))
    return guarded


class BoundedSandbox(ImmutableSandboxedEnvironment):
    """An immutable sandbox whose templates cannot produce more than MAX_PROMPT_CHARS characters."""

    intercepted_binops = frozenset({"*", "**", "%"})

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.filters = {name: _guarded_filter(name, fn) for name, fn in self.filters.items()}

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "*":
            _check_repeat(left, right)
        elif operator == "**":
            _check_power(left, right)
        elif operator == "%":
            _check_format_string(left)
        return super().call_binop(context, operator, left, right)

    def wrap_str_format(self, value: Any) -> Any:
        # The sandbox swaps str.format/format_map for a wrapper on attribute access; check the
        # format string here, where it is still known.
        wrapped = super().wrap_str_format(value)
        if wrapped is not None:
            _check_format_string(value.__self__)
        return wrapped

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805
        name = getattr(__obj, "__name__", "")
        owner = getattr(__obj, "__self__", None)
        if isinstance(owner, str):
            if name in _WIDTH_TAKERS:
                _check_numbers([*args, *kwargs.values()], f"{name}()")
            elif name == "replace":
                _check_replace(owner, args)
        return super().call(__context, __obj, *args, **kwargs)


def render_bounded(template: Any, variables: dict[str, Any]) -> str:
    """Render, refusing output past MAX_PROMPT_CHARS (loops that emit text a piece at a time)."""
    parts: list[str] = []
    size = 0
    for chunk in template.generate(**variables):
        size += len(chunk)
        if size > MAX_PROMPT_CHARS:
            raise _refuse("the rendered prompt")
        parts.append(chunk)
    return "".join(parts)
