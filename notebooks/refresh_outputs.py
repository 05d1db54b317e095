"""Re-execute the notebooks in place, the way CI checks them, and store their outputs.

nbval compares each cell's outputs with the ones stored in the notebook, so the stored outputs
must come from the same setup CI uses: the scripted backend (``LLAMAKIT_BACKEND=scripted``) and
a kernel started in this folder. Run it after editing a notebook::

    .venv/bin/python notebooks/refresh_outputs.py [NOTEBOOK ...]

Widget state and cell timings are left out of the metadata: both change on every run.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient

HERE = Path(__file__).resolve().parent


def refresh(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb,
        timeout=300,
        kernel_name="python3",
        resources={"metadata": {"path": str(path.parent)}},
        store_widget_state=False,
        record_timing=False,  # per-cell timestamps would make every refresh a noisy diff
    )
    client.execute()
    nb.metadata.pop("widgets", None)
    for cell in nb.cells:
        cell.metadata.pop("execution", None)
    nbformat.write(nb, path)
    print(f"refreshed {path.relative_to(HERE.parent)}")


def main(argv: list[str]) -> None:
    os.environ["LLAMAKIT_BACKEND"] = "scripted"
    os.environ.pop("SEGMIND_API_KEY", None)
    os.environ.pop("SEGMIND_BASE_URL", None)
    paths = [Path(p).resolve() for p in argv] or sorted(HERE.glob("[0-9]*.ipynb"))
    for path in paths:
        refresh(path)


if __name__ == "__main__":
    main(sys.argv[1:])
