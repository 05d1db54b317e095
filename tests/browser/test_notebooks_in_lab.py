"""The chat panel and the run views, used the way a person uses them: in JupyterLab, in Chromium.

nbval never renders a widget; these tests do. The screenshots they save under
test-artifacts/browser/ are the README's pictures.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.browser

# Generous: JupyterLab round trips are fast, but a loaded CI machine is not.
WAIT_MS = 30_000
# A comparison card is <h4>variant</h4> <the response, as Markdown> <hr> <scores, cost>.
_RESPONSE_TEXT_JS = """card => {
  let text = '', node = card.querySelector('h4').nextSibling;
  for (; node && node.nodeName !== 'HR'; node = node.nextSibling) text += node.textContent;
  return text;
}"""


# The transcript's scroll box: is it scrolled so that the newest turn is fully visible?
_SCROLL_STATE_JS = """box => {
  const turns = box.querySelectorAll('.llamakit-chat-user, .llamakit-chat-assistant');
  const newest = turns[turns.length - 1].getBoundingClientRect();
  const seen = box.getBoundingClientRect();
  return {overflows: box.scrollHeight > box.clientHeight + 1,
          newest_in_view: newest.bottom <= seen.bottom + 1 && newest.top >= seen.top - 1,
          scrollTop: box.scrollTop, scrollHeight: box.scrollHeight, clientHeight: box.clientHeight};
}"""
# A code block in a reply: it scrolls sideways itself, inside its bubble, and the panel does not.
_CODE_WIDTH_JS = """pre => {
  const bubble = pre.closest('.llamakit-chat-assistant').getBoundingClientRect();
  const panel = pre.closest('.llamakit-chat');
  const scroll = pre.closest('.llamakit-chat-scroll');
  const box = pre.getBoundingClientRect();
  const notebook = pre.closest('.jp-WindowedPanel-outer') || pre.closest('.jp-Notebook');
  const edge = panel.getBoundingClientRect().right;
  return {code_scrolls: pre.scrollWidth > pre.clientWidth,
          inside_bubble: box.right <= bubble.right + 1 && box.left >= bubble.left - 1,
          bubble_inside_panel: bubble.right <= edge + 1,
          transcript_overflows: scroll.scrollWidth > scroll.clientWidth + 1,
          notebook_scrolls_sideways: notebook.scrollWidth > notebook.clientWidth + 1};
}"""


def _credits(text: str) -> float:
    match = re.search(r"(\d+\.\d+)", text)
    assert match, f"no credit figure in {text!r}"
    return float(match.group(1))


def _report(capsys: pytest.CaptureFixture[str], what: str, started: float) -> None:
    with capsys.disabled():
        print(f"\n[browser] {what}: {time.monotonic() - started:.1f} s wall time")


def test_chat_panel_send_and_undo(notebook: Any, artifacts: Path, capsys: Any) -> None:
    from playwright.sync_api import expect

    started = time.monotonic()
    notebook.open("notebooks/01_chat.ipynb")
    notebook.run_all()
    page = notebook.page

    panels = page.locator(".llamakit-chat")
    expect(panels).to_have_count(2)  # the chat panel, and bad_panel showing a 401
    panel, bad_panel = panels.first, panels.last
    expect(bad_panel.locator(".llamakit-chat-error")).to_contain_text("AuthenticationError (401)")
    expect(bad_panel.locator(".llamakit-chat-user")).to_have_count(0)
    transcript = panel.locator(".llamakit-chat-transcript")
    turns = transcript.locator(".llamakit-chat-user, .llamakit-chat-assistant")
    credits = panel.locator(".llamakit-credits")
    # The notebook's own cells sent two questions and undid one.
    expect(turns).to_have_count(2, timeout=WAIT_MS)
    credits_before = _credits(credits.inner_text())

    question = "Name three primary colours."
    field = panel.locator(".llamakit-chat-input input")
    field.click()
    field.fill(question)
    field.press("Enter")

    expect(turns).to_have_count(4, timeout=WAIT_MS)
    expect(transcript.locator(".llamakit-chat-user").last).to_have_text(question)
    reply = transcript.locator(".llamakit-chat-assistant").last
    meta = reply.locator(".llamakit-chat-meta")
    expect(meta).to_contain_text("credits")  # the reply's cost/latency line
    assert reply.inner_text().replace(meta.inner_text(), "").strip(), "the reply is empty"
    expect(field).to_have_value("")  # the box is cleared for the next message
    expect(credits).not_to_have_text(re.compile(re.escape(f"{credits_before:.5f}")))
    assert _credits(credits.inner_text()) < credits_before
    expect(panel.locator(".llamakit-chat-error")).to_have_text("")
    panel.screenshot(path=str(artifacts / "chat-panel.png"))

    panel.locator(".llamakit-undo").click()
    expect(turns).to_have_count(2, timeout=WAIT_MS)
    expect(transcript).not_to_contain_text(question)

    # Five more exchanges, one of them a reply with a code line wider than any panel.
    for i, text in enumerate(["What is 2 + 2?", "Show me some code", "What is 3 * 7?",
                              "Who are you?", "What is 10 - 4?"]):  # fmt: skip
        field.fill(text)
        field.press("Enter")
        expect(turns).to_have_count(4 + 2 * i, timeout=WAIT_MS)
    # The panel re-renders its transcript as the reply, then the credits, arrive: wait until it
    # is idle, or an element found now is replaced (detached) while the test uses it.
    expect(panel.locator(".llamakit-chat-waiting")).to_have_count(0, timeout=WAIT_MS)
    expect(panel.locator(".llamakit-busy")).to_be_hidden(timeout=WAIT_MS)
    view = panel.locator(".llamakit-chat-scroll").evaluate(_SCROLL_STATE_JS)
    assert view["overflows"], f"the transcript should be taller than its box: {view}"
    assert view["newest_in_view"], f"the newest reply is scrolled out of view: {view}"
    panel.screenshot(path=str(artifacts / "chat-panel-five-exchanges.png"))
    code = transcript.locator(".llamakit-chat-assistant pre").first
    width = _retry_detached(
        lambda: (code.scroll_into_view_if_needed(), code.evaluate(_CODE_WIDTH_JS))[1]
    )
    assert width["code_scrolls"], f"the long code line should scroll inside its block: {width}"
    assert width["inside_bubble"] and width["bubble_inside_panel"], width
    assert not width["transcript_overflows"] and not width["notebook_scrolls_sideways"], width
    expect(code).to_contain_text("<b>not bold</b>")  # HTML in a reply is shown, not interpreted
    panel.screenshot(path=str(artifacts / "chat-code-reply.png"))
    _report(capsys, "01_chat (open, run all, send, undo, five more, code)", started)


def _retry_detached(action: Any, tries: int = 5) -> Any:
    """Run a locator action again if a re-render replaced its element mid-action (the locator
    finds the new one); any other error is raised at once."""
    for attempt in range(tries):
        try:
            return action()
        except Exception as exc:  # playwright's Error
            if "not attached" not in str(exc) or attempt == tries - 1:
                raise
            time.sleep(0.2)
    return None


def test_compare_prompts_progress_and_comparison(
    notebook: Any, artifacts: Path, capsys: Any
) -> None:
    from playwright.sync_api import expect

    started = time.monotonic()
    notebook.open("notebooks/02_compare_prompts.ipynb")
    notebook.run_all()
    page = notebook.page

    run_view = page.locator(".llamakit-run")
    expect(run_view).to_have_count(1)
    bar = run_view.locator(".llamakit-run-progress .progress-bar")
    expect(bar).to_have_attribute("style", re.compile(r"width:\s*100%"), timeout=WAIT_MS)
    expect(run_view.locator(".llamakit-run-done")).to_have_text(re.compile(r"^(\d+)/\1 cells"))
    expect(run_view.locator(".llamakit-run-errors")).to_have_text("Errors none")
    # The runner's own tqdm bar (cell "Run it") also ends full.
    for other in page.locator(".widget-progress .progress-bar").all():
        expect(other).to_have_attribute("style", re.compile(r"width:\s*100%"))
    run_view.screenshot(path=str(artifacts / "run-view.png"))

    compare = page.locator(".llamakit-compare")
    expect(compare).to_have_count(1)
    cards = compare.locator(".llamakit-compare-card")
    expect(cards).to_have_count(3, timeout=WAIT_MS)
    assert [h.inner_text() for h in cards.locator("h4").all()] == ["bare", "terse", "step_by_step"]
    expect(cards.locator(".llamakit-error")).to_have_count(0)
    for card in cards.all():
        assert card.evaluate(_RESPONSE_TEXT_JS).strip(), f"no response in {card.inner_text()!r}"

    # Picking another item in the browser re-renders the cards for that item.
    picker = compare.locator(".llamakit-compare-item select")
    options = picker.locator("option")
    assert options.count() >= 2, "the disagreement filter left fewer than two items to pick"
    expected_before = cards.first.locator("small").first.inner_text()
    picker.select_option(index=1)
    expect(cards.first.locator("small").first).not_to_have_text(expected_before, timeout=WAIT_MS)
    compare.screenshot(path=str(artifacts / "compare-view.png"))
    _report(capsys, "02_compare_prompts (open, run all, progress, compare)", started)


# Ten real runs in a fresh store (the scripted backend, so it takes seconds), then the plot.
TEN_RUNS = """\
import os, tempfile
os.environ["LLAMAKIT_HOME"] = tempfile.mkdtemp(prefix="llamakit-ten-")
%matplotlib inline
import llamakit as lk
from llamakit import plots
client = lk.connect(quiet=True)
for i in range(10):
    rows = [{"q": f"What is {i} + {j}?"} for j in range(1 + i % 4)]
    lk.Experiment(f"run-{i:02d}", prompts="{{ q }}", dataset=rows).run(client, progress=False)
print(len(lk.runs()), "runs")
ax = plots.credit_spend()
"""
_IMAGE_FIT_JS = """img => {
  const area = img.closest('.jp-OutputArea-output');
  const notebook = img.closest('.jp-WindowedPanel-outer') || img.closest('.jp-Notebook');
  return {loaded: img.complete && img.naturalWidth > 0,
          fits: img.getBoundingClientRect().width <= area.getBoundingClientRect().width + 1,
          notebook_scrolls_sideways: notebook.scrollWidth > notebook.clientWidth + 1};
}"""


def test_credit_spend_of_ten_runs_in_the_lab(
    lab: Any, notebook: Any, artifacts: Path, capsys: Any
) -> None:
    from playwright.sync_api import expect

    from .test_lab_harness import _write_notebook

    started = time.monotonic()
    _write_notebook(lab.root / "scratch" / "ten_runs.ipynb", TEN_RUNS)
    notebook.open("scratch/ten_runs.ipynb")
    notebook.run_all()
    page = notebook.page
    expect(page.locator(".jp-OutputArea-output").filter(has_text="10 runs")).to_have_count(1)
    image = page.locator(".jp-OutputArea-output img").first
    fit = image.evaluate(_IMAGE_FIT_JS)
    assert fit["loaded"] and fit["fits"] and not fit["notebook_scrolls_sideways"], fit
    image.screenshot(path=str(artifacts / "credit-spend-ten-runs.png"))
    _report(capsys, "credit_spend of ten runs (write, run all, plot)", started)
