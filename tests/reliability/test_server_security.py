"""Security properties of the local server (issue 6, item 5): it binds 127.0.0.1 unless told
otherwise, compares keys in constant time, caps body size, and requires a valid key on every route
(the admin routes under /_llamakit/ included)."""

from __future__ import annotations

import hmac
import inspect
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

import llamakit
from llamakit._defaults import LOCAL_HOST
from llamakit.server import auth
from llamakit.server.app import routes
from llamakit.server.config import MAX_BODY_BYTES, ServerConfig
from llamakit.server.serve_stop import STOP_DEADLINE_S

SLUG = "llama-v3-8b-instruct"
CHAT = {"messages": [{"role": "user", "content": "hello"}]}


@pytest.fixture
def server() -> Iterator[Any]:
    with llamakit.local_server(backend="scripted", credits=10.0) as srv:
        yield srv


# -- binding -------------------------------------------------------------------------------------


def _non_loopback_address() -> str | None:
    """An address of this machine other than loopback (UDP connect sends nothing)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("10.254.254.254", 1))
            address = s.getsockname()[0]
        except OSError:
            return None
    return None if address.startswith("127.") else address


def _refused(address: str, port: int) -> bool:
    try:
        with socket.create_connection((address, port), timeout=2):
            return False
    except OSError:
        return True


def test_local_server_binds_loopback_by_default(server: Any) -> None:
    assert LOCAL_HOST == "127.0.0.1"
    assert server.host == "127.0.0.1" and server.url.startswith("http://127.0.0.1:")
    other = _non_loopback_address()
    if other is None:
        pytest.skip("this machine has no non-loopback IPv4 address to probe")
    assert _refused(other, server.port), f"reachable on {other}:{server.port}"


def _start_cli_server() -> tuple[subprocess.Popen[str], str, int]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "llamakit.cli", "serve", "--backend", "scripted", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert proc.stdout is not None
    first = proc.stdout.readline()
    match = re.search(r"http://([\d.]+):(\d+)", first)
    if not match:
        proc.kill()
        pytest.fail(f"`llamakit serve` printed no address: {first!r}")
    return proc, match.group(1), int(match.group(2))


def _stop_cli_server(proc: subprocess.Popen[str], sig: int = signal.SIGTERM) -> str:
    """Send `sig`, then the process's whole output; fails (with that output) unless it exits 0.

    The server's own stop deadline (STOP_DEADLINE_S) dumps every thread's stack and exits 1 if
    its shutdown hangs, so a failure here shows where it hung.
    """
    proc.send_signal(sig)
    name = signal.Signals(sig).name
    try:
        out, _ = proc.communicate(timeout=STOP_DEADLINE_S + 15)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
        pytest.fail(f"`llamakit serve` outlived {name} by {STOP_DEADLINE_S + 15} s:\n{out}")
    assert proc.returncode == 0, f"exit status {proc.returncode} after {name}:\n{out}"
    return out


@pytest.mark.slow
def test_cli_serve_binds_loopback_by_default() -> None:
    """`llamakit serve` with no --host listens on 127.0.0.1 only."""
    proc, host, port = _start_cli_server()
    try:
        assert host == "127.0.0.1"
        # A 401 is an HTTP answer: the server is up (not just its socket listening).
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"http://{host}:{port}/_llamakit/stats", timeout=5)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "server never answered"
                time.sleep(0.05)
        other = _non_loopback_address()
        if other is not None:
            assert _refused(other, port), f"reachable on {other}:{port}"
    finally:
        _stop_cli_server(proc)


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
@pytest.mark.parametrize("delay_s", [0.0, 0.3], ids=["at-once", "mid-startup"])
def test_cli_serve_stops_on_a_signal_during_startup(sig: int, delay_s: float) -> None:
    """A stop signal the moment the address is printed, or while the app is still starting up
    (loading the tokenizer): the process exits with status 0, well within its stop deadline.
    CI once saw a SystemExit raised from the handler swallowed by a weakref callback, leaving the
    server running; 13 of 60 such stops hung under CPU load before the handler stopped raising."""
    proc, _, _ = _start_cli_server()
    time.sleep(delay_s)
    started = time.monotonic()
    _stop_cli_server(proc, sig)
    assert time.monotonic() - started < STOP_DEADLINE_S


def test_stop_deadline_dumps_stacks_and_exits_when_shutdown_hangs() -> None:
    """The watchdog armed on the first stop signal ends a hung process and says where it hung."""
    code = (
        "import threading, time\n"
        "import llamakit.server.serve_stop as serve\n"
        "serve.STOP_DEADLINE_S = 1\n"
        "serve.arm_stop_deadline()\n"
        "threading.Thread(target=time.sleep, args=(60,), name='stuck').start()\n"
    )
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=False
    )
    assert done.returncode == 1
    assert time.monotonic() - started < 20
    assert "Timeout (0:00:01)!" in done.stderr and "most recent call first" in done.stderr


# -- constant-time key comparison -----------------------------------------------------------------


def test_key_lookup_uses_hmac_compare_digest_for_every_key(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each key is compared with hmac.compare_digest, and every key is compared whatever matches:
    neither a key's bytes nor its position in the key ring can be learnt from timing."""
    source = inspect.getsource(auth.KeyRing.match)
    assert "compare_digest" in source
    assert not re.search(r"(candidate|presented)\s*(==|!=|in\b)", source), source
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(auth.hmac, "compare_digest", spy)
    ring = auth.KeyRing(["SG_first_0000", "SG_second_111", "SG_third_2222"])
    for presented, found in [
        ("SG_first_0000", True),  # matches the first key: still compared with all three
        ("SG_third_2222", True),
        ("SG_first_0001", False),  # one byte off
        ("SG_first", False),  # a prefix
        ("x" * 5000, False),
    ]:
        calls.clear()
        assert (ring.match(presented) is not None) is found
        assert len(calls) == 3, presented


def test_near_miss_keys_are_all_rejected(server: Any) -> None:
    key = server.api_key
    near = [
        key[:-1],
        key + "0",
        key[:-1] + ("0" if key[-1] != "0" else "1"),
        key.upper(),
        "x" + key,
        key + " x",
        key.encode().hex(),
        "",
    ]
    with httpx.Client(base_url=server.url, timeout=10) as http:
        for wrong in near:
            r = http.post(f"/v1/{SLUG}", json=CHAT, headers={"x-api-key": wrong})
            assert r.status_code == 401, (wrong, r.status_code)
            assert key not in r.text and (not wrong or wrong not in r.text)
        r = http.post(f"/v1/{SLUG}", json=CHAT, headers={"authorization": f"Bearer {key}x"})
        assert r.status_code == 401
        assert http.post(f"/v1/{SLUG}", json=CHAT, headers={"x-api-key": key}).status_code == 200
    assert server.stats()["billed_calls"] == 1


# -- a valid key on every route -------------------------------------------------------------------


def _every_route(server: Any) -> list[tuple[str, str]]:
    """(method, path) of every route the app serves, from its own routing table."""
    config = ServerConfig(keys={server.api_key: 1.0})
    out = []
    for route in routes(config):
        path = route.path.replace("{request_id}", "00000000-0000-0000-0000-000000000000")
        for method in sorted(route.methods or ()):
            if method != "HEAD":
                out.append((method, path))
    return out


def test_every_route_requires_a_valid_key(server: Any) -> None:
    table = _every_route(server)
    assert any(p.startswith("/_llamakit/") for _, p in table)  # the admin routes are covered
    assert len(table) >= 15
    headers_cases = [{}, {"x-api-key": "SG_wrong"}, {"authorization": "Bearer SG_wrong"}]
    before = server.stats()
    with httpx.Client(base_url=server.url, timeout=10) as http:
        for method, path in table:
            for headers in headers_cases:
                r = http.request(method, path, json=CHAT, headers=headers)
                assert r.status_code == 401, (method, path, headers, r.status_code, r.text)
                assert r.json()["error"]
    after = server.stats()
    assert after["billed_calls"] == before["billed_calls"]
    assert server.balance() == 10.0
    assert (
        server.faults["fail_rate"] == 0.0
    )  # an unauthenticated POST /_llamakit/faults did nothing


def test_a_key_cannot_read_another_keys_v2_results(server: Any) -> None:
    server.add_key("SG_other_key_123", credits=1.0)
    with httpx.Client(base_url=server.url, timeout=10) as http:
        submitted = http.post(f"/v2/{SLUG}", json=CHAT, headers={"x-api-key": server.api_key})
        assert submitted.status_code == 200, submitted.text
        rid = submitted.json()["request_id"]
        for path in (f"/v2/requests/{rid}/status", f"/v2/requests/{rid}", f"/v1/requests/{rid}"):
            r = http.get(path, headers={"x-api-key": "SG_other_key_123"})
            assert r.status_code == 404, (path, r.status_code)
            assert http.get(path, headers={"x-api-key": server.api_key}).status_code in (200, 422)


# -- body size cap --------------------------------------------------------------------------------


def test_body_cap_applies_to_streamed_bodies_without_content_length(server: Any) -> None:
    """A chunked upload larger than the cap is answered 413 (not buffered whole, not a 500)."""
    chunk = b"a" * 65536
    total = 4 * MAX_BODY_BYTES

    def body() -> Iterator[bytes]:
        yield b'{"messages":[{"role":"user","content":"'
        for _ in range(total // len(chunk)):
            yield chunk
        yield b'"}]}'

    with httpx.Client(base_url=server.url, timeout=30) as http:
        r = http.post(f"/v1/{SLUG}", content=body(), headers={"x-api-key": server.api_key})
        assert r.status_code == 413, r.text[:200]
        assert str(MAX_BODY_BYTES) in r.json()["error"]
        # The admin routes have the same cap.
        r = http.post("/_llamakit/faults", content=body(), headers={"x-api-key": server.api_key})
        assert r.status_code == 413
        assert (
            http.post(f"/v1/{SLUG}", json=CHAT, headers={"x-api-key": server.api_key}).status_code
            == 200
        )
    assert server.stats()["billed_calls"] == 1


def test_a_body_far_beyond_the_drain_limit_does_not_hang_or_crash(server: Any) -> None:
    """Past the drain limit the server answers 413 and closes; the client sees 413 or a reset."""
    chunk = b"b" * (1 << 20)

    def body() -> Iterator[bytes]:
        for _ in range(80):  # 80 MiB, above the 64 MiB drain limit
            yield chunk

    with httpx.Client(base_url=server.url, timeout=30) as http:
        try:
            r = http.post(f"/v1/{SLUG}", content=body(), headers={"x-api-key": server.api_key})
            assert r.status_code == 413
        except (httpx.RemoteProtocolError, httpx.WriteError, httpx.ReadError):
            pass  # the server closed the connection after its 413, mid-upload
        assert (
            http.post(f"/v1/{SLUG}", json=CHAT, headers={"x-api-key": server.api_key}).status_code
            == 200
        )
    assert "500" not in server.stats()["requests"]
