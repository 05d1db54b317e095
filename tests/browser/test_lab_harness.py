"""The harness itself, proved on throwaway notebooks: a widget round trip, and a failing cell caught."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.browser

PROBE = """\
import os, sys
import ipywidgets as widgets
print(sys.executable, os.environ.get("SEGMIND_API_KEY", "no-key"), sep="\\n")
text = widgets.Text(placeholder="say something", continuous_update=False)
button = widgets.Button(description="Count")
label = widgets.Label("nothing yet")
for w, cls in ((text, "probe-text"), (button, "probe-button"), (label, "probe-label")):
    w.add_class(cls)
clicks = 0
def on_text(change):
    label.value = "echo: " + change["new"]
def on_click(_):
    global clicks
    clicks += 1
    label.value = f"clicks: {clicks}"
text.observe(on_text, "value")
button.on_click(on_click)
widgets.VBox([text, button, label])
"""


def _write_notebook(path: Path, *sources: str) -> str:
    cells = [
        {
            "id": f"cell-{i}",
            "cell_type": "code",
            "execution_count": None,
            "metadata": {},
            "outputs": [],
            "source": source,
        }
        for i, source in enumerate(sources)
    ]
    kernelspec = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}
    nb = {
        "cells": cells,
        "metadata": {"kernelspec": kernelspec},
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(nb))
    return path.name


def test_widget_round_trip_in_real_lab(lab: Any, notebook: Any, artifacts: Path) -> None:
    _write_notebook(lab.root / "scratch" / "probe.ipynb", PROBE, "6 * 7")
    notebook.open("scratch/probe.ipynb")
    notebook.run_all()
    page = notebook.page

    stdout = page.locator('.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stdout"]')
    kernel_python, key = stdout.first.inner_text().split()
    assert (
        Path(kernel_python).parent == Path(sys.executable).parent
    )  # the lab runs our venv's kernel
    assert key == "no-key"

    label = page.locator(".probe-label")
    field = page.locator(".probe-text input")
    field.fill("hello lab")
    field.press("Enter")
    label.filter(has_text="echo: hello lab").wait_for()
    page.locator(".probe-button").click()
    page.locator(".probe-button").click()
    label.filter(has_text="clicks: 2").wait_for()
    page.locator(".jp-OutputArea", has=label).screenshot(path=str(artifacts / "harness-probe.png"))


def test_a_failing_cell_fails_run_all(lab: Any, notebook: Any) -> None:
    _write_notebook(lab.root / "scratch" / "broken.ipynb", "x = 1", "1 / 0", "print('never')")
    notebook.open("scratch/broken.ipynb")
    with pytest.raises(pytest.fail.Exception, match="ZeroDivisionError"):
        notebook.run_all()
