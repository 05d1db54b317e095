"""Bad input gets a clear ValidationError naming the problem before any credit is spent; good input
in every accepted shape loads the same way."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pandas as pd
import pytest
from exp_helpers import make_experiment, requests_total, rows

import llamakit as lk
from llamakit import scoring
from llamakit.experiment.cells import expand_params
from llamakit.experiment.dataset import load_dataset
from llamakit.experiment.spec import load_spec

DATA = Path(__file__).resolve().parents[2] / "data"


def test_a_missing_template_variable_is_an_error_naming_it_and_the_item(server) -> None:
    with pytest.raises(lk.ValidationError, match=r"'c' is undefined.*item 'q00'") as info:
        lk.Experiment("x", prompts={"v": "{{ a }} + {{ c }}"}, dataset=rows(3))
    assert info.value.field == "prompts.v[0].content"
    assert requests_total(server) == 0


def test_a_template_syntax_error_is_reported_with_its_variant() -> None:
    with pytest.raises(lk.ValidationError, match="prompt 'v' message 0: template syntax error"):
        lk.Experiment("x", prompts={"v": "{{ a "}, dataset=rows(1))


@pytest.mark.parametrize("dataset", [[], pd.DataFrame({"id": [], "a": []})])
def test_an_empty_dataset_is_rejected(dataset) -> None:
    with pytest.raises(lk.ValidationError, match="dataset is empty"):
        lk.Experiment("x", prompts="{{ a }}", dataset=dataset)


def test_an_empty_csv_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "empty.csv"
    path.write_text("id,a,expected\n")
    with pytest.raises(lk.ValidationError, match="dataset is empty"):
        lk.Experiment("x", prompts="{{ a }}", dataset=path)


def test_duplicate_item_ids_are_named() -> None:
    data = [{"id": "a", "q": 1}, {"id": "b", "q": 2}, {"id": "a", "q": 3}]
    with pytest.raises(lk.ValidationError, match="duplicate item ids: 'a'"):
        lk.Experiment("x", prompts="{{ q }}", dataset=data)


def test_rows_must_be_dicts() -> None:
    with pytest.raises(lk.ValidationError, match=r"dataset row 1 must be a dict"):
        load_dataset([{"a": 1}, "oops"])


def test_csv_jsonl_dataframe_and_list_load_alike(tmp_path: Path) -> None:
    data = [
        {"id": "NA", "country": "Namibia", "expected": "Windhoek"},
        {"id": "7", "country": "Peru", "expected": "Lima"},
    ]
    csv_path = tmp_path / "d.csv"
    pd.DataFrame(data).to_csv(csv_path, index=False)
    jsonl = tmp_path / "d.jsonl"
    jsonl.write_text("\n".join(json.dumps(r) for r in data) + "\n")
    loaded = [load_dataset(src) for src in (data, csv_path, jsonl, pd.DataFrame(data))]
    assert all(items == loaded[0] for items in loaded)
    assert [i.id for i in loaded[0]] == ["NA", "7"]  # "NA" is Namibia, not a missing value


def test_ids_default_to_row_positions() -> None:
    assert [i.id for i in load_dataset([{"q": 1}, {"q": 2}])] == ["0", "1"]


def test_a_missing_dataset_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(lk.ValidationError, match="dataset file not found"):
        load_dataset(tmp_path / "nope.csv")


def test_params_grid_expands_lists_but_keeps_stop_lists_whole() -> None:
    sets = expand_params({"temperature": [0.0, 0.7], "max_tokens": [8, 16], "stop": ["\n", "."]})
    assert len(sets) == 4
    assert all(s["stop"] == ["\n", "."] for s in sets)
    assert expand_params([{"temperature": 0.1}, {"top_p": 0.5}]) == [
        {"temperature": 0.1},
        {"top_p": 0.5},
    ]


def test_an_unknown_sampling_param_is_rejected() -> None:
    with pytest.raises(lk.ValidationError, match="temprature"):
        make_experiment(params={"temprature": 0.5})


def test_repeats_must_be_a_positive_integer() -> None:
    with pytest.raises(lk.ValidationError, match="repeats"):
        make_experiment(repeats=0)


def test_scorer_names_must_be_unique() -> None:
    with pytest.raises(lk.ValidationError, match="both named 'contains'"):
        make_experiment(scorers=[scoring.contains(), scoring.contains()])


def test_an_experiment_model_goes_per_call_on_the_one_client(server, tmp_path: Path) -> None:
    # Issue 18: one client (key, base URL) serves every slug; the experiment's model is sent in
    # each call's URL instead of refusing a client built for another model.
    exp = make_experiment(model="llama-v3p1-70b-instruct", items=2, repeats=1)
    run = exp.run(server.client(), progress=False, store=lk.Store(tmp_path / "s.db"))
    assert set(run.results["model"]) == {"llama-v3p1-70b-instruct"}
    assert run.credits_spent == 6 * Decimal("0.0019")  # that slug's price on the stand-in


def test_an_unserved_experiment_model_is_refused_before_any_call(server, tmp_path: Path) -> None:
    exp = make_experiment(model="llama-v3p1-7b-typo")
    with pytest.raises(lk.ValidationError, match="'llama-v3p1-7b-typo' is not served"):
        exp.run(server.client(), progress=False, store=lk.Store(tmp_path / "s.db"))
    assert server.stats()["billed_calls"] == 0


def test_a_plain_chat_client_for_another_model_is_refused(server) -> None:
    class Plain:  # any object with chat(); it cannot be told which slug to use
        model = "llama-v3-8b-instruct"

        def chat(self, messages, **params):  # pragma: no cover - never reached
            raise AssertionError("must not be called")

    exp = make_experiment(model="llama-v3p1-70b-instruct")
    with pytest.raises(lk.ValidationError, match="differs from the client's"):
        exp.run(Plain(), progress=False)
    assert requests_total(server) == 0


def test_a_spec_with_an_unknown_key_is_an_error_naming_it(tmp_path: Path) -> None:
    spec = tmp_path / "s.yaml"
    spec.write_text("name: x\ndataset: d.csv\nprompts: {a: hi}\nrepeat: 2\n")
    with pytest.raises(
        lk.ValidationError, match=r"unknown key 'repeat' \(did you mean 'repeats'\?\)"
    ):
        load_spec(spec)


def test_a_spec_with_an_unknown_scorer_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "d.csv").write_text("id,q\n1,hi\n")
    spec = tmp_path / "s.yaml"
    spec.write_text("name: x\ndataset: d.csv\nprompts: {a: '{{ q }}'}\nscorers: [exactly]\n")
    with pytest.raises(lk.ValidationError, match="unknown scorer 'exactly'"):
        load_spec(spec).experiment()


def test_the_demo_spec_builds_three_variants_over_a_real_dataset() -> None:
    exp = load_spec(DATA / "demo.yaml").experiment()
    assert len(exp.variants) == 3
    assert len(exp.items) >= 20
    assert all(item.row["expected"] for item in exp.items)


@pytest.mark.parametrize("name", ["capitals.csv", "arithmetic.csv", "sentiment.csv"])
def test_the_shipped_datasets_have_unique_ids_and_expected_answers(name: str) -> None:
    items = load_dataset(DATA / name)
    assert 20 <= len(items) <= 30
    assert all(i.row["expected"] for i in items)


def test_a_dataframe_with_timestamps_and_numbers_renders_and_runs(server) -> None:
    from exp_helpers import client_of

    frame = pd.DataFrame(
        {"q": ["a", "b"], "when": pd.to_datetime(["2024-01-01", "2024-02-01"]), "n": [1.5, None]}
    )
    prompt = "{{ q }} on {{ when.date() }} ({{ n }})"
    with pytest.raises(lk.ValidationError, match="row '1': column 'n' is None"):
        lk.Experiment("df", prompts=prompt, dataset=frame)  # NaN would render as "None"
    exp = lk.Experiment("df", prompts=prompt, dataset=frame, missing="empty")
    assert [c.messages[0]["content"] for c in exp.cells("m")] == [
        "a on 2024-01-01 (1.5)",
        "b on 2024-02-01 ()",
    ]
    run = exp.run(client_of(server), progress=False)
    assert run.status == "finished" and len(run.results) == 2


@pytest.mark.parametrize("given", ["str", "path"])
def test_a_store_may_be_given_as_the_path_of_its_file(server, tmp_path: Path, given: str) -> None:
    path = tmp_path / "runs.db"
    store = str(path) if given == "str" else path
    exp = make_experiment(items=2, repeats=1, scorers=[])
    run = exp.run(server.client(), progress=False, store=store)
    assert run.status == "finished"
    assert exp.estimate(server.client(), store=store).cells_to_run == 0  # same store, all done
    assert len(lk.runs(store=store)) == 1
    assert lk.load_run(run.id, store=store).id == run.id


@pytest.mark.parametrize("bad", [42, object(), b"runs.db", ["runs.db"]])
def test_a_store_of_another_kind_is_named_before_any_credit(server, bad: object) -> None:
    exp = make_experiment(items=2, repeats=1, scorers=[])
    for call in (
        lambda: exp.run(server.client(), progress=False, store=bad),
        lambda: exp.estimate(server.client(), store=bad),
        lambda: lk.runs(store=bad),
    ):
        with pytest.raises(lk.ValidationError, match=r"store must be a llamakit Store") as info:
            call()
        assert info.value.field == "store"
    assert requests_total(server) == 0
