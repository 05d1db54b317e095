"""Issue 11, second review: files people write are read faithfully or refused naming the file and
the line: YAML alias bombs (llamakit/safe_yaml.py), CSV quotes never closed, text that is not
UTF-8, JSON numbers Python would print differently, and None/NaN reached inside a value
(llamakit/experiment/dataset.py, rows.py, templating/sandbox.py)."""

from __future__ import annotations

import time
import tracemalloc
from decimal import Decimal
from pathlib import Path

import pytest

import llamakit as lk
from llamakit.errors import ValidationError
from llamakit.experiment.spec import load_spec
from llamakit.safe_yaml import load_yaml
from llamakit.server.backends.rules import load_rules

LEVELS = "\n".join(f"  x{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, 9))
BOMB_PARAMS = f'name: bomb\ndataset: [{{q: x}}]\nprompts: {{a: "hi {{{{ q }}}}"}}\nparams:\n  x0: &l0 ["lol", "lol"]\n{LEVELS}\n'
BOMB_ROW = (
    'name: bomb2\nprompts: {a: "hi"}\ndataset:\n  - q: 1\n    x0: &l0 ["lol", "lol"]\n'
    + "\n".join(f"  {line}" for line in LEVELS.splitlines())
    + "\n"
)


@pytest.mark.parametrize("text", [BOMB_PARAMS, BOMB_ROW], ids=["params", "dataset row"])
def test_a_yaml_alias_bomb_in_a_spec_is_refused_fast(tmp_path: Path, text: str) -> None:
    spec = tmp_path / "bomb.yaml"
    spec.write_text(text)
    load_yaml("warm: up", "x.yaml")  # importing PyYAML is not the cost measured here
    tracemalloc.start()
    start = time.perf_counter()
    with pytest.raises(
        ValidationError, match=r"bomb.yaml is refused: its aliases .* expand to more than 100,000"
    ):
        load_spec(spec)
    seconds = time.perf_counter() - start
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert seconds < 0.5 and peak < 20_000_000


def test_a_yaml_alias_bomb_in_scripted_rules_is_refused(tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(f"rules:\n  - pattern: x\n    reply: y\nbomb:\n  x0: &l0 [a, b]\n{LEVELS}\n")
    with pytest.raises(ValidationError, match="rules.yaml is refused"):
        load_rules(rules)


def test_a_self_referring_alias_is_refused_and_ordinary_aliases_work(tmp_path: Path) -> None:
    spec = tmp_path / "loop.yaml"
    spec.write_text('name: l\ndataset: [{q: &v x}, {q: *v, id: two}]\nprompts: {a: "{{ q }}"}\n')
    assert [row["q"] for row in load_spec(spec).dataset] == ["x", "x"]


def _experiment(dataset: object, prompt: str, **kw: object) -> list[str]:
    experiment = lk.Experiment("e", prompts={"v": prompt}, dataset=dataset, **kw)  # type: ignore[arg-type]
    return [cell.messages[-1]["content"] for cell in experiment.cells("m")]


def test_an_unclosed_csv_quote_is_refused_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "u.csv"
    path.write_bytes(b'id,q\n1,ok\n2,"oops\n3,three\n4,four\n')
    with pytest.raises(ValidationError, match=r"u.csv line 3: .*not closed"):
        _experiment(str(path), "{{ q }}")
    path.write_bytes(b'id,q\n1,"a ""quoted""\nvalue"\n2,two\n')  # a real multi-line value
    assert _experiment(str(path), "{{ q }}") == ['a "quoted"\nvalue', "two"]


@pytest.mark.parametrize(
    ("name", "data", "line"),
    [("d.csv", b"id,q\n1,ok\n2,caf\xe9\n", 3), ("d.jsonl", b'{"q":"ok"}\n{"q":"caf\xe9"}\n', 2)],
)
def test_a_dataset_not_in_utf8_is_refused_naming_the_line(
    tmp_path: Path, name: str, data: bytes, line: int
) -> None:
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(
        ValidationError, match=rf"{name} line {line} is not UTF-8.*Re-save it as UTF-8"
    ):
        _experiment(str(path), "{{ q }}")


def test_json_numbers_render_as_written_and_non_numbers_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "n.jsonl"
    path.write_text('{"n": 1E2, "m": 1.10, "k": 7, "big": 12345678901234567890}\n')
    assert _experiment(str(path), "{{ n }} {{ m }} {{ k }} {{ big }} {{ m * 2 }}") == [
        "1E2 1.10 7 12345678901234567890 2.2"
    ]
    for text, why in [
        ('{"n": NaN}', "NaN is not a JSON value"),
        ('{"n": 1e400}', "the number 1e400 does not fit"),
    ]:
        path.write_text('{"n": 1}\n' + text + "\n")
        with pytest.raises(ValidationError, match=f"n.jsonl line 2 is not JSON: {why}"):
            _experiment(str(path), "{{ n }}")


NESTED = '{"id": "r1", "meta": {"note": null}, "tags": [1, null], "deep": {"a": [{"b": null}]}}\n'


@pytest.mark.parametrize(
    ("prompt", "path"),
    [
        ("{{ meta.note }}", "meta.note is None"),
        ("{{ meta['note'] }}", r"meta\['note'\] is None"),
        ("{{ tags }}", r"tags\[1\] is None"),
        ("{{ tags[1] }}", r"tags\[1\] is None"),
        ("{{ deep }}", r"deep\['a'\]\[0\]\['b'\] is None"),
        ("{{ meta.get('note') }}", "the expression on line 1 is None"),
    ],
)
def test_none_inside_a_value_is_refused_naming_row_and_path(
    tmp_path: Path, prompt: str, path: str
) -> None:
    data = tmp_path / "nested.jsonl"
    data.write_text(NESTED)
    with pytest.raises(ValidationError, match=f"for item 'r1': {path}.*missing='empty'"):
        _experiment(str(data), prompt)


def test_missing_empty_renders_nested_gaps_empty(tmp_path: Path) -> None:
    data = tmp_path / "nested.jsonl"
    data.write_text(NESTED)
    assert _experiment(str(data), "[{{ meta.note }}] {{ tags | join(',') }}", missing="empty") == [
        "[] 1,"
    ]


def test_dataframe_nan_in_any_form_is_refused() -> None:
    pandas = pytest.importorskip("pandas")
    with pytest.raises(ValidationError, match="column 'q' is None"):
        _experiment(pandas.DataFrame({"q": [Decimal("NaN")]}), "{{ q }}")
    with pytest.raises(ValidationError, match=r"q\[0\] is NaN"):
        _experiment(pandas.DataFrame({"q": [[float("nan")]]}), "{{ q }}")
    with pytest.raises(ValidationError, match=r"q\[0\] is infinite"):
        _experiment([{"q": [float("inf")]}], "{{ q }}")


def _refusal(**kw: object) -> str:
    with pytest.raises(ValidationError) as caught:
        lk.Experiment("e", prompts={"v": "{{ q }}"}, **kw)  # type: ignore[arg-type]
    return str(caught.value)


def test_refusals_name_the_actual_problem_and_fix() -> None:
    wrong = _refusal(
        dataset=[{"q": "x", "expected": "y"}], scorers=[lk.scoring.judge(None, "Is it {{ nope }}?")]
    )
    assert "the rubric's {{ nope }} must name a dataset column" in wrong
    assert "rubric=" not in wrong  # the rubric is text, not a column to pass
    reply = _refusal(
        dataset=[{"q": "x"}], scorers=[lk.scoring.judge(None, "Is {{ response }} good?")]
    )
    assert "the judge is given it separately" in reply
    gold = _refusal(
        dataset=[{"q": "x", "gold": None}, {"q": "y", "gold": "a"}],
        scorers=[lk.scoring.exact(field="gold")],
    )
    assert "fill them or drop those rows" in gold and "pass field=" not in gold
    missing = _refusal(dataset=[{"q": "x"}], scorers=[lk.scoring.exact()])
    assert "pass field='<column>'" in missing


def test_a_prompt_over_the_context_names_no_max_tokens_when_none_was_set() -> None:
    from llamakit.tokens import preflight

    with pytest.raises(
        ValidationError, match="no room in the 8192-token context window for a reply"
    ):
        preflight([{"role": "user", "content": "word " * 20_000}], None)
