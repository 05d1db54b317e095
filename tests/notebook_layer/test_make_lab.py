"""`make lab` opens copies of the notebooks, so JupyterLab's autosave can never change the committed
outputs that `make notebooks` (nbval) compares strictly."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="needs make")


def _make(*args: str) -> str:
    done = subprocess.run(
        ["make", "--no-print-directory", "-C", str(REPO), *args],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    return done.stdout


def test_lab_works_on_copies_and_keeps_your_edits(tmp_path: Path) -> None:
    committed = {p.name: p.read_bytes() for p in NOTEBOOKS}
    lab = tmp_path / "lab"
    _make("lab-copy", f"LAB_DIR={lab}")
    copies = lab / "notebooks"
    assert {p.name: p.read_bytes() for p in copies.glob("*.ipynb")} == committed
    # The copies find the data the notebooks read as ../data.
    assert (copies / ".." / "data" / "scripted_rules.yaml").is_file()
    # What a JupyterLab session (autosave) does to a copy stays in the copy, and survives the
    # next `make lab`; the committed notebooks never change.
    edited = copies / NOTEBOOKS[0].name
    edited.write_text('{"edited": "by a SmolLM2 kernel"}')
    _make("lab-copy", f"LAB_DIR={lab}")
    assert edited.read_text() == '{"edited": "by a SmolLM2 kernel"}'
    assert {p.name: p.read_bytes() for p in NOTEBOOKS} == committed
    _make("lab-reset", f"LAB_DIR={lab}")
    assert edited.read_bytes() == committed[NOTEBOOKS[0].name]


def test_jupyter_is_started_on_the_copies(tmp_path: Path) -> None:
    # -n prints the recipe without running it (nor the install step it depends on).
    lab = tmp_path / "lab"
    printed = _make("-n", "lab", f"LAB_DIR={lab}")
    jupyter = [line for line in printed.splitlines() if "jupyter lab" in line]
    assert jupyter and all(line.endswith(f"jupyter lab {lab}/notebooks") for line in jupyter)
