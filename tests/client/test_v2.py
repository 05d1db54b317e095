"""The v2 submit-and-poll path, sync and async, against the local server."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from client_helpers import CHAT_OK, json_reply

from llamakit import APIResponseError, APITimeoutError, AuthenticationError, ChatResponse
from llamakit._defaults import LOCAL_COST_PER_CALL
from llamakit.client.v2 import v2_base


def test_submit_then_wait(server: Any) -> None:
    client = server.client()
    job = client.submit("Say hi", max_tokens=8)
    assert job.status_url.startswith(server.url) and job.request_id
    reply = client.wait(job, poll_interval=0.02)
    assert isinstance(reply, ChatResponse) and reply.text and reply.call_id == job.call_id
    assert reply.credits_remaining == 10 - LOCAL_COST_PER_CALL
    assert client.spent == LOCAL_COST_PER_CALL
    # Same reply as the v1 path for the same request (the scripted backend is deterministic).
    assert reply.text == client.chat("Say hi", max_tokens=8).text


def test_wait_has_a_deadline_and_can_be_resumed(server: Any) -> None:
    server.set_faults(latency_ms=800)
    client = server.client()
    job = client.submit("slow one")
    with pytest.raises(APITimeoutError, match="call wait\\(\\) again"):
        client.wait(job, timeout=0.1, poll_interval=0.02)
    assert client.wait(job, timeout=10, poll_interval=0.05).text


def test_async_submit_and_wait(server: Any) -> None:
    async def go() -> list[str]:
        async with server.async_client() as client:
            jobs = [await client.submit(f"q{i}", max_tokens=4) for i in range(3)]
            replies = await asyncio.gather(*(client.wait(j, poll_interval=0.02) for j in jobs))
            return [r.text for r in replies]

    assert all(asyncio.run(go()))


def test_submit_errors_are_typed(server: Any) -> None:
    with pytest.raises(AuthenticationError):
        server.client(api_key="SG_wrong").submit("hi")


def test_v2_base() -> None:
    assert v2_base("https://api.segmind.com/v1") == "https://api.segmind.com/v2"
    assert v2_base("http://127.0.0.1:8787") == "http://127.0.0.1:8787/v2"


def test_v2_odd_replies(mock_client: Any) -> None:
    def handler(request: Any) -> Any:
        path = request.url.path
        if path.endswith("/v2/llama-v3-8b-instruct"):
            return json_reply(
                {
                    "request_id": "r1",
                    "status_url": "http://api.test/v2/requests/r1/status",
                    "response_url": "http://api.test/v2/requests/r1",
                }
            )
        if path.endswith("/status"):
            return json_reply({"status": "COMPLETED"})
        return json_reply({"status": "COMPLETED", "output": "plain text, not JSON"})

    client = mock_client(handler)
    assert client.wait(client.submit("hi")).text == "plain text, not JSON"

    client = mock_client(lambda r: json_reply(CHAT_OK))  # a v1-shaped reply to a v2 submit
    with pytest.raises(APIResponseError, match="request_id"):
        client.submit("hi")
