"""Fixtures of the client tests: mock-transport clients and private local servers."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from client_helpers import FAST, MOCK_KEY, MOCK_URL, Handler, routed

from llamakit.client import Client


@pytest.fixture
def mock_client() -> Iterator[Callable[..., Client]]:
    made: list[Client] = []

    def make(chat: Handler, **kw: Any) -> Client:
        kw.setdefault("retry_policy", FAST)
        kw.setdefault("check_context", False)
        transport = httpx.MockTransport(routed(chat))
        client = Client(MOCK_KEY, base_url=MOCK_URL, transport=transport, **kw)
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()


@pytest.fixture
def server() -> Iterator[Any]:
    """A private scripted server per test: faults and balances are the test's own."""
    import llamakit

    with llamakit.local_server(backend="scripted", credits=10.0) as srv:
        yield srv
