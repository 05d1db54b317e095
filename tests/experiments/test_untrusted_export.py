"""Exports are exact and, on request, spreadsheet-safe (issue 11, point 5). Replies come from the
real local server (scripted rules return each hostile text verbatim), through the store, out by
``run.to_csv`` and ``llamakit export``, and back in through ``pandas.read_csv``."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

import llamakit as lk
from llamakit.cli import main

REPLIES = {
    "bare-cr": "first line\rsecond line",
    "crlf": "one\r\ntwo\r\n",
    "lf": "a\nb\n\nc",
    "nul": "before\x00after",
    "quotes": 'He said "hi", then \'bye\' ""',
    "commas": "a,b,,c;d\td",
    "long": "lorem ipsum dolor sit amet, " * 400,
    "unicode": "Ünïcödé — 東京 — مرحبا — 😀👍🏽 — \u202eRTL\u202c — e\u0301",
    "bom-inside": "\ufeffstarts with a BOM",
    "formula": '=HYPERLINK("http://evil.example","click")',
    "plus": "+1+1",
    "minus": "-2+3",
    "at": "@SUM(A1:A2)",
    "tab": "\t=1+1",
    "cr-first": "\r=1+1",
    "csv-row": 'x","y"\r\nrun,1,2,3',
    "spaces": "  padded  ",
    "jinja": "{{ cycler.__init__ }} {% raw %}",
}
NEUTRALISED = {"formula", "plus", "minus", "at", "tab", "cr-first"}


@pytest.fixture(scope="module")
def hostile_run(tmp_path_factory: pytest.TempPathFactory) -> Any:
    rules = [
        {
            "pattern": f"^case {name}$",
            "flags": "",
            "reply": text.replace("{", "{{").replace("}", "}}"),
        }
        for name, text in REPLIES.items()
    ]
    store = lk.Store(tmp_path_factory.mktemp("store") / "store.db")
    with lk.local_server(backend="scripted", credits=10.0, rules=rules) as srv:
        exp = lk.Experiment(
            "hostile-replies",
            prompts={"v": "case {{ name }}"},
            dataset=[{"id": name, "name": name} for name in REPLIES],
            params={"max_tokens": 4096},
        )
        with srv.client() as client:
            run = exp.run(client, store=store, progress=False)
    assert run.status == "finished"
    return run


def _replies(frame: pd.DataFrame) -> dict[str, str]:
    return dict(zip(frame["item_id"].astype(str), frame["response"], strict=True))


def test_the_server_returned_every_hostile_reply_verbatim(hostile_run: Any) -> None:
    assert _replies(hostile_run.results) == REPLIES


def test_to_csv_round_trips_every_reply_exactly_through_pandas(
    hostile_run: Any, tmp_path: Path
) -> None:
    path = Path(hostile_run.to_csv(tmp_path / "out.csv"))
    back = pd.read_csv(path)
    assert len(back) == len(REPLIES)
    assert _replies(back) == REPLIES
    frame = hostile_run.results
    for column in ("variant", "prompt", "cell_key", "error", "finish_reason"):
        assert back[column].astype(object).fillna("").tolist() == (
            frame[column].astype(object).fillna("").tolist()
        )
    assert path.read_bytes()[:3] != b"\xef\xbb\xbf"  # no BOM in the exact mode


def test_the_stdlib_csv_reader_also_sees_one_row_per_cell(hostile_run: Any, tmp_path: Path) -> None:
    path = Path(hostile_run.to_csv(tmp_path / "out.csv"))
    with path.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert {r["item_id"]: r["response"] for r in rows} == REPLIES


def test_llamakit_export_writes_the_same_exact_csv(hostile_run: Any, tmp_path: Path) -> None:
    out = tmp_path / "export.csv"
    assert (
        main(["export", hostile_run.id, "--csv", str(out), "--store", str(hostile_run.store.path)])
        == 0
    )
    assert _replies(pd.read_csv(out)) == REPLIES


def test_excel_mode_neutralises_formulas_and_writes_a_bom(hostile_run: Any, tmp_path: Path) -> None:
    path = Path(hostile_run.to_csv(tmp_path / "excel.csv", excel=True))
    raw = path.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")
    back = _replies(pd.read_csv(path, encoding="utf-8-sig"))
    for name, text in REPLIES.items():
        assert back[name] == ("'" + text if name in NEUTRALISED else text), name
    cells = [c for row in csv.reader(raw.decode("utf-8-sig").splitlines(True)) for c in row]
    assert not any(c.startswith(("=", "+", "-", "@", "\t", "\r")) for c in cells)


def test_llamakit_export_excel_flag(hostile_run: Any, tmp_path: Path, capsys: Any) -> None:
    out = tmp_path / "export.csv"
    store = str(hostile_run.store.path)
    assert main(["export", hostile_run.id, "--csv", str(out), "--excel", "--store", store]) == 0
    assert out.read_bytes().startswith(b"\xef\xbb\xbf")
    assert _replies(pd.read_csv(out, encoding="utf-8-sig"))["formula"].startswith("'=")
    assert "--excel" in _help(capsys)


def _help(capsys: Any) -> str:
    assert main(["export", "--help"]) == 0  # cli.main turns argparse's SystemExit into a status
    return str(capsys.readouterr().out)


def test_replies_pandas_would_read_as_missing_or_numbers_round_trip_with_dtype_str(
    tmp_path: Path,
) -> None:
    """The documented exact read for replies such as "NA", "" or "007"."""
    from llamakit.experiment.csv_export import write_csv

    texts = ["NA", "null", "007", "1e5", "nan", "", " ", "None"]
    frame = pd.DataFrame({"item_id": [str(i) for i in range(len(texts))], "response": texts})
    write_csv(frame, tmp_path / "x.csv")
    back = pd.read_csv(tmp_path / "x.csv", dtype={"response": str}, keep_default_na=False)
    assert back["response"].tolist() == texts
