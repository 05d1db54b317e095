"""Every status the server can answer maps to its own exception class (real HTTP, local server)."""

from __future__ import annotations

from typing import Any

import pytest
from client_helpers import FAST, settled_stats

from llamakit import (
    Attempt,
    AuthenticationError,
    InsufficientCreditsError,
    MethodNotAllowedError,
    NotFoundError,
    RateLimitError,
    ServerError,
    UnprocessableRequestError,
    ValidationError,
)
from llamakit.client.core import Request
from llamakit.client.parse import parse_chat


def attempts_of(server: Any, **kw: Any) -> tuple[Any, list[Attempt]]:
    seen: list[Attempt] = []
    kw.setdefault("retry_policy", FAST)
    return server.client(on_attempt=seen.append, **kw), seen


def test_401_wrong_key_is_final_and_says_where_the_key_comes_from(server: Any) -> None:
    client, seen = attempts_of(server, api_key="SG_wrongkey123")
    with pytest.raises(AuthenticationError) as info:
        client.chat("hi")
    assert info.value.status == 401 and "SEGMIND_API_KEY" in str(info.value)
    assert [a.status for a in seen] == [401]  # never retried
    assert server.stats()["billed_calls"] == 0


def test_404_wrong_slug(server: Any) -> None:
    client, seen = attempts_of(server, model="llama-v9-nope")
    with pytest.raises(NotFoundError, match="slug"):
        client.chat("hi")
    assert [a.status for a in seen] == [404]


def test_405_wrong_method_on_a_known_path(server: Any) -> None:
    client, _ = attempts_of(server)
    # The public API only POSTs chat; drive the same retry loop with a GET to reach the 405 path.
    plan = client._core._attempts(
        Request("GET", f"{client.base_url}/{client.model}"), parse_chat, None
    )
    with pytest.raises(MethodNotAllowedError) as info:
        client._drive(plan)
    assert info.value.status == 405


def test_406_no_credits_carries_the_balance(server: Any) -> None:
    server.set_credits(0.0)
    client, seen = attempts_of(server)
    with pytest.raises(InsufficientCreditsError) as info:
        client.chat("hi")
    assert (
        info.value.balance == 0.0 and "0.000000" in str(info.value) and "Top up" in str(info.value)
    )
    assert [a.status for a in seen] == [406]


def test_422_bad_body_sent_past_validation(server: Any) -> None:
    client, seen = attempts_of(server)
    with pytest.raises(UnprocessableRequestError) as info:
        client.chat("hi", extra_body={"messages": "not a list"})  # extra_body is sent unchecked
    assert info.value.status == 422 and info.value.server_message
    assert [a.status for a in seen] == [422]


def test_429_from_the_rpm_limit() -> None:
    import llamakit

    with llamakit.local_server(backend="scripted", rpm=2) as srv:
        client = srv.client(max_retries=0)
        client.chat("a")
        client.chat("b")
        with pytest.raises(RateLimitError) as info:
            client.chat("c")
    assert info.value.status == 429 and info.value.retry_after is not None
    assert info.value.retry_after >= 1


def test_500_after_retries_are_exhausted(server: Any) -> None:
    server.set_faults(fail_rate=1.0)
    client, seen = attempts_of(server, retry_policy=FAST.__class__(max_retries=2, base_delay=0.001))
    with pytest.raises(ServerError) as info:
        client.chat("hi")
    assert info.value.status == 500
    assert [(a.attempt, a.status, a.error) for a in seen] == [
        (1, 500, "ServerError"),
        (2, 500, "ServerError"),
        (3, 500, "ServerError"),
    ]
    stats = settled_stats(server, lambda s: s["requests"].get("500") == 3)
    assert stats["requests"]["500"] == 3 and stats["billed_calls"] == 0


def test_validation_errors_send_nothing(server: Any) -> None:
    client, seen = attempts_of(server)
    before = server.stats()["requests"]
    for bad in ([], [{"role": "robot", "content": "x"}], "hi"):
        with pytest.raises(ValidationError):
            client.chat(bad, temperature=9 if bad == "hi" else 0.5)
    assert server.stats()["requests"] == before and seen == []


def test_missing_key_is_a_validation_error_before_any_request(server: Any) -> None:
    from llamakit import Client

    client = Client(base_url=server.url + "/v1")
    with pytest.raises(ValidationError) as info:
        client.chat("hi")
    assert info.value.field == "api_key"
    assert server.stats()["requests"] == {}


def test_context_overflow_is_caught_before_sending(server: Any) -> None:
    client, _ = attempts_of(server)
    with pytest.raises(ValidationError) as info:
        client.chat("word " * 9000, max_tokens=100)
    assert "8192" in str(info.value)
    assert server.stats()["requests"] == {}
    # check_context=False hands the decision to the server
    unchecked, _ = attempts_of(server, check_context=False)
    with pytest.raises(UnprocessableRequestError):
        unchecked.chat("word " * 9000, max_tokens=100)
