"""The counts where they are used: the client's pre-flight and the local server's ``usage``."""

from __future__ import annotations

from typing import Any

import pytest

import llamakit
from llamakit import tokens

# "cat" + " cat" * k is k + 1 tokens; one user turn adds 10 (template), so this prompt is 8010.
PROMPT_8010 = "cat" + " cat" * 7999


def _sent(server: Any) -> int:
    return sum(server.stats()["requests"].values())


def test_server_usage_is_the_llama_3_count(scripted_server: Any) -> None:
    messages = [
        {"role": "system", "content": "You are a comedian. Be brief."},
        {"role": "user", "content": "tell me a joke on cats"},
    ]
    with scripted_server.client() as client:
        reply = client.chat(messages, max_tokens=40)
    assert reply.usage.prompt_tokens == tokens.count_messages(messages) == 16 + 5 + 8
    assert reply.usage.completion_tokens == tokens.count(reply.text)


def test_client_refuses_a_call_one_token_past_the_window(scripted_server: Any) -> None:
    assert tokens.count_messages(PROMPT_8010) == 8010
    with scripted_server.client() as client:
        client.chat("warm up", max_tokens=1)
        before = _sent(scripted_server)
        with pytest.raises(llamakit.ValidationError) as info:
            client.chat(PROMPT_8010, max_tokens=183)
        assert _sent(scripted_server) == before  # refused before any request (or credit) was spent
        assert info.value.field == "max_tokens"
        assert "8010" in str(info.value) and "183" in str(info.value)

        reply = client.chat(PROMPT_8010, max_tokens=182)  # 8010 + 182 = 8192: exactly fits
        assert reply.usage.prompt_tokens == 8010


def test_without_the_client_check_the_server_refuses_it_too(scripted_server: Any) -> None:
    with (
        scripted_server.client(check_context=False) as client,
        pytest.raises(llamakit.UnprocessableRequestError) as info,
    ):
        client.chat(PROMPT_8010, max_tokens=183)
    assert "8010" in str(info.value) and "183" in str(info.value)


def test_a_million_spaces_in_a_prompt_is_counted_by_client_and_server(
    scripted_server: Any,
) -> None:
    # tiktoken's regex once panicked on such a run: the client raised a BaseException and the
    # server answered 500 to every attempt.
    prompt = "Summarise:" + " " * 1_000_000 + "end"
    expected = tokens.count_messages(prompt)
    assert expected < 8192 - 5
    with scripted_server.client() as client:
        reply = client.chat(prompt, max_tokens=5)
    assert reply.usage.prompt_tokens == expected
