"""The credit ledger: only a 200 debits, the header is the balance after the call, concurrency never
overdraws or loses a debit, balances survive a restart with a db, per-token pricing."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from decimal import Decimal

import httpx
import pytest

from llamakit.server.costs import PerTokenCost
from llamakit.server.ledger import InsufficientCredits, Ledger

from .server_helpers import CHAT, SLUG, chat_body, http, ssl_context


def test_header_equals_balance_after_each_call(make_server):
    srv = make_server(credits=1.0)
    with http(srv) as c:
        for i in range(5):
            r = c.post(CHAT, json=chat_body(f"question {i}"))
            assert r.status_code == 200
            header = Decimal(r.headers["x-remaining-credits"])
            assert header == Decimal("1.0") - Decimal("0.00063") * (i + 1)
            assert header == srv.balance()
            # The balance endpoint's JSON number is the ledger's exact figure too.
            body = json.loads(c.get("/v1/get-user-credits").text, parse_float=Decimal)
            assert body["credits"] == header


def test_only_200_debits(make_server):
    srv = make_server(credits=1.0, rpm=100, rules=[{"pattern": "^boom", "error": "no"}])
    with http(srv) as c:
        assert c.post(CHAT, json={"messages": []}).status_code == 422
        assert c.post(CHAT, json=chat_body("boom")).status_code == 500
        assert c.post("/v1/nope", json=chat_body()).status_code == 404
        assert c.get(CHAT).status_code == 405
        srv.set_faults(fail_rate=1.0)
        assert c.post(CHAT, json=chat_body()).status_code == 500
        srv.set_faults(fail_rate=0.0, rate_429=1.0)
        assert c.post(CHAT, json=chat_body()).status_code == 429
        srv.set_faults(rate_429=0.0)
    with http(srv, key="SG_bad") as bad:
        assert bad.post(CHAT, json=chat_body()).status_code == 401
    assert srv.balance() == 1.0
    stats = srv.stats()
    assert stats["billed_calls"] == 0 and Decimal(stats["credits_spent"]) == 0


def test_50_concurrent_requests_with_credit_for_20(make_server):
    cost = 0.00063
    # latency keeps all 50 in flight together, between the credit check and the debit.
    srv = make_server(credits=20 * cost, latency_ms=150)

    async def fire() -> list[httpx.Response]:
        async with httpx.AsyncClient(
            base_url=srv.url,
            headers={"x-api-key": srv.api_key},
            timeout=30,
            verify=ssl_context(),
            limits=httpx.Limits(max_connections=60),
        ) as c:
            return await asyncio.gather(*(c.post(CHAT, json=chat_body(f"q{i}")) for i in range(50)))

    responses = asyncio.run(fire())
    codes = sorted(r.status_code for r in responses)
    assert codes.count(200) == 20 and codes.count(406) == 30
    headers = sorted(
        Decimal(r.headers["x-remaining-credits"]) for r in responses if r.status_code == 200
    )
    # Every 200 saw a distinct balance: 19 * cost, 18 * cost, ..., 0 (no debit lost, none negative).
    assert headers == [Decimal("0.00063") * k for k in range(20)]
    assert srv.balance() == 0.0
    stats = srv.stats()
    assert stats["billed_calls"] == 20
    assert Decimal(stats["credits_spent"]) == 20 * Decimal("0.00063")  # exact, a decimal string
    assert stats["requests"] == {"200": 20, "406": 30}


def test_extra_keys_have_separate_balances_and_stats_hide_keys(make_server):
    srv = make_server(credits=1.0, keys={"SG_second_key": 0.5})
    with http(srv, key="SG_second_key") as c:
        assert c.post(CHAT, json=chat_body()).status_code == 200
    assert srv.balance() == 1.0
    assert srv.balance("SG_second_key") == Decimal("0.5") - Decimal("0.00063")
    stats = srv.stats()
    assert set(stats["per_key"]) == {srv.key_label(), srv.key_label("SG_second_key")}
    assert stats["per_key"][srv.key_label("SG_second_key")]["billed_calls"] == 1
    assert "SG_second_key" not in repr(stats) and srv.api_key not in repr(stats)
    assert srv.api_key not in repr(srv)


def test_set_credits_from_python_and_over_http(make_server):
    srv = make_server(credits=1.0)
    srv.set_credits(0.0)
    with http(srv) as c:
        assert c.post(CHAT, json=chat_body()).status_code == 406
        r = c.post("/_llamakit/credits", json={"credits": 0.001})
        assert r.json() == {"credits": 0.001}
        assert c.post(CHAT, json=chat_body()).status_code == 200
        assert c.post(CHAT, json=chat_body()).status_code == 406  # 0.00037 left < 0.00063
    assert srv.balance() == Decimal("0.00037")


def test_balances_survive_a_restart_with_db(make_server, tmp_path):
    db = tmp_path / "ledger.db"
    srv = make_server(credits=1.0, api_key="SG_persist", db=db)
    with http(srv) as c:
        for _ in range(3):
            c.post(CHAT, json=chat_body())
    srv.close()
    again = make_server(credits=1.0, api_key="SG_persist", db=db)
    assert again.balance() == 1 - 3 * Decimal("0.00063")
    with http(again) as c:
        r = c.post(CHAT, json=chat_body())
        assert Decimal(r.headers["x-remaining-credits"]) == Decimal("1.0") - 4 * Decimal("0.00063")
    again.close()
    # The store holds labels and amounts, never the key itself.
    dump = "\n".join(sqlite3.connect(db).iterdump())
    assert "SG_persist" not in dump and "key-" in dump


def test_per_token_cost(make_server):
    srv = make_server(credits=1.0, cost_per_token=(0.001, 0.002))
    with http(srv) as c:
        r = c.post(CHAT, json=chat_body(max_tokens=10))
    usage = r.json()["usage"]
    expected = (
        Decimal("1.0")
        - Decimal("0.001") * usage["prompt_tokens"]
        - Decimal("0.002") * usage["completion_tokens"]
    )
    assert Decimal(r.headers["x-remaining-credits"]) == expected
    # A call whose worst case (prompt + max_tokens) exceeds the balance is refused up front.
    srv.set_credits(0.01)
    with http(srv) as c:
        assert c.post(CHAT, json=chat_body(max_tokens=100)).status_code == 406


def test_ledger_holds_are_released_and_never_overdraw():
    ledger = Ledger({"a": Decimal("0.002")})
    h1 = ledger.reserve("a", Decimal("0.001"))
    h2 = ledger.reserve("a", Decimal("0.001"))
    with pytest.raises(InsufficientCredits):
        ledger.reserve("a", Decimal("0.001"))
    ledger.release(h1)
    assert ledger.commit(h2, Decimal("0.001")) == Decimal("0.001")
    # An admin lowering the balance mid-call cannot push it below zero.
    h3 = ledger.reserve("a", Decimal("0.001"))
    ledger.set_balance("a", Decimal("0.0004"))
    assert ledger.commit(h3, Decimal("0.001")) == Decimal(0)
    with pytest.raises(RuntimeError):
        ledger.commit(h3, Decimal("0.001"))
    assert PerTokenCost(0.5, 1).estimate(2, 3) == Decimal("4.0")


def test_v2_and_openai_routes_share_the_ledger(make_server):
    srv = make_server(credits=1.0)
    with http(srv) as c:
        assert (
            c.post("/v1/chat/completions", json={"model": SLUG, **chat_body()}).status_code == 200
        )
        job = c.post(f"/v2/{SLUG}", json=chat_body()).json()
        while c.get(job["status_url"]).json()["status"] != "COMPLETED":
            pass
    assert srv.stats()["billed_calls"] == 2
    assert srv.balance() == 1 - 2 * Decimal("0.00063")


def test_stats_report_credits_exactly_as_decimal_strings(make_server):
    # A price with more digits than a double holds (Segmind's published average): 7 calls spent
    # 0.0044208657040903978, which the stats used to report as the float 0.0044208657040903975.
    price = Decimal("0.0006315522434414854")
    srv = make_server(credits=Decimal("10"), cost_per_call=price, keys={"SG_second_key": 1})
    with http(srv) as c:
        for i in range(7):
            assert c.post(CHAT, json=chat_body(f"q{i}")).status_code == 200
        over_http = c.get("/_llamakit/stats").json()
    label = srv.key_label()
    for stats in (srv.stats(), over_http):  # over HTTP, an ordinary key sees its own figures
        own = stats["per_key"][label]
        figures = (stats["credits_spent"], own["credits_spent"], own["balance"])
        assert all(isinstance(f, str) for f in figures), figures
        assert Decimal(stats["credits_spent"]) == Decimal(own["credits_spent"]) == 7 * price
        assert Decimal(own["balance"]) == srv.balance() == 10 - 7 * price
    other = srv.stats()["per_key"][srv.key_label("SG_second_key")]
    assert (other["credits_spent"], other["balance"]) == ("0", "1")
    # The header's notation: plain digits, never an exponent.
    assert srv.stats()["per_key"][label]["balance"] == "9.9955791342959096022"
