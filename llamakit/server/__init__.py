"""The local Segmind-compatible server (the embedded default of llamakit).

Layer: beside the client, which it hands out (``ServerHandle.client()``, ``connect()``). It may
import errors, _defaults, tokens and the client; never the store, experiments or views.

`local_server()` runs it on a background thread; `llamakit serve` runs it in the foreground;
`create_app(ServerConfig(...))` gives the bare ASGI app. starlette, uvicorn and the backends are
imported only when a server is built, so importing this package stays cheap.

Routes: POST /v1/{slug}, POST /v1/chat/completions (OpenAI; `stream: true` answers Server-Sent
Events), GET /v1/models and /v1/models/{id}, GET /v1/get-user-credits, POST /v2/{slug} +
GET /v2/requests/{id}/status + GET /v2/requests/{id} (and GET /v1/requests/{id}),
GET /_llamakit/stats, GET|POST /_llamakit/faults, POST /_llamakit/credits. Every route needs a valid
key (`x-api-key`, or `Authorization: Bearer`). Errors are always `{"error": "..."}`. The admin
routes (/_llamakit/) see and change only the calling key's own state; the optional admin key
(`ServerConfig.admin_key`) alone sees and changes every key's. Connection limits (request head and
body deadlines, connections per client and in all) are `ConnectionGuard`'s (protocol.py).

Check order (CONTRACT §4.3): 404 unknown path or model slug, 405 wrong method, 401 key, injected
faults, 429 RPM limit (`Retry-After` in whole seconds), 413 body over 1 MiB (a JSON error, chosen
over 422 because it is what HTTP says; clients treat it as final like 422), 422 invalid body
(the message names the field, e.g. `messages[1].role`; also non-UTF-8, malformed JSON, and
prompt + max_tokens beyond the 8192-token context), 406 balance below the call's cost, 500 backend
failure, 200. Only a 200 debits; `x-remaining-credits` is the balance right after that debit.
v2 calls are checked (and their cost held) at submit and billed on completion; the result response
carries `x-remaining-credits` as it stood after that job's debit.

Faults touch only the inference routes; injected 429s send `Retry-After` exactly as configured
(possibly fractional, so reliability tests can run fast).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .config import KNOWN_SLUGS, ServerConfig
from .faults import FaultSettings
from .protocol import ConnectionGuard

if TYPE_CHECKING:
    from .app import create_app
    from .handle import ServerHandle, local_server

__all__ = [
    "KNOWN_SLUGS",
    "ConnectionGuard",
    "FaultSettings",
    "ServerConfig",
    "ServerHandle",
    "create_app",
    "local_server",
]


def __getattr__(name: str) -> Any:
    if name in ("ServerHandle", "local_server"):
        from . import handle

        return getattr(handle, name)
    if name == "create_app":
        from .app import create_app

        return create_app
    raise AttributeError(f"module 'llamakit.server' has no attribute {name!r}")
