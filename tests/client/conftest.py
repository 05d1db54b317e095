"""Fixtures of the client tests: mock-transport clients and private local servers."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

import httpx
import pytest
from client_helpers import FAST, MOCK_KEY, MOCK_URL, Handler, routed

from llamakit.client.client import Client


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


class KeyedServer:
    """The module's shared server seen through a key of the test's own: its own balance and its
    own stats (the server counts per key), so tests neither wait for a server start each nor see
    each other's traffic. Faults are server-wide: the fixture resets them before each test."""

    def __init__(self, srv: Any, key: str) -> None:
        self._srv, self.api_key = srv, key
        self.url, self.backend = srv.url, srv.backend

    def client(self, **kw: Any) -> Any:
        return self._srv.client(api_key=kw.pop("api_key", self.api_key), **kw)

    def async_client(self, **kw: Any) -> Any:
        return self._srv.async_client(api_key=kw.pop("api_key", self.api_key), **kw)

    def stats(self) -> dict[str, Any]:
        empty = {"requests": {}, "billed_calls": 0, "credits_spent": "0", "dropped": 0}
        return self._srv.stats()["per_key"].get(self._srv.key_label(self.api_key), empty)

    def set_faults(self, **faults: Any) -> None:
        self._srv.set_faults(**faults)

    def set_credits(self, amount: float) -> None:
        self._srv.set_credits(amount, api_key=self.api_key)

    def balance(self) -> Decimal:
        return self._srv.balance(api_key=self.api_key)


@pytest.fixture(scope="module")
def shared_server() -> Iterator[Any]:
    import llamakit

    with llamakit.local_server(backend="scripted", credits=10.0) as srv:
        yield srv


@pytest.fixture
def server(shared_server: Any) -> KeyedServer:
    from llamakit.server.faults import FaultSettings

    shared_server.set_faults(**FaultSettings().as_dict())
    key = "SG_test_" + uuid.uuid4().hex[:16]
    shared_server.add_key(key, 10.0)
    return KeyedServer(shared_server, key)
