"""The OpenAI-compatible route is complete or refuses (issue 12, point 8): Server-Sent Events for
`stream: true`, billed once; `GET /v1/models`; a clear 422 for what it cannot do. The Segmind
routes keep ignoring `stream` (CONTRACT §5)."""

from __future__ import annotations

import json
from decimal import Decimal

import httpx
import openai
import pytest

from .server_helpers import CHAT, SLUG, chat_body, http, ssl_context

OPENAI_CHAT = "/v1/chat/completions"
RULES = [{"pattern": "story", "reply": "Once upon a time, a llama learned to stream."}]


def _openai(srv, **kw) -> openai.OpenAI:
    return openai.OpenAI(
        api_key=srv.api_key,
        base_url=srv.url + "/v1",
        max_retries=0,
        http_client=httpx.Client(verify=ssl_context()),
        **kw,
    )


def _events(text: str) -> list[str]:
    """The `data:` payloads of an SSE body, checking the framing as it goes."""
    assert text.endswith("\n\n")
    out = []
    for event in text.split("\n\n")[:-1]:
        assert event.startswith("data: "), event
        out.append(event[len("data: ") :])
    return out


def test_the_openai_client_streams_the_same_reply_and_is_billed_once(make_server):
    srv = make_server(rules=RULES, credits=1.0)
    with _openai(srv) as client:
        whole = client.chat.completions.create(
            model=SLUG, messages=[{"role": "user", "content": "a story"}], max_tokens=50
        )
        stream = client.chat.completions.create(
            model=SLUG,
            messages=[{"role": "user", "content": "a story"}],
            max_tokens=50,
            stream=True,
            stream_options={"include_usage": True},
        )
        pieces, finish, usage = [], None, None
        for chunk in stream:
            assert chunk.object == "chat.completion.chunk" and chunk.model == SLUG
            if chunk.choices:
                pieces.append(chunk.choices[0].delta.content or "")
                finish = chunk.choices[0].finish_reason or finish
            if chunk.usage is not None:
                usage = chunk.usage
    assert len(pieces) > 3  # really streamed, piece by piece
    assert "".join(pieces) == whole.choices[0].message.content
    assert finish == "stop" and usage is not None
    assert usage.completion_tokens == whole.usage.completion_tokens
    stats = srv.stats()
    assert stats["billed_calls"] == 2  # one per call, the stream included
    assert srv.balance() == 1 - 2 * Decimal("0.00063")


def test_raw_sse_framing_headers_and_a_cut_reply(make_server):
    srv = make_server(rules=RULES, credits=1.0)
    with http(srv) as c:
        body = {"model": SLUG, **chat_body("a story", max_tokens=3), "stream": True}
        with c.stream("POST", OPENAI_CHAT, json=body) as r:
            assert r.status_code == 200
            assert r.headers["content-type"].startswith("text/event-stream")
            assert float(r.headers["x-remaining-credits"]) == pytest.approx(1.0 - 0.00063)
            text = r.read().decode()
    events = _events(text)
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert chunks[-1]["choices"][0] == {"index": 0, "delta": {}, "finish_reason": "length"}
    assert all("usage" not in ch for ch in chunks)  # not asked for
    assert len({ch["id"] for ch in chunks}) == 1
    assert srv.stats()["billed_calls"] == 1


def test_a_client_that_hangs_up_mid_stream_is_billed_once(make_server):
    srv = make_server(rules=RULES, credits=1.0, slow_body_s=0.5)
    with http(srv) as c:
        body = {"model": SLUG, **chat_body("a story"), "stream": True}
        with c.stream("POST", OPENAI_CHAT, json=body) as r:
            assert r.status_code == 200  # headers sent; the client leaves before any event
    assert srv.stats()["billed_calls"] == 1


def test_errors_before_a_stream_are_json_and_unbilled(make_server):
    srv = make_server(credits=0.0001)
    with http(srv) as c:
        body = {"model": SLUG, **chat_body(), "stream": True}
        r = c.post(OPENAI_CHAT, json=body)
        assert r.status_code == 406 and "error" in r.json()
        r = c.post(OPENAI_CHAT, json={**body, "stream": "yes"})
        assert r.status_code == 422 and "stream" in r.json()["error"]
        r = c.post(OPENAI_CHAT, json={**body, "stream": False, "stream_options": {}})
        assert r.status_code == 422 and "stream_options" in r.json()["error"]
    assert srv.stats()["billed_calls"] == 0


def test_the_segmind_routes_ignore_stream(make_server):
    srv = make_server()
    with http(srv) as c:
        r = c.post(CHAT, json=chat_body(stream=True, tools=[{"type": "function"}], logprobs=True))
        assert r.status_code == 200 and r.headers["content-type"] == "application/json"
        assert r.json()["object"] == "chat.completion"
        v2 = c.post(f"/v2/{SLUG}", json=chat_body(stream=True))
        assert v2.status_code == 200 and "request_id" in v2.json()


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"tools": [{"type": "function", "function": {"name": "f"}}]}, "tools"),
        ({"tool_choice": "auto"}, "tool_choice"),
        ({"functions": [{"name": "f"}]}, "functions"),
        ({"logprobs": True}, "logprobs"),
        ({"top_logprobs": 3}, "top_logprobs"),
        ({"n": 2}, "n"),
        ({"modalities": ["text", "audio"]}, "modalities"),
    ],
)
def test_what_the_server_cannot_do_is_a_clear_422_and_unbilled(shared, extra, field):
    before = shared.stats()["billed_calls"]
    with http(shared) as c:
        r = c.post(OPENAI_CHAT, json={"model": SLUG, **chat_body(), **extra})
    assert r.status_code == 422
    assert r.json()["error"].startswith(f"Validation error: {field}:")
    assert shared.stats()["billed_calls"] == before


def test_the_openai_client_raises_on_unsupported_fields_and_accepts_their_defaults(shared):
    with _openai(shared) as client:
        with pytest.raises(openai.UnprocessableEntityError) as refused:
            client.chat.completions.create(
                model=SLUG,
                messages=[{"role": "user", "content": "hi"}],
                tools=[{"type": "function", "function": {"name": "f", "parameters": {}}}],
            )
        # Errors keep the contract's {"error": "..."} shape on every route; the client hands it
        # over as the exception's body.
        assert "tool calling is not supported" in str(refused.value.body)
        ok = client.chat.completions.create(
            model=SLUG,
            messages=[{"role": "user", "content": "hi"}],
            logprobs=False,
            n=1,
            tools=[],
            max_tokens=5,
        )
        assert ok.choices[0].message.content


def test_models_are_listed_and_retrieved(shared):
    with _openai(shared) as client:
        ids = [m.id for m in client.models.list()]
        assert SLUG in ids and len(ids) == len(set(ids))
        assert client.models.retrieve(SLUG).id == SLUG
        with pytest.raises(openai.NotFoundError):
            client.models.retrieve("gpt-5")
    with http(shared, key="SG_wrong") as c:
        assert c.get("/v1/models").status_code == 401
