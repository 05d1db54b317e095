"""The HTML report in real Chromium: it renders offline, makes no request at all (every request
is logged and refused), runs no script from a model's reply, and its disagreement filter works.

Uses only the package's ``browser`` fixture (no JupyterLab): the report is a file opened by URL.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments"))
from keep_helpers import keep_experiment, keep_server  # noqa: E402

pytestmark = pytest.mark.browser


@pytest.fixture
def report(tmp_path: Path) -> Path:
    with keep_server() as srv:
        run = keep_experiment(srv).run(srv.client(), progress=False, store=None)
    # the report of a run file written today, loaded into a private store
    saved = run.save(tmp_path / "keep.jsonl")
    import llamakit as lk

    return Path(lk.load_run(saved).to_html(tmp_path / "report.html"))


def test_the_report_renders_offline_and_its_filter_works(
    browser: Any, artifacts: Path, report: Path
) -> None:
    context = browser.new_context(viewport={"width": 1280, "height": 900}, offline=True)
    requests: list[str] = []
    errors: list[str] = []

    def refuse(route: Any) -> None:
        requests.append(route.request.url)
        if route.request.url.startswith("file://"):
            route.continue_()
        else:
            route.abort()

    context.route("**/*", refuse)
    page = context.new_page()
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(report.as_uri())
    page.wait_for_load_state("load")

    # Only the report file itself was requested: no CDN, font, image or stylesheet from anywhere.
    assert requests == [report.as_uri()], requests
    assert errors == []
    # The replies' markup is text, never run: no script set the flag, no <img>/<link> was made.
    assert page.evaluate("window.pwned === undefined")
    assert page.locator("section.item img, section.item link, section.item script").count() == 0
    assert page.get_by_text("<script>window.pwned = 1</script>Paris").count() == 2
    # Figures are inline images that decoded.
    widths = page.eval_on_selector_all("figure img", "els => els.map(e => e.naturalWidth)")
    assert len(widths) == 3 and all(w > 100 for w in widths)

    items = page.locator("section.item")
    assert items.count() == 4
    page.screenshot(path=str(artifacts / "report-all-items.png"), full_page=True)
    page.locator("#only-disagree").check()
    visible = [s for s in items.all() if s.is_visible()]
    assert [s.get_attribute("data-item") for s in visible] == ["td"]
    assert page.locator("#shown").inner_text().startswith("1 items shown")
    page.screenshot(path=str(artifacts / "report-disagreements.png"), full_page=True)
    page.locator("#only-disagree").uncheck()
    assert sum(1 for s in items.all() if s.is_visible()) == 4
    context.close()
