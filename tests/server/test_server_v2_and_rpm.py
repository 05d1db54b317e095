"""v2 submit / status / result (CONTRACT §8), expiry, FAILED jobs; the per-key RPM limit."""

from __future__ import annotations

import json
import time

import pytest

from .server_helpers import CHAT, SLUG, chat_body, http

V2 = f"/v2/{SLUG}"


def _wait(c, url: str) -> dict:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        body = c.get(url).json()
        if body["status"] in ("COMPLETED", "FAILED"):
            return body
        time.sleep(0.01)
    raise AssertionError("job did not finish")


def test_v2_submit_poll_result(make_server):
    srv = make_server(credits=1.0)
    with http(srv) as c:
        sub = c.post(V2, json=chat_body("What is 2 + 3?"))
        assert sub.status_code == 200
        job = sub.json()
        assert job["status"] == "QUEUED"
        for name in ("status_url", "response_url", "poll_url"):
            assert job[name].startswith(srv.url + "/"), name
            assert job["request_id"] in job[name]
        status = _wait(c, job["status_url"])
        assert status["status"] == "COMPLETED"
        assert "inference_time" in status["metrics"]
        res = c.get(job["response_url"])
        assert res.status_code == 200
        body = res.json()
        assert body["status"] == "COMPLETED" and body["error"] is None
        completion = json.loads(body["output"])  # double-encoded, as Segmind does it
        assert completion["choices"][0]["message"]["content"] == "2 + 3 = 5"
        assert completion["model"] == SLUG
        assert float(res.headers["x-remaining-credits"]) == pytest.approx(1.0 - 0.00063)
        assert c.get(job["poll_url"]).json()["output"] == body["output"]
    assert srv.stats()["billed_calls"] == 1


def test_v2_failed_job_is_422_and_not_billed(make_server):
    srv = make_server(credits=1.0, rules=[{"pattern": "^boom", "error": "model fell over"}])
    with http(srv) as c:
        job = c.post(V2, json=chat_body("boom")).json()
        status = _wait(c, job["status_url"])
        r = c.get(job["status_url"])
        res = c.get(job["response_url"])
    assert status["status"] == "FAILED" and "model fell over" in status["error"]
    assert r.status_code == 422
    assert res.status_code == 422 and res.json()["status"] == "FAILED"
    assert srv.balance() == 1.0 and srv.stats()["billed_calls"] == 0


def test_v2_checks_run_at_submit(make_server):
    srv = make_server(credits=0.0)
    with http(srv) as c:
        assert c.post(V2, json={"messages": "x"}).status_code == 422
        assert c.post(V2, json=chat_body()).status_code == 406
    with http(srv, key="SG_nope") as c:
        assert c.post(V2, json=chat_body()).status_code == 401


def test_v2_results_expire_and_belong_to_their_key(make_server):
    expiry = 1.5
    srv = make_server(credits=1.0, keys={"SG_other": 1.0}, v2_expiry_s=expiry)
    with http(srv) as c:
        submitted = time.monotonic()
        job = c.post(V2, json=chat_body()).json()
        assert _wait(c, job["status_url"])["status"] == "COMPLETED"
        with http(srv, key="SG_other") as other:
            assert other.get(job["response_url"]).status_code == 404
        time.sleep(max(0.0, expiry + 0.1 - (time.monotonic() - submitted)))
        for url in (job["status_url"], job["response_url"], job["poll_url"]):
            r = c.get(url)
            assert r.status_code == 404
            assert "expired" in r.json()["error"]
        assert c.get("/v2/requests/not-a-job/status").status_code == 404


def test_rpm_limit_answers_429_with_retry_after(make_server):
    srv = make_server(credits=1.0, rpm=3, keys={"SG_other": 1.0})
    with http(srv) as c:
        codes = [c.post(CHAT, json=chat_body()).status_code for _ in range(5)]
        r = c.post(CHAT, json=chat_body())
        # Polling and balance reads are not rate limited.
        assert c.get("/v1/get-user-credits").status_code == 200
    assert codes == [200, 200, 200, 429, 429]
    assert r.status_code == 429
    assert 1 <= int(r.headers["retry-after"]) <= 60
    assert "3 requests per minute" in r.json()["error"]
    with http(srv, key="SG_other") as other:  # the limit is per key
        assert other.post(CHAT, json=chat_body()).status_code == 200
    assert srv.stats()["billed_calls"] == 4


def test_rpm_window_slides():
    from llamakit.server.ratelimit import RpmLimiter, retry_after_header

    now = [100.0]
    limiter = RpmLimiter(2, window_s=60.0, clock=lambda: now[0])
    assert limiter.acquire("k") is None
    now[0] += 10
    assert limiter.acquire("k") is None
    assert limiter.acquire("k") == pytest.approx(50.0)  # the first call leaves the window at 160
    assert limiter.acquire("other") is None  # per key
    now[0] += 50.5
    assert limiter.acquire("k") is None
    assert limiter.remaining("k") == 0
    assert retry_after_header(0.2) == "1" and retry_after_header(1.01) == "2"
