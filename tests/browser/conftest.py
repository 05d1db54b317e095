"""JupyterLab in a subprocess and headless Chromium driven by Playwright, for end-to-end widget tests.

The lab runs on 127.0.0.1 with a random token on a free port, in a temporary root holding copies of
`notebooks/` and `data/`, with its own Jupyter config/data/settings dirs so nothing from the user's
machine (kernels, settings, workspaces) leaks in. Teardown shuts it down through the REST API, then
kills whatever is left of its process tree, and fails if anything had to be killed.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts" / "browser"
CHROMIUM = Path(os.environ.get("LLAMAKIT_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
# Every process the lab starts (the server, its kernels, anything a kernel spawns) inherits this
# variable, which is how teardown finds leftovers: kernels run in their own sessions, so killing the
# lab's process group alone would miss them.
MARKER_VAR = "LLAMAKIT_BROWSER_TEST_RUN"
# Per-user lab settings: render every cell (the default windowing skips off-screen cells, which would
# hide prompts and outputs from the DOM), and never fetch news or show toasts over the widgets.
LAB_SETTINGS = {
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {
        "fetchNews": "false",
        "checkForUpdates": False,
        "doNotDisturbMode": True,
    },
}
STARTUP_TIMEOUT_S = 60.0
SHUTDOWN_TIMEOUT_S = 20.0
# Playwright's default for actions and `expect`: JupyterLab round trips take well under a second,
# but a loaded 2-core CI machine is slow.
ACTION_TIMEOUT_MS = 30_000


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _pids_with_marker(marker: str) -> list[int]:
    """Live processes whose environment carries `MARKER_VAR=marker` (read from /proc)."""
    needle = f"{MARKER_VAR}={marker}".encode()
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z" and needle in environ.split(b"\0"):
            pids.append(int(entry.name))
    return pids


@dataclass
class JupyterLab:
    """A running JupyterLab server; `url` has no trailing slash, `root` is its root_dir."""

    url: str
    token: str
    root: Path
    log_path: Path
    process: subprocess.Popen[bytes]
    marker: str
    leftovers: list[int] = field(default_factory=list)

    def api(self, method: str, path: str, **kw: Any) -> Any:
        import httpx

        headers = {"Authorization": f"token {self.token}"}
        return httpx.request(method, f"{self.url}{path}", headers=headers, timeout=10, **kw)

    def lab_url(self, path: str) -> str:
        # `reset` ignores any saved workspace, so every page starts with one document open.
        return f"{self.url}/lab/tree/{path}?reset&token={self.token}"

    def log_tail(self, lines: int = 40) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def wait_until_ready(self) -> None:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"JupyterLab exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                if self.api("GET", "/api/status").status_code == 200:
                    return
            except Exception:  # not listening yet
                pass
            time.sleep(0.2)
        pytest.fail(
            f"JupyterLab did not answer /api/status in {STARTUP_TIMEOUT_S}s:\n{self.log_tail()}"
        )

    def shutdown_kernels(self) -> None:
        """End every notebook session, so the next test starts its notebook on a fresh kernel."""
        for session in self.api("GET", "/api/sessions").json():
            self.api("DELETE", f"/api/sessions/{session['id']}")

    def shutdown(self) -> None:
        """Clean shutdown via the API (which also shuts the kernels down), then kill what is left."""
        if self.process.poll() is None:
            with contextlib.suppress(Exception):
                self.api("POST", "/api/shutdown")
            try:
                self.process.wait(timeout=SHUTDOWN_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.leftovers.append(self.process.pid)
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGTERM)
                try:
                    self.process.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(self.process.pid, signal.SIGKILL)
                    self.process.wait(timeout=5)
        # Kernels exit just after the server answers; give them a moment before calling them leftovers.
        deadline = time.monotonic() + 10
        while (pids := _pids_with_marker(self.marker)) and time.monotonic() < deadline:
            time.sleep(0.2)
        for pid in pids:
            self.leftovers.append(pid)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def _lab_env(tmp: Path, marker: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SEGMIND_", "JUPYTER"))}
    jupyter = tmp / "jupyter"
    env.update(
        {
            MARKER_VAR: marker,
            "LLAMAKIT_HOME": str(tmp / "llamakit-home"),
            # The scripted backend: instant, deterministic replies (the real model is not under test).
            "LLAMAKIT_BACKEND": "scripted",
            "MPLBACKEND": "Agg",
            "PYTHONUNBUFFERED": "1",
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
            "JUPYTER_CONFIG_DIR": str(jupyter / "config"),
            "JUPYTER_DATA_DIR": str(jupyter / "data"),
            "JUPYTER_RUNTIME_DIR": str(jupyter / "runtime"),
            "JUPYTERLAB_SETTINGS_DIR": str(jupyter / "lab-settings"),
            "JUPYTERLAB_WORKSPACES_DIR": str(jupyter / "lab-workspaces"),
            "JUPYTER_PLATFORM_DIRS": "1",
            "IPYTHONDIR": str(jupyter / "ipython"),
        }
    )
    for rel, settings in LAB_SETTINGS.items():
        path = jupyter / "lab-settings" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(settings))
    return env


# Package scope: the lab lives while tests/browser runs, and is shut down (and checked) right after.
@pytest.fixture(scope="package")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[JupyterLab]:
    """One JupyterLab for the browser tests, rooted in a scratch copy of notebooks/ and data/."""
    tmp = tmp_path_factory.mktemp("lab")
    root = tmp / "root"
    root.mkdir()
    for name in ("notebooks", "data"):
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, root / name, ignore=shutil.ignore_patterns(".*"))
    token, port, marker = secrets.token_hex(16), _free_port(), uuid.uuid4().hex
    log_path = tmp / "jupyterlab.log"
    cmd = [
        sys.executable,
        "-m",
        "jupyterlab",
        "--no-browser",
        "--allow-root",  # CI containers run as root; a no-op otherwise
        "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.port={port}",
        "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={root}",
        "--LabApp.news_url=None",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
    ]
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            cmd,
            cwd=root,
            env=_lab_env(tmp, marker),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = JupyterLab(f"http://127.0.0.1:{port}", token, root, log_path, process, marker)
    try:
        server.wait_until_ready()
        yield server
    finally:
        server.shutdown()
    if server.leftovers:
        pytest.fail(
            f"JupyterLab did not shut down cleanly; killed pids {server.leftovers}\n{server.log_tail()}"
        )


@pytest.fixture(scope="package")
def browser() -> Iterator[Any]:
    """Debian's Chromium under Playwright. Missing Chromium is a failure, never a skip."""
    if not CHROMIUM.exists():
        pytest.fail(
            f"Chromium not found at {CHROMIUM}: the browser test needs Debian's `chromium` package "
            "(`make browser-deps`, or `apt-get update && apt-get install -y chromium`)."
        )
    try:
        from playwright.sync_api import expect, sync_playwright
    except ImportError as exc:
        pytest.fail(f"Python playwright is not installed (dev extra): {exc}")
    expect.set_options(timeout=ACTION_TIMEOUT_MS)
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(request: pytest.FixtureRequest, browser: Any, lab: JupyterLab) -> Iterator[Any]:
    """A fresh browser context per test; on failure, a full-page screenshot, the page's JavaScript
    errors and the lab's log tail, so a red CI run can be read without rerunning it."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(ACTION_TIMEOUT_MS)
    page = context.new_page()
    js_errors: list[str] = []
    page.on("pageerror", lambda exc: js_errors.append(str(exc)))
    try:
        yield page
    finally:
        report = getattr(request.node, "rep_call", None)
        if report is not None and report.failed:
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            shot = ARTIFACTS / f"failure-{request.node.name}.png"
            with contextlib.suppress(Exception):
                page.screenshot(path=str(shot), full_page=True)
            print(f"screenshot: {shot}\nJavaScript errors: {js_errors or 'none'}")
            print(f"JupyterLab log tail:\n{lab.log_tail()}")
        context.close()
        lab.shutdown_kernels()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    # Lets fixtures see in teardown whether the test body failed.
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


# JupyterLab 4 DOM facts the driver relies on (checked against JupyterLab 4.6):
# - the notebook toolbar shows the kernel name in `.jp-Toolbar-kernelName` and the kernel state in
#   `[data-status]` ("idle" also appears before any kernel exists, hence the name check);
# - menu entries are `.lm-Menu-item[data-command=...]`; prompts are `.jp-InputPrompt` "[ ]:", "[*]:",
#   "[3]:"; tracebacks render as `application/vnd.jupyter.stderr` outputs.
_KERNEL_READY_JS = """() => {
  const tb = document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-NotebookPanel-toolbar');
  const name = tb && tb.querySelector('.jp-Toolbar-kernelName');
  const status = tb && tb.querySelector('[data-status]');
  return !!(name && /python/i.test(name.textContent) && status
            && status.getAttribute('data-status') === 'idle');
}"""
_RUN_SETTLED_JS = """() => {
  const prompts = [...document.querySelectorAll('.jp-CodeCell .jp-InputPrompt')]
    .map(p => p.textContent);
  return prompts.some(t => /\\[\\d+\\]/.test(t)) && !prompts.some(t => t.includes('*'));
}"""
_CELL_STATE_JS = """() => [...document.querySelectorAll('.jp-CodeCell')].map(cell => ({
  prompt: cell.querySelector('.jp-InputPrompt')?.textContent ?? '',
  errors: [...cell.querySelectorAll(
    '.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]')]
    .map(e => e.innerText).filter(t => /Traceback|^\\w+(Error|Exception)\\b/m.test(t)),
}))"""


class NotebookPage:
    """A person's actions on one notebook in JupyterLab: open it, run it all, look for errors."""

    def __init__(self, page: Any, lab: JupyterLab) -> None:
        self.page = page
        self.lab = lab

    def open(self, path: str, *, timeout_s: float = 90) -> None:
        self.page.goto(self.lab.lab_url(path))
        self.page.wait_for_function(_KERNEL_READY_JS, timeout=timeout_s * 1000)

    def menu(self, menu: str, command: str) -> None:
        self.page.get_by_role("menuitem", name=menu, exact=True).click()
        self.page.locator(f'.lm-Menu-item[data-command="{command}"]').click()

    def run_all(self, *, timeout_s: float = 120) -> None:
        """Clear stored outputs (so stale prompts cannot pass for fresh ones), run every cell, and
        fail with the traceback if a cell raised."""
        self.menu("Edit", "editmenu:clear-all")
        self.menu("Run", "runmenu:run-all")
        self.page.wait_for_function(_RUN_SETTLED_JS, timeout=timeout_s * 1000)
        cells = self.page.evaluate(_CELL_STATE_JS)
        errors = [err for cell in cells for err in cell["errors"]]
        not_run = [i for i, cell in enumerate(cells) if not re.search(r"\[\d+\]", cell["prompt"])]
        if errors or not_run:
            detail = "\n\n".join(errors) or "(no traceback shown)"
            pytest.fail(f"Run All did not complete; cells not run: {not_run}\n{detail}")


@pytest.fixture
def notebook(page: Any, lab: JupyterLab) -> NotebookPage:
    return NotebookPage(page, lab)
