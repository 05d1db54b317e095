"""What one template render may cost: MAX_PROMPT_CHARS of any text it builds, MAX_RENDER_STEPS of
work, RENDER_DEADLINE_S of wall time. The sandbox (``sandbox``) calls these checks from
its hooks; this module only knows sizes and counts.

Two kinds of check:
- before an operation that can amplify a few characters of template into gigabytes (``*``, ``**``,
  ``%``, ``~``, ``+``, widths given to ``center``/``indent``/..., ``replace``, ``join``, ``sum``,
  ``batch``, ``lipsum``, format strings), its result size is estimated from its inputs and the
  operation is refused before anything is allocated;
- every hook of the sandbox (attribute, item, call, filter, test, operator, each loop iteration)
  charges steps to the render's budget; a call reading a big value charges one step per
  STEP_CHARS characters or items it reads. Loops (the one construct the sandbox cannot otherwise
  see) are charged per iteration. The deadline is a backstop for work that slips past the steps.

A prompt never needs more than a few tens of thousands of characters (8,192 tokens), and an
ordinary template (a loop over a row's list, filters, conditionals) takes a few dozen steps per
row, so the bounds sit two orders of magnitude above real use.
"""

from __future__ import annotations

import contextlib
import contextvars
import math
import re
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

MAX_PROMPT_CHARS = 1_000_000
MAX_RENDER_STEPS = 50_000
RENDER_DEADLINE_S = 0.5
# Jinja's compiler takes about 50 us per token and grows faster than linearly: 10,000 tokens
# (some 2,500 tags, a hundred times a real prompt's) compile in about a tenth of a second.
MAX_TEMPLATE_TOKENS = 10_000
# A call charges one step per item of a list, dict or other container it reads, and one per
# STEP_CHARS characters of text (copying text is cheap) or per HEAVY_STEP_CHARS characters for
# filters that work character by character or word by word in Python (sort, title, wordwrap...).
STEP_CHARS = 256
HEAVY_STEP_CHARS = 4
# Python refuses to print an int of more digits (sys.get_int_max_str_digits); arithmetic on bigger
# ones (division is quadratic) is work with nothing to show for it.
MAX_INT_DIGITS = 4300

# A width or precision of 1,000,000 or more in a %-format or a str.format replacement field.
_HUGE_NUMBER_IN_FORMAT = re.compile(r"%[#0 +\-]*\d*\.?\d{7,}|\{[^{}]*:[^{}]*\d{7,}[^{}]*\}")


class TemplateLimitError(ValueError):
    """A render went past one of this module's bounds."""


class PromptTooLarge(TemplateLimitError):
    """A template would produce more than MAX_PROMPT_CHARS characters."""


class RenderTooCostly(TemplateLimitError):
    """A render took more than MAX_RENDER_STEPS steps or RENDER_DEADLINE_S seconds."""


def refuse(what: str) -> PromptTooLarge:
    return PromptTooLarge(
        f"{what} would exceed {MAX_PROMPT_CHARS:,} characters, far beyond the model's "
        "8,192-token context; check the template"
    )


@dataclass
class _Budget:
    deadline: float
    steps: int = 0
    max_steps: int = MAX_RENDER_STEPS


_BUDGET: contextvars.ContextVar[_Budget | None] = contextvars.ContextVar(
    "llamakit_render_budget", default=None
)


def begin(
    max_steps: int = MAX_RENDER_STEPS, deadline_s: float = RENDER_DEADLINE_S
) -> contextvars.Token[_Budget | None]:
    """Start one render's allowance of steps and time; ``end`` it with the token returned.
    Only the package's own templates (``sandbox.render_package_template``) pass larger bounds."""
    budget = _Budget(deadline=time.monotonic() + deadline_s, max_steps=max_steps)
    return _BUDGET.set(budget)


def end(token: contextvars.Token[_Budget | None]) -> None:
    _BUDGET.reset(token)


@contextlib.contextmanager
def budget() -> Iterator[None]:
    """``begin``/``end`` as a context manager (for compiling, where speed does not matter)."""
    token = begin()
    try:
        yield
    finally:
        end(token)


def charge(steps: int = 1) -> None:
    """Spend ``steps`` of the current render's budget; RenderTooCostly when it runs out."""
    spent = _BUDGET.get()
    if spent is None:
        return
    spent.steps += steps
    if spent.steps > spent.max_steps:
        raise RenderTooCostly(
            f"the template needs more than {spent.max_steps:,} steps (loop iterations, calls, "
            "filters) to render; a prompt template should be far simpler: check its loops"
        )
    if time.monotonic() > spent.deadline:
        raise RenderTooCostly(
            f"the template took more than {RENDER_DEADLINE_S:g} s to render; check its loops"
        )


def size(value: Any) -> int:
    """Characters or items in ``value`` (0 for anything unsized)."""
    if isinstance(value, (str, bytes, list, tuple, dict, set, frozenset, range)):
        return len(value)
    return 0


def weight(value: Any, limit: int = MAX_PROMPT_CHARS) -> int:
    """About how many characters ``str(value)`` has, counting nested containers; stops counting
    past ``limit`` (a list holding the same big string a thousand times is a thousand strings)."""
    total, stack = 0, [value]
    while stack and total <= limit:
        item = stack.pop()
        if isinstance(item, (str, bytes)):
            total += len(item) + 2
        elif isinstance(item, bool) or item is None:
            total += 5
        elif isinstance(item, int):
            total += item.bit_length() * 3 // 10 + 2
        elif isinstance(item, range):
            total += len(item) * 8
        elif isinstance(item, dict):
            total += 2 + 4 * len(item)
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, (list, tuple, set, frozenset)):
            total += 2 + 2 * len(item)
            stack.extend(item)
        else:
            total += 32
    return total


def check_weight(value: Any, what: str) -> Any:
    """Refuse a value whose text would exceed MAX_PROMPT_CHARS before it is turned into text."""
    if not isinstance(value, str) and weight(value) > MAX_PROMPT_CHARS:
        raise refuse(what)
    return value


def charge_reading(values: Iterable[Any], *, heavy: bool = False) -> None:
    """Charge for a call reading ``values``: per item of a container, per characters of text."""
    per_char = HEAVY_STEP_CHARS if heavy else STEP_CHARS
    steps = 1
    for value in values:
        if isinstance(value, (str, bytes)):
            steps += len(value) // per_char
        else:
            steps += size(value)
    charge(steps)


def check_tokens(tokens: Iterable[Any]) -> None:
    """Refuse a template source of more than MAX_TEMPLATE_TOKENS tokens before it is parsed."""
    for count, _ in enumerate(tokens, 1):
        if count > MAX_TEMPLATE_TOKENS:
            raise RenderTooCostly(
                f"the template has more than {MAX_TEMPLATE_TOKENS:,} tags, names and operators; "
                "a prompt template should be far simpler"
            )


def counted(iterable: Any) -> Iterator[Any]:
    """Iterate ``iterable``, charging one step per item (how loops are bounded)."""
    for item in iterable:
        charge()
        yield item


def check_size(result: Any, what: str) -> Any:
    """Refuse a result past MAX_PROMPT_CHARS; charge for building it, so that many big results
    (``map('center', 999999)`` over a list) exhaust the steps before they exhaust memory."""
    built = size(result)
    if built > MAX_PROMPT_CHARS:
        raise refuse(what)
    charge(built // STEP_CHARS)
    return result


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_numbers(values: Iterable[Any], where: str) -> None:
    for value in values:
        if is_int(value) and abs(value) > MAX_PROMPT_CHARS:
            raise refuse(f"{where} with {value:,}")


def check_format_string(template: Any) -> None:
    if isinstance(template, str) and _HUGE_NUMBER_IN_FORMAT.search(template):
        raise refuse("a format width or precision in " + repr(template[:40]))


def check_percent(template: Any, args: Any) -> None:
    """``fmt % args``: each field can repeat the widest argument."""
    check_format_string(template)
    if not isinstance(template, str):
        return
    if isinstance(args, dict):
        values: Iterable[Any] = args.values()
    elif isinstance(args, tuple):
        values = args
    else:
        values = (args,)
    fields = template.count("%") - 2 * template.count("%%")
    _check_fields(template, fields, values, "a %-format")


def check_format_call(template: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """``fmt.format(...)`` / ``fmt.format_map(...)``: each field can repeat the widest argument."""
    check_format_string(template)
    values = [*args, *kwargs.values()]
    values += [v for a in args if isinstance(a, dict) for v in a.values()]
    _check_fields(template, template.count("{"), values, "str.format()")


def _check_fields(template: str, fields: int, values: Iterable[Any], what: str) -> None:
    distinct = {id(v): v for v in values}.values()  # a tuple may repeat one value many times
    widest = max((len(v) if isinstance(v, str) else weight(v) for v in distinct), default=0)
    if len(template) + fields * widest > MAX_PROMPT_CHARS:
        raise refuse(f"{what} repeating its arguments")


def check_replace(value: Any, args: tuple[Any, ...]) -> None:
    if isinstance(value, str) and len(args) >= 2 and isinstance(args[0], str):
        old, new = args[0], str(args[1])
        count = value.count(old) if old else len(value) + 1
        if len(args) >= 3 and is_int(args[2]) and args[2] >= 0:
            count = min(count, args[2])
        if len(value) + count * (len(new) - len(old)) > MAX_PROMPT_CHARS:
            raise refuse("replace()")


def check_repeat(left: Any, right: Any) -> None:
    for seq, times in ((left, right), (right, left)):
        if (
            isinstance(seq, (str, list, tuple))
            and is_int(times)
            and len(seq) * times > MAX_PROMPT_CHARS
        ):
            raise refuse(f"repeating {len(seq):,} items {times:,} times")
    if is_int(left) and is_int(right):
        _check_digits((left.bit_length() + right.bit_length()) * math.log10(2), "a product")


def _check_digits(digits: float, what: str) -> None:
    if digits > MAX_INT_DIGITS:
        raise PromptTooLarge(
            f"{what} of {digits:,.0f} digits is more than a prompt can print "
            f"({MAX_INT_DIGITS:,} digits); check the template"
        )


def check_add(left: Any, right: Any) -> None:
    if isinstance(left, (str, list, tuple)) and size(left) + size(right) > MAX_PROMPT_CHARS:
        raise refuse("concatenating with +")


def check_power(base: Any, exponent: Any) -> None:
    if is_int(base) and is_int(exponent) and abs(base) > 1 and exponent > 0:
        _check_digits(exponent * math.log10(abs(base)), f"{base} ** {exponent:,}")


def check_lines(text: Any, per_line: int, what: str) -> None:
    """An operation adding ``per_line`` characters to each line of ``text``."""
    if isinstance(text, str):
        lines = text.count("\n") + 1
        if len(text) + lines * per_line > MAX_PROMPT_CHARS:
            raise refuse(what)


def check_indent(text: Any, args: list[Any], kwargs: dict[str, Any]) -> None:
    width = kwargs.get("width", args[0] if args else 4)
    per_line = len(width) if isinstance(width, str) else width if is_int(width) else 0
    check_numbers([per_line], "the indent filter")
    check_lines(text, per_line, "indent()")


def check_wordwrap(text: Any, args: list[Any], kwargs: dict[str, Any]) -> None:
    width = kwargs.get("width", args[0] if args else 79)
    wrap = kwargs.get("wrapstring", args[2] if len(args) > 2 else None)
    if not isinstance(text, str) or not is_int(width) or not isinstance(wrap, str):
        return
    # Two consecutive wrapped lines are longer than the width together.
    lines = 2 * len(text) // max(width, 1) + text.count("\n") + 1
    if len(text) + lines * len(wrap) > MAX_PROMPT_CHARS:
        raise refuse("wordwrap()")


def check_expandtabs(text: Any, args: tuple[Any, ...] | list[Any], kwargs: dict[str, Any]) -> None:
    tabsize = kwargs.get("tabsize", args[0] if args else 8)
    if (
        isinstance(text, str)
        and is_int(tabsize)
        and len(text) + text.count("\t") * max(tabsize, 0) > MAX_PROMPT_CHARS
    ):
        raise refuse("expandtabs()")


def materialize(value: Any) -> list[Any]:
    """A lazy sequence (map, select, ...) as a list, charged per item."""
    if isinstance(value, (list, tuple, range, dict, set, frozenset, str)):
        charge(len(value) // STEP_CHARS)
        if len(value) > MAX_PROMPT_CHARS:
            raise refuse("a sequence")
        return list(value)
    out = []
    for item in counted(value):
        out.append(item)
        if len(out) > MAX_PROMPT_CHARS:
            raise refuse("a sequence")
    return out


def check_join(items: list[Any], separator: Any) -> None:
    sep = len(separator) if isinstance(separator, str) else 0
    total = weight(items)
    if total + max(len(items) - 1, 0) * sep > MAX_PROMPT_CHARS:
        raise refuse(f"joining {len(items):,} items")


def check_sum(items: list[Any], start: Any) -> None:
    """``sum`` of lists copies its running total each time: quadratic in the items."""
    if isinstance(start, (list, tuple, str)):
        total, cost = size(start), 0
        for item in items:
            total += size(item)
            cost += total
            if total > MAX_PROMPT_CHARS:
                raise refuse("summing sequences")
        charge(cost // STEP_CHARS)


def check_lipsum(args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    paragraphs = kwargs.get("n", args[0] if args else 5)
    words = kwargs.get("max", args[3] if len(args) > 3 else 100)
    if is_int(paragraphs) and is_int(words) and paragraphs * words * 12 > MAX_PROMPT_CHARS:
        raise refuse(f"lipsum({paragraphs:,} paragraphs of up to {words:,} words)")
