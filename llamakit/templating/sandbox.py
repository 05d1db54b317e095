"""The one path by which llamakit compiles and renders a Jinja template: prompt variants, system
prompts, judge rubrics, and anything added later. A test scans the package and fails on any other
use of Jinja.

Templates come from spec files, datasets and notebooks other people wrote, so they are untrusted:
- they render in Jinja's immutable sandbox: no attribute starting with ``_`` (so no
  ``cycler.__init__.__globals__``), no unsafe callables, no mutation of lists or dicts, and no
  ``self`` (the template object): each refused with a ValidationError naming the template;
- they are strict: a variable that is not there is an error, never an empty string;
- they are bounded (``limits``): a source of at most MAX_TEMPLATE_TOKENS (10,000) tokens
  and 1,000,000 characters; per render at most MAX_PROMPT_CHARS (1,000,000) characters for the
  output and for any string, list or container text built on the way, numbers of at most 4,300
  digits, at most MAX_RENDER_STEPS (50,000) steps (loop iterations, calls, filters, attribute
  look-ups, operators; big inputs cost more) and RENDER_DEADLINE_S (0.5 s). A hostile template
  fails in well under a second, at a peak of a few MB, with a ValidationError naming it.

The deadline and the steps are checked between Python operations, never inside one: a single
C-level operation (formatting with a huge width, hashing or comparing a container doubled many
times) cannot be interrupted, by a signal or otherwise, short of rendering in a process that can
be killed. So every operation that can take long in C is refused beforehand from an estimate of
its cost (``limits``, ``formats``): format widths and precisions (given as arguments too),
translate tables, and the expanded size of every list, tuple and dict the template builds, at
the point it is built. An operation whose cost is not estimated this way is not bounded in time.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import jinja2
from jinja2 import meta, nodes
from jinja2.exceptions import SecurityError
from jinja2.runtime import LoopContext
from jinja2.sandbox import ImmutableSandboxedEnvironment, SandboxedFormatter
from jinja2.utils import _PassArg, generate_lorem_ipsum
from jinja2.visitor import NodeTransformer

from ..errors import ValidationError
from . import limits

MAX_PROMPT_CHARS = limits.MAX_PROMPT_CHARS
MAX_RENDER_STEPS = limits.MAX_RENDER_STEPS
RENDER_DEADLINE_S = limits.RENDER_DEADLINE_S
PromptTooLarge = limits.PromptTooLarge

# Filters the compiler wraps around every loop's iterable and every ``~``; templates cannot
# reach anything through them that they could not reach anyway.
_LOOP_FILTER = "_llamakit_loop"
_CONCAT_FILTER = "_llamakit_concat"
# Wrapped around every list, tuple and dict literal: weighs what the template builds.
_BUILT_FILTER = "_llamakit_built"
# Wrapped around every ``{{ expression }}``: refuses None, NaN and infinities in the output.
_OUTPUT_FILTER = "_llamakit_output"
# Filters and str methods whose int arguments are output widths or counts.
_WIDTH_TAKERS = frozenset(
    {"center", "ljust", "rjust", "zfill", "expandtabs", "indent", "wordwrap", "batch", "slice"}
)
# Filters that walk text character by character or word by word in Python: charged per 4 chars.
_HEAVY = frozenset(
    {"sort", "unique", "list", "title", "wordwrap", "striptags", "pprint", "wordcount", "urlize"}
    | {"batch", "slice", "map", "select", "reject", "groupby", "dictsort", "capitalize"}
)
_REFUSED_NAMES = {"self": "the template object itself"}


@jinja2.pass_context
def _loop_items(_context: Any, iterable: Any) -> Any:
    return limits.counted(iterable)


@jinja2.pass_context
def _concat(_context: Any, parts: list[Any]) -> str:
    limits.charge_reading(parts)
    if limits.weight(parts) > MAX_PROMPT_CHARS:
        raise limits.refuse(f"concatenating {len(parts)} values with ~")
    joined: str = limits.check_size("".join(str(p) for p in parts), "~")
    return joined


@jinja2.pass_context
def _built(_context: Any, value: Any) -> Any:
    limits.charge()
    return limits.check_built(value, "a list, tuple or dict the template builds")


class MissingInOutput(ValueError):
    """A ``{{ expression }}`` would print None, NaN or an infinity, alone or inside a container."""

    def __init__(self, path: str, shown: str) -> None:
        super().__init__(f"{path} is {shown}")
        self.path = path
        self.shown = shown


def _absent(value: Any) -> str | None:
    """How ``value`` would print if it is None, NaN or infinite (a float or a Decimal)."""
    if value is None:
        return "None (null or empty in the dataset)"
    if isinstance(value, (float, Decimal)) and not isinstance(value, bool):
        if value != value:
            return "NaN"
        if value in (math.inf, -math.inf):
            return "infinite"
    return None


@jinja2.pass_context
def _output(_context: Any, value: Any, path: str) -> Any:
    """Refuse a value that would print as Python's None / nan / inf, naming where it is."""
    seen: set[int] = set()
    stack: list[tuple[Any, str]] = [(value, path)]
    while stack:
        item, where = stack.pop()
        shown = _absent(item)
        if shown is not None:
            raise MissingInOutput(where, shown)
        if isinstance(item, (list, tuple, dict, set, frozenset)) and id(item) not in seen:
            seen.add(id(item))
            limits.charge_reading([item])
            if isinstance(item, dict):
                stack.extend((v, f"{where}[{k!r}]") for k, v in item.items())
            else:
                stack.extend((v, f"{where}[{i}]") for i, v in enumerate(item))
    return value


def _describe(node: nodes.Node) -> str:
    """``meta.note``, ``tags[1]``: how the template reached a value, for error messages."""
    if isinstance(node, nodes.Name):
        return node.name
    if isinstance(node, nodes.Getattr):
        return f"{_describe(node.node)}.{node.attr}"
    if isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const):
        return f"{_describe(node.node)}[{node.arg.value!r}]"
    return f"the expression on line {node.lineno}"


class _WeighLiterals(NodeTransformer):
    """Wraps each list, tuple and dict literal the template evaluates in ``_BUILT_FILTER``."""

    def generic_visit(self, node: nodes.Node, *args: Any, **kwargs: Any) -> Any:
        node = super().generic_visit(node, *args, **kwargs)
        literal = isinstance(node, (nodes.List, nodes.Dict)) or (
            isinstance(node, nodes.Tuple) and node.ctx == "load"
        )
        if literal:
            return nodes.Filter(node, _BUILT_FILTER, [], [], None, None, lineno=node.lineno)
        return node


def _bounded_concat(parts: Any) -> str:
    """Joins the output of blocks, macros and ``{% set %}`` captures (Environment.concat)."""
    parts = list(parts)
    if sum(len(p) for p in parts) > MAX_PROMPT_CHARS:
        raise limits.refuse("a block of the template")
    return "".join(parts)


def _check_filter(name: str, plain: list[Any], kwargs: dict[str, Any]) -> list[Any]:
    value, args = (plain[0], plain[1:]) if plain else (None, [])
    if name in _WIDTH_TAKERS:
        limits.check_numbers([*args, *kwargs.values()], f"the {name} filter")
    if name in ("batch", "slice"):
        limits.charge(sum(a for a in args[:1] if limits.is_int(a)))
    if name == "indent":
        limits.check_indent(value, args, kwargs)
    elif name == "wordwrap":
        limits.check_wordwrap(value, args, kwargs)
    elif name == "format":
        limits.check_percent(value, tuple(args) or dict(kwargs))
    elif name == "replace":
        limits.check_replace(value, tuple(args))
    elif name in ("join", "sum") and value is not None and not isinstance(value, str):
        plain[0] = value = limits.materialize(value)
        if name == "join":
            limits.check_join(value, kwargs.get("d", args[0] if args else ""))
        else:
            limits.check_sum(value, kwargs.get("start", args[1] if len(args) > 1 else 0))
    elif value is not None:
        limits.check_weight(value, f"the {name} filter's input")
    return plain


def _guarded(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` behind the bounds. Every guarded filter and test takes the context, so that Jinja
    never runs one while compiling (constant folding would do work outside any render budget)."""
    wants = _PassArg.from_obj(fn)

    @jinja2.pass_context
    def guarded(context: Any, *args: Any, **kwargs: Any) -> Any:
        plain = _check_filter(name, list(args), kwargs)
        limits.charge_reading([*plain, *kwargs.values()], heavy=name in _HEAVY)
        if wants is _PassArg.context:
            plain.insert(0, context)
        elif wants is _PassArg.eval_context:
            plain.insert(0, context.eval_ctx)
        elif wants is _PassArg.environment:
            plain.insert(0, context.environment)
        result = limits.check_size(fn(*plain, **kwargs), f"the {name} filter")
        # A lazy result (map, select, batch, ...) is charged per item as it is consumed.
        return limits.counted(result) if isinstance(result, Iterator) else result

    return guarded


def _lipsum(*args: Any, **kwargs: Any) -> str:
    limits.check_lipsum(args, kwargs)
    return generate_lorem_ipsum(*args, **kwargs)


def _instrument(tree: nodes.Template) -> None:
    """Route every loop and every ``~`` through the bounds; refuse names a row cannot supply."""
    _WeighLiterals().visit(tree)
    for output in tree.find_all(nodes.Output):
        output.nodes = [
            node
            if isinstance(node, nodes.TemplateData)
            else nodes.Filter(
                node,
                _OUTPUT_FILTER,
                [nodes.Const(_describe(node))],
                [],
                None,
                None,
                lineno=node.lineno,
            )
            for node in output.nodes
        ]
    for name in tree.find_all(nodes.Name):
        if name.name in _REFUSED_NAMES and name.ctx == "load":
            raise SecurityError(f"{name.name!r} ({_REFUSED_NAMES[name.name]}) is not available")
    for loop in tree.find_all(nodes.For):
        loop.iter = nodes.Filter(loop.iter, _LOOP_FILTER, [], [], None, None, lineno=loop.lineno)
    for concat in list(tree.find_all(nodes.Concat)):
        items = nodes.List(concat.nodes, lineno=concat.lineno)
        concat.nodes = [nodes.Filter(items, _CONCAT_FILTER, [], [], None, None)]


class BoundedSandbox(ImmutableSandboxedEnvironment):
    """An immutable, strict sandbox whose renders stay within ``limits``."""

    intercepted_binops = frozenset({"*", "**", "%", "+"})
    concat = staticmethod(_bounded_concat)

    def __init__(self) -> None:
        super().__init__(
            undefined=jinja2.StrictUndefined,
            autoescape=False,
            keep_trailing_newline=True,
            finalize=lambda value: limits.check_weight(value, "a value in the output"),
        )
        self.filters = {name: _guarded(name, fn) for name, fn in self.filters.items()}
        self.filters[_LOOP_FILTER] = _loop_items
        self.filters[_CONCAT_FILTER] = _concat
        self.filters[_BUILT_FILTER] = _built
        self.filters[_OUTPUT_FILTER] = _output
        self.tests = {name: _guarded(name, test) for name, test in self.tests.items()}  # type: ignore[arg-type]
        self.globals["lipsum"] = _lipsum

    def _parse(self, source: str, name: str | None, filename: str | None) -> nodes.Template:
        tree = super()._parse(source, name, filename)
        _instrument(tree)
        return tree

    def getattr(self, obj: Any, attribute: str) -> Any:
        limits.charge()
        return super().getattr(obj, attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:
        limits.charge()
        return super().getitem(obj, argument)

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        limits.charge_reading((left, right))
        if operator == "*":
            limits.check_repeat(left, right)
        elif operator == "**":
            limits.check_power(left, right)
        elif operator == "%":
            limits.check_percent(left, right)
        elif operator == "+":
            limits.check_add(left, right)
        return limits.check_size(
            super().call_binop(context, operator, left, right), f"the {operator} operator"
        )

    def wrap_str_format(self, value: Any) -> Any:
        # The sandbox swaps str.format/format_map for a wrapper on attribute access; bound it here,
        # where the format string is still known.
        wrapped = super().wrap_str_format(value)
        if wrapped is None:
            return None
        template = value.__self__
        mapping = value.__name__ == "format_map"
        formatter = SandboxedFormatter(self)

        def get_field(name: str, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Any:
            return formatter.get_field(name, args, kwargs)[0]

        def bounded(*args: Any, **kwargs: Any) -> str:
            limits.check_format_call(template, args, kwargs, mapping=mapping, get_field=get_field)
            return str(wrapped(*args, **kwargs))

        bounded.__name__ = value.__name__  # refusals name str.format, not this wrapper
        return bounded

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805
        name = getattr(__obj, "__name__", "")
        owner = getattr(__obj, "__self__", None)
        limits.charge_reading((owner, *args, *kwargs.values()))
        if isinstance(__obj, LoopContext) and args:  # a recursive loop's next level
            args = (limits.counted(args[0]), *args[1:])
        if isinstance(owner, (str, bytes)):
            if name in _WIDTH_TAKERS:
                limits.check_numbers([*args, *kwargs.values()], f"{name}()")
            if name == "expandtabs":
                limits.check_expandtabs(owner, args, kwargs)
            elif name == "replace":
                limits.check_replace(owner, args)
            elif name == "translate":
                limits.check_translate(owner, args)
            elif name == "join" and args:
                args = (limits.materialize(args[0]), *args[1:])
                limits.check_join(args[0], owner)
        result = super().call(__context, __obj, *args, **kwargs)
        return limits.check_size(result, f"{name or 'a call'}()")


_env: BoundedSandbox | None = None


def environment() -> BoundedSandbox:
    global _env
    if _env is None:
        _env = BoundedSandbox()
    return _env


@dataclass(frozen=True)
class Template:
    """A compiled template: its source, where it came from, the variables it reads."""

    source: str
    where: str  # e.g. "prompt 'terse' message 1", "the judge's rubric"
    field: str
    variables: frozenset[str]
    compiled: Any

    def render(self, variables: Mapping[str, Any], *, item_id: str | None = None) -> str:
        """The text, or ValidationError naming the template, the item and what went wrong."""
        on = "" if item_id is None else f" for item {item_id!r}"
        budget = limits.begin()  # not a context manager: this is the hot path
        try:
            text = _render_bounded(self.compiled, variables)
        except SecurityError as exc:
            raise ValidationError(
                f"{self.where} is refused{on}: {exc} (templates cannot reach Python internals)",
                field=self.field,
            ) from None
        except jinja2.UndefinedError as exc:
            columns = f" (item {item_id!r} has columns {sorted(variables)})" if item_id else ""
            raise ValidationError(
                f"{self.where} uses a missing field: {exc.message}{columns}"
                f"{_undefined_hint(self.where, exc.message or '', variables)}",
                field=self.field,
            ) from None
        except MissingInOutput as exc:
            raise ValidationError(
                f"{self.where}{on}: {exc.path} is {exc.shown}, so the prompt would say "
                f"{'None' if 'None' in exc.shown else exc.shown.lower()} there. Fill the value in "
                "the dataset, drop the row, or pass missing='empty' (spec: `missing: empty`) if "
                "an empty value is intended",
                field=self.field,
            ) from None
        except limits.TemplateLimitError as exc:
            raise ValidationError(f"{self.where} is refused{on}: {exc}", field=self.field) from None
        except RecursionError:
            raise ValidationError(
                f"{self.where} is refused{on}: its macros or loops recurse too deeply",
                field=self.field,
            ) from None
        except Exception as exc:  # a filter or operator failing on this row's values
            raise ValidationError(
                f"{self.where} failed to render{on}: {type(exc).__name__}: {exc}",
                field=self.field,
            ) from None
        finally:
            limits.end(budget)
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise ValidationError(
                f"{self.where} renders text that is not valid UTF-8{on} (a lone surrogate "
                f"{text[exc.start : exc.end]!r} at character {exc.start}); fix the template or "
                "the row",
                field=self.field,
            ) from None
        return text


def _render_bounded(
    template: Any, variables: Mapping[str, Any], max_chars: int = MAX_PROMPT_CHARS
) -> str:
    parts: list[str] = []
    size = 0
    for chunk in template.generate(**variables):
        size += len(chunk)
        if size > max_chars:
            raise limits.refuse("the rendered prompt")
        parts.append(chunk)
    return "".join(parts)


_cache: dict[str, tuple[Any, frozenset[str]]] = {}


def compile_template(source: str, *, where: str, field: str) -> Template:
    """Compile ``source`` in the sandbox; ValidationError naming ``where`` if it is not a valid,
    allowed template. Compiled templates are cached by source."""
    if not isinstance(source, str):
        raise ValidationError(f"{where} must be a template string", field=field)
    cached = _cache.get(source)
    if cached is None:
        env = environment()
        try:
            if len(source) > MAX_PROMPT_CHARS:
                raise limits.refuse(f"a template of {len(source):,} characters")
            limits.check_tokens(env.lexer.tokeniter(source, None))
            with limits.budget():
                tree = env.parse(source)
                compiled = env.from_string(tree)
                variables = frozenset(meta.find_undeclared_variables(tree))
        except jinja2.TemplateSyntaxError as exc:
            raise ValidationError(
                f"{where}: template syntax error on line {exc.lineno}: {exc.message}", field=field
            ) from None
        except (SecurityError, limits.TemplateLimitError) as exc:
            raise ValidationError(f"{where} is refused: {exc}", field=field) from None
        except RecursionError:
            raise ValidationError(
                f"{where} is refused: it is nested too deeply to compile", field=field
            ) from None
        cached = _cache[source] = (compiled, variables)
    return Template(source, where, field, cached[1], cached[0])


# Bounds for llamakit's own templates (the HTML report), whose source ships with the package and
# is trusted, but whose values (model replies, dataset rows, run names) are not. A report of a
# whole run loops over every cell, far past a prompt's bounds; these still end a runaway render.
# Same sandbox, same hooks: only the totals are larger, and the output is HTML-escaped.
PACKAGE_MAX_CHARS = 500_000_000  # the whole report: about 50,000 cells of 8,000-token replies
PACKAGE_MAX_STEPS = 50_000_000  # a few dozen steps per cell and score
PACKAGE_DEADLINE_S = 300.0


def render_package_template(source: str, variables: Mapping[str, Any], *, where: str) -> str:
    """Render one of llamakit's own templates (never a user's: those go through
    ``compile_template``) in this sandbox, every value HTML-escaped (autoescape; ``|safe`` only
    where the template says so), within the PACKAGE_* bounds above. Raises ValidationError
    naming ``where`` when a bound is hit."""
    compiled = compile_template(
        "{% autoescape true %}" + source + "{% endautoescape %}", where=where, field="report"
    )
    budget = limits.begin(PACKAGE_MAX_STEPS, PACKAGE_DEADLINE_S)
    try:
        return _render_bounded(compiled.compiled, variables, PACKAGE_MAX_CHARS)
    except limits.TemplateLimitError as exc:
        raise ValidationError(f"{where} is too large to render: {exc}", field="report") from None
    finally:
        limits.end(budget)


# Names a rubric might use for the reply being graded; a rubric never sees it as a variable.
_REPLY_NAMES = frozenset({"response", "reply", "output", "completion", "generation"})


def _undefined_hint(where: str, message: str, variables: Mapping[str, Any]) -> str:
    """How to fix a template that names a variable the row does not have."""
    match = re.match(r"'([^']+)' is undefined", message)
    if match is None or match.group(1) in variables:
        return ""
    name = match.group(1)
    if "rubric" in where and name in _REPLY_NAMES:
        return (
            f"; if {{{{ {name} }}}} means the reply being graded, remove it: a rubric cannot "
            "refer to the reply, the judge is given it separately, after the rubric"
        )
    what = "the rubric's" if "rubric" in where else "the template's"
    return f"; {what} {{{{ {name} }}}} must name a dataset column"
