"""A multi-turn chat whose history only ever holds completed turns."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any, Protocol

from ..errors import LlamakitError, ValidationError
from .messages import is_blank
from .types import ChatResponse

if TYPE_CHECKING:
    import pandas as pd

    from .client import AsyncClient, Client


class ChatTurnStore(Protocol):
    def record_chat_turn(
        self,
        *,
        conversation_id: str,
        index: int,
        messages: list[dict[str, Any]],
        response: ChatResponse | None,
        error: str | None,
    ) -> None: ...


class Conversation:
    """History + ``send(text)``. A failed send leaves the history exactly as it was.

    With a ``store``, every attempt at a turn (success or error) is recorded with the messages
    that were sent. Works with ``Client`` (``send``) and ``AsyncClient`` (``await asend``).
    """

    def __init__(
        self,
        client: Client | AsyncClient,
        system: str | None = None,
        store: ChatTurnStore | None = None,
        *,
        conversation_id: str | None = None,
    ) -> None:
        self.client = client
        self.store = store
        self.id = conversation_id or uuid.uuid4().hex
        self._messages: list[dict[str, str]] = []
        if system is not None:
            self._messages.append({"role": "system", "content": system})
        # One entry per completed turn: the response that produced its assistant message.
        self._responses: list[ChatResponse] = []

    @property
    def messages(self) -> list[dict[str, str]]:
        """A copy of the history (system, then user/assistant pairs)."""
        return [dict(m) for m in self._messages]

    @property
    def responses(self) -> list[ChatResponse]:
        return list(self._responses)

    def __len__(self) -> int:
        """Number of completed turns."""
        return len(self._responses)

    def send(self, text: str, **params: Any) -> ChatResponse:
        sent = self._next_messages(text)
        try:
            response = self.client.chat(sent, **params)
        except LlamakitError as exc:
            self._record(sent, None, exc)
            raise
        if not isinstance(response, ChatResponse):  # an AsyncClient returns a coroutine
            response.close()
            raise TypeError("this Conversation has an AsyncClient: use `await conv.asend(text)`")
        return self._commit(sent, response)

    async def asend(self, text: str, **params: Any) -> ChatResponse:
        sent = self._next_messages(text)
        try:
            response = await self.client.chat(sent, **params)  # type: ignore[misc]
        except LlamakitError as exc:
            self._record(sent, None, exc)
            raise
        return self._commit(sent, response)

    def undo(self) -> tuple[dict[str, str], dict[str, str]]:
        """Drop the last turn (user message and reply) and return it; IndexError if none."""
        if not self._responses:
            raise IndexError("nothing to undo: the conversation has no turns")
        self._responses.pop()
        assistant = self._messages.pop()
        user = self._messages.pop()
        return user, assistant

    def to_frame(self) -> pd.DataFrame:
        """One row per message: turn, role, content, and the reply's metadata on assistant rows."""
        import pandas as pd

        rows: list[dict[str, Any]] = []
        offset = 1 if self._messages and self._messages[0]["role"] == "system" else 0
        if offset:
            rows.append({"turn": None, "role": "system", "content": self._messages[0]["content"]})
        for turn, i in enumerate(range(offset, len(self._messages), 2)):
            response = self._responses[turn]
            rows.append({"turn": turn, "role": "user", "content": self._messages[i]["content"]})
            rows.append(
                {
                    "turn": turn,
                    "role": "assistant",
                    "content": self._messages[i + 1]["content"],
                    "finish_reason": response.finish_reason,
                    "prompt_tokens": response.usage.prompt_tokens,
                    "completion_tokens": response.usage.completion_tokens,
                    "latency_s": response.latency_s,
                    "credits_remaining": response.credits_remaining,
                }
            )
        columns = [
            "turn",
            "role",
            "content",
            "finish_reason",
            "prompt_tokens",
            "completion_tokens",
            "latency_s",
            "credits_remaining",
        ]
        frame = pd.DataFrame(rows, columns=columns)
        frame["turn"] = frame["turn"].astype("Int64")
        return frame

    def _next_messages(self, text: str) -> list[dict[str, str]]:
        if isinstance(text, str) and is_blank(text):
            # A blank turn would be sent and billed, and the model answers the history instead.
            raise ValidationError(
                "the message is empty (or only invisible characters); write something to send",
                field="text",
            )
        return [*self.messages, {"role": "user", "content": text}]

    def _commit(self, sent: list[dict[str, str]], response: ChatResponse) -> ChatResponse:
        index = len(self._responses)
        # The paid reply joins the conversation first: a store that fails to record it (and
        # keeps it in its spill file) raises StoreError, but the reply is not lost here either.
        self._messages = [*sent, {"role": "assistant", "content": response.text}]
        self._responses.append(response)
        self._record(sent, response, None, index=index)
        return response

    def _record(
        self,
        sent: list[dict[str, str]],
        response: ChatResponse | None,
        exc: Exception | None,
        *,
        index: int | None = None,
    ) -> None:
        if self.store is None:
            return
        self.store.record_chat_turn(
            conversation_id=self.id,
            index=len(self._responses) if index is None else index,
            messages=sent,
            response=response,
            error=None if exc is None else type(exc).__name__,
        )

    def __repr__(self) -> str:
        return f"Conversation(id={self.id!r}, turns={len(self)})"
