"""Sequential runs through the real local server: stopping early, resuming the same sequence,
eliminating a clearly worse variant, and bad stop rules refused before any call."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from typing import Any

import pytest
from exp_helpers import billed

import llamakit as lk
from llamakit import scoring

# Each variant's prompt carries a tag from the dataset; the scripted server answers "yes" to
# "right" and "no" to "wrong", so the dataset fixes which variant is correct on which item.
RULES = [{"pattern": "tag right", "reply": "yes"}, {"pattern": "tag wrong", "reply": "no"}]


def tagged_rows(n: int, accuracy: dict[str, float], seed: int = 1) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    return [
        {
            "id": f"q{i:03d}",
            "expected": "yes",
            **{f"{v}_tag": "right" if rng.random() < p else "wrong" for v, p in accuracy.items()},
        }
        for i in range(n)
    ]


def tagged_experiment(n: int, accuracy: dict[str, float], **kw: Any) -> lk.Experiment:
    prompts = {v: f"{v}: item {{{{ id }}}} tag {{{{ {v}_tag }}}}" for v in accuracy}
    return lk.Experiment(
        kw.pop("name", "seq"),
        prompts,
        tagged_rows(n, accuracy),
        scorers=kw.pop("scorers", [scoring.contains()]),
        **kw,
    )


@pytest.fixture
def server() -> Iterator[Any]:
    with lk.local_server(backend="scripted", credits=100.0, rules=RULES, latency_ms=1) as srv:
        yield srv


def test_compare_stops_early_on_a_clear_difference(server: Any, tmp_path: Any) -> None:
    exp = tagged_experiment(200, {"good": 0.95, "bad": 0.4})
    store = lk.Store(tmp_path / "s.db")
    run = exp.run(
        server.client(),
        stop=lk.stop.compare("good", "bad", "contains"),
        store=store,
        progress=False,
        concurrency=8,
    )
    report = run.sequential
    assert report.decision == "good > bad"
    assert report.cells_done < 0.5 * report.cells_total
    assert billed(server) == report.cells_done  # the ledger agrees: only those were paid
    assert report.credits_spent < report.credits_full_grid
    steps = report.history()
    assert steps["lower"].iloc[-1] > 0 and (steps["upper"].diff().dropna() <= 1e-12).all()
    assert report.items_used["good"] == report.items_used["bad"]  # paired
    # the order visited is the stored seeded order, batch after batch
    visited = [i for s in report.steps for i in s["items"]]
    assert visited == report.order[: len(visited)]


def test_resume_continues_the_same_sequence(server: Any, tmp_path: Any) -> None:
    exp = tagged_experiment(200, {"a": 0.62, "b": 0.5})
    store = lk.Store(tmp_path / "s.db")
    rule = lk.stop.compare("a", "b", "contains")
    client = server.client()
    first = exp.run(client, stop=rule, store=store, progress=False, concurrency=4, budget=0.01)
    assert first.status == "budget"
    before = first.sequential
    paid_before = billed(server)
    assert 0 < before.cells_done < before.cells_total
    second = exp.run(client, stop=rule, store=store, progress=False, concurrency=4)
    assert second.id == first.id
    after = second.sequential
    assert after.order == before.order  # the same random order
    # the steps recorded before the stop are kept as they were, and the sequence goes on
    assert after.steps[: len(before.steps)] == before.steps
    assert len(after.steps) > len(before.steps)
    visited = [i for s in after.steps for i in s["items"]]
    assert visited == after.order[: len(visited)]
    # nothing paid twice: every paid call is one finished cell
    assert billed(server) == after.cells_done > paid_before


def test_best_eliminates_a_clearly_worse_variant(server: Any, tmp_path: Any) -> None:
    exp = tagged_experiment(300, {"top": 0.9, "mid": 0.85, "low": 0.1})
    store = lk.Store(tmp_path / "s.db")
    run = exp.run(
        server.client(), stop=lk.stop.best("contains"), store=store, progress=False, concurrency=6
    )
    report = run.sequential
    dropped = [v for s in report.steps for v in s["eliminated"]]
    assert dropped[0] == "low"
    assert report.items_used["low"] < report.items_used["top"]
    assert report.items_used["low"] < 0.3 * report.items_total
    assert "low" not in report.steps[-1]["active"]
    assert billed(server) == report.cells_done


def _unbounded(text: str, row: Any) -> float:
    return float(len(text))


@pytest.mark.parametrize(
    ("stop", "exp_kw", "match"),
    [
        (lambda: lk.stop.compare("a", "zzz", "contains"), {}, "not a variant"),
        (lambda: lk.stop.compare("a", "b", "exact"), {}, "not a scorer"),
        (
            lambda: lk.stop.best("len"),
            {"scorers": [scoring.as_scorer(_unbounded, "len")]},
            "no declared bounds",
        ),
        (lambda: lk.stop.compare("a", "b", "contains", alpha=0), {}, "alpha"),
        (lambda: lk.stop.compare("a", "b", "contains", alpha=1.5), {}, "alpha"),
        (lambda: lk.stop.best("contains", alpha=-0.1), {}, "alpha"),
        (lambda: lk.stop.compare("a", "a", "contains"), {}, "two different"),
        (lambda: lk.stop.compare("a", "b", "contains", margin=-1), {}, "margin"),
        (lambda: "compare:a,b", {}, "not a stop rule"),
        (lambda: {"best": {"metric": "contains", "alfa": 0.1}}, {}, "alfa"),
        (
            lambda: lk.stop.best("contains"),
            {"params": {"temperature": [0.0, 0.7]}},
            "several param settings",
        ),
    ],
)
def test_bad_stop_rules_are_refused_before_any_call(
    server: Any, tmp_path: Any, stop: Any, exp_kw: dict[str, Any], match: str
) -> None:
    store = lk.Store(tmp_path / "s.db")
    with pytest.raises(lk.ValidationError, match=match):
        exp = tagged_experiment(20, {"a": 0.5, "b": 0.5}, **exp_kw)
        exp.run(server.client(), stop=stop(), store=store, progress=False)
    assert billed(server) == 0
    assert store.query("SELECT COUNT(*) AS n FROM runs")[0]["n"] == 0


def test_a_stop_rule_on_one_variant_is_refused(server: Any, tmp_path: Any) -> None:
    exp = tagged_experiment(20, {"only": 0.5})
    with pytest.raises(lk.ValidationError, match="one variant"):
        exp.run(server.client(), stop=lk.stop.best("contains"), store=lk.Store(tmp_path / "s.db"))
    assert billed(server) == 0


def test_a_declared_bound_makes_a_custom_metric_usable(server: Any, tmp_path: Any) -> None:
    def said_yes(text: str, row: Any) -> float:
        return 1.0 if "yes" in text else 0.0

    exp = tagged_experiment(
        100, {"a": 0.95, "b": 0.2}, scorers=[scoring.as_scorer(said_yes, bounds=(0, 1))]
    )
    run = exp.run(
        server.client(),
        stop={"compare": {"a": "a", "b": "b", "metric": "said_yes"}},
        store=lk.Store(tmp_path / "s.db"),
        progress=False,
    )
    assert run.sequential.decision == "a > b"
    assert json.loads(run.store.sequential_steps(run.id)[0]["rule"])["metric"] == "said_yes"


def test_cli_stop_in_the_spec_and_on_the_command_line(tmp_path: Any, capsys: Any) -> None:
    import yaml

    from llamakit.cli import main

    rows = tagged_rows(150, {"good": 0.95, "bad": 0.3})
    spec = tmp_path / "seq.yaml"
    spec.write_text(
        yaml.safe_dump(
            {
                "name": "seq-cli",
                "dataset": rows,
                "prompts": {
                    v: f"{v}: item {{{{ id }}}} tag {{{{ {v}_tag }}}}" for v in ("good", "bad")
                },
                "scorers": ["contains"],
                "stop": {"compare": {"a": "good", "b": "bad", "metric": "contains"}},
            }
        )
    )
    rules = tmp_path / "rules.yaml"
    rules.write_text(yaml.safe_dump(RULES))
    db = tmp_path / "s.db"
    base = ["run", str(spec), "--no-progress", "--rules", str(rules), "--store", str(db)]
    assert main(base) == 0
    out = capsys.readouterr().out
    assert "decided;" in out and "decision: good > bad" in out
    done = lk.Store(db).query("SELECT COUNT(*) AS n FROM run_cells WHERE status = 'done'")[0]["n"]
    assert 0 < done < 300
    # --stop overrides the spec's rule, and a bad one fails before any run is created
    assert main([*base, "--stop", "compare:good,zzz,contains"]) == 1
    assert "not a variant" in capsys.readouterr().err
    assert lk.Store(db).query("SELECT COUNT(*) AS n FROM runs")[0]["n"] == 1


def test_a_seed_fixes_the_order_across_runs(server: Any, tmp_path: Any) -> None:
    exp = tagged_experiment(60, {"a": 0.9, "b": 0.2})
    orders = []
    for name in ("one", "two"):
        run = exp.run(
            server.client(),
            stop=lk.stop.compare("a", "b", "contains", seed=7),
            store=lk.Store(tmp_path / f"{name}.db"),
            progress=False,
        )
        orders.append(run.sequential.order)
    assert orders[0] == orders[1] and sorted(orders[0]) == [f"q{i:03d}" for i in range(60)]
    assert orders[0] != sorted(orders[0])


def test_the_plot_draws_the_bounds_or_says_why_not(server: Any, tmp_path: Any) -> None:
    import matplotlib

    matplotlib.use("Agg")
    store = lk.Store(tmp_path / "s.db")
    exp = tagged_experiment(80, {"a": 0.95, "b": 0.2})
    run = exp.run(
        server.client(),
        stop=lk.stop.compare("a", "b", "contains", seed=1),
        store=store,
        progress=False,
    )
    ax = lk.plots.sequential(run)
    assert ax.get_title().startswith("a > b:") and ax.get_legend_handles_labels()[1] == ["a - b"]
    plain = tagged_experiment(5, {"a": 0.5, "b": 0.5}, name="plain").run(
        server.client(), store=store, progress=False
    )
    assert plain.sequential is None
    ax = lk.plots.sequential(plain)
    assert "no stop rule" in ax.texts[0].get_text()


def test_a_sequential_rerun_of_a_complete_run_replays_its_procedure(
    server: Any, tmp_path: Any
) -> None:
    """A complete fixed-size run shares its cells with a plain rerun, but a sequential rerun
    walks its procedure over the cached replies, with cells and steps of its own, paying for
    nothing."""
    store = lk.Store(tmp_path / "s.db")
    whole = tagged_experiment(60, {"good": 0.95, "bad": 0.3}).run(
        server.client(), store=store, progress=False, concurrency=8
    )
    assert whole.status == "finished" and billed(server) == 120
    plain = tagged_experiment(60, {"good": 0.95, "bad": 0.3}).run(
        server.client(), store=store, progress=False
    )
    assert store.cells_run(plain.id) == whole.id  # the plain rerun shares
    seq = tagged_experiment(60, {"good": 0.95, "bad": 0.3}).run(
        server.client(),
        stop=lk.stop.compare("good", "bad", "contains"),
        store=store,
        progress=False,
    )
    assert store.cells_run(seq.id) == seq.id
    report = seq.sequential
    assert report.decision == "good > bad" and report.steps  # its own sequence, on the cache
    assert billed(server) == 120
