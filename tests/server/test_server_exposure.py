"""The server exposed (issue 12, point 7): slow-header clients, greedy clients, and admin routes that
no key can use to touch another key's state. Real sockets on loopback; the attacker connects from
127.0.0.2 (the whole 127/8 is loopback on Linux) so the per-address cap can tell it apart."""

from __future__ import annotations

import os
import re
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import closing
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

from llamakit.server import ConnectionGuard

from .server_helpers import CHAT, chat_body, http, ssl_context

ATTACKER = "127.0.0.2"


# -- a `llamakit serve` subprocess (so the attack and the timed client do not share its GIL) ---------


class Serve:
    def __init__(self, *args: str, home: Path, env: dict[str, str] | None = None) -> None:
        cmd = [sys.executable, "-m", "llamakit.cli", "serve", "--backend", "scripted"]
        self.proc = subprocess.Popen(
            [*cmd, "--port", "0", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "LLAMAKIT_HOME": str(home), **(env or {})},
        )
        assert self.proc.stdout is not None
        self.banner = [self.proc.stdout.readline()]
        match = re.search(r"http://127\.0\.0\.1:(\d+)", self.banner[0])
        assert match, self.banner[0] + self._stderr()
        self.port = int(match.group(1))
        self.url = f"http://127.0.0.1:{self.port}"

    def _stderr(self) -> str:
        self.proc.kill()
        return self.proc.communicate(timeout=10)[1]

    def wait_up(self, key: str) -> httpx.Client:
        client = httpx.Client(
            base_url=self.url, headers={"x-api-key": key}, verify=ssl_context(), timeout=10
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                client.get("/v1/get-user-credits")
                return client
            except httpx.TransportError:
                assert time.monotonic() < deadline, "server did not come up"
                time.sleep(0.05)

    def stop(self) -> str:
        self.proc.terminate()
        try:
            _, err = self.proc.communicate(timeout=30)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
        return err


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[type[Serve]]:
    started: list[Serve] = []

    class Tracked(Serve):
        def __init__(self, *args: str, env: dict[str, str] | None = None) -> None:
            super().__init__(*args, home=tmp_path, env=env)
            started.append(self)

    yield Tracked
    for s in started:
        if s.proc.poll() is None:
            s.stop()


# -- slow headers ---------------------------------------------------------------------------------


class SlowHeaderAttack:
    """`n` connections from ATTACKER, each sending a request line and then one header byte every
    `tick_s`; a connection the server closes is replaced until `stop()`. Records, per connection,
    how long it lived and what the server said when it ended it."""

    def __init__(self, port: int, n: int, tick_s: float = 0.5) -> None:
        self.port, self.n, self.tick_s = port, n, tick_s
        self.lifetimes: list[float] = []  # connections the server closed while we kept trickling
        self.answers: list[bytes] = []
        self.refused = 0  # closed at once with a 503 (the per-address cap)
        self.opened = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> SlowHeaderAttack:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _connect(self) -> tuple[socket.socket, float]:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.bind((ATTACKER, 0))
        s.settimeout(5)
        s.connect(("127.0.0.1", self.port))
        s.sendall(b"POST /v1/llama-v3-8b-instruct HTTP/1.1\r\nHost: x\r\n")
        s.setblocking(False)
        self.opened += 1
        return s, time.monotonic()

    def _run(self) -> None:
        conns = [self._connect() for _ in range(self.n)]
        try:
            while not self._stop.wait(self.tick_s):
                for i, (s, born) in enumerate(conns):
                    ended = self._poll(s)
                    if ended is None:
                        continue
                    s.close()
                    if ended.startswith(b"HTTP/1.1 503"):
                        self.refused += 1
                    else:
                        self.lifetimes.append(time.monotonic() - born)
                        self.answers.append(ended)
                    conns[i] = self._connect()
        finally:
            for s, _ in conns:
                s.close()

    def _poll(self, s: socket.socket) -> bytes | None:
        """None while the server keeps the connection open; else what it sent before closing."""
        try:
            data = s.recv(4096)
        except BlockingIOError:
            try:
                s.send(b"X")  # one more byte of a header name that never ends
            except OSError:
                return b""
            return None
        except OSError:
            return b""
        return data or b""


def _timed_calls(client: httpx.Client, seconds: float) -> list[float]:
    out: list[float] = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        t = time.perf_counter()
        r = client.post(CHAT, json=chat_body("What is 2 + 2?", max_tokens=8))
        out.append(time.perf_counter() - t)
        assert r.status_code == 200, r.text
        time.sleep(0.05)
    return out


def _figures(latencies: list[float]) -> str:
    q = statistics.quantiles(latencies, n=20)
    return (
        f"n={len(latencies)} p50={statistics.median(latencies) * 1000:.1f} ms "
        f"p95={q[-1] * 1000:.1f} ms max={max(latencies) * 1000:.1f} ms"
    )


@pytest.mark.slow
def test_slow_header_clients_neither_stop_ordinary_clients_nor_outlive_the_header_timeout(serve):
    srv = serve(
        "--api-key",
        "SG_ordinary_client",
        "--credits",
        "100",
        "--header-timeout-s",
        "2",
        "--max-connections-per-client",
        "200",
    )
    with closing(srv.wait_up("SG_ordinary_client")) as client:
        before = _timed_calls(client, 1.0)
        with SlowHeaderAttack(srv.port, n=300) as attack:
            time.sleep(0.5)  # let the attack reach full size before timing
            during = _timed_calls(client, 5.0)
        after = _timed_calls(client, 1.0)
    print(
        f"\nslow-header attack: 300 connections from {ATTACKER}, one header byte per 0.5 s, "
        f"{attack.opened} opened in all\n  ordinary client before: {_figures(before)}"
        f"\n  during: {_figures(during)}\n  after:  {_figures(after)}"
        f"\n  attack connections closed by the header timeout: {len(attack.lifetimes)} "
        f"(longest lived {max(attack.lifetimes):.2f} s), refused by the per-address cap: "
        f"{attack.refused}"
    )
    # The ordinary client was served all along, without waiting on the attackers.
    assert max(during) < 2.0
    # Every attack connection that got in was closed near the 2 s header timeout, though it
    # never stopped sending; those beyond 200 from one address were refused at once.
    assert attack.lifetimes and max(attack.lifetimes) < 2.0 + 1.5
    assert all(a.startswith(b"HTTP/1.1 408") or a == b"" for a in attack.answers)
    assert any(b"did not arrive within 2 s" in a for a in attack.answers)
    assert attack.refused > 0
    # Recovered: the attacker's address is served normally again once it stops.
    with httpx.Client(
        transport=httpx.HTTPTransport(local_address=ATTACKER), verify=ssl_context()
    ) as again:
        r = again.post(
            srv.url + CHAT, json=chat_body(), headers={"x-api-key": "SG_ordinary_client"}
        )
        assert r.status_code == 200


def test_a_full_server_answers_503_and_recovers_when_idle_connections_time_out(make_server):
    guard = ConnectionGuard(header_timeout_s=1.0, max_connections=40)
    srv = make_server(guard=guard)
    idle = []
    for _ in range(45):
        s = socket.socket()
        s.bind((ATTACKER, 0))
        s.connect((srv.host, srv.port))
        idle.append(s)
    time.sleep(0.3)
    try:
        with http(srv) as c:
            # uvicorn's limit_concurrency: connections beyond the bound get a 503, not a hang.
            assert c.post(CHAT, json=chat_body()).status_code == 503
            time.sleep(1.5)  # the idle connections miss their header deadline and are closed
            assert c.post(CHAT, json=chat_body()).status_code == 200
        for s in idle:
            s.settimeout(2)
            assert s.recv(100) == b""  # closed quietly: nothing was ever sent on it
    finally:
        for s in idle:
            s.close()


def test_a_request_body_that_trickles_is_cut_off_with_a_408(make_server):
    srv = make_server(guard=ConnectionGuard(header_timeout_s=5, body_timeout_s=1.0))
    with socket.create_connection((srv.host, srv.port)) as s:
        s.sendall(
            f"POST {CHAT} HTTP/1.1\r\nHost: x\r\nx-api-key: {srv.api_key}\r\n"
            "content-type: application/json\r\ncontent-length: 1000\r\n\r\n{".encode()
        )
        start = time.monotonic()
        s.settimeout(5)
        answer = s.recv(4096)
        while time.monotonic() - start < 5:
            try:
                s.sendall(b" ")
            except OSError:
                break
            time.sleep(0.2)
    assert answer.startswith(b"HTTP/1.1 408") and b"request body" in answer
    assert time.monotonic() - start < 3
    assert srv.stats()["billed_calls"] == 0


def test_kept_alive_connections_still_serve_many_requests(make_server):
    # The head deadline restarts for each request on a connection, it does not accumulate.
    srv = make_server(guard=ConnectionGuard(header_timeout_s=0.5))
    with http(srv) as c:
        for _ in range(4):
            assert c.post(CHAT, json=chat_body()).status_code == 200
            time.sleep(0.3)


def test_an_oversized_request_head_is_refused_not_buffered(make_server):
    srv = make_server()
    with socket.create_connection((srv.host, srv.port)) as s:
        s.sendall(f"GET /v1/models HTTP/1.1\r\nHost: x\r\nx-pad: {'a' * 20_000}".encode())
        s.settimeout(5)
        answer = s.recv(4096)
    assert answer.startswith(b"HTTP/1.1 400")  # h11's 16 KiB bound on a request head
    with http(srv) as c:
        assert c.get("/v1/models").status_code == 200


def test_bad_connection_limits_are_refused():
    with pytest.raises(ValueError, match="header_timeout_s"):
        ConnectionGuard(header_timeout_s=0)
    with pytest.raises(ValueError, match="max_connections_per_client"):
        ConnectionGuard(max_connections_per_client=0)


# -- admin routes: scoped per key, or the admin key -------------------------------------------------


def test_a_key_can_neither_change_what_another_key_gets_nor_read_its_balance(make_server):
    srv = make_server(api_key="SG_alice", keys={"SG_bob": 3.0}, credits=2.0)
    bob_label = srv.key_label("SG_bob")
    with http(srv, "SG_alice") as alice, http(srv, "SG_bob") as bob:
        # Alice breaks her own calls only.
        assert alice.post("/_llamakit/faults", json={"fail_rate": 1.0}).status_code == 200
        assert alice.post(CHAT, json=chat_body()).status_code == 500
        assert bob.post(CHAT, json=chat_body()).status_code == 200
        assert bob.get("/_llamakit/faults").json()["fail_rate"] == 0.0
        # Her stats are hers: no other key's label, balance or counts.
        stats = alice.get("/_llamakit/stats").json()
        assert list(stats["per_key"]) == [srv.key_label("SG_alice")]
        assert bob_label not in str(stats) and "3.0" not in str(stats)
        assert stats["billed_calls"] == 0 and stats["requests"] == {"200": 1, "500": 1}
        # She may set her own balance, not Bob's.
        assert alice.post("/_llamakit/credits", json={"credits": 9}).json() == {"credits": 9.0}
        r = alice.post("/_llamakit/credits", json={"credits": 0, "key": bob_label})
        assert r.status_code == 403 and "own balance" in r.json()["error"]
    assert srv.balance("SG_bob") == Decimal("3") - Decimal("0.00063")
    assert srv.faults["fail_rate"] == 0.0  # the server-wide setting is untouched


def test_the_admin_key_sees_and_sets_every_key_and_nothing_else(make_server):
    srv = make_server(api_key="SG_alice", keys={"SG_bob": 3.0}, admin_key="SG_admin_only")
    bob_label = srv.key_label("SG_bob")
    with http(srv, "SG_admin_only") as admin, http(srv, "SG_bob") as bob:
        stats = admin.get("/_llamakit/stats").json()
        assert set(stats["per_key"]) == {srv.key_label(), bob_label}
        r = admin.post("/_llamakit/credits", json={"credits": 0.5, "key": bob_label})
        assert r.status_code == 200 and srv.balance("SG_bob") == 0.5
        assert admin.post("/_llamakit/credits", json={"credits": 1}).status_code == 422
        assert (
            admin.post("/_llamakit/credits", json={"credits": 1, "key": "key-0"}).status_code == 404
        )
        assert admin.post("/_llamakit/faults", json={"rate_429": 1.0}).status_code == 200
        assert bob.post(CHAT, json=chat_body()).status_code == 429  # everyone's setting
        # The admin key is no API key: it has no balance and cannot call the model.
        assert admin.post(CHAT, json=chat_body()).status_code == 401
        assert admin.get("/v1/get-user-credits").status_code == 401
    assert "SG_admin_only" not in repr(srv) + str(srv.stats())
    with pytest.raises(ValueError, match="admin key must differ"):
        make_server(api_key="SG_same", admin_key="SG_same")


def test_seeded_faults_of_one_key_do_not_depend_on_another_keys_traffic(make_server):
    def alice_outcomes(bob_calls: int) -> list[int]:
        srv = make_server(api_key="SG_alice", keys=["SG_bob"], fail_rate=0.5, seed=3)
        with http(srv, "SG_alice") as alice, http(srv, "SG_bob") as bob:
            out = []
            for _ in range(12):
                for _ in range(bob_calls):
                    bob.post(CHAT, json=chat_body())
                out.append(alice.post(CHAT, json=chat_body()).status_code)
            return out

    assert alice_outcomes(0) == alice_outcomes(2)


# -- `llamakit serve` shows which keys, never a whole key -------------------------------------------


def test_serve_names_its_keys_without_printing_them(serve, tmp_path):
    key, admin = "SG_long_secret_key_0123456789", "SG_admin_secret_abcdefghij"
    srv = serve(env={"LLAMAKIT_SERVER_KEYS": key, "LLAMAKIT_ADMIN_KEY": admin})
    assert srv.proc.stdout is not None
    lines = [srv.proc.stdout.readline() for _ in range(3)]
    with closing(srv.wait_up(key)) as c:
        assert c.get("/_llamakit/stats").status_code == 200
    err = srv.stop()
    text = "".join(srv.banner + lines) + err
    assert key not in text and admin not in text
    assert "SG_lon...6789" in text and "SG_adm...ghij" in text
    assert re.search(r"api key: +SG_lon\.\.\.6789 \(key-[0-9a-f]{10}\)", text)


def test_serve_keeps_a_generated_key_in_a_private_file(serve, tmp_path):
    srv = serve()
    assert srv.proc.stdout is not None
    lines = [srv.proc.stdout.readline() for _ in range(3)]
    path = Path(re.search(r"whole key is in (\S+),", lines[2]).group(1))  # type: ignore[union-attr]
    key = path.read_text().strip()
    assert key.startswith("SG_local_") and key not in "".join(lines)
    assert path.stat().st_mode & 0o777 == 0o600
    with closing(srv.wait_up(key)) as c:
        assert c.post(CHAT, json=chat_body()).status_code == 200
    srv.stop()
    assert not path.exists()  # the key died with the server


def test_serve_raises_its_open_file_limit_or_warns():
    # Reaching the open-file limit makes accept() fail, which stalls every client; the server
    # raises its soft limit to fit --max-connections, or says why it cannot.
    import resource

    def limit(soft: int, hard: int):
        return lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))

    def run(soft: int, hard: int) -> tuple[str, int]:
        proc = subprocess.Popen(
            [sys.executable, "-m", "llamakit.cli", "serve", "--backend", "scripted"]
            + ["--port", "0", "--api-key", "SG_fd_test", "--max-connections", "1000"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=limit(soft, hard),
        )
        assert proc.stdout is not None
        port = int(re.search(r":(\d+)", proc.stdout.readline()).group(1))  # type: ignore[union-attr]
        with httpx.Client() as c:
            deadline = time.monotonic() + 30
            while True:
                try:
                    c.get(f"http://127.0.0.1:{port}/v1/models", headers={"x-api-key": "SG_fd_test"})
                    break
                except httpx.TransportError:
                    assert time.monotonic() < deadline
                    time.sleep(0.05)
        limits = Path(f"/proc/{proc.pid}/limits").read_text()
        soft_now = int(re.search(r"Max open files\s+(\d+)", limits).group(1))  # type: ignore[union-attr]
        proc.terminate()
        _, err = proc.communicate(timeout=30)
        return err, soft_now

    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard == resource.RLIM_INFINITY or hard >= 1512:
        err, soft_now = run(256, min(hard, 4096) if hard != resource.RLIM_INFINITY else 4096)
        assert soft_now >= 1512 and "open-file limit" not in err
    err, soft_now = run(256, 256)
    assert soft_now == 256 and "open-file limit (256) is below --max-connections 1000" in err
