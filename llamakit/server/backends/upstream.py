"""The upstream backend: forward to an OpenAI-compatible server (vLLM, Ollama, llama.cpp server)
that serves the real Llama 3 8B. Its API key is its own, separate from the ledger's keys."""

from __future__ import annotations

from typing import Any

import httpx

from ..tokencount import count_messages, count_text
from ..validation import ChatRequest
from .base import BackendError, Generation


class UpstreamBackend:
    name = "upstream"

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        model: str | None = None,
        *,
        timeout: float = 120.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.model = model
        self._api_key = api_key
        self._timeout = timeout
        self._client: httpx.AsyncClient | None = None

    def __repr__(self) -> str:
        return f"UpstreamBackend(base_url={self.base_url!r}, model={self.model!r})"

    async def start(self) -> None:
        headers = {"Authorization": f"Bearer {self._api_key}"} if self._api_key else {}
        self._client = httpx.AsyncClient(
            base_url=self.base_url, headers=headers, timeout=self._timeout
        )

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def generate(self, request: ChatRequest, slug: str) -> Generation:
        if self._client is None:
            raise BackendError("upstream backend not started")
        body: dict[str, Any] = {
            "model": self.model or slug,
            "messages": request.messages,
            "max_tokens": request.max_tokens,
            **request.sampling(),
        }
        try:
            resp = await self._client.post("/chat/completions", json=body)
        except httpx.HTTPError as exc:
            raise BackendError(f"upstream unreachable: {type(exc).__name__}") from exc
        if resp.status_code != 200:
            # The caller's request was bad (final for the client), or the upstream wants us to slow
            # down; anything else is this server's problem (500, retryable).
            status = {400: 422, 422: 422, 429: 429}.get(resp.status_code, 500)
            raise BackendError(
                f"upstream answered {resp.status_code}: {_error_text(resp)}",
                status=status,
                retry_after=resp.headers.get("retry-after"),
            )
        try:
            data = resp.json()
            choice = data["choices"][0]
            text = choice["message"].get("content") or ""
        except (ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:
            raise BackendError("upstream sent a malformed completion") from exc
        usage = data.get("usage") or {}
        return Generation(
            text=text,
            finish_reason=choice.get("finish_reason") or "stop",
            # The upstream serves the real model, so its counts are the real ones.
            prompt_tokens=int(usage.get("prompt_tokens") or count_messages(request.messages)),
            completion_tokens=int(usage.get("completion_tokens") or count_text(text)),
        )


def _error_text(resp: httpx.Response) -> str:
    try:
        err = resp.json().get("error")
    except (ValueError, AttributeError):
        return resp.text[:200]
    if isinstance(err, dict):
        err = err.get("message")
    return str(err)[:200]
