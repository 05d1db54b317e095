"""Replies a real server cannot be made to send (httpx.MockTransport): each one becomes a clear
APIError subclass, never a KeyError or JSONDecodeError. Plus fuzzing of the reply parser."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from decimal import Decimal
from email.utils import formatdate
from typing import Any

import httpx
import pytest
from client_helpers import CHAT_OK, json_reply, routed
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from llamakit import (
    APIResponseError,
    APIStatusError,
    AuthenticationError,
    ChatResponse,
    RateLimitError,
    ServerError,
    UnprocessableRequestError,
)
from llamakit.client.client import Client
from llamakit.client.headers import parse_retry_after

MakeClient = Callable[..., Client]


def test_ok_reply_is_parsed(mock_client: MakeClient) -> None:
    client = mock_client(lambda r: json_reply(CHAT_OK, **{"x-remaining-credits": "0.99937"}))
    r = client.chat("hi")
    assert isinstance(r, ChatResponse)
    assert (r.text, r.finish_reason, r.model, r.request_id) == (
        "hello",
        "stop",
        "llama-v3-8b-instruct",
        "chatcmpl-1",
    )
    assert (r.usage.prompt_tokens, r.usage.completion_tokens, r.usage.total_tokens) == (5, 1, 6)
    assert r.credits_remaining == Decimal("0.99937")  # the header's text, exactly
    assert r.attempts == 1 and r.latency_s >= 0 and r.started_at <= r.finished_at
    assert client.credits_start == 1 and client.spent == Decimal("0.00063")


def test_unknown_keys_and_text_parts_are_tolerated(mock_client: MakeClient) -> None:
    body = json.loads(json.dumps(CHAT_OK))
    body["system_fingerprint"] = "x"
    body["choices"][0]["logprobs"] = None
    body["choices"][0]["message"]["content"] = [
        {"type": "text", "text": "he"},
        {"type": "text", "text": "llo"},
    ]
    body["usage"]["backend_prompt_tokens"] = 9
    r = mock_client(lambda req: json_reply(body)).chat("hi")
    assert r.text == "hello" and r.usage.extras == {"backend_prompt_tokens": 9}
    assert r.credits_remaining is None


def _html(status: int) -> Callable[[httpx.Request], httpx.Response]:
    page = b"<html><head><title>502 Bad Gateway</title></head><body><h1>oops</h1></body></html>"
    return lambda r: httpx.Response(status, content=page, headers={"content-type": "text/html"})


def test_html_error_page_is_a_server_error_with_its_title(mock_client: MakeClient) -> None:
    with pytest.raises(ServerError) as info:
        mock_client(_html(502)).chat("hi")
    assert "502 Bad Gateway" in str(info.value) and info.value.status == 502


def test_html_page_with_200_is_a_response_error(mock_client: MakeClient) -> None:
    with pytest.raises(APIResponseError, match="not valid JSON"):
        mock_client(_html(200)).chat("hi")


@pytest.mark.parametrize(
    ("body", "match"),
    [
        (json.dumps(CHAT_OK)[:40].encode(), "not valid JSON"),
        (b"", "not valid JSON"),
        (b"\xff\xfe", "not valid JSON"),
        (b"[1, 2]", "expected a JSON object"),
        (b'{"id": "x"}', "no 'choices'"),
        (b'{"choices": []}', "no 'choices'"),
        (b'{"choices": [{"index": 0}]}', "no 'message'"),
        (b'{"choices": [{"message": {"content": null}}]}', "not text"),
    ],
)
def test_malformed_200_is_a_response_error(
    mock_client: MakeClient, body: bytes, match: str
) -> None:
    calls = []

    def chat(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(200, content=body)

    with pytest.raises(APIResponseError, match=match):
        mock_client(chat).chat("hi")
    assert len(calls) == 1  # a 200 was billed: never retried


@pytest.mark.parametrize(
    "header", ["abc", "", "nan", "NaN", "1,5", "inf", "-inf", "1e309", "-1", "1_000", " 0.5 x"]
)
def test_malformed_credits_header_keeps_the_paid_reply(
    mock_client: MakeClient, header: str
) -> None:
    client = mock_client(lambda r: json_reply(CHAT_OK, **{"x-remaining-credits": header}))
    assert client.credits() == 1.0  # a known balance first, so "unknown" is a change
    with pytest.warns(RuntimeWarning, match="x-remaining-credits.*malformed") as warned:
        reply = client.chat("hi")
    assert reply.text == "hello" and reply.credits_remaining is None
    assert client.credits_last is None and client.spent is None  # unknown, not guessed
    assert "balance is unknown" in str(warned[0].message)


def test_a_good_credits_header_after_a_bad_one_restores_the_balance(
    mock_client: MakeClient,
) -> None:
    headers = iter(["NaN", "0.75"])
    client = mock_client(lambda r: json_reply(CHAT_OK, **{"x-remaining-credits": next(headers)}))
    with pytest.warns(RuntimeWarning):
        client.chat("a")
    assert client.chat("b").credits_remaining == 0.75 and client.credits_last == 0.75


def test_a_run_stores_replies_whose_credits_header_is_malformed(isolated_home: Any) -> None:
    import llamakit as lk

    client = Client(
        "SG_mocktestkey0001",
        base_url="http://api.test/v1",
        transport=httpx.MockTransport(
            routed(lambda r: json_reply(CHAT_OK, **{"x-remaining-credits": "1e309"}))
        ),
        check_context=False,
    )
    exp = lk.Experiment("hdr", prompts={"p": "Say {{ w }}"}, dataset=[{"w": "a"}, {"w": "b"}])
    with pytest.warns(RuntimeWarning, match="too large"):
        run = exp.run(client, progress=False, concurrency=1)
    assert run.results["response"].tolist() == ["hello", "hello"]
    assert run.results["error"].isna().all()


@pytest.mark.parametrize("header", ["0.99937", "0", "12", "1.5e-3", " 0.25 "])
def test_well_formed_credits_headers(header: str) -> None:
    from llamakit.client.headers import parse_credits_header

    value, why = parse_credits_header(header)
    assert why is None and value == Decimal(header)  # exact, as the header wrote it


def test_error_body_shapes(mock_client: MakeClient) -> None:
    cases: list[tuple[int, Any, type[Exception], str]] = [
        (401, {"error": "Invalid API key"}, AuthenticationError, "Invalid API key"),
        (
            400,
            {"error": {"message": "bad response_format"}},
            UnprocessableRequestError,
            "bad response_format",
        ),
        (422, {"detail": "messages missing"}, UnprocessableRequestError, "messages missing"),
        (500, "plain", ServerError, "plain"),
    ]
    for status, body, cls, text in cases:
        client = mock_client(
            lambda r, s=status, b=body: json_reply(b, s), max_retries=0, retry_policy=None
        )
        with pytest.raises(cls) as info:
            client.chat("hi")
        assert text in str(info.value)
        assert info.value.status == status  # type: ignore[attr-defined]


# 1994-11-06 08:49:37 GMT, the example of RFC 9110 §5.6.7, in its three forms.
RFC_FORMS = [
    "Sun, 06 Nov 1994 08:49:37 GMT",
    "Sunday, 06-Nov-94 08:49:37 GMT",
    "Sun Nov  6 08:49:37 1994",
]
EPOCH_OF_EXAMPLE = 784111777.0


@pytest.mark.parametrize("value", RFC_FORMS)
def test_http_dates_in_every_rfc_9110_form_are_gmt(value: str) -> None:
    from llamakit.client.headers import parse_http_date

    assert parse_http_date(value) == EPOCH_OF_EXAMPLE
    assert parse_retry_after(value, now=EPOCH_OF_EXAMPLE - 3) == 3.0


@pytest.mark.parametrize(
    "value", ["Sun, 06 Nov 1994 08:49:37 PST", "Sun, 32 Nov 1994 08:49:37 GMT", "Nov 6 1994", "1_0"]
)
def test_malformed_retry_after_is_unusable(value: str) -> None:
    assert parse_retry_after(value) is None


def test_rfc850_two_digit_years_are_read_within_50_years() -> None:
    from llamakit.client.headers import parse_http_date

    now = 1796000000.0  # late 2026
    assert time.gmtime(parse_http_date("Monday, 01-Jan-30 00:00:00 GMT", now)).tm_year == 2030
    assert time.gmtime(parse_http_date("Friday, 01-Jan-99 00:00:00 GMT", now)).tm_year == 1999


def test_retry_after_dates_are_gmt_in_any_time_zone() -> None:
    # A fresh interpreter under New York time: the asctime form was once read as local time,
    # turning a 3 s wait into 18,003 s.
    import os
    import subprocess
    import sys

    code = """
import calendar, time
from llamakit.client.headers import parse_retry_after
assert time.timezone != 0, "TZ did not take effect"
now = time.time()
when = time.gmtime(now + 3)
forms = [
    time.strftime("%a, %d %b %Y %H:%M:%S GMT", when),
    time.strftime("%A, %d-%b-%y %H:%M:%S GMT", when),
    time.strftime("%a %b ", when) + f"{when.tm_mday:2d}" + time.strftime(" %H:%M:%S %Y", when),
]
print(" ".join(f"{parse_retry_after(f, now=now):.1f}" for f in forms))
"""
    env = {**os.environ, "TZ": "America/New_York", "LC_ALL": "C"}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    waits = [float(w) for w in out.stdout.split()]
    assert len(waits) == 3 and all(2.0 <= w <= 3.0 for w in waits), out.stdout


def test_request_id_comes_from_the_header(mock_client: MakeClient) -> None:
    client = mock_client(lambda r: json_reply({"error": "nope"}, 401, **{"x-request-id": "req-42"}))
    with pytest.raises(AuthenticationError) as info:
        client.chat("hi")
    assert info.value.request_id == "req-42"


def test_rate_limit_without_retry_after_still_retries(mock_client: MakeClient) -> None:
    replies = iter([json_reply({"error": "slow down"}, 429), json_reply(CHAT_OK)])
    r = mock_client(lambda req: next(replies)).chat("hi")
    assert r.attempts == 2


def test_retry_after_above_the_cap_raises_at_once(mock_client: MakeClient) -> None:
    calls = []

    def chat(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        return json_reply({"error": "later"}, 429, **{"retry-after": "3600"})

    with pytest.raises(RateLimitError) as info:
        mock_client(chat).chat("hi")
    assert info.value.retry_after == 3600 and len(calls) == 1


def test_parse_retry_after_forms() -> None:
    assert parse_retry_after("2") == 2.0
    assert parse_retry_after(" 0.5 ") == 0.5
    assert parse_retry_after("-3") == 0.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    assert parse_retry_after("nan") is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # a date in the past
    assert 50 < parse_retry_after(formatdate(time.time() + 60, usegmt=True)) <= 61  # type: ignore[operator]


# ---- fuzzing: any 200 body yields a ChatResponse or an APIResponseError, nothing else ----------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=6),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=10,
)
choice = st.fixed_dictionaries(
    {},
    optional={
        "message": st.fixed_dictionaries(
            {}, optional={"role": json_values, "content": json_values | st.text()}
        ),
        "finish_reason": json_values,
    },
)
completion = st.fixed_dictionaries(
    {},
    optional={
        "choices": st.lists(choice | json_values, max_size=2) | json_values,
        "usage": st.dictionaries(
            st.sampled_from(["prompt_tokens", "total_tokens", "x"]), json_values
        )
        | json_values,
        "model": json_values,
        "id": json_values,
    },
)
bodies = st.one_of(
    completion.map(lambda d: json.dumps(d).encode()),
    json_values.map(lambda d: json.dumps(d).encode()),
    st.binary(max_size=30),
)


@settings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    body=bodies,
    header=st.none() | st.text(st.characters(min_codepoint=33, max_codepoint=126), max_size=8),
)
def test_fuzz_chat_reply_parsing(mock_client: MakeClient, body: bytes, header: str | None) -> None:
    headers = {} if header is None else {"x-remaining-credits": header}
    client = mock_client(lambda r: httpx.Response(200, content=body, headers=headers))
    try:
        r = client.chat("hi")
    except APIResponseError:
        return
    assert isinstance(r.text, str)
    assert r.usage.prompt_tokens is None or isinstance(r.usage.prompt_tokens, int)


@settings(max_examples=100, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(status=st.integers(200, 599), body=bodies)
def test_fuzz_any_status_and_body_gives_a_typed_outcome(
    mock_client: MakeClient, status: int, body: bytes
) -> None:
    client = mock_client(
        lambda r: httpx.Response(status, content=body), max_retries=0, retry_policy=None
    )
    try:
        r = client.chat("hi")
    except APIStatusError as exc:
        assert status >= 300 and exc.status == status and str(exc).startswith(f"HTTP {status}")
        return
    except APIResponseError:
        assert status < 300
        return
    assert status < 300 and isinstance(r, ChatResponse)
