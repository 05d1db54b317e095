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
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from . import formats

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


class TemplateLimitError(ValueError):
    """A render went past one of this module's bounds."""


class PromptTooLarge(TemplateLimitError):
    """A template would produce more than MAX_PROMPT_CHARS characters."""


class RenderTooCostly(TemplateLimitError):
    """A render took more than MAX_RENDER_STEPS steps or RENDER_DEADLINE_S seconds."""


def refuse(what: str, fix: str = "make it smaller in the template") -> PromptTooLarge:
    return PromptTooLarge(
        f"{what} would exceed {MAX_PROMPT_CHARS:,} characters, far beyond the model's "
        f"8,192-token context; {fix}"
    )


@dataclass
class _Budget:
    deadline: float
    steps: int = 0
    max_steps: int = MAX_RENDER_STEPS
    # id -> (container, its weight): a container built from shared parts (``[a, a]``) is
    # weighed once per render; holding it keeps its id from being reused.
    weights: dict[int, tuple[Any, int]] = field(default_factory=dict)


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
    """About how many characters ``str(value)`` has, counting nested containers, a part shared
    by several (``[a, a]``) counted once per copy: that is what printing, comparing or hashing
    the value walks. Stops counting past ``limit``. Containers are weighed once per render."""
    spent = _BUDGET.get()
    memo = spent.weights if spent is not None else {}
    return _weigh(value, limit, memo)


def _weigh(value: Any, limit: int, memo: dict[int, tuple[Any, int]]) -> int:
    if isinstance(value, (str, bytes)):
        return len(value) + 2
    if isinstance(value, bool) or value is None:
        return 5
    if isinstance(value, int):
        return value.bit_length() * 3 // 10 + 2
    if isinstance(value, range):
        return len(value) * 8
    if not isinstance(value, (dict, list, tuple, set, frozenset)):
        return 32
    known = memo.get(id(value))
    if known is not None:
        return known[1]
    parts: Iterable[Any] = value
    total = 2 + 2 * len(value)
    if isinstance(value, dict):
        total += 2 * len(value)
        parts = (*value.keys(), *value.values())
    for part in parts:
        if total > limit:
            break
        total += _weigh(part, limit, memo)
    if total <= limit or limit >= MAX_PROMPT_CHARS:
        memo[id(value)] = (value, total)
    return total


def check_built(value: Any, what: str) -> Any:
    """Refuse a container whose parts, counting shared parts once per copy, pass
    MAX_PROMPT_CHARS: the point of creation is the last point the render can stop it, since
    comparing or hashing it later (``a == b``, ``a in [b]``, ``{a: 1}``) runs in C, where no
    deadline is checked, and takes time exponential in how often parts were doubled."""
    if isinstance(value, (list, tuple, dict, set, frozenset)) and weight(value) > MAX_PROMPT_CHARS:
        raise refuse(
            what,
            "a template should not build nested lists, tuples or dicts out of themselves "
            "(each doubling doubles their size)",
        )
    return value


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
    """Refuse a result past MAX_PROMPT_CHARS (a container: counting its nested parts); charge for
    building it, so that many big results (``map('center', 999999)`` over a list) exhaust the
    steps before they exhaust memory."""
    check_built(result, what)
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


_FORMAT_FIX = "use a width or precision of a few hundred at most"


def check_percent(template: Any, args: Any) -> None:
    """``fmt % args`` (and the ``format`` filter): refused before formatting when its output,
    widths and precisions given as ``*`` arguments included, would pass MAX_PROMPT_CHARS."""
    if isinstance(template, bytes):
        template = template.decode("latin-1")
    if not isinstance(template, str):
        return
    try:
        formats.percent_size(template, args, weight, MAX_PROMPT_CHARS)
    except formats.FormatTooWide as exc:
        raise refuse(f"{exc.what} {template[:40]!r}", _FORMAT_FIX) from None


def check_format_call(
    template: str,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    *,
    mapping: bool = False,
    get_field: Callable[[str, tuple[Any, ...], Mapping[str, Any]], Any] | None = None,
) -> None:
    """``fmt.format(...)`` / ``fmt.format_map(m)``: refused before formatting when its output,
    nested widths (``'{0:{1}}'``) included, would pass MAX_PROMPT_CHARS."""
    if mapping:
        kwargs = dict(args[0]) if args and isinstance(args[0], dict) else {}
        args = ()
    try:
        formats.format_size(template, args, kwargs, weight, MAX_PROMPT_CHARS, get_field)
    except formats.FormatTooWide as exc:
        raise refuse(f"{exc.what} of {template[:40]!r}", _FORMAT_FIX) from None


def check_translate(text: Any, args: tuple[Any, ...]) -> None:
    """``text.translate(table)``: each character may become the table's longest string."""
    if isinstance(text, str) and args and formats.translate_size(text, args[0]) > MAX_PROMPT_CHARS:
        raise refuse(
            "translate() with a table mapping characters to long strings",
            "map characters to short strings",
        )


def check_replace(value: Any, args: tuple[Any, ...]) -> None:
    if (
        isinstance(value, (str, bytes))
        and len(args) >= 2
        and isinstance(args[0], type(value))
        and isinstance(args[1], (str, bytes))
    ):
        old: Any = args[0]
        new = args[1]
        count = value.count(old) if old else len(value) + 1
        if len(args) >= 3 and is_int(args[2]) and args[2] >= 0:
            count = min(count, args[2])
        if len(value) + count * (len(new) - len(old)) > MAX_PROMPT_CHARS:
            raise refuse("replace()", "replace fewer or shorter strings")


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
