"""``Run.to_html`` / ``llamakit report``: one self-contained, escaped page (the Chromium test in
tests/browser checks it renders, requests nothing and filters)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from keep_helpers import HOSTILE, keep_experiment, keep_server
from markupsafe import escape

import llamakit as lk
from llamakit.cli import main
from llamakit.experiment.report import render_report
from llamakit.templating import sandbox


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> list[Any]:
    store = lk.Store(tmp_path_factory.mktemp("report") / "r.db")
    with keep_server() as srv:
        first = keep_experiment(srv).run(srv.client(), progress=False, store=store)
        second = keep_experiment(srv, name="keep-again", repeats=1).run(
            srv.client(), progress=False, store=store
        )
    return [first, second]


def test_every_reply_is_escaped_and_nothing_is_fetched(runs: list[Any], tmp_path: Path) -> None:
    page = Path(runs[0].to_html(tmp_path / "one.html")).read_text(encoding="utf-8")
    for reply in HOSTILE.values():
        assert str(escape(reply)) in page and reply not in page  # shown as text, never markup
    assert "<u>it names it</u>" not in page
    assert str(escape("Reason: <u>it names it</u>.\nVERDICT: PASS")) in page  # judge reasons
    # no tag loads anything from anywhere: only data: URIs (escaped replies hold no "<")
    tags = " ".join(re.findall(r"<[^>]+>", page))
    sources = re.findall(r"""\b(?:src|href)\s*=\s*["']?([^"' >]+)""", tags)
    assert sources and all(s.startswith("data:image/svg+xml;base64,") for s in sources)
    assert "default-src 'none'" in page  # and the browser is told to refuse any request
    assert page.count("<script>") == 1  # the filter, nothing else


def test_the_page_holds_the_summary_spend_and_every_cell(runs: list[Any], tmp_path: Path) -> None:
    run = runs[0]
    page = render_report([run])
    assert page.count('<section class="item') == 4
    assert page.count('class="item disagree"') == 1 and 'data-item="td"' in page
    assert f"{run.credits_spent}" in page and "0.750 [" in page  # spend; contains mean with CI
    assert "now - please on contains" in page  # the paired comparison
    assert page.count("<figure>") == 3  # contains, judge, credits
    assert page.count("<tr><td>now #1</td>") == 4  # every cell, per item


def test_several_runs_side_by_side(runs: list[Any], tmp_path: Path) -> None:
    path = Path(runs[0].to_html(tmp_path / "two.html", runs[1]))
    page = path.read_text(encoding="utf-8")
    assert runs[0].id in page and runs[1].id in page
    assert page.count(f"keep-again ({runs[1].id}) · now #0") == 4
    assert page.count("<tr><td>keep (") == 16


def test_llamakit_report_takes_run_ids_and_run_files(
    runs: list[Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    saved = runs[1].save(tmp_path / "second.jsonl")
    out = tmp_path / "cli.html"
    store = str(runs[0].store.path)
    assert main(["report", runs[0].id, saved, "-o", str(out), "--store", store]) == 0
    assert "2 runs, 24 cells" in capsys.readouterr().out
    assert runs[1].id in out.read_text(encoding="utf-8")
    assert main(["report", "nope", "-o", str(out), "--store", store]) == 1
    assert "no run 'nope'" in capsys.readouterr().err


def test_the_report_uses_the_one_sandbox_with_explicit_larger_bounds(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Package templates get bigger totals than prompts, but still bounded: past them, a
    ValidationError names the report."""
    assert sandbox.PACKAGE_MAX_STEPS > sandbox.MAX_RENDER_STEPS
    assert sandbox.PACKAGE_MAX_CHARS > sandbox.MAX_PROMPT_CHARS
    rows = {"xs": list(range(sandbox.MAX_RENDER_STEPS))}
    text = sandbox.render_package_template("{% for x in xs %}.{% endfor %}", rows, where="t")
    assert len(text) == sandbox.MAX_RENDER_STEPS  # past a prompt's bound, fine for a report
    assert sandbox.render_package_template("{{ x }}", {"x": "<b>"}, where="t") == "&lt;b&gt;"
    monkeypatch.setattr(sandbox, "PACKAGE_MAX_STEPS", 1000)
    with pytest.raises(lk.ValidationError, match="the HTML report is too large to render"):
        sandbox.render_package_template(
            "{% for x in xs %}.{% endfor %}", rows, where="the HTML report"
        )


def test_a_report_needs_a_run() -> None:
    with pytest.raises(lk.ValidationError, match="at least one run"):
        render_report([])
