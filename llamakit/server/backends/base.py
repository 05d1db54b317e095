"""What every backend provides: an async `generate` from a validated ChatRequest."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from ..validation import ChatRequest


class BackendError(Exception):
    """The backend could not produce a reply; nothing is billed. `status` is what the server
    answers: 500 by default, 422 when the request itself can never succeed on this backend (so
    clients do not retry it), 429 when an upstream asks us to slow down."""

    def __init__(self, message: str, *, status: int = 500, retry_after: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


@dataclass(frozen=True)
class Generation:
    text: str
    finish_reason: str  # "stop" | "length"
    # None: the server's own count, made once when the request was admitted (inference.admit);
    # a backend sets it only when it has a count of its own (an upstream's usage, SmolLM2's).
    prompt_tokens: int | None
    completion_tokens: int
    # Extra usage fields (e.g. smollm2's own token counts), merged into the response's `usage`.
    usage_extras: dict[str, Any] = field(default_factory=dict)


class Backend(Protocol):
    name: str

    async def start(self) -> None:
        """Load what the backend needs; runs once before the server accepts requests."""
        ...

    async def generate(self, request: ChatRequest, slug: str) -> Generation: ...

    async def aclose(self) -> None: ...
