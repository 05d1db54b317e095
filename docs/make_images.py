"""Regenerate the README's pictures from what the project itself produced.

- chat-panel.png, compare-view.png: screenshots the browser test (tests/browser) saved in
  test-artifacts/browser/ while driving JupyterLab in headless Chromium;
- scores.png, credit-spend.png: drawn by llamakit.plots from the newest run in the store that
  `make run` wrote (./.llamakit/llamakit.db).

Run after `make test` and `make run`:  .venv/bin/python docs/make_images.py
"""

from __future__ import annotations

import shutil
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import llamakit as lk  # noqa: E402
from llamakit import plots  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
IMAGES = ROOT / "docs" / "images"


def main() -> None:
    IMAGES.mkdir(parents=True, exist_ok=True)
    for name in ("chat-panel.png", "compare-view.png"):
        shutil.copyfile(ROOT / "test-artifacts" / "browser" / name, IMAGES / name)
    store = lk.Store(ROOT / ".llamakit" / "llamakit.db")
    table = lk.runs(store=store)
    demo = table[table["name"] == "capitals-demo"].sort_values("started_at")
    run = lk.load_run(demo["run_id"].iloc[0], store=store)  # the first demo run made the calls
    for name, ax in (
        ("scores.png", plots.scores(run, "contains")),
        ("credit-spend.png", plots.credit_spend(table)),
    ):
        ax.figure.savefig(IMAGES / name, dpi=110, bbox_inches="tight")
    print(f"wrote {sorted(p.name for p in IMAGES.glob('*.png'))} to {IMAGES}")


if __name__ == "__main__":
    main()
