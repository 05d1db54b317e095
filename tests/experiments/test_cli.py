"""`llamakit run / runs / export` in-process against the local server (env-configured client)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from llamakit.cli import main

DATA = Path(__file__).resolve().parents[2] / "data"


@pytest.fixture
def hosted_env(server, monkeypatch):
    """Point connect() at the test server as if it were the hosted API."""
    monkeypatch.setenv("SEGMIND_API_KEY", server.api_key)
    monkeypatch.setenv("SEGMIND_BASE_URL", server.url + "/v1")
    return server


def test_run_runs_export_and_replay_a_spec(hosted_env, tmp_path: Path, capsys) -> None:
    out = tmp_path / "results.csv"
    assert main(["run", str(DATA / "demo.yaml"), "--no-progress", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "finished; 144/144 cells" in text and "credits spent" in text
    frame = pd.read_csv(out)
    assert len(frame) == 144 and {"score_contains", "score_concise", "expected"} <= set(frame)
    assert hosted_env.stats()["billed_calls"] == 144

    assert main(["runs"]) == 0
    listing = capsys.readouterr().out
    run_id = frame["run_id"][0]
    assert run_id in listing and "capitals-demo" in listing

    exported = tmp_path / "export.csv"
    assert main(["export", run_id, "--csv", str(exported)]) == 0
    assert pd.read_csv(exported)["response"].tolist() == frame["response"].tolist()

    assert main(["run", str(DATA / "demo.yaml"), "--no-progress", "--replay"]) == 0
    assert hosted_env.stats()["billed_calls"] == 144


def test_run_with_a_bad_spec_or_budget_exits_with_a_named_error(
    hosted_env, tmp_path, capsys
) -> None:
    spec = tmp_path / "bad.yaml"
    spec.write_text(f"name: x\ndataset: {DATA / 'capitals.csv'}\nprompts: {{a: hi}}\nmodle: x\n")
    assert main(["run", str(spec), "--no-progress"]) == 1
    assert "unknown key 'modle'" in capsys.readouterr().err
    # refused while parsing, as a usage error
    assert main(["run", str(DATA / "demo.yaml"), "--no-progress", "--budget", "lots"]) == 2
    assert "budget must be" in capsys.readouterr().err
    assert sum(hosted_env.stats()["requests"].values()) == 0


def test_export_of_an_unknown_run_fails_clearly(tmp_path, capsys) -> None:
    assert main(["export", "nope", "--csv", str(tmp_path / "x.csv")]) == 1
    assert "no run 'nope'" in capsys.readouterr().err


def test_to_csv_keeps_raw_text_unmodified(tmp_path) -> None:
    import llamakit as lk

    rules = [{"pattern": "tricky", "reply": 'a, "quoted"\nmulti-line\treply ünïcode'}]
    with lk.local_server(backend="scripted", credits=10.0, rules=rules) as srv:
        exp = lk.Experiment("csv", prompts="tricky {{ q }}", dataset=[{"q": 1}, {"q": 2}])
        run = exp.run(srv.client(), progress=False)
    path = tmp_path / "out.csv"
    run.to_csv(path)
    back = pd.read_csv(path, keep_default_na=False)
    assert back["response"].tolist() == run.results["response"].tolist()
    assert all('"quoted"\nmulti-line\t' in text for text in back["response"])
    assert list(back.columns) == list(run.results.columns)
