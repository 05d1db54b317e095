"""Fixtures of the reliability suite: servers for fuzzing, and counters the suite reports."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from reliability_helpers import FUZZED, SUMMARY


@pytest.fixture
def fuzz_server() -> Iterator[object]:
    """A scripted server with credits that never run out, no faults, no RPM limit. One per test,
    so a failure in one fuzz target cannot cascade into the next."""
    import llamakit

    with llamakit.local_server(backend="scripted", credits=1e9) as srv:
        yield srv


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if FUZZED:
        total = sum(FUZZED.values())
        parts = ", ".join(f"{name} {n}" for name, n in sorted(FUZZED.items()))
        terminalreporter.write_line(f"reliability: {total} fuzzed inputs ({parts})")
    for name, line in SUMMARY.items():
        terminalreporter.write_line(f"reliability {name}: {line}")
