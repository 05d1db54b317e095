"""The key goes only to base_url's origin: v2 status/response URLs from a reply or a stored
journal that name another scheme, host or port are refused before anything is sent there, and
redirects are not followed."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from client_helpers import FAST, MOCK_KEY, MOCK_URL, json_reply, routed
from raw_servers import plain, raw_server, url_of

from llamakit import APIError, APIResponseError, Client
from llamakit.client.origin import Origin, display_url
from llamakit.client.types import Job


def listener() -> Any:
    """A server on 127.0.0.2 (another host of this machine) that records what reaches it."""
    return raw_server(plain(200, json.dumps({"status": "COMPLETED"}).encode()), host="127.0.0.2")


def foreign_job(url: str) -> Job:
    return Job(
        request_id="r1",
        status_url=f"{url}/v2/requests/r1/status",
        response_url=f"{url}/v2/requests/r1",
        call_id="c1",
        submitted_at=0.0,
    )


def test_a_submit_reply_naming_another_host_gets_no_key(server: Any) -> None:
    with listener() as evil:
        evil_url = url_of(evil)

        def chat(request: httpx.Request) -> httpx.Response:
            return json_reply(
                {"request_id": "r1", "status": "QUEUED", **vars(foreign_job(evil_url))}
            )

        seen: list[httpx.Request] = []

        def record(request: httpx.Request) -> httpx.Response:
            seen.append(request)
            return routed(chat)(request)

        client = Client(
            MOCK_KEY,
            base_url=MOCK_URL,
            transport=httpx.MockTransport(record),
            retry_policy=FAST,
            check_context=False,
        )
        job = client.submit("hi")  # the submission itself is kept (it may be billed)
        with pytest.raises(APIResponseError, match="refusing to send the API key") as info:
            client.wait(job, poll_interval=0.01)
    assert "127.0.0.2" in str(info.value) and MOCK_KEY not in str(info.value)
    assert evil.seen == []
    assert all(r.url.host == "api.test" for r in seen)


@pytest.mark.parametrize(
    "where",
    [
        "http://127.0.0.2:{port}",  # another host
        "http://127.0.0.1:{other}",  # another port
        "https://127.0.0.1:{port}",  # another scheme
        "http://127.0.0.1.evil.test:{port}",
        "http://evil.test#@127.0.0.1:{port}",
    ],
)
def test_a_stored_job_pointing_elsewhere_is_refused(server: Any, where: str) -> None:
    port = int(server.url.rsplit(":", 1)[1])
    url = where.format(port=port, other=port + 1)
    client = server.client()
    before = server.stats()["requests"]
    with pytest.raises(APIResponseError, match="refusing"):
        client.wait(foreign_job(url), timeout=1, poll_interval=0.01)
    assert server.stats()["requests"] == before


def test_a_job_on_the_same_origin_is_polled(server: Any) -> None:
    client = server.client()
    job = client.submit("hi")
    # The same origin spelled differently (host case, explicit default-free port) still matches.
    assert Origin.of(job.status_url) == Origin.of(server.url.upper().replace("HTTP", "http"))
    assert client.wait(job, poll_interval=0.01).text


def test_redirects_are_not_followed() -> None:
    with listener() as evil:
        target = url_of(evil) + "/v1/llama-v3-8b-instruct"
        with raw_server(plain(307, b"", location=target)) as redirector:
            client = Client(
                MOCK_KEY,
                base_url=url_of(redirector) + "/v1",
                max_retries=0,
                check_context=False,
            )
            with pytest.raises(APIError, match="307.*does not follow redirects"):
                client.chat("hi")
    assert evil.seen == [] and len(redirector.seen) == 2  # the balance, then the chat


def test_origins() -> None:
    assert Origin.of("https://API.segmind.com/v1") == Origin.of("https://api.segmind.com:443/v2")
    assert Origin.of("http://h/v1") != Origin.of("https://h/v1")
    assert Origin.of("http://h:80/") == Origin.of("http://h/")
    assert Origin.of("http://[::1]:8/") != Origin.of("http://[::2]:8/")
    assert Origin.of("http://h:99999/") != Origin.of("http://h/")  # unparsable port
    assert display_url("http://u:SECRET@h:1/v1") == "http://***@h:1/v1"
    assert display_url("http://h/v1") == "http://h/v1"


def test_a_journaled_job_pointing_elsewhere_is_refused_and_kept(server: Any) -> None:
    # A rerun collects jobs from the store's journal: a tampered (or stale) entry naming another
    # host is refused like a reply would be, and stays journaled rather than being resubmitted.
    import asyncio

    from llamakit.experiment.journal import Journal

    class Store:
        dropped: list[str] = []

        def inflight(self, key: str) -> dict[str, Any]:
            job = foreign_job("http://127.0.0.2:9")
            return {**vars(job), "run_id": "r", "session": 1}

        def drop_inflight(self, key: str) -> None:
            self.dropped.append(key)

    async def call(fn: Any, *args: Any, **kw: Any) -> Any:
        return await asyncio.to_thread(fn, *args, **kw)

    store = Store()
    journal = Journal(store, call, poll_interval=0.01)
    with pytest.raises(APIResponseError, match="refusing"):
        asyncio.run(journal.recover(server.client(), "cell-key"))
    assert store.dropped == []
