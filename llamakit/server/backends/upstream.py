"""The upstream backend: forward to an OpenAI-compatible server (vLLM, Ollama, llama.cpp server)
that serves the real Llama 3 8B. Its API key is its own, separate from the ledger's keys.

The upstream's key (and any `user:password@` in its URL) is the operator's: it is never passed back
to callers. Everything taken from the upstream's replies is scrubbed of it, and upstream statuses
map to what the caller can act on:

| upstream answers            | callers get | why                                                   |
|-----------------------------|-------------|-------------------------------------------------------|
| 200 with a completion       | 200         |                                                       |
| 400, 422                    | 422 (final) | the caller's request itself was refused               |
| 401, 403, 404               | 424 (final) | the upstream rejected this server's configuration     |
|                             |             | (key, URL or model): no retry can help, the operator |
|                             |             | must fix it (details go to the server log, scrubbed) |
| 429                         | 429         | with the upstream's Retry-After                       |
| no reply in `timeout` s     | 504         | retryable; nothing was billed here                    |
| anything else, unreachable  | 500         | retryable                                             |
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any
from urllib.parse import unquote

import httpx

from ..redact import Scrubber, check_upstream_url, public_url, split_userinfo
from ..tokencount import count_text
from ..validation import ChatRequest
from .base import BackendError, Generation

log = logging.getLogger("llamakit.server")

# An upstream reply larger than this is refused (a completion of a few thousand tokens is ~100 KB).
MAX_UPSTREAM_REPLY_BYTES = 8 * 1024 * 1024
# Statuses that say the upstream refused *us* (key, URL, model), not the caller's request.
CONFIG_REJECTED = frozenset({401, 403, 404})


def headers_charset(headers: httpx.Headers) -> str | None:
    """The charset parameter of the reply's Content-Type, if any."""
    content_type: str = headers.get("content-type", "")
    for param in content_type.split(";")[1:]:
        name, _, value = param.strip().partition("=")
        if name.lower() == "charset" and value:
            return value.strip('"')
    return None


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
        check_upstream_url(base_url)
        url, user, password = split_userinfo(base_url.rstrip("/"))
        self.base_url = url
        self.model = model
        self._api_key = api_key
        # Credentials in the URL are HTTP Basic auth, unless an API key is given: then the key
        # (Bearer) is what is sent, and the URL's credentials are only kept out of every output.
        # The URL's userinfo is percent-encoded (``pa%40ss``); Basic auth carries it decoded.
        plain = unquote(password) if password else None
        self._auth = (
            (unquote(user or ""), plain or "") if (user or password) and not api_key else None
        )
        self._timeout = timeout
        self._secrets = [s for s in (api_key, password, plain) if s]
        self._scrub = Scrubber(self._secrets, users=[user])
        self._client: httpx.AsyncClient | None = None

    def __repr__(self) -> str:
        return f"UpstreamBackend(base_url={public_url(self.base_url)!r}, model={self.model!r})"

    async def start(self) -> None:
        from ...client.secrets import install_log_filter, register_secret

        for secret in self._secrets:
            register_secret(secret)  # httpx's own debug logs are filtered too
        install_log_filter()
        headers = {"Authorization": f"Bearer {self._api_key}"} if self._api_key else {}
        self._client = httpx.AsyncClient(
            base_url=self.base_url,
            headers=headers,
            auth=self._auth,
            timeout=self._timeout,
            follow_redirects=False,  # a redirect would carry our key wherever it points
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
            # httpx's timeout bounds each read; this bounds the whole exchange.
            status, headers, raw = await asyncio.wait_for(self._post(body), self._timeout)
        except asyncio.TimeoutError:
            raise BackendError(
                f"upstream did not answer within {self._timeout:g} s (--upstream-timeout-s)",
                status=504,
            ) from None
        except httpx.HTTPError as exc:
            raise BackendError(f"upstream unreachable: {type(exc).__name__}") from None
        if status != 200:
            raise self._status_error(status, headers, raw)
        return self._generation(raw, request)

    async def _post(self, body: dict[str, Any]) -> tuple[int, httpx.Headers, bytes]:
        assert self._client is not None
        async with self._client.stream("POST", "/chat/completions", json=body) as resp:
            chunks: list[bytes] = []
            size = 0
            async for chunk in resp.aiter_bytes():
                size += len(chunk)
                if size > MAX_UPSTREAM_REPLY_BYTES:
                    raise BackendError(
                        f"upstream reply exceeds {MAX_UPSTREAM_REPLY_BYTES} bytes; refused"
                    )
                chunks.append(chunk)
            return resp.status_code, resp.headers, b"".join(chunks)

    def _status_error(self, status: int, headers: httpx.Headers, raw: bytes) -> BackendError:
        detail = self._scrub(_error_text(raw, headers_charset(headers)))[:200]
        if status in CONFIG_REJECTED:
            log.warning(
                "upstream %s answered %d to this server's request: %s",
                public_url(self.base_url),
                status,
                detail,
            )
            return BackendError(
                f"the upstream server rejected this server's configuration (HTTP {status}: its "
                "upstream key, URL or model is wrong); retrying cannot help, tell the server's "
                "operator (details are in the server's log)",
                status=424,
            )
        # The caller's request was bad (final for the client), or the upstream wants us to slow
        # down; anything else is this server's problem (500, retryable).
        mapped = {400: 422, 422: 422, 429: 429}.get(status, 500)
        return BackendError(
            f"upstream answered {status}: {detail}",
            status=mapped,
            retry_after=headers.get("retry-after"),
        )

    def _generation(self, raw: bytes, request: ChatRequest) -> Generation:
        try:
            data = json.loads(raw)
            choice = data["choices"][0]
            text = choice["message"].get("content") or ""
            if not isinstance(text, str):
                raise TypeError("content is not a string")
            usage = data.get("usage") or {}
            # The upstream serves the real model, so its counts are the real ones (None: the
            # server's own count from admission).
            given = usage.get("prompt_tokens")
            prompt_tokens = int(given) if given else None
            completion_tokens = int(usage.get("completion_tokens") or count_text(text))
            finish = str(choice.get("finish_reason") or "stop")
        except (ValueError, KeyError, IndexError, TypeError, AttributeError):
            raise BackendError("upstream sent a malformed completion") from None
        return Generation(
            # A hostile or misconfigured upstream may echo our key: callers never see it.
            text=self._scrub(text),
            finish_reason=finish,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
        )


def _error_text(raw: bytes, charset: str | None) -> str:
    """The upstream's error message (whole: it is scrubbed before it is cut)."""
    try:
        err = json.loads(raw).get("error")  # json.loads detects UTF-8/16/32 itself
    except (ValueError, AttributeError):
        return _decode(raw, charset)
    if isinstance(err, dict):
        err = err.get("message")
    return str(err)


def _decode(raw: bytes, charset: str | None) -> str:
    try:
        return raw.decode(charset or "utf-8", "replace")
    except LookupError:  # an unknown charset name
        return raw.decode("utf-8", "replace")
