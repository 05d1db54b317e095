"""Datasets as researchers keep them: CSV, JSONL, Parquet, a Hugging Face ``datasets.Dataset``
(built from local files, no hub), any ``.to_pandas()`` object and an iterable of dicts all give
the same items under the same id rules; ``limit`` / ``sample`` pilots run a priced subset first."""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from exp_helpers import billed, client_of, make_experiment
from keep_helpers import ROWS

import llamakit as lk
from llamakit.cli import main
from llamakit.experiment.dataset import load_dataset

# Parquet and datasets are optional (the parquet extra, the dev extra): their cases run where
# they are installed; every other source is always tested.
HAVE_PYARROW = importlib.util.find_spec("pyarrow") is not None
needs_pyarrow = pytest.mark.skipif(not HAVE_PYARROW, reason="pyarrow (parquet extra) missing")
DATA = Path(__file__).resolve().parents[2] / "data"


def _write_all(rows: list[dict[str, Any]], folder: Path) -> dict[str, Path]:
    paths = {k: folder / f"rows.{k}" for k in ("csv", "jsonl", "parquet")}
    with paths["csv"].open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    paths["jsonl"].write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    if HAVE_PYARROW:
        _parquet(rows, paths["parquet"])
    else:
        del paths["parquet"]
    return paths


def _parquet(rows: list[dict[str, Any]], path: Path) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def _hf(rows: list[dict[str, Any]], folder: Path) -> Any:
    # local files only: the hub is never asked (and is unreachable here anyway)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    datasets = pytest.importorskip("datasets")
    local = folder / "hf.jsonl"
    local.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return datasets.Dataset.from_json(str(local), cache_dir=str(folder / "hf-cache"))


class _ToPandas:
    def __init__(self, rows: list[dict[str, Any]]) -> None:
        self.rows = rows

    def to_pandas(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows)


def test_every_source_gives_the_same_items(tmp_path: Path) -> None:
    paths = _write_all(ROWS, tmp_path)
    expected = [(r["id"], r) for r in ROWS]
    sources: dict[str, Any] = {
        **paths,
        **({"hf": _hf(ROWS, tmp_path)} if importlib.util.find_spec("datasets") else {}),
        "to_pandas": _ToPandas(ROWS),
        "generator": (dict(r) for r in ROWS),
        "frame": pd.DataFrame(ROWS),
    }
    for name, source in sources.items():
        got = [(i.id, i.row) for i in load_dataset(source)]
        assert got == expected, name


@needs_pyarrow
def test_typed_columns_keep_their_types_and_ids_follow_the_rules(tmp_path: Path) -> None:
    rows = [{"q": "a", "n": 7, "x": 0.5}, {"q": "b", "n": 8, "x": None}]
    _parquet(rows, tmp_path / "typed.parquet")
    items = load_dataset(tmp_path / "typed.parquet")
    assert [i.id for i in items] == ["0", "1"]  # no id column: the position
    assert items[0].row == {"q": "a", "n": 7, "x": 0.5} and items[1].row["x"] is None
    hf = [i.row for i in load_dataset(_hf(rows, tmp_path))]
    assert hf[0] == {"q": "a", "n": 7, "x": 0.5} and hf[1]["x"] is None  # NaN -> None
    numeric_ids = [{"id": 7, "q": "a"}, {"id": 8, "q": "b"}]
    _parquet(numeric_ids, tmp_path / "ids.parquet")
    assert [i.id for i in load_dataset(tmp_path / "ids.parquet")] == ["7", "8"]


@needs_pyarrow
@pytest.mark.parametrize("kind", ["parquet", "hf"])
def test_duplicate_ids_and_missing_values_are_refused_as_for_csv(tmp_path: Path, kind: str) -> None:
    twice = [{"id": "a", "country": "France"}, {"id": "a", "country": "Spain"}]
    gap = [{"id": "a", "country": "France"}, {"id": "b", "country": None}]

    def source(rows: list[dict[str, Any]], name: str) -> Any:
        (tmp_path / name).mkdir()
        if kind == "hf":
            return _hf(rows, tmp_path / name)
        return _write_all(rows, tmp_path / name)["parquet"]

    with pytest.raises(lk.ValidationError, match="duplicate item ids: 'a'"):
        load_dataset(source(twice, "twice"))
    with pytest.raises(lk.ValidationError, match=r"row 'b': column 'country' is None"):
        lk.Experiment("x", prompts="Capital of {{ country }}?", dataset=source(gap, "gap"))


@needs_pyarrow
def test_a_damaged_parquet_file_or_an_unknown_object_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"PAR1 not really")
    with pytest.raises(lk.ValidationError, match=r"bad\.parquet cannot be read as Parquet"):
        load_dataset(bad)
    with pytest.raises(lk.ValidationError, match=r"datasets\.Dataset \(or an object with"):
        load_dataset(42)
    (tmp_path / "rows.xlsx").touch()
    with pytest.raises(lk.ValidationError, match=r"\.csv, \.jsonl, \.json or \.parquet"):
        load_dataset(tmp_path / "rows.xlsx")


def test_limit_and_sample_pick_a_stable_subset() -> None:
    full = make_experiment(items=20, repeats=1)
    first = make_experiment(items=20, repeats=1, limit=5)
    assert [i.id for i in first.items] == [i.id for i in full.items[:5]]
    one = make_experiment(items=20, repeats=1, sample=6, seed=3)
    same = make_experiment(items=20, repeats=1, sample=6, seed=3)
    other = make_experiment(items=20, repeats=1, sample=6, seed=4)
    assert [i.id for i in one.items] == [i.id for i in same.items]
    assert [i.id for i in one.items] != [i.id for i in other.items]
    order = [i.id for i in full.items]
    assert [i.id for i in one.items] == sorted((i.id for i in one.items), key=order.index)
    assert one.config("m")["pilot"] == {"rows": 6, "of": 20, "sample": 6, "seed": 3}
    assert "pilot" not in full.config("m") and make_experiment(items=3, limit=9).pilot is None


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"limit": 0}, "limit must be a whole number >= 1"),
        ({"sample": -2}, "sample must be a whole number >= 1"),
        ({"limit": 2, "sample": 2}, "not both"),
        ({"sample": 21}, "sample=21 is more than the dataset's 20 rows"),
        ({"sample": 2, "seed": "x"}, "seed must be a whole number"),
        ({"limit": True}, "limit must be a whole number"),
    ],
)
def test_bad_pilot_arguments_are_refused(kw: dict[str, Any], message: str) -> None:
    with pytest.raises(lk.ValidationError, match=message):
        make_experiment(items=20, **kw)


def test_a_pilot_is_priced_then_its_cells_are_free_in_the_full_run(server: Any) -> None:
    client = client_of(server)
    store = lk.Store()
    pilot = make_experiment(items=10, repeats=1, sample=3, seed=1)
    estimate = pilot.estimate(client, store=store)
    assert estimate.cells_to_run == 3 * 3  # three variants
    assert pilot.run(client, progress=False, store=store).status == "finished"
    assert billed(server) == 9
    full = make_experiment(items=10, repeats=1).run(client, progress=False, store=store)
    assert full.status == "finished" and billed(server) == 30  # only the 21 new cells were paid
    assert int(full.results["cached"].sum()) == 9


def test_llamakit_run_takes_limit_and_sample(
    server: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SEGMIND_API_KEY", server.api_key)
    monkeypatch.setenv("SEGMIND_BASE_URL", server.url + "/v1")
    demo = str(DATA / "demo.yaml")
    assert main(["run", demo, "--no-progress", "--limit", "2"]) == 0
    assert "finished; 12/12 cells" in capsys.readouterr().out  # 2 rows x 3 variants x 2 repeats
    assert main(["run", demo, "--no-progress", "--sample", "3", "--seed", "7"]) == 0
    assert "/18 cells" in capsys.readouterr().out
    assert main(["run", demo, "--no-progress", "--limit", "2", "--sample", "2"]) == 2
    assert "not allowed with argument" in capsys.readouterr().err
    assert main(["run", demo, "--no-progress", "--sample", "99"]) == 1
    assert "sample=99 is more than the dataset's 24 rows" in capsys.readouterr().err


def test_a_parquet_dataset_without_pyarrow_says_how_to_get_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    (tmp_path / "rows.parquet").write_bytes(b"PAR1")
    with pytest.raises(lk.ValidationError, match=r"rows\.parquet: reading Parquet needs pyarrow"):
        load_dataset(tmp_path / "rows.parquet")
