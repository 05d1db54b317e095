"""`make bench`: run every benchmark script in this folder and print ONE table of their figures.

Each script runs as a subprocess (its own interpreter, so one script's imports or threads cannot
skew another's timings), one after the other (never in parallel: they would compete for the same
cores). A script contributes rows by printing lines on stdout, in either of two forms.

A measured comparison (preferred): ``BENCH`` and one JSON object on one line::

    BENCH {"figure": "stand-in CPU per request", "value": 1.15, "unit": "ms",
           "floor": {"name": "bare Starlette", "value": 0.55}, "target": 2.0,
           "peers": {"promptfoo": null, "Inspect AI": null}, "note": "2000 requests"}

``figure`` (str) and ``value`` (number, llamakit's measurement) are required. ``floor`` is the
same figure measured side by side in the same run for the physical floor (bare httpx, bare
Starlette); ``peers`` maps a peer's name to its measurement of the same figure, or null when it
could not run (the table says "skipped"); ``target`` is the largest acceptable ratio to the floor
(the table marks a miss with "!"). The table shows each reference as a ratio, llamakit's value
divided by the reference's (below 1: llamakit is lower, i.e. faster or smaller when lower is
better), followed by the reference's own value. Rows from different scripts never depend on each
other, so scripts can be added without touching this file.

A plain figure (no reference): ``FIGURE <name>: <value> <unit> [(<note>)]``, e.g.
``FIGURE exact count throughput: 1.9e6 tokens/s (best of 5)``.

A script that prints neither is still shown: its last few lines of output, verbatim. The table
ends with the machine it ran on, because figures mean nothing without it. Notices (a peer that
could not be installed, ...) are lines ``NOTICE <text>``, listed under the table.

Usage: ``python benchmarks/run_all.py [--only SUBSTRING] [--timeout SECONDS] [--dir DIR]``.
Exit status 1 when any script failed or timed out (its output tail is shown in the table).
"""

from __future__ import annotations

import argparse
import json
import math
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
BENCH = re.compile(r"^BENCH\s+(?P<json>\{.*\})\s*$")
NOTICE = re.compile(r"^NOTICE\s+(?P<text>.+)$")
TAIL_LINES = 10  # shown verbatim for scripts without FIGURE lines, and for failures
DEFAULT_TIMEOUT_S = 900.0


@dataclass(frozen=True)
class Figure:
    name: str
    value: str
    unit: str = ""
    note: str = ""
    # Measured references of the same figure: (name, value or None when it could not run).
    floor: tuple[str, float] | None = None
    peers: tuple[tuple[str, float | None], ...] = ()
    target: float | None = None


@dataclass
class Result:
    script: str
    returncode: int | None  # None: timed out
    seconds: float
    figures: list[Figure] = field(default_factory=list)
    tail: list[str] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.returncode == 0


def parse_figures(stdout: str) -> list[Figure]:
    """The BENCH and FIGURE lines of a script's output, in order (malformed BENCH lines skipped)."""
    out = []
    for line in stdout.splitlines():
        line = line.strip()
        bench = BENCH.match(line)
        if bench:
            figure = _bench_figure(bench["json"])
            if figure is not None:
                out.append(figure)
            continue
        match = FIGURE.match(line)
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


def parse_notices(stdout: str) -> list[str]:
    return [m["text"].strip() for line in stdout.splitlines() if (m := NOTICE.match(line.strip()))]


def _number(raw: object) -> float | None:
    if isinstance(raw, bool) or not isinstance(raw, (int, float)) or not math.isfinite(raw):
        return None
    return float(raw)


def _bench_figure(text: str) -> Figure | None:
    try:
        row = json.loads(text)
    except ValueError:
        return None
    if not isinstance(row, dict) or not isinstance(row.get("figure"), str):
        return None
    value = _number(row.get("value"))
    if value is None:
        return None
    floor = row.get("floor")
    floor_pair = None
    if isinstance(floor, dict) and isinstance(floor.get("name"), str):
        floor_value = _number(floor.get("value"))
        if floor_value is not None:
            floor_pair = (floor["name"], floor_value)
    peers = row.get("peers")
    if not isinstance(peers, dict):
        peers = {}
    return Figure(
        name=row["figure"],
        value=f"{value:.4g}",
        unit=str(row.get("unit") or ""),
        note=str(row.get("note") or ""),
        floor=floor_pair,
        peers=tuple((str(k), _number(v)) for k, v in peers.items()),
        target=_number(row.get("target")),
    )


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
    notices = parse_notices(stdout)
    tail: list[str] = []
    if not figures or code != 0:
        lines = [line for line in stdout.splitlines() if line.strip()]
        if code != 0:
            lines += [line for line in stderr.splitlines() if line.strip()]
        tail = lines[-TAIL_LINES:]
    return Result(path.name, code, seconds, figures, tail, notices)


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


def ratio_cell(value: str, reference: float | None, *, target: float | None = None) -> str:
    """``0.64x (1.8)``: llamakit's value over the reference's, then the reference's value."""
    if reference is None:
        return "skipped"
    mine = float(value)
    if reference == 0:
        return f"- ({reference:.4g})"
    ratio = mine / reference
    miss = "!" if target is not None and ratio > target else ""
    return f"{ratio:.2f}x{miss} ({reference:.4g})"


def render(results: Sequence[Result], info: dict[str, str]) -> str:
    """One table: a row per figure, with its ratio to the floor and to each peer when measured."""
    peer_names: list[str] = []
    for r in results:
        for fig in r.figures:
            peer_names += [name for name, _ in fig.peers if name not in peer_names]
    header = ["script", "figure", "llamakit", "unit", "vs floor", *(f"vs {p}" for p in peer_names)]
    header.append("note")
    rows: list[list[str]] = []
    for r in results:
        status = (
            "ok" if r.ok else ("TIMEOUT" if r.returncode is None else f"FAILED ({r.returncode})")
        )
        head = f"{r.script} [{status}, {r.seconds:.0f} s]"
        for i, fig in enumerate(r.figures):
            floor = "-"
            if fig.floor is not None:
                floor = fig.floor[0] + " " + ratio_cell(fig.value, fig.floor[1], target=fig.target)
            peers = dict(fig.peers)
            cells = [ratio_cell(fig.value, peers[p]) if p in peers else "-" for p in peer_names]
            note = fig.note + (f" [target <= {fig.target:g}x floor]" if fig.target else "")
            rows.append(
                [head if i == 0 else "", fig.name, fig.value, fig.unit, floor, *cells, note]
            )
        if not r.figures:
            rows.append([head, "(no figures; last lines of its output)"] + [""] * (len(header) - 2))
        for line in r.tail:
            rows.append(["", "  | " + line] + [""] * (len(header) - 2))
    widths = [
        min(max(len(header[i]), *(len(row[i]) for row in rows)) if rows else len(header[i]), 60)
        for i in range(len(header))
    ]

    def fmt(row: Sequence[str]) -> str:
        cells = [row[0].ljust(widths[0]), row[1].ljust(widths[1]), row[2].rjust(widths[2])]
        cells += [cell.ljust(widths[i]) for i, cell in enumerate(row[3:-1], start=3)]
        cells.append(row[-1])
        return "  ".join(cells).rstrip()

    lines = [fmt(header), "  ".join("-" * w for w in widths)]
    lines += [fmt(row) for row in rows]
    lines.append("")
    lines.append(
        "ratios: llamakit's value / the reference's (reference's own value in brackets); "
        "below 1 = llamakit lower; '!' = above the target"
    )
    notices = [f"{r.script}: {n}" for r in results for n in r.notices]
    lines += [f"notice: {n}" for n in notices]
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
