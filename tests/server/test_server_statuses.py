"""Every status code of the contract over real HTTP, and the order the checks run in (CONTRACT §4.3)."""

from __future__ import annotations

from decimal import Decimal

import httpx
import pytest

from .server_helpers import CHAT, SLUG, chat_body, http


def test_200_is_a_chat_completion_with_credits_header(shared):
    with http(shared) as c:
        r = c.post(CHAT, json=chat_body())
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/json"
    body = r.json()
    assert body["object"] == "chat.completion"
    assert body["model"] == SLUG
    assert isinstance(body["created"], int)
    assert body["id"] == r.headers["x-request-id"]
    choice = body["choices"][0]
    assert choice["index"] == 0
    assert choice["message"]["role"] == "assistant"
    assert choice["message"]["content"]
    assert choice["finish_reason"] == "stop"
    usage = body["usage"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert usage["prompt_tokens"] > 5 and usage["completion_tokens"] > 5
    assert Decimal(r.headers["x-remaining-credits"]) == shared.balance()


def test_siblings_and_authorization_bearer_are_accepted(shared):
    with httpx.Client(
        base_url=shared.url, headers={"Authorization": f"Bearer {shared.api_key}"}
    ) as c:
        r = c.post("/v1/llama-v3p1-8b-instruct", json={"prompt": "hello"})
    assert r.status_code == 200
    assert r.json()["model"] == "llama-v3p1-8b-instruct"


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("POST", "/v1/no-such-model", 404),
        ("GET", "/nothing/here", 404),
        ("POST", "/v2/no-such-model", 404),
        ("GET", CHAT, 405),
        ("DELETE", CHAT, 405),
        ("POST", "/v1/get-user-credits", 405),
        ("PUT", "/_llamakit/stats", 405),
    ],
)
def test_404_and_405_are_json_and_come_before_the_key_check(shared, method, path, status):
    # No key at all: routing errors still win (unknown path 404, wrong method 405, then 401).
    with httpx.Client(base_url=shared.url) as c:
        r = c.request(method, path, json=chat_body())
    assert r.status_code == status
    assert isinstance(r.json()["error"], str) and r.json()["error"]
    if status == 405:
        assert "POST" in r.headers["allow"] or "GET" in r.headers["allow"]


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"x-api-key": "SG_wrong"},
        {"x-api-key": ""},
        {"Authorization": "Basic abc"},
        {"Authorization": "Bearer"},
    ],
)
def test_401_for_missing_or_unknown_key_on_every_route(shared, headers):
    routes = [
        ("POST", CHAT),
        ("POST", "/v1/chat/completions"),
        ("POST", f"/v2/{SLUG}"),
        ("GET", "/v1/get-user-credits"),
        ("GET", "/v2/requests/abc/status"),
        ("GET", "/v2/requests/abc"),
        ("GET", "/v1/requests/abc"),
        ("GET", "/_llamakit/stats"),
        ("POST", "/_llamakit/faults"),
        ("POST", "/_llamakit/credits"),
    ]
    with httpx.Client(base_url=shared.url, headers=headers) as c:
        for method, path in routes:
            r = c.request(method, path, json=chat_body())
            assert r.status_code == 401, (method, path)
            assert "authentication" in r.json()["error"].lower()


def test_401_comes_before_422_and_406(make_server):
    srv = make_server(credits=0.0)
    with http(srv, key="SG_not_a_key") as c:
        assert c.post(CHAT, content=b"{not json").status_code == 401


def test_429_comes_before_422_and_406(make_server):
    srv = make_server(credits=0.0, rpm=1)
    with http(srv) as c:
        assert c.post(CHAT, content=b"{bad").status_code == 422  # uses the one slot
        r = c.post(CHAT, content=b"{bad")
    assert r.status_code == 429
    assert int(r.headers["retry-after"]) >= 1


def test_422_comes_before_406(make_server):
    srv = make_server(credits=0.0)
    with http(srv) as c:
        assert c.post(CHAT, json={"messages": []}).status_code == 422
        r = c.post(CHAT, json=chat_body())
    assert r.status_code == 406
    assert "credits" in r.json()["error"].lower()
    assert "x-remaining-credits" not in r.headers


def test_500_from_a_failing_backend_is_not_billed(make_server):
    srv = make_server(credits=1.0, rules=[{"pattern": "^boom", "error": "backend exploded"}])
    with http(srv) as c:
        r = c.post(CHAT, json=chat_body("boom now"))
    assert r.status_code == 500
    assert "backend exploded" in r.json()["error"]
    assert srv.balance() == 1.0
    assert srv.stats()["billed_calls"] == 0


def test_user_credits_endpoint(make_server):
    srv = make_server(credits=0.25)
    with http(srv) as c:
        r = c.get("/v1/get-user-credits")
        assert r.json() == {"credits": 0.25, "free-credits": 0.0}
        c.post(CHAT, json=chat_body())
        assert c.get("/v1/get-user-credits").json()["credits"] == pytest.approx(0.25 - 0.00063)


def test_openai_route_checks_model(shared):
    with http(shared) as c:
        ok = c.post("/v1/chat/completions", json={"model": SLUG, **chat_body()})
        unknown = c.post("/v1/chat/completions", json={"model": "gpt-9", **chat_body()})
        missing = c.post("/v1/chat/completions", json=chat_body())
    assert ok.status_code == 200 and ok.json()["model"] == SLUG
    assert "x-remaining-credits" in ok.headers
    assert unknown.status_code == 404 and "gpt-9" in unknown.json()["error"]
    assert missing.status_code == 422 and "model" in missing.json()["error"]
