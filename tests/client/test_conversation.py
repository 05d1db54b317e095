"""Conversation: history holds only completed turns; the store sees every attempt at a turn."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from llamakit import ChatResponse, Conversation, InsufficientCreditsError, ValidationError


class RecordingStore:
    def __init__(self) -> None:
        self.turns: list[dict[str, Any]] = []

    def record_chat_turn(self, **kw: Any) -> None:
        self.turns.append(kw)


def test_turns_accumulate_and_undo(server: Any) -> None:
    conv = Conversation(server.client(), system="You are terse.")
    first = conv.send("Name a colour.", max_tokens=8)
    second = conv.send("Another one.", max_tokens=8)
    assert isinstance(first, ChatResponse) and len(conv) == 2
    assert [m["role"] for m in conv.messages] == [
        "system",
        "user",
        "assistant",
        "user",
        "assistant",
    ]
    assert conv.messages[2]["content"] == first.text and conv.messages[4]["content"] == second.text
    user, assistant = conv.undo()
    assert (
        user == {"role": "user", "content": "Another one."} and assistant["content"] == second.text
    )
    assert len(conv) == 1 and len(conv.messages) == 3
    conv.undo()
    assert conv.messages == [{"role": "system", "content": "You are terse."}]
    with pytest.raises(IndexError):
        conv.undo()


def test_the_history_is_what_was_sent(server: Any) -> None:
    conv = Conversation(server.client())
    conv.send("one")
    conv.messages.append({"role": "user", "content": "tampering with a copy"})
    assert len(conv.messages) == 2
    reply = conv.send("two")
    assert reply.raw["usage"]["prompt_tokens"] > 0 and len(conv.messages) == 4


def test_errors_leave_the_history_unchanged_and_are_recorded(server: Any) -> None:
    store = RecordingStore()
    conv = Conversation(server.client(), store=store)
    conv.send("hello")
    before = conv.messages
    server.set_credits(0.0)
    with pytest.raises(InsufficientCreditsError):
        conv.send("this one fails")
    with pytest.raises(ValidationError):
        conv.send("bad params", temperature=7)
    assert conv.messages == before and len(conv) == 1
    assert [(t["index"], t["error"]) for t in store.turns] == [
        (0, None),
        (1, "InsufficientCreditsError"),
        (1, "ValidationError"),
    ]
    assert store.turns[0]["response"].text == conv.messages[1]["content"]
    assert store.turns[1]["messages"][-1] == {"role": "user", "content": "this one fails"}
    assert store.turns[1]["response"] is None
    assert len({t["conversation_id"] for t in store.turns}) == 1


def test_to_frame(server: Any) -> None:
    conv = Conversation(server.client(), system="sys")
    conv.send("a", max_tokens=4)
    conv.send("b", max_tokens=4)
    frame = conv.to_frame()
    assert list(frame["role"]) == ["system", "user", "assistant", "user", "assistant"]
    assert list(frame["turn"].astype("object").fillna(-1)) == [-1, 0, 0, 1, 1]
    assert frame.loc[2, "completion_tokens"] > 0 and frame.loc[4, "finish_reason"] in (
        "stop",
        "length",
    )
    assert Conversation(server.client()).to_frame().empty


def test_async_conversation(server: Any) -> None:
    async def go() -> list[dict[str, str]]:
        async with server.async_client() as client:
            conv = Conversation(client, system="s")
            await conv.asend("hi")
            with pytest.raises(TypeError, match="asend"):
                conv.send("sync send on an async client")
            return conv.messages

    messages = asyncio.run(go())
    assert [m["role"] for m in messages] == ["system", "user", "assistant"]
