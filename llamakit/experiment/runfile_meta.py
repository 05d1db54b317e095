"""Reproducibility metadata written into every run file: what produced the run, and where."""

from __future__ import annotations

import platform
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

# Packages whose versions change what a run sends, scores or reports.
KEY_PACKAGES = ("httpx", "jinja2", "pandas", "numpy", "pyyaml", "tiktoken", "llama-cpp-python")


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def git_revision(folder: Path | None = None) -> str | None:
    """The commit checked out in the repository holding ``folder`` (default: the working
    directory), with "+dirty" when it has uncommitted changes; None outside a repository."""
    where = str(folder or Path.cwd())
    try:
        head = subprocess.run(
            ["git", "-C", where, "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
        if head.returncode != 0:
            return None
        dirty = subprocess.run(
            ["git", "-C", where, "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def reproducibility(config: dict[str, Any], model: str | None) -> dict[str, Any]:
    """llamakit and Python versions, key package versions, model and source, the dataset's
    content hash (sha256 of its canonical rows, first 16 hex digits, as in the run's config),
    the git revision of the working directory, the platform and when the file was written."""
    from .. import __version__

    return {
        "llamakit": __version__,
        "python": platform.python_version(),
        "implementation": sys.implementation.name,
        "packages": {p: v for p in KEY_PACKAGES if (v := _version(p)) is not None},
        "model": model,
        "source": config.get("source"),
        "dataset_sha256": config.get("dataset"),
        "git_revision": git_revision(),
        "platform": platform.platform(),
        "written_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
