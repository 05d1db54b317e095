"""Peers for `make bench`: promptfoo (npm) and Inspect AI (PyPI), each in its own folder.

Both go under ``benchmarks/.peers`` (gitignored), never into the project's venv or node_modules:
promptfoo with the machine's npm into ``.peers/promptfoo``, inspect-ai (and the openai package its
OpenAI provider needs) into the venv ``.peers/inspect-venv``. Installed on first use, reused after.
When a peer cannot be installed (offline, no npm, a failing build) its function returns the reason
instead, and the benchmark prints a notice and skips it; nothing here is part of `make test`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

PEERS = Path(__file__).resolve().parent / ".peers"
INSTALL_TIMEOUT_S = 600.0


def promptfoo() -> tuple[list[str] | None, str]:
    """The command that runs promptfoo, installing it first if needed; else (None, why not)."""
    folder = PEERS / "promptfoo"
    binary = folder / "node_modules" / ".bin" / "promptfoo"
    if binary.exists():
        return [str(binary)], ""
    npm = shutil.which("npm")
    if npm is None or shutil.which("node") is None:
        return None, "promptfoo skipped: node/npm not found on this machine"
    folder.mkdir(parents=True, exist_ok=True)
    manifest = folder / "package.json"
    if not manifest.exists():
        manifest.write_text('{"private": true}\n')
    # An explicit version and cwd: a bare "promptfoo" next to a folder of that name is a path.
    spec = f"promptfoo@{_promptfoo_version()}"
    cmd = [npm, "install", "--prefix", str(folder), "--no-audit", "--no-fund", spec]
    why = _install(cmd, folder / "install.log", cwd=folder)
    if why or not binary.exists():
        return None, f"promptfoo skipped: `npm install promptfoo` failed ({why or 'no binary'})"
    return [str(binary)], ""


def _promptfoo_version() -> str:
    """promptfoo 0.122 on needs node >= 22.22; 0.121.x is the last that runs on node 20.20+."""
    try:
        out = subprocess.run(["node", "--version"], capture_output=True, text=True, timeout=30)
        major = int(out.stdout.strip().lstrip("v").split(".")[0])
    except (OSError, ValueError, subprocess.TimeoutExpired):
        return "latest"
    return "latest" if major >= 22 else "~0.121.0"


def inspect_ai() -> tuple[list[str] | None, str]:
    """The command that runs Inspect AI's CLI (its own venv), installing it first if needed."""
    venv = PEERS / "inspect-venv"
    binary = venv / "bin" / "inspect"
    if binary.exists():
        return [str(binary)], ""
    PEERS.mkdir(parents=True, exist_ok=True)
    # The base interpreter, not this venv's: the peer's packages must not see ours.
    base = getattr(sys, "_base_executable", sys.executable)
    why = _install([base, "-m", "venv", str(venv)], PEERS / "inspect-install.log")
    if not why:
        pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "inspect-ai", "openai"]
        why = _install(pip, PEERS / "inspect-install.log")
    if why or not binary.exists():
        return None, f"Inspect AI skipped: `pip install inspect-ai` failed ({why or 'no binary'})"
    return [str(binary)], ""


def _install(cmd: list[str], log: Path, cwd: Path | None = None) -> str:
    """Run an install command, its output to `log`; '' on success, else a one-line reason."""
    env = {
        **os.environ,
        "npm_config_update_notifier": "false",
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
    }
    try:
        with log.open("a") as out:
            proc = subprocess.run(
                cmd,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=cwd,
                timeout=INSTALL_TIMEOUT_S,
            )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"{type(exc).__name__}: {exc}"
    if proc.returncode != 0:
        lines = [line for line in log.read_text(errors="replace").splitlines() if line.strip()]
        return f"exit {proc.returncode}: {lines[-1][:160] if lines else 'no output'}; see {log}"
    return ""
