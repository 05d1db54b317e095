"""Untrusted templates (issue 11, points 1-2): every template llamakit renders (prompt variants,
system prompts, judge rubrics) goes through the one sandboxed, bounded path in
``llamakit/templating/sandbox.py``. Hostile templates are refused with a ValidationError naming the
template, within the bound: each one's time and peak memory are measured and printed (run with
``-s`` to see the table)."""

from __future__ import annotations

import ast
import time
import tracemalloc
from pathlib import Path
from typing import Any

import pytest

import llamakit as lk
from llamakit import scoring
from llamakit.experiment.templates import parse_prompts
from llamakit.templating.sandbox import MAX_PROMPT_CHARS, MAX_RENDER_STEPS

PACKAGE = Path(lk.__file__).resolve().parent
SANDBOX = PACKAGE / "templating" / "sandbox.py"
BIG = "y" * 900_000
ROW = {"q": "x", "n": 10**9, "big": BIG, "items": ["a", "b", "c"], "lines": "a\n" * 400_000}

CODE_EXECUTION = {
    "cycler globals": "{{ cycler.__init__.__globals__.os.system('id > PWNED.txt') }}",
    "joiner globals": "{{ joiner.__init__.__globals__ }}",
    "namespace globals": "{{ namespace.__init__.__globals__ }}",
    "lipsum globals": "{{ lipsum.__globals__['os'] }}",
    "str class mro": "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "self": "{{ self }}",
    "self blocks": "{{ self._TemplateReference__context }}",
    "range internals": "{{ range.__self__ }}",
    "format attribute": "{{ '{0.__class__.__mro__}'.format(q) }}",
    "getitem dunder": "{{ q['__class__'] }}",
    "attr filter dunder": "{{ q | attr('__class__') }}",
    "loop internals": "{% for x in items %}{{ loop.__class__ }}{% endfor %}",
    "mutate a list": "{{ items.append('z') }}",
    "dict update": "{{ {}.update(a=1) }}",
    "include a file": "{% include '/etc/passwd' %}",
    "import a file": "{% import '/etc/passwd' as x %}",
    "extends a file": "{% extends '/etc/passwd' %}",
    "dict class": "{{ dict.__init__ }}",
    "format_map dunder": "{{ '{a.__class__}'.format_map({'a': q}) }}",
}

# Each would allocate gigabytes or loop for minutes without the bounds.
RESOURCE = {
    "join with a huge separator": "{{ range(100000) | join('x' * 999999) }}",
    "join of a lazy map": "{{ range(100000) | map('string') | join('x' * 999999) }}",
    "long chain of ~": "{% set s = 'xxxxxxxxxx' %}" + "{% set s = s ~ s %}" * 40 + "{{ s }}",
    "~ of many big values": "{{ big ~ big ~ big ~ big ~ big ~ big ~ big ~ big ~ big ~ big }}",
    "+ doubling": "{% set s = big %}{% set s = s + s %}{{ s }}",
    "indent with a huge string": "{{ lines | indent('x' * 999999) }}",
    "indent with a huge width": "{{ lines | indent(999999) }}",
    "wordwrap with a huge wrapstring": "{{ big | wordwrap(1, true, 'x' * 99999) }}",
    "nested loops over range": (
        "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"
    ),
    "nested loops over a string": "{% for a in big %}{% for b in big %}{% endfor %}{% endfor %}",
    "loop output in a set block": (
        "{% set x %}{% for i in range(100000) %}{{ big }}{% endfor %}{% endset %}{{ x }}"
    ),
    "loop output in a macro": (
        "{% macro m() %}{% for i in range(100000) %}{{ big }}{% endfor %}{% endmacro %}{{ m() }}"
    ),
    "list repeated then printed": "{{ [big] * 1000 }}",
    "nested list literals": (
        "{% set a = [big, big, big, big, big, big, big, big, big, big] %}"
        "{% set b = [a, a, a, a, a, a, a, a, a, a] %}{{ b }}"
    ),
    "str.format repeating a field": "{{ ('{0}' * 300000).format(big) }}",
    "%-format repeating a field": "{{ ('%s' * 300000) % ((big,) * 300000) }}",
    "doubly recursive macro": "{% macro f() %}{{ f() }}{{ f() }}{% endmacro %}{{ f() }}",
    "recursive loop": (
        "{% for y in range(100000) recursive %}{{ loop(range(100000)) if y == 0 }}{% endfor %}"
    ),
    "lipsum": "{{ lipsum(100000, max=1000) }}",
    "batch padding": "{{ [1] | batch(100000000, 'x') | list }}",
    "slice count": "{{ [1] | slice(900000) | list | length }}",
    "sum of lists": "{{ ([[1] * 1000] * 1000) | sum(start=[]) | length }}",
    "expandtabs": "{{ ('\t' * 900000).expandtabs(900000) }}",
    "string filter of a list": "{{ ([big] * 1000) | string }}",
    "tojson of a list": "{{ ([big] * 1000) | tojson }}",
    "str.join": "{{ ','.join([big] * 1000) }}",
    "center": "{{ q | center(n) }}",
    "string repetition": "{{ q * 100000000 }}",
    "power": "{{ 9 ** 100000000 }}",
    "big-number products": "{{ (9 ** 4000) * (9 ** 4000) * (9 ** 4000) }}",
    "big-number division": "{{ (3 ** 2000000) // (7 ** 1000000) }}",
    "replace chain": "{{ (q * 1000) | replace('x', q * 1000) | replace('x', q * 1000) }}",
    "map center over a list": "{{ range(50) | map('string') | map('center', 999999) | list }}",
    "big values built in a loop": "{% for i in range(1000) %}{% set x = q.center(999999) %}{% endfor %}",
    "concat in a loop": "{% for i in range(40) %}{% set x = big ~ i %}{% endfor %}",
    "dict.fromkeys": "{{ dict.fromkeys(range(100000), big) }}",
    "batch then list": "{{ big | batch(1) | list | length }}",
    "urlize a big text": "{{ ('x.co ' * 150000) | urlize }}",
    "sort a big text": "{{ big | sort | join }}",
    "pprint a big list": "{{ range(99999) | list | pprint }}",
    "range too big": "{{ range(10 ** 9) | list }}",
}

# Each would take the compiler seconds to minutes, or crash it, without the token bound.
COMPILE = {
    "140,000 tags": "{{ q }}" * 140_000,
    "5,000 nested parentheses": "{{ " + "(" * 5000 + "1" + ")" * 5000 + " }}",
    "1,000 nested parentheses": "{{ " + "(" * 1000 + "1" + ")" * 1000 + " }}",
    "3,000 nested ifs": "{% if q %}" * 3000 + "x" + "{% endif %}" * 3000,
    "500 nested loops": "{% for a in q %}" * 500 + "{% endfor %}" * 500,
    "20,000 chained filters": "{{ q" + "|upper" * 20000 + " }}",
    "2,000,000 characters": "a" * 2_000_000,
}


def _render(source: str, row: dict[str, Any] = ROW) -> None:
    (template,) = parse_prompts({"hostile": source})
    template.render(row, item_id="row-7")


def _measure(source: str) -> tuple[float, float, lk.ValidationError]:
    """Seconds (untraced: tracemalloc slows Python down) and peak MB (traced) of one refusal."""
    started = time.perf_counter()
    with pytest.raises(lk.ValidationError) as info:
        _render(source)
    seconds = time.perf_counter() - started
    tracemalloc.start()
    try:
        with pytest.raises(lk.ValidationError):
            _render(source)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return seconds, peak / 1e6, info.value


@pytest.mark.parametrize("source", CODE_EXECUTION.values(), ids=CODE_EXECUTION.keys())
def test_reaching_python_internals_is_refused_naming_the_template(
    source: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(lk.ValidationError) as info:
        _render(source)
    assert "prompt 'hostile' message 0" in str(info.value)
    assert info.value.field == "prompts.hostile[0].content"
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("source", RESOURCE.values(), ids=RESOURCE.keys())
def test_a_hostile_template_fails_fast_at_a_small_peak(source: str) -> None:
    seconds, peak_mb, error = _measure(source)
    name = next(k for k, v in RESOURCE.items() if v == source)
    print(f"\n  {name:34} {seconds * 1e3:7.1f} ms  peak {peak_mb:6.1f} MB  {error}")
    assert "prompt 'hostile' message 0" in str(error) and "row-7" in str(error)
    assert peak_mb < 64, "a hostile render must stay at tens of MB"
    assert seconds < 1.0, "a hostile render must fail in under a second"


@pytest.mark.parametrize("source", COMPILE.values(), ids=COMPILE.keys())
def test_a_template_too_big_to_compile_is_refused_fast(source: str) -> None:
    started = time.perf_counter()
    with pytest.raises(lk.ValidationError, match="prompt 'hostile' message 0 is refused") as info:
        parse_prompts({"hostile": source})
    seconds = time.perf_counter() - started
    print(f"\n  compile: {len(source):>9,} chars {seconds * 1e3:7.1f} ms  {info.value}")
    assert seconds < 1.0


def test_the_judge_rubric_goes_through_the_same_sandbox(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The reported hole: a spec file's judge rubric ran a shell command."""
    monkeypatch.chdir(tmp_path)
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        "name: pwn\ndataset: [{q: hi}]\nprompts: {a: '{{ q }}'}\nscorers:\n"
        "  - judge: {rubric: \"{{ cycler.__init__.__globals__.os.system('id > PWNED.txt') }}\"}\n"
    )
    from llamakit.cli import main

    assert main(["run", str(spec), "--budget", "1", "--no-progress"]) == 1
    assert not (tmp_path / "PWNED.txt").exists()
    err = capsys.readouterr().err
    assert "spec.yaml: the rubric of judge 'judge'" in err and "unsafe" in err
    with pytest.raises(lk.ValidationError, match="rubric of judge 'judge'.*unsafe"):
        scoring.judge(None, CODE_EXECUTION["cycler globals"]).grading_messages("x", {})
    bounded = scoring.judge(None, RESOURCE["join with a huge separator"], name="big")
    with pytest.raises(lk.ValidationError, match="rubric of judge 'big'.*would exceed"):
        bounded.grading_messages("x", {})


def test_a_judge_rubric_is_rendered_for_every_row_at_build() -> None:
    judge = scoring.judge(None, "Must name {{ capital }} {{ q * 100000000 }}.", name="names")
    rows = [{"id": "a", "q": "x", "capital": "Paris"}, {"id": "b", "q": "y", "capital": "Rome"}]
    with pytest.raises(lk.ValidationError, match="rubric of judge 'names'.*item 'a'.*exceed"):
        lk.Experiment("e", prompts="{{ q }}", dataset=rows, scorers=[judge])


ORDINARY = {
    "{% for x in items %}- {{ x | upper }}\n{% endfor %}": "- A\n- B\n- C\n",
    "{{ items | join(', ') }} ({{ items | length }})": "a, b, c (3)",
    "{% if q == 'x' %}yes{% else %}no{% endif %} {{ q ~ '!' }}": "yes x!",
    "{{ '%s=%d' % (q, 3) }} {{ '{}-{}'.format(q, q) }}": "x=3 x-x",
    "{% set ns = namespace(n=0) %}{% for x in items %}{% set ns.n = ns.n + 1 %}"
    "{% endfor %}{{ ns.n }}": "3",
    "{{ items | map('upper') | list }}": "['A', 'B', 'C']",
    "{% for a, b in [[1, 2], [3, 4]] %}{{ a + b }}{% endfor %}": "37",
    "{{ 'ab' | indent(2, first=true) }}|{{ 'hello world' | wordwrap(5) }}": "  ab|hello\nworld",
    "{{ cycler('o', 'e').next() }}{{ joiner(', ')() }}{{ range(3) | list }}": "o[0, 1, 2]",
}


@pytest.mark.parametrize("source,expected", ORDINARY.items(), ids=range(len(ORDINARY)))
def test_ordinary_templates_render_as_before(source: str, expected: str) -> None:
    (template,) = parse_prompts({"ok": source})
    assert template.render(ROW, item_id="r")[0]["content"] == expected


def test_a_loop_over_a_long_row_list_renders_within_the_step_budget() -> None:
    row = {"items": [f"item {i}" for i in range(MAX_RENDER_STEPS // 5)]}
    (template,) = parse_prompts("{% for x in items %}{{ loop.index }}. {{ x }}\n{% endfor %}")
    text = template.render(row, item_id="r")[0]["content"]
    assert text.count("\n") == len(row["items"]) and len(text) < MAX_PROMPT_CHARS


def test_jinja_syntax_inside_a_value_is_text_not_template() -> None:
    row = {"q": "{{ cycler.__init__.__globals__ }} {% for i in range(9**9) %}x{% endfor %}"}
    (template,) = parse_prompts("<{{ q }}>")
    assert template.render(row, item_id="r")[0]["content"] == f"<{row['q']}>"


def _jinja_uses(path: Path) -> list[str]:
    """Every place ``path`` imports from jinja2 or names a Jinja environment or template."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import) and any(
            a.name.split(".")[0] == "jinja2" for a in node.names
        ):
            found.append(f"line {node.lineno}: import jinja2")
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "jinja2":
            found.append(f"line {node.lineno}: from {node.module} import ...")
        elif isinstance(node, ast.Attribute) and node.attr in (
            "Environment",
            "Template",
            "from_string",
            "SandboxedEnvironment",
            "ImmutableSandboxedEnvironment",
            "NativeEnvironment",
        ):
            found.append(f"line {node.lineno}: .{node.attr}")
        elif isinstance(node, ast.Call) and getattr(node.func, "id", "") == "__import__":
            found.append(f"line {node.lineno}: __import__")
    return found


def test_no_other_module_compiles_jinja_templates() -> None:
    """The one template path: only the sandbox module may touch jinja2."""
    offenders = {
        str(path.relative_to(PACKAGE)): uses
        for path in sorted(PACKAGE.rglob("*.py"))
        if path != SANDBOX and (uses := _jinja_uses(path))
    }
    assert offenders == {}, f"Jinja used outside _template_sandbox.py: {offenders}"
    assert _jinja_uses(SANDBOX), "the scan must see the sandbox's own use of jinja2"


def test_the_scan_catches_a_plain_environment(tmp_path: Path) -> None:
    rogue = tmp_path / "rogue.py"
    rogue.write_text("import jinja2\nT = jinja2.Environment().from_string('{{ x }}')\n")
    assert len(_jinja_uses(rogue)) == 3
    rogue.write_text("from jinja2 import Template as T\nT('{{ x }}')\n")
    assert _jinja_uses(rogue) == ["line 1: from jinja2 import ..."]
