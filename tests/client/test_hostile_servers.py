"""Servers that send what no good server sends: a header with a non-ASCII byte, a 2xx status line
followed by a broken or missing head, a v2 status poll trickled a byte at a time, statuses outside
the usual set. A paid reply is never lost, a probably-billed call is never resent, wait() and
deadline= bound what they promise, and each message says what happened."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import Callable
from typing import Any

import pytest
from client_helpers import CHAT_OK, FAST, settled_stats
from raw_servers import Respond, plain, raw_server, url_of

from llamakit import (
    APIConnectionError,
    APITimeoutError,
    AsyncClient,
    Client,
    ServerError,
    UnprocessableRequestError,
)

KEY = "SG_hostile_test_key_01"
BODY = json.dumps(CHAT_OK).encode()


def head_then_body(head: bytes, body: bytes = BODY) -> Respond:
    """``head`` (status line and headers, without the blank line), then the body."""

    def respond(sock: socket.socket, request: bytes) -> None:
        sock.sendall(
            head
            + b"content-type: application/json\r\n"
            + b"content-length: %d\r\nconnection: close\r\n\r\n" % len(body)
            + body
        )

    return respond


def raw(data: bytes) -> Respond:
    def respond(sock: socket.socket, request: bytes) -> None:
        sock.sendall(data)

    return respond


def posts(srv: Any) -> int:
    return sum(1 for r in srv.seen if r.startswith(b"POST"))


def client_for(srv: Any, **kw: Any) -> Client:
    kw.setdefault("retry_policy", FAST)
    return Client(KEY, base_url=url_of(srv) + "/v1", check_context=False, **kw)


# ---- 1. a header with a byte outside ASCII never costs the paid reply ----------------------


@pytest.mark.parametrize(
    "header",
    [b"server: caf\xe9", b"x-note: \xe2\x9c\x93 done", b"x-request-id: r\xff1"],
    ids=["latin1", "utf8", "invalid-utf8"],
)
def test_a_paid_reply_with_a_non_ascii_header_is_returned(header: bytes) -> None:
    head = b"HTTP/1.1 200 OK\r\n" + header + b"\r\nx-remaining-credits: 0.5\r\n"
    with raw_server(head_then_body(head)) as srv:
        reply = client_for(srv).chat("hi")
    assert reply.text == "hello" and str(reply.credits_remaining) == "0.5"
    assert posts(srv) == 1


@pytest.mark.parametrize(
    "value", ["\uff13".encode(), "\u0663.5".encode(), b"0.5\xe9", b"\xef\xbc\x90.5"]
)
def test_a_non_ascii_credits_header_keeps_the_reply_and_marks_the_balance_unknown(
    value: bytes,
) -> None:
    head = b"HTTP/1.1 200 OK\r\nx-remaining-credits: " + value + b"\r\n"
    with raw_server(head_then_body(head)) as srv:
        client = client_for(srv)
        with pytest.warns(RuntimeWarning, match="x-remaining-credits.*malformed"):
            reply = client.chat("hi")
    assert reply.text == "hello" and reply.credits_remaining is None
    assert client.credits_last is None and posts(srv) == 1


def test_an_error_status_with_a_non_ascii_header_is_the_typed_error() -> None:
    head = b"HTTP/1.1 401 Unauthorized\r\nserver: caf\xe9\r\n"
    with (
        raw_server(head_then_body(head, b'{"error": "bad key"}')) as srv,
        pytest.raises(Exception) as info,
    ):
        client_for(srv).chat("hi")
    assert info.value.__class__.__name__ == "AuthenticationError"


def test_the_async_client_keeps_a_reply_with_a_non_ascii_header() -> None:
    async def call(url: str) -> str:
        async with AsyncClient(KEY, base_url=url, check_context=False) as client:
            return (await client.chat("hi")).text

    head = b"HTTP/1.1 200 OK\r\nserver: caf\xe9\r\n"
    with raw_server(head_then_body(head)) as srv:
        assert asyncio.run(call(url_of(srv) + "/v1")) == "hello"


# ---- 2. a 2xx status line, then a head that never arrives whole: probably billed ------------

BROKEN_HEADS = {
    "closed-after-status": b"HTTP/1.1 200 OK\r\n",
    "closed-mid-status": b"HTTP/1.1 200",
    "space-before-colon": b"HTTP/1.1 200 OK\r\nx-a : b\r\ncontent-length: 2\r\n\r\n{}",
    "nul-in-value": b"HTTP/1.1 200 OK\r\nx-a: b\x00\r\ncontent-length: 2\r\n\r\n{}",
    "two-lengths": b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-length: 9\r\n\r\n{}",
    "no-colon": b"HTTP/1.1 201 Created\r\nnot a header line\r\n\r\n{}",
    "cut-mid-headers": b"HTTP/1.1 200 OK\r\ncontent-type: appl",
}


@pytest.mark.parametrize("data", BROKEN_HEADS.values(), ids=BROKEN_HEADS.keys())
def test_a_2xx_status_line_with_a_broken_head_is_not_resent(data: bytes) -> None:
    with raw_server(raw(data)) as srv, pytest.raises(APIConnectionError) as info:
        client_for(srv).chat("hi")
    err = info.value
    assert err.may_be_billed, err
    assert "probably billed" in str(err) and 'api="v2"' in str(err)
    assert posts(srv) == 1  # a retry would have been paid again


def test_an_error_status_line_with_a_broken_head_is_retried() -> None:
    # A 503 is not billed however its head ends: resending it is safe, and the policy does.
    with (
        raw_server(raw(b"HTTP/1.1 503 Busy\r\nx-a : b\r\n\r\n")) as srv,
        pytest.raises(APIConnectionError) as info,
    ):
        client_for(srv).chat("hi")
    assert not info.value.may_be_billed
    assert posts(srv) == 1 + FAST.max_retries


def test_a_dropped_connection_without_a_status_line_is_still_retried() -> None:
    with raw_server(raw(b"")) as srv, pytest.raises(APIConnectionError) as info:
        client_for(srv).chat("hi")
    assert not info.value.may_be_billed and posts(srv) == 1 + FAST.max_retries


def test_the_async_client_does_not_resend_a_broken_2xx_head() -> None:
    async def call(url: str) -> None:
        async with AsyncClient(KEY, base_url=url, check_context=False, retry_policy=FAST) as c:
            await c.chat("hi")

    with (
        raw_server(raw(b"HTTP/1.1 200 OK\r\n")) as srv,
        pytest.raises(APIConnectionError) as info,
    ):
        asyncio.run(call(url_of(srv) + "/v1"))
    assert info.value.may_be_billed and posts(srv) == 1


def test_a_v2_submission_with_a_broken_head_is_not_resent() -> None:
    with (
        raw_server(raw(b"HTTP/1.1 200 OK\r\nx-a : b\r\n\r\n")) as srv,
        pytest.raises(APIConnectionError) as info,
    ):
        client_for(srv).submit("hi")
    assert info.value.may_be_billed and posts(srv) == 1


# ---- 4. wait(timeout=) bounds the poll in flight --------------------------------------------


def v2_server(poll: Callable[[socket.socket, str], None]) -> Respond:
    def respond(sock: socket.socket, request: bytes) -> None:
        line = request.split(b"\r\n", 1)[0].decode()
        if line.startswith("POST"):
            host = next(
                h.split(b":", 1)[1].strip().decode()
                for h in request.split(b"\r\n")
                if h.lower().startswith(b"host:")
            )
            base = f"http://{host}/v2/requests/r1"
            body = {"request_id": "r1", "status_url": base + "/status", "response_url": base}
            plain(200, json.dumps(body).encode(), x_remaining_credits="0.5")(sock, request)
        else:
            poll(sock, line)

    return respond


def trickled_status(sock: socket.socket, line: str) -> None:
    body = b'{"status": "PROCESSING", "request_id": "r1"}'
    sock.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % len(body))
    for byte in body:
        time.sleep(0.3)
        sock.sendall(bytes([byte]))


def test_wait_timeout_bounds_a_trickled_status_poll() -> None:
    with raw_server(v2_server(trickled_status)) as srv:
        client = client_for(srv, timeout=60)
        job = client.submit("hi")
        start = time.monotonic()
        with pytest.raises(APITimeoutError, match=r"wait\(timeout=2s\).*wait\(\) again"):
            client.wait(job, timeout=2, poll_interval=0.1)
        elapsed = time.monotonic() - start
    assert 1.9 <= elapsed < 3.0, elapsed
    assert posts(srv) == 1


def test_async_wait_timeout_bounds_a_trickled_status_poll() -> None:
    async def go(url: str) -> float:
        async with AsyncClient(KEY, base_url=url, check_context=False, timeout=60) as client:
            job = await client.submit("hi")
            start = time.monotonic()
            with pytest.raises(APITimeoutError):
                await client.wait(job, timeout=1.5, poll_interval=0.1)
            return time.monotonic() - start

    with raw_server(v2_server(trickled_status)) as srv:
        elapsed = asyncio.run(go(url_of(srv) + "/v1"))
    assert 1.4 <= elapsed < 2.5, elapsed


def test_wait_on_a_real_server_still_completes(server: Any) -> None:
    client = server.client(timeout=30)
    job = client.submit("hi")
    assert client.wait(job, timeout=20, poll_interval=0.05).text


# ---- 5. deadline= starts when chat() is entered ---------------------------------------------


def test_the_deadline_covers_the_first_call_balance_read() -> None:
    def respond(sock: socket.socket, request: bytes) -> None:
        if b"get-user-credits" in request.split(b"\r\n", 1)[0]:
            time.sleep(3)  # the balance endpoint hangs
        plain(200, BODY, x_remaining_credits="0.5")(sock, request)

    with raw_server(respond, balance_ok=False) as srv:
        client = client_for(srv, timeout=30)
        start = time.monotonic()
        with pytest.raises(APITimeoutError, match="deadline"):
            client.chat("hi", deadline=1)
        elapsed = time.monotonic() - start
    assert elapsed < 1.8, elapsed
    assert posts(srv) == 0  # nothing paid once the deadline had passed


def test_the_deadline_covers_the_context_check(
    server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import llamakit.tokens

    real = llamakit.tokens.preflight

    def slow_preflight(*args: Any) -> None:
        time.sleep(1.2)  # as a first tokenizer load can take
        real(*args)

    monkeypatch.setattr(llamakit.tokens, "preflight", slow_preflight)
    client = server.client(check_context=True)
    # Over 8,192 bytes, so the byte bound cannot vouch for it and the tokenizer must count it.
    long_prompt = "hello " * 1500
    start = time.monotonic()
    with pytest.raises(APITimeoutError, match="deadline"):
        client.chat(long_prompt, deadline=1)
    assert time.monotonic() - start < 1.8
    assert settled_stats(server, lambda s: True)["billed_calls"] == 0


def test_a_deadline_that_is_met_is_unaffected(server: Any) -> None:
    assert server.client().chat("hi", deadline=20).text


# ---- 8. hints follow the status and what the retry loop did ----------------------------------


def test_an_unusual_5xx_says_it_was_sent_once() -> None:
    with raw_server(plain(600, b'{"error": "odd"}')) as srv, pytest.raises(ServerError) as info:
        client_for(srv).chat("hi")
    text = str(info.value)
    assert posts(srv) == 1 and "sent once" in text and "not retried" in text
    assert "outlasted" not in text and "max_retries" not in text


def test_a_retried_503_says_it_gave_up_at_max_retries() -> None:
    with (
        raw_server(plain(503, b'{"error": "busy"}')) as srv,
        pytest.raises(ServerError) as info,
    ):
        client_for(srv).chat("hi")
    assert posts(srv) == 1 + FAST.max_retries
    assert f"sent {1 + FAST.max_retries} times" in str(info.value)
    assert f"max_retries={FAST.max_retries}" in str(info.value)


def test_a_424_points_to_the_server_operator_not_the_request() -> None:
    body = b'{"error": "the upstream server rejected this server\'s configuration"}'
    with raw_server(plain(424, body)) as srv, pytest.raises(UnprocessableRequestError) as info:
        client_for(srv).chat("hi")
    text = str(info.value)
    assert "operator" in text and "check messages and sampling" not in text
    assert posts(srv) == 1 and "sent once" in text


def test_a_422_from_the_real_server_still_points_to_the_request(server: Any) -> None:
    with pytest.raises(UnprocessableRequestError) as info:
        server.client().chat("hi", extra_body={"messages": "not a list"})  # sent unchecked
    text = str(info.value)
    assert info.value.status == 422 and "check messages and sampling" in text
    assert "sent once" in text
