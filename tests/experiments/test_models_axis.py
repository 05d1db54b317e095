"""Models as an axis (issue 18, point 1): one client, several slugs, each priced on its own.

Every test runs against the real stand-in over HTTP with at least two slugs, and checks money
against the server's own ledger.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

import llamakit as lk
from llamakit import scoring
from llamakit._defaults import LOCAL_COST_BY_MODEL, LOCAL_COST_PER_CALL
from llamakit.experiment.spec import load_spec

DATA = Path(__file__).resolve().parents[2] / "data"
V3, V31, V70 = "llama-v3-8b-instruct", "llama-v3p1-8b-instruct", "llama-v3p1-70b-instruct"
CITY_ONLY = [
    {"role": "system", "content": "Answer with the name of the city only, no punctuation."},
    {"role": "user", "content": "What is the capital of {{ country }}?"},
]


@pytest.fixture
def srv() -> Iterator[Any]:
    with lk.local_server(
        backend="scripted", credits=10, rules=DATA / "models_rules.yaml", latency_ms=1
    ) as server:
        yield server


@pytest.fixture
def store(tmp_path: Path) -> lk.Store:
    return lk.Store(tmp_path / "runs.db")


def capitals(models: list[str], **kw: Any) -> lk.Experiment:
    return lk.Experiment(
        kw.pop("name", "capitals"),
        prompts={"city": CITY_ONLY},
        dataset=DATA / "capitals.csv",
        models=models,
        scorers=[scoring.contains()],
        **kw,
    )


def test_the_stand_in_prices_each_slug_from_the_published_table(srv: Any) -> None:
    client = srv.client()
    spent = {}
    for slug in (V3, V31, V70):
        before = client.credits()
        client.chat("What is the capital of France?", model=slug)
        spent[slug] = before - client.credits()
    assert spent == {
        V3: LOCAL_COST_PER_CALL,
        V31: LOCAL_COST_BY_MODEL[V31],
        V70: LOCAL_COST_BY_MODEL[V70],
    }
    # About 1/23 and 3x of llama-v3-8b-instruct's, as Segmind publishes (CONTRACT section 6).
    assert 20 < spent[V3] / spent[V31] < 26 and 2.9 < spent[V70] / spent[V3] < 3.2


def test_slugs_and_prices_are_configurable(tmp_path: Path) -> None:
    with lk.local_server(
        backend="scripted", slugs=[V3, "my-model"], slug_costs={"my-model": "0.5"}
    ) as server:
        client = server.client()
        assert client.has_model("my-model") and not client.has_model(V31)
        reply = client.chat("hi", model="my-model")
        assert reply.credits_remaining == Decimal("0.5")
    with pytest.raises(ValueError, match="slug_costs"):
        lk.local_server(backend="scripted", slug_costs={V3: -1})


def test_every_condition_runs_on_each_model_through_one_client(srv: Any, store: lk.Store) -> None:
    client = srv.client()
    before = client.credits()
    run = capitals([V3, V31], repeats=2).run(client, store=store, progress=False)
    results = run.results
    assert run.status == "finished" and len(results) == 2 * 24 * 2
    assert results.groupby("model").size().to_dict() == {V3: 48, V31: 48}
    # The server saw each slug: its replies name the model that answered.
    assert set(results["response"][results["model"] == V31]) >= {"Sydney", "Istanbul"}
    assert "Sydney" not in set(results["response"][results["model"] == V3])
    # Spend: the run's total is the server ledger's, exactly; each model's share is shown apart.
    spent = before - client.credits()
    assert run.credits_spent == spent == 48 * Decimal("0.00063") + 48 * Decimal("0.000027")
    summary = run.summary()
    assert summary.index.names == ["model", "variant"]
    per_model = summary["credits"].groupby(level="model").sum()
    assert sum(per_model, Decimal(0)) == spent
    assert per_model[V3] > 20 * per_model[V31]
    assert summary.loc[(V3, "city"), "score_contains_mean"] == 1.0
    assert summary.loc[(V31, "city"), "score_contains_mean"] == pytest.approx(22 / 24)


def test_serial_run_attributes_each_model_its_exact_price(srv: Any, store: lk.Store) -> None:
    run = capitals([V3, V70]).run(srv.client(), store=store, progress=False, concurrency=1)
    by_model = run.results.groupby("model")["credits"].agg(lambda s: sum(s, Decimal(0)))
    assert by_model[V3] == 24 * Decimal("0.00063")
    assert by_model[V70] == 24 * LOCAL_COST_BY_MODEL[V70]


def test_cells_keys_and_fingerprints_include_the_model(srv: Any, store: lk.Store) -> None:
    client = srv.client()
    both = capitals([V3, V31])
    one = capitals([V3])
    cells = both.cells(both.resolve_model(client), "src")
    assert len({c.cell_key for c in cells}) == len(cells) == 48
    assert len({c.cell_id for c in cells}) == 48
    assert both.fingerprint(both.resolve_model(client)) != one.fingerprint(V3)
    # One model in models= is that model's plain run: same cells, same fingerprint, same cache.
    plain = lk.Experiment(
        "capitals", prompts={"city": CITY_ONLY}, dataset=DATA / "capitals.csv",
        scorers=[scoring.contains()],
    )  # fmt: skip
    assert one.fingerprint(one.resolve_model(client)) == plain.fingerprint(V3)
    first = one.run(client, store=store, progress=False)
    # Adding a model reuses the first model's cells from the cache and pays only for the new one.
    before = client.credits()
    second = both.run(client, store=store, progress=False)
    assert first.id != second.id
    assert second.results["cached"].sum() == 24
    assert before - client.credits() == 24 * LOCAL_COST_BY_MODEL[V31]
    # A rerun pays nothing: every cell of both models comes from the cache.
    before = client.credits()
    again = both.run(client, store=store, progress=False)
    assert again.results["cached"].all() and client.credits() == before


def test_runs_and_estimate_price_each_model(srv: Any, store: lk.Store) -> None:
    exp = capitals([V3, V31])
    est = exp.estimate(srv.client(), store=store)
    published = 24 * Decimal("0.0006315522434414854") + 24 * Decimal("0.00002702273886072785")
    assert est.calls == 48 and est.credits == published  # each model at its own exact price
    run = exp.run(srv.client(), store=store, progress=False)
    row = lk.runs(store).set_index("run_id").loc[run.id]
    assert row["model"] == f"{V3},{V31}"
    assert row["credits_spent"] == run.credits_spent


def test_spec_files_take_models(tmp_path: Path, srv: Any, store: lk.Store) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        f"name: s\ndataset: {DATA / 'capitals.csv'}\nprompts:\n  q: 'Capital of {{{{ country }}}}?'\n"
        f"models: [{V3}, {V31}]\n",
        encoding="utf-8",
    )
    exp = load_spec(spec).experiment()
    assert exp.models == [V3, V31]
    run = exp.run(srv.client(), store=store, progress=False)
    assert set(run.results["model"]) == {V3, V31}


@pytest.mark.parametrize(
    ("models", "match"),
    [
        ([], "non-empty list"),
        ("llama-v3-8b-instruct", "non-empty list"),
        ([V3, V3], "listed twice"),
        ([V3, "bad slug"], "'bad slug' is not a model slug"),
        ([V3, "a/b"], "'a/b' is not a model slug"),
    ],
)
def test_bad_models_are_refused_when_built(models: Any, match: str) -> None:
    with pytest.raises(lk.ValidationError, match=match):
        capitals(models)


def test_model_and_models_together_are_refused() -> None:
    with pytest.raises(lk.ValidationError, match="not both"):
        capitals([V3, V31], model=V3)


def test_an_unserved_slug_fails_in_one_line_before_any_credit(srv: Any, store: lk.Store) -> None:
    client = srv.client()
    before = client.credits()
    with pytest.raises(lk.ValidationError) as info:
        capitals([V3, "llama-v9-typo"]).run(client, store=store, progress=False)
    message = str(info.value)
    assert "'llama-v9-typo'" in message and "\n" not in message and "models=" in message
    assert client.credits() == before
    assert srv.stats()["billed_calls"] == 0


def test_the_async_client_sends_each_slug(srv: Any, store: lk.Store) -> None:
    async def go() -> Any:
        async with srv.async_client() as client:
            assert await client.has_model(V31) and not await client.has_model("nope-model")
            return await capitals([V3, V31]).arun(client, store=store, progress=False)

    run = asyncio.run(go())
    assert set(run.results["model"]) == {V3, V31}
    assert set(run.results.loc[run.results["model"] == V31, "response"]) >= {"Sydney"}


def test_v2_jobs_go_to_each_slug(srv: Any, store: lk.Store) -> None:
    run = capitals([V3, V31]).run(srv.client(), store=store, progress=False, api="v2")
    assert run.status == "finished"
    assert set(run.results.loc[run.results["model"] == V31, "response"]) >= {"Sydney"}


def test_a_malformed_slug_per_call_is_refused_before_sending(srv: Any) -> None:
    client = srv.client()
    with pytest.raises(lk.ValidationError, match="model must be a slug"):
        client.chat("hi", model="../admin")
    assert srv.stats()["requests"] == {}


def test_each_models_spend_shows_apart_in_runs_and_the_cost_plot(srv: Any, store: lk.Store) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from llamakit import plots

    client = srv.client()
    before = client.credits()
    run = capitals([V3, V31]).run(client, store=store, progress=False, concurrency=1)
    spent = before - client.credits()
    by_model = run.spend_by_model()
    assert by_model == {V3: 24 * Decimal("0.00063"), V31: 24 * LOCAL_COST_BY_MODEL[V31]}
    assert sum(by_model.values(), Decimal(0)) == spent  # the ledger's figure, exactly
    row = lk.runs(store).set_index("run_id").loc[run.id]
    assert row["credits_by_model"] == by_model
    ax = plots.cost_per_variant(run)
    labels = [t.get_text() for t in ax.get_xticklabels()]
    assert labels == [f"{V3}\ncity", f"{V31}\ncity"]
    heights = [bar.get_height() for bar in ax.patches]
    assert heights[0] > 20 * heights[1]


def test_overlapping_calls_to_two_models_are_apportioned_by_price(
    srv: Any, store: lk.Store
) -> None:
    # Calls in flight together share one balance delta: it is split by each slug's price, so
    # the cheap model is not charged the dear one's share; the total stays the ledger's.
    client = srv.client()
    before = client.credits()
    run = capitals([V3, V31], repeats=2).run(client, store=store, progress=False, concurrency=8)
    by_model = run.spend_by_model()
    assert sum(by_model.values(), Decimal(0)) == before - client.credits()
    assert by_model[V3] == pytest.approx(48 * Decimal("0.00063"), rel=Decimal("0.02"))
    assert by_model[V31] == pytest.approx(48 * LOCAL_COST_BY_MODEL[V31], rel=Decimal("0.05"))
