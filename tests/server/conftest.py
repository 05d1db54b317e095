"""Fixtures for the server tests: real servers on free ports, and plain httpx clients of them."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from llamakit.server import ServerHandle, local_server


@pytest.fixture
def make_server() -> Iterator[Callable[..., ServerHandle]]:
    """Start servers (scripted by default) that are closed at the end of the test."""
    started: list[ServerHandle] = []

    def make(**kw: Any) -> ServerHandle:
        kw.setdefault("backend", "scripted")
        srv = local_server(**kw)
        started.append(srv)
        return srv

    yield make
    for srv in started:
        srv.close()


@pytest.fixture(scope="module")
def shared() -> Iterator[ServerHandle]:
    """A scripted server with ample credits, for tests that do not depend on counts or faults."""
    with local_server(backend="scripted", credits=1000.0) as srv:
        yield srv
