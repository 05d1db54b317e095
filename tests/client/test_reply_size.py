"""Replies over ``max_response_bytes`` fail with a clear error instead of growing memory."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from client_helpers import CHAT_OK, MOCK_KEY, MOCK_URL, json_reply, routed, settled_stats

from llamakit import APIResponseError, Client, ValidationError
from llamakit._defaults import DEFAULT_MAX_RESPONSE_BYTES


def test_a_reply_over_the_cap_is_refused_and_not_resent(server: Any) -> None:
    client = server.client(max_response_bytes=100)  # a scripted chat reply is ~400 bytes
    with pytest.raises(APIResponseError, match="max_response_bytes=100.*billed") as info:
        client.chat("hi")
    assert "HTTP 200" in str(info.value)
    assert settled_stats(server, lambda s: s["billed_calls"] >= 1)["billed_calls"] == 1
    assert server.client().chat("hi").text  # the default cap lets ordinary replies through


def test_an_endless_body_without_length_is_cut_at_the_cap() -> None:
    produced = []

    def endless() -> Iterator[bytes]:
        while True:
            produced.append(1)
            yield b"x" * 65536

    def chat(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=endless(), headers={"content-type": "application/json"})

    client = Client(
        MOCK_KEY,
        base_url=MOCK_URL,
        transport=httpx.MockTransport(routed(chat)),
        max_response_bytes=1_000_000,
        check_context=False,
    )
    with pytest.raises(APIResponseError, match="max_response_bytes"):
        client.chat("hi")
    assert len(produced) <= 17  # read up to the cap (16 chunks), not forever


def test_a_declared_length_over_the_cap_fails_before_reading() -> None:
    def chat(request: httpx.Request) -> httpx.Response:
        return json_reply(CHAT_OK, **{"content-length": str(10 * DEFAULT_MAX_RESPONSE_BYTES)})

    client = Client(
        MOCK_KEY,
        base_url=MOCK_URL,
        transport=httpx.MockTransport(routed(chat)),
        check_context=False,
    )
    with pytest.raises(APIResponseError, match="max_response_bytes"):
        client.chat("hi")


@pytest.mark.parametrize("value", [0, -5, 1.5, "10", True])
def test_bad_caps_are_refused(value: Any) -> None:
    with pytest.raises(ValidationError, match="max_response_bytes"):
        Client(MOCK_KEY, max_response_bytes=value)


def gzip_client(body: bytes, **kw: Any) -> Client:
    import gzip

    packed = gzip.compress(body)

    def chat(request: httpx.Request) -> httpx.Response:
        headers = {"content-type": "application/json", "content-encoding": "gzip"}
        return httpx.Response(200, content=packed, headers=headers)

    return Client(
        MOCK_KEY,
        base_url=MOCK_URL,
        transport=httpx.MockTransport(routed(chat)),
        check_context=False,
        **kw,
    )


def test_a_compressed_reply_is_decoded_once() -> None:
    import json

    assert gzip_client(json.dumps(CHAT_OK).encode()).chat("hi").text == "hello"


def test_the_cap_applies_to_the_decoded_size() -> None:
    # 4 MB of spaces compress to ~4 KB: the cap is on what would sit in memory.
    bomb = b'{"choices": []' + b" " * 4_000_000 + b"}"
    with pytest.raises(APIResponseError, match="max_response_bytes=1000000"):
        gzip_client(bomb, max_response_bytes=1_000_000).chat("hi")
