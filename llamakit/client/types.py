"""Value types the client returns: frozen dataclasses, safe to log, compare and store.

``ChatResponse`` and ``Attempt`` are contracts: the experiment runner stores their fields in SQLite,
so fields are only ever added (with defaults), never renamed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Literal

Role = Literal["system", "user", "assistant"]


@dataclass(frozen=True)
class Message:
    """One chat turn. ``Message("user", "hi")`` is interchangeable with ``{"role": "user", ...}``."""

    role: Role
    content: str

    def to_dict(self) -> dict[str, str]:
        return {"role": self.role, "content": self.content}


@dataclass(frozen=True)
class Usage:
    """Token counts as the server reported them (None when it did not say)."""

    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    total_tokens: int | None = None
    # Anything else the server put in ``usage`` (e.g. the local server's backend_* counts).
    extras: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ChatResponse:
    """The answer to one logical chat call (after any retries).

    ``latency_s`` is the duration of the HTTP attempt that succeeded; ``started_at``/``finished_at``
    (unix seconds) span the whole call, including rate-limit waits and retries.
    ``credits_remaining`` is the ``x-remaining-credits`` header of that response, as the exact
    ``Decimal`` its text states (None if absent).
    """

    text: str
    usage: Usage
    finish_reason: str | None
    credits_remaining: Decimal | None
    latency_s: float
    request_id: str | None
    model: str | None
    raw: dict[str, Any]
    attempts: int
    started_at: float
    finished_at: float
    # Links this response to the Attempt records reported for the same logical call.
    call_id: str = ""


@dataclass(frozen=True)
class Attempt:
    """One HTTP attempt of a logical call, as reported to ``Client(on_attempt=...)``.

    ``status`` is None when no HTTP answer arrived (timeout, dropped connection); ``error`` is the
    llamakit exception class name and ``message`` its text (never containing the API key).
    """

    call_id: str
    attempt: int
    status: int | None
    error: str | None
    message: str | None
    latency_s: float
    credits_remaining: Decimal | None
    started_at: float
    finished_at: float


@dataclass(frozen=True)
class Job:
    """A chat submitted on the v2 path (``Client.submit``); pass it to ``Client.wait``."""

    request_id: str
    status_url: str
    response_url: str
    call_id: str
    submitted_at: float
