"""Templates cannot render gigabytes (llamakit/templating/sandbox.py): each way a few characters of
Jinja can ask for a huge string is refused with a ValidationError, before any allocation, while
ordinary uses of the same operators and filters still render."""

from __future__ import annotations

import tracemalloc

import pytest

import llamakit as lk
from llamakit.experiment.templates import parse_prompts
from llamakit.templating.sandbox import MAX_PROMPT_CHARS

ROW = {"q": "x", "n": 1_000_000_000}

HUGE = {
    "string repetition": "{{ q * 100000000 }}",
    "repetition, int first": "{{ 100000000 * q }}",
    "list repetition": "{{ ([q] * 100000000) | join }}",
    "power": "{{ 9 ** 100000000 }}",
    "center filter": "{{ q | center(n) }}",
    "indent filter": "{{ q | indent(n) }}",
    "wordwrap filter": "{{ q | wordwrap(n) }}",
    "str.center": "{{ q.center(n) }}",
    "str.ljust": "{{ q.ljust(1000000000) }}",
    "str.zfill": "{{ '1'.zfill(1000000000) }}",
    "%-format width": "{{ '%1000000000d' % 1 }}",
    "format filter width": "{{ '%.1000000000f' | format(1) }}",
    "str.format width": "{{ '{:>1000000000}'.format(q) }}",
    "str.format_map width": "{{ '{a:>1000000000}'.format_map({'a': q}) }}",
    "chained replace": "{{ (q * 1000) | replace('x', q * 1000) | replace('x', q * 1000) }}",
    "str.replace": "{{ (q * 1000).replace('x', q * 1000).replace('x', q * 1000) }}",
    "loop output": "{% for i in range(100000) %}{% for j in range(100) %}x{% endfor %}{% endfor %}",
}


@pytest.mark.parametrize("source", HUGE.values(), ids=HUGE.keys())
def test_a_template_asking_for_a_huge_prompt_is_refused_cheaply(source: str) -> None:
    (template,) = parse_prompts({"v": source})
    tracemalloc.start()
    try:
        with pytest.raises(
            lk.ValidationError,
            match="would exceed 1,000,000 characters|more than 50,000 steps|took more than|can print",
        ):
            template.render(ROW, item_id="i1")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 50 * MAX_PROMPT_CHARS  # never the gigabyte the template asked for


def test_ordinary_uses_of_the_guarded_operations_still_render() -> None:
    source = (
        "{{ '{:,}'.format(n) }}|{{ '%d' | format(n) }}|{{ 2 ** 64 }}|{{ q * 3 }}|"
        "{{ q | center(5) }}|{{ q | replace('x', 'yy') }}|{{ 'Order 1234567: %s' % q }}|"
        "{{ n % 7 }}|{{ q.rjust(3, '.') }}"
    )
    (template,) = parse_prompts({"v": source})
    (message,) = template.render(ROW, item_id="i1")
    assert message["content"] == (
        "1,000,000,000|1000000000|18446744073709551616|xxx|  x  |yy|Order 1234567: x|6|..x"
    )


def test_a_prompt_just_under_the_bound_renders() -> None:
    (template,) = parse_prompts({"v": f"{{{{ q * {MAX_PROMPT_CHARS} }}}}"})
    assert len(template.render(ROW, item_id="i1")[0]["content"]) == MAX_PROMPT_CHARS


def test_building_the_experiment_fails_naming_the_variant_item_and_field() -> None:
    with pytest.raises(lk.ValidationError) as info:
        lk.Experiment("huge", prompts={"boom": "{{ q * 100000000 }}"}, dataset=[ROW])
    assert "prompt 'boom'" in str(info.value) and "item" in str(info.value)
    assert info.value.field == "prompts.boom[0].content"
