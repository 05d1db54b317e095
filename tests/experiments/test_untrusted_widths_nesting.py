"""Issue 11, second review: widths and precisions given as arguments (``'%*d'``, ``'{0:{1}}'``),
``translate`` tables and nested containers a template builds out of themselves are refused before
Python allocates or compares anything (llamakit/templating/limits.py, formats.py, sandbox.py).

The hostile cases run in a fresh interpreter, each timed and measured with tracemalloc: before the
fix they took 13-29 s, gigabytes, or never finished."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from llamakit.errors import ValidationError
from llamakit.experiment.templates import parse_prompts

DOUBLE = "{% for i in range(40) %}{% set ns.a = ITEM %}{% endfor %}"
HOSTILE = {
    "%*d width argument": "{{ '%*d' % (2147483647, 1) }}",
    "%.*f precision argument": "{{ '%.*f' % (999999999, 1.0) }}",
    "%*.*f both": "{{ '%*.*f' % (9, 999999999, 1.0) }}",
    "format filter *": "{{ '%*s' | format(999999999, 'a') }}",
    "str.format nested width": "{{ '{0:{1}}'.format('a', 999999999) }}",
    "str.format auto-numbered nested": "{{ '{:{}}'.format('a', 999999999) }}",
    "str.format astral fill": "{{ '{0:\U0001f600>{1}}'.format('a', 999999999) }}",
    "format_map nested precision": "{{ '{a:{w}.{p}}'.format_map({'a': 1.5, 'w': 5, 'p': 99999999}) }}",
    "str.format keyword width": "{{ '{x:>{w}}'.format(x='a', w=999999999) }}",
    "str.format width through an item": "{{ '{0:{1[0]}}'.format('a', [999999999]) }}",
    "format_map width through items": "{{ '{x[0]:>{w[k]}}'.format_map({'x': ['a'], 'w': {'k': 99999999}}) }}",
    "many fields under the width": "{{ ('{0:900000}' * 40).format('a') }}",
    "translate table": "{{ ('x' * 999999).translate({120: 'y' * 1000}) }}",
    "translate maketrans": "{{ ('x' * 999999).translate(''.maketrans({'x': 'y' * 1000})) }}",
    "doubled tuple hashed": "{% set ns = namespace(a=(1,)) %}"
    + DOUBLE.replace("ITEM", "(ns.a, ns.a)")
    + "{{ {ns.a: 1} | length }}",
    "doubled lists compared": "{% set ns = namespace(a=[1], b=[1]) %}"
    "{% for i in range(29) %}{% set ns.a = [ns.a, ns.a] %}{% set ns.b = [ns.b, ns.b] %}"
    "{% endfor %}{{ ns.a == ns.b }}",
    "doubled lists, in": "{% set ns = namespace(a=[1], b=[1]) %}"
    "{% for i in range(29) %}{% set ns.a = [ns.a, ns.a] %}{% set ns.b = [ns.b, ns.b] %}"
    "{% endfor %}{{ ns.a in [ns.b] }}",
    "doubled by *": "{% set ns = namespace(a=[1]) %}"
    + DOUBLE.replace("ITEM", "[ns.a] * 2")
    + "{{ ns.a | length }}",
    "doubled dict()": "{% set ns = namespace(a={}) %}"
    + DOUBLE.replace("ITEM", "dict(x=ns.a, y=ns.a)")
    + "{{ ns.a | length }}",
    "doubled dict literal": "{% set ns = namespace(a={}) %}"
    + DOUBLE.replace("ITEM", "{'x': ns.a, 'y': ns.a}")
    + "{{ ns.a == ns.a.copy() }}",
}

_CHILD = r"""
import json, sys, time, tracemalloc
from llamakit.errors import ValidationError
from llamakit.experiment.templates import parse_prompts
from llamakit.scoring import judge
for source in json.loads(sys.stdin.read()):
    (template,) = parse_prompts({"v": source})
    tracemalloc.start()
    start = time.perf_counter()
    try:
        template.render({"q": "x"}, item_id="r1")
        outcome = "rendered"
    except ValidationError as exc:
        outcome = str(exc)
    seconds = time.perf_counter() - start
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    start = time.perf_counter()
    try:
        judge(None, source).render_rubric({"q": "x"}, item_id="r1")
        rubric = "rendered"
    except ValidationError as exc:
        rubric = str(exc)
    rubric_seconds = time.perf_counter() - start
    print(json.dumps([outcome, seconds, peak, rubric, rubric_seconds]), flush=True)
"""


@pytest.fixture(scope="module")
def measured() -> dict[str, list[object]]:
    """Each hostile template rendered once as a prompt and once as a judge rubric, in a fresh
    interpreter (so one that hangs cannot hang the test run, and memory is its own)."""
    done = subprocess.run(
        [sys.executable, "-c", _CHILD],
        input=json.dumps(list(HOSTILE.values())),
        capture_output=True,
        text=True,
        timeout=120,
    )
    lines = done.stdout.splitlines()
    assert len(lines) == len(HOSTILE), done.stderr[-2000:]
    return {name: json.loads(line) for name, line in zip(HOSTILE, lines, strict=True)}


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_template_is_refused_fast_and_small(
    name: str, measured: dict[str, list[object]]
) -> None:
    outcome, seconds, peak, rubric, rubric_seconds = measured[name]
    assert isinstance(outcome, str) and outcome.startswith("prompt 'v' message 0 is refused")
    assert "for item 'r1'" in outcome
    assert "bounded()" not in outcome  # names what the template did, not an internal wrapper
    assert isinstance(seconds, float) and seconds < 0.5
    assert isinstance(peak, int) and peak < 40_000_000
    assert isinstance(rubric, str) and "is refused" in rubric
    assert isinstance(rubric_seconds, float) and rubric_seconds < 0.5


def test_width_refusals_say_what_to_change(measured: dict[str, list[object]]) -> None:
    message = str(measured["%*d width argument"][0])
    assert "a width of 2,147,483,647 in the %-format '%*d'" in message
    assert "use a width or precision of a few hundred at most" in message
    nested = str(measured["str.format nested width"][0])
    assert "a width of 999,999,999 in the format field {0} of '{0:{1}}'" in nested
    doubled = str(measured["doubled lists compared"][0])
    assert "out of themselves" in doubled


ORDINARY = {
    "{{ '%*d|%-*s|%.*f' % (4, 7, 3, 'ab', 2, 3.14159) }}": "   7|ab |3.14",
    "{{ '%(a)s=%(b)05.1f %%' % {'a': 'x', 'b': 2.25} }}": "x=002.2 %",
    "{{ '%5s' | format('ab') }}": "   ab",
    "{{ '{0:{1}}|{:>{}}'.format('a', 3) if false else '{0:>{1}}|{2:.{3}f}'.format('a', 3, 2.5, 2) }}": "  a|2.50",
    "{{ '{a:*^{w}}'.format(a='b', w=5) }}": "**b**",
    "{{ '{x[0]}-{x[1]:>3}'.format(x=['p', 'q']) }}": "p-  q",
    "{{ 'abc'.translate({97: 'zz', 98: none}) }}": "zzc",
    "{% set ns = namespace(a=[1]) %}{% for i in range(10) %}{% set ns.a = [ns.a, ns.a] %}"
    "{% endfor %}{{ ns.a == ns.a }} {{ ns.a | length }}": "True 2",
    "{% set pairs = [(1, 'a'), (2, 'b')] %}{% for n, s in pairs %}{{ n }}{{ s }}{% endfor %}"
    "{{ {'k': [1, 2]}['k'] | sum }}": "1a2b3",
}


@pytest.mark.parametrize("source", ORDINARY)
def test_ordinary_formats_and_containers_still_render(source: str) -> None:
    (template,) = parse_prompts({"v": source})
    assert template.render({}, item_id="r1")[0]["content"] == ORDINARY[source]


def test_a_shared_part_counts_once_per_copy() -> None:
    """Twenty doublings of one list stand for a million items: refused, though memory holds 20."""
    source = (
        "{% set ns = namespace(a=['x']) %}{% for i in range(20) %}"
        "{% set ns.a = [ns.a, ns.a] %}{% endfor %}ok"
    )
    (template,) = parse_prompts({"v": source})
    with pytest.raises(ValidationError, match="out of themselves"):
        template.render({}, item_id="r1")
