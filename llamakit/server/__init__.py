"""The local Segmind-compatible server (the embedded default of llamakit).

`local_server()` runs it on a background thread; `llamakit serve` runs it in the foreground;
`create_app(ServerConfig(...))` gives the bare ASGI app. starlette, uvicorn and the backends are
imported only when a server is built, so importing this package stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .config import KNOWN_SLUGS, ServerConfig
from .faults import FaultSettings

if TYPE_CHECKING:
    from .app import create_app
    from .handle import ServerHandle, local_server

__all__ = [
    "KNOWN_SLUGS",
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
