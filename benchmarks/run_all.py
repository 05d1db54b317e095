"""`make bench`: run every benchmark script in this folder and print one table of their figures.

Each script runs as a subprocess (its own interpreter, so one script's imports or threads cannot
skew another's timings), one after the other (never in parallel: they would compete for the same
cores). A script reports a figure by printing a line of this form on stdout:

    FIGURE <name>: <value> <unit> [(<note>)]

e.g. ``FIGURE exact count throughput: 1.9e6 tokens/s (best of 5)`` or
``FIGURE async vs sync speed-up: 3.8 x (64 calls, concurrency 16)``. A script that prints no
FIGURE line is still shown: its last few lines of output, verbatim. The table ends with the machine
it ran on, because figures mean nothing without it.

Usage: ``python benchmarks/run_all.py [--only SUBSTRING] [--timeout SECONDS] [--dir DIR]``.
Exit status 1 when any script failed or timed out (its output tail is shown in the table).
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
FIGURE = re.compile(
    r"^FIGURE\s+(?P<name>[^:]+?):\s+(?P<value>\S+)"
    r"(?:\s+(?P<unit>[^()]*?))?\s*(?:\((?P<note>.*)\))?\s*$"
)
TAIL_LINES = 10  # shown verbatim for scripts without FIGURE lines, and for failures
DEFAULT_TIMEOUT_S = 900.0


@dataclass(frozen=True)
class Figure:
    name: str
    value: str
    unit: str = ""
    note: str = ""


@dataclass
class Result:
    script: str
    returncode: int | None  # None: timed out
    seconds: float
    figures: list[Figure] = field(default_factory=list)
    tail: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.returncode == 0


def parse_figures(stdout: str) -> list[Figure]:
    """The FIGURE lines of a script's output, in order."""
    out = []
    for line in stdout.splitlines():
        match = FIGURE.match(line.strip())
        if match:
            out.append(
                Figure(
                    name=match["name"].strip(),
                    value=match["value"],
                    unit=(match["unit"] or "").strip(),
                    note=(match["note"] or "").strip(),
                )
            )
    return out


def discover(folder: Path, only: str | None = None) -> list[Path]:
    """Every benchmark script: *.py in `folder` except this runner and private `_helpers.py`."""
    scripts = [
        p
        for p in sorted(folder.glob("*.py"))
        if p.name != Path(__file__).name and not p.name.startswith("_")
    ]
    return [p for p in scripts if only is None or only in p.name]


def run_script(path: Path, timeout: float) -> Result:
    env = {**os.environ, "MPLBACKEND": "Agg", "PYTHONUNBUFFERED": "1"}
    started = time.perf_counter()
    try:
        proc = subprocess.run(
            [sys.executable, str(path)],
            cwd=HERE.parent,  # the repo root, as under `make bench`
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        code: int | None = proc.returncode
        stdout, stderr = proc.stdout, proc.stderr
    except subprocess.TimeoutExpired as exc:
        code = None
        stdout = _text(exc.stdout)
        stderr = _text(exc.stderr) + f"\n(timed out after {timeout:g} s)"
    seconds = time.perf_counter() - started
    figures = parse_figures(stdout)
    tail: list[str] = []
    if not figures or code != 0:
        lines = [line for line in stdout.splitlines() if line.strip()]
        if code != 0:
            lines += [line for line in stderr.splitlines() if line.strip()]
        tail = lines[-TAIL_LINES:]
    return Result(path.name, code, seconds, figures, tail)


def _text(raw: bytes | str | None) -> str:
    if raw is None:
        return ""
    return raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw


# -- the machine -------------------------------------------------------------------------------


def machine() -> dict[str, str]:
    """CPU model, cores, RAM, Python and OS of this machine (Linux /proc first, then stdlib)."""
    cpu = _cpuinfo_model() or platform.processor() or platform.machine() or "unknown"
    logical = os.cpu_count() or 0
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else logical
    cores = f"{logical} logical" + (
        f" ({usable} usable by this process)" if usable != logical else ""
    )
    ram = _ram_bytes()
    return {
        "cpu": cpu,
        "cores": cores,
        "ram": f"{ram / 2**30:.1f} GiB" if ram else "unknown",
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "os": platform.platform(),
    }


def _cpuinfo_model() -> str | None:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("model name", "Processor", "cpu model") and value.strip():
            return " ".join(value.split())
    return None


def _ram_bytes() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


# -- the table ---------------------------------------------------------------------------------


def render(results: Sequence[Result], info: dict[str, str]) -> str:
    rows: list[tuple[str, str, str, str, str]] = []
    for r in results:
        status = (
            "ok" if r.ok else ("TIMEOUT" if r.returncode is None else f"FAILED ({r.returncode})")
        )
        head = f"{r.script} [{status}, {r.seconds:.1f} s]"
        for i, fig in enumerate(r.figures):
            rows.append((head if i == 0 else "", fig.name, fig.value, fig.unit, fig.note))
        if not r.figures:
            rows.append((head, "(no FIGURE lines; last lines of its output)", "", "", ""))
        for line in r.tail:
            rows.append(("", "  | " + line, "", "", ""))
    header = ("script", "figure", "value", "unit", "note")
    widths = [
        max(len(header[i]), *(len(row[i]) for row in rows)) if rows else len(header[i])
        for i in range(5)
    ]
    widths = [min(w, 70) for w in widths]

    def fmt(row: Sequence[str]) -> str:
        cells = [row[0].ljust(widths[0]), row[1].ljust(widths[1]), row[2].rjust(widths[2])]
        cells += [row[3].ljust(widths[3]), row[4]]
        return "  ".join(cells).rstrip()

    lines = [fmt(header), "  ".join("-" * w for w in widths)]
    lines += [fmt(row) for row in rows]
    lines.append("")
    lines.append("machine: " + "; ".join(f"{k} {v}" for k, v in info.items()))
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, default=HERE, help="folder of benchmark scripts")
    parser.add_argument("--only", default=None, help="run only scripts whose name contains this")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S, help="per script, s")
    args = parser.parse_args(argv)
    scripts = discover(args.dir, args.only)
    if not scripts:
        print(f"no benchmark scripts in {args.dir}", file=sys.stderr)
        return 1
    results = []
    for path in scripts:
        # Progress goes to stderr so stdout is exactly the table.
        print(f"running {path.name} ...", file=sys.stderr, flush=True)
        results.append(run_script(path, args.timeout))
    print(render(results, machine()))
    return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
