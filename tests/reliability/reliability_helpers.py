"""Shared by the reliability tests (imported by module name: this folder is on sys.path)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections import Counter
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx

# How many inputs each fuzz target sent (issue 6's closing note reports the count).
FUZZED: Counter[str] = Counter()
# One line per long test (soak, restart): what was injected and survived, printed at the end.
SUMMARY: dict[str, str] = {}


# -- a `llamakit serve` subprocess -----------------------------------------------------------------


class ServeProcess:
    """`python -m llamakit.cli serve ...` in a subprocess: its URL, admin calls, stop/kill."""

    def __init__(self, key: str, *args: str, port: int = 0, log: Path | None = None) -> None:
        self.key = key
        cmd = [sys.executable, "-m", "llamakit.cli", "serve", "--backend", "scripted"]
        cmd += ["--port", str(port), "--api-key", key, *args]
        self._log = open(log, "ab") if log is not None else None  # noqa: SIM115
        self.proc = subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE,
            stderr=self._log or subprocess.DEVNULL,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        assert self.proc.stdout is not None
        first = self.proc.stdout.readline().decode()
        match = re.search(r"(http://127\.0\.0\.1:\d+)", first)
        if not match:
            self.proc.kill()
            raise RuntimeError(f"llamakit serve did not start: {first!r}")
        self.url = match.group(1)
        self.port = int(self.url.rsplit(":", 1)[1])
        self._wait_ready()

    def _wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.admin("GET", "/_llamakit/stats")
                return
            except httpx.TransportError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise
                time.sleep(0.05)

    def admin(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        r = httpx.request(
            method, self.url + path, json=body, headers={"x-api-key": self.key}, timeout=10
        )
        r.raise_for_status()
        return r.json()

    def stats(self) -> dict[str, Any]:
        return self.admin("GET", "/_llamakit/stats")

    def set_faults(self, **faults: Any) -> dict[str, Any]:
        return self.admin("POST", "/_llamakit/faults", faults)

    def balance(self) -> Decimal:
        """The ledger's balance, read exactly (the JSON number as a Decimal)."""
        r = httpx.get(
            self.url + "/v1/get-user-credits", headers={"x-api-key": self.key}, timeout=10
        )
        r.raise_for_status()
        return Decimal(str(json.loads(r.text, parse_float=Decimal, parse_int=Decimal)["credits"]))

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)  # beyond serve's own 15 s stop deadline
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        if self._log is not None:
            self._log.close()
