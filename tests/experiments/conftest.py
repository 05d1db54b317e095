"""Fixtures for the experiment tests: a fresh scripted server per test (helpers live in
exp_helpers.py)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

import llamakit as lk


@pytest.fixture
def server() -> Iterator[Any]:
    with lk.local_server(backend="scripted", credits=100.0, latency_ms=2) as srv:
        yield srv
