"""Each injected fault over real HTTP: 500s, 429s, dropped connections, latency, slow bodies; set at
start, from Python at runtime and over HTTP; a seed makes the sequence of outcomes repeatable."""

from __future__ import annotations

import time

import httpx
import pytest

from .server_helpers import CHAT, SLUG, chat_body, http


def test_fail_rate_gives_500_json(make_server):
    srv = make_server(fail_rate=1.0)
    with http(srv) as c:
        r = c.post(CHAT, json=chat_body())
    assert r.status_code == 500
    assert "injected" in r.json()["error"]
    assert srv.stats()["requests"] == {"500": 1}


def test_rate_429_sends_retry_after(make_server):
    srv = make_server(rate_429=1.0, retry_after_s=0.25)
    with http(srv) as c:
        r = c.post(CHAT, json=chat_body())
        r2 = c.post(f"/v2/{SLUG}", json=chat_body())
    assert r.status_code == 429 and r.headers["retry-after"] == "0.25"
    assert r2.status_code == 429


def test_drop_rate_closes_the_connection_without_a_response(make_server):
    srv = make_server(drop_rate=1.0)
    with http(srv) as c:
        with pytest.raises(httpx.RemoteProtocolError, match="without sending a response"):
            c.post(CHAT, json=chat_body())
        # Non-inference routes are never faulted: the same client still works.
        assert c.get("/v1/get-user-credits").status_code == 200
    stats = srv.stats()
    assert stats["dropped"] == 1
    assert stats["billed_calls"] == 0
    assert stats["per_key"][srv.key_label()]["dropped"] == 1


def test_latency_delays_the_reply(make_server):
    srv = make_server(latency_ms=300)
    with http(srv) as c:
        start = time.monotonic()
        assert c.post(CHAT, json=chat_body()).status_code == 200
        assert time.monotonic() - start >= 0.3  # a lower bound: the server waited at least this
        with pytest.raises(httpx.ReadTimeout):
            c.post(CHAT, json=chat_body(), timeout=0.05)


def test_latency_jitter_stays_within_bounds():
    from llamakit.server.faults import FaultInjector, FaultSettings

    inj = FaultInjector(FaultSettings(latency_ms=100, latency_jitter_ms=50, seed=1))
    delays = [inj.decide().latency_s for _ in range(200)]
    assert min(delays) >= 0.05 and max(delays) <= 0.15
    assert max(delays) - min(delays) > 0.05  # it really varies


def test_slow_body_sends_headers_first(make_server):
    srv = make_server(slow_body_s=1.0)
    with http(srv) as c:
        start = time.monotonic()
        with c.stream("POST", CHAT, json=chat_body()) as r:
            headers_after = time.monotonic() - start
            assert r.status_code == 200
            body = r.read()
        body_after = time.monotonic() - start
        assert headers_after < 1.0 <= body_after  # the headers did not wait for the body
        assert body.startswith(b'{"id"')
        # A client whose read timeout is shorter than the delay times out on the body.
        with pytest.raises(httpx.ReadTimeout):
            c.post(CHAT, json=chat_body(), timeout=httpx.Timeout(5.0, read=0.3))


def test_seed_makes_outcomes_repeatable(make_server):
    def outcomes(srv) -> list[int]:
        with http(srv) as c:
            return [c.post(CHAT, json=chat_body()).status_code for _ in range(30)]

    first = outcomes(make_server(credits=1.0, fail_rate=0.3, rate_429=0.2, seed=7))
    second = outcomes(make_server(credits=1.0, fail_rate=0.3, rate_429=0.2, seed=7))
    assert first == second
    assert {200, 429, 500} <= set(first)


def test_faults_can_be_changed_at_runtime_from_python_and_http(make_server):
    srv = make_server()
    with http(srv) as c:
        assert c.post(CHAT, json=chat_body()).status_code == 200
        srv.set_faults(fail_rate=1.0)
        assert srv.faults["fail_rate"] == 1.0
        assert c.post(CHAT, json=chat_body()).status_code == 500
        r = c.post("/_llamakit/faults", json={"fail_rate": 0.0, "rate_429": 1.0})
        assert r.status_code == 200 and r.json()["rate_429"] == 1.0
        assert c.post(CHAT, json=chat_body()).status_code == 429
        assert c.get("/_llamakit/faults").json()["fail_rate"] == 0.0
        c.post("/_llamakit/faults", json={"rate_429": 0})
        assert c.post(CHAT, json=chat_body()).status_code == 200
        stats = c.get("/_llamakit/stats").json()
    now = srv.stats()
    # Same figures, except that the stats request itself has been counted since.
    assert now["requests"]["200"] == stats["requests"]["200"] + 1
    assert (now["billed_calls"], now["credits_spent"]) == (
        stats["billed_calls"],
        stats["credits_spent"],
    )
    assert stats["requests"]["500"] == 1 and stats["requests"]["429"] == 1
    with pytest.raises(ValueError, match="drop_rate"):
        srv.set_faults(drop_rate=1.5)
    with pytest.raises(ValueError, match="unknown fault"):
        srv.set_faults(explode=True)
