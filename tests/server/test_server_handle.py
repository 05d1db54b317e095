"""`local_server()`: starts on a free loopback port, shuts down cleanly, keeps the key out of sight."""

from __future__ import annotations

import socket
import threading

import httpx
import pytest

import llamakit
from llamakit.server import local_server

from .server_helpers import CHAT, chat_body, http


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def test_start_and_clean_shutdown_leaves_no_threads_or_ports():
    before = set(threading.enumerate())
    with llamakit.local_server(backend="scripted") as srv:
        assert srv.url.startswith("http://127.0.0.1:")
        assert srv.backend == "scripted"
        assert srv.api_key.startswith("SG_local_")
        with http(srv) as c:
            assert c.post(CHAT, json=chat_body()).status_code == 200
        port = srv.port
        assert not _port_is_free(port)
    assert set(threading.enumerate()) - before == set()
    assert _port_is_free(port)
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{port}/v1/get-user-credits", timeout=1)


def test_close_is_idempotent_and_shuts_down_with_jobs_in_flight():
    srv = local_server(backend="scripted", latency_ms=5000)
    with http(srv) as c:
        job = c.post("/v2/llama-v3-8b-instruct", json=chat_body()).json()
        assert job["status"] == "QUEUED"
    srv.close()
    srv.close()
    assert not srv._thread.is_alive()


def test_explicit_key_port_and_repr_hides_the_key():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with local_server(backend="scripted", api_key="SG_secret_123", port=port, credits=2.5) as srv:
        assert srv.port == port and srv.api_key == "SG_secret_123"
        assert "SG_secret_123" not in repr(srv)
        assert srv.balance() == 2.5
        with pytest.raises(KeyError):
            srv.balance("SG_not_mine")
        srv.add_key("SG_added", 0.1)
        with http(srv, key="SG_added") as c:
            assert c.get("/v1/get-user-credits").json()["credits"] == 0.1


def test_bad_arguments_fail_fast():
    with pytest.raises(ValueError, match="unknown fault"):
        local_server(backend="scripted", not_a_fault=1)
    with pytest.raises(ValueError, match="backend"):
        local_server(backend="gpt")
    with pytest.raises(ValueError, match="upstream_url"):
        local_server(backend="upstream")
    with pytest.raises(llamakit.ValidationError, match="cannot be read"):
        local_server(backend="scripted", rules="/no/such/rules.yaml")
    with pytest.raises(ValueError, match="rpm"):
        local_server(backend="scripted", rpm=0)


def test_a_backend_that_cannot_start_is_reported(monkeypatch):
    from llamakit.server.backends.scripted import ScriptedBackend

    async def broken_start(self):
        raise OSError("model file unreadable")

    monkeypatch.setattr(ScriptedBackend, "start", broken_start)
    before = set(threading.enumerate())
    with pytest.raises(RuntimeError, match="failed to start"):
        local_server(backend="scripted")
    assert set(threading.enumerate()) - before == set()


def test_default_backend_is_chosen_by_what_is_installed():
    from llamakit.server.backends import default_backend

    assert default_backend() in ("smollm2", "scripted")


def test_client_method_builds_a_llamakit_client(shared):
    client = shared.client()
    try:
        assert client.base_url.rstrip("/") == shared.url + "/v1"
        assert client.chat("What is 2 + 2?").text == "2 + 2 = 4"
    finally:
        client.close()


def test_async_client_method_builds_a_llamakit_async_client(shared):
    import asyncio

    async def use() -> str:
        async with shared.async_client() as client:
            return (await client.chat("What is 3 + 4?")).text

    assert asyncio.run(use()) == "3 + 4 = 7"


def test_a_busy_port_is_an_error(shared):
    with pytest.raises(OSError):
        local_server(backend="scripted", port=shared.port)
