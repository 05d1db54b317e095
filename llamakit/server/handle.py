"""`llamakit.local_server()`: the server on a background thread, driven from Python."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Mapping, Sequence
from decimal import Decimal
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from .._defaults import LOCAL_COST_PER_CALL, LOCAL_HOST
from .config import (
    DEFAULT_UPSTREAM_TIMEOUT_S,
    KNOWN_SLUGS,
    ServerConfig,
    build_keys,
    key_label,
)
from .faults import FaultSettings
from .protocol import ConnectionGuard

if TYPE_CHECKING:
    import uvicorn

    from ..client.client import AsyncClient, Client
    from .state import ServerState

STARTUP_TIMEOUT_S = 120.0  # loading smollm2 on a slow disk can take a while


class ServerHandle:
    """A running local server. Use as a context manager; `close()` stops it and frees the port."""

    def __init__(self, config: ServerConfig, *, host: str = LOCAL_HOST, port: int = 0) -> None:
        import uvicorn

        from .app import create_app

        self._config = config
        self._keys = list(config.keys)
        self.api_key: str = self._keys[0]
        self.backend: str = config.backend
        # Clients of this handle name it, not its port, as their source (see Client.source).
        self.source: str = config.reply_source()
        app = create_app(config)
        self._state: ServerState = app.state  # type: ignore[attr-defined]
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self._sock.bind((host, port))
        except OSError:
            self._sock.close()
            raise
        self.host, self.port = self._sock.getsockname()[:2]
        self.url = f"http://{self.host}:{self.port}"
        uv_config = config.guard.uvicorn_config(
            app, log_level="warning", access_log=False, lifespan="on", timeout_graceful_shutdown=5
        )
        self._server: uvicorn.Server = uvicorn.Server(uv_config)
        self._error: BaseException | None = None
        self._thread = threading.Thread(
            target=self._serve, name=f"llamakit-server-{self.port}", daemon=True
        )
        self._thread.start()
        self._wait_started()

    def __repr__(self) -> str:
        return f"ServerHandle(url={self.url!r}, backend={self.backend!r}, key={key_label(self.api_key)})"

    # -- lifecycle -------------------------------------------------------------------------------
    def _serve(self) -> None:
        try:
            self._server.run(sockets=[self._sock])
        except BaseException as exc:  # reported to the starting thread
            self._error = exc

    def _wait_started(self) -> None:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while not self._server.started:
            if not self._thread.is_alive():
                self._sock.close()
                # uvicorn logs a failed startup (e.g. a model that cannot load) and returns.
                detail = repr(self._error) if self._error else "startup failed, see the log above"
                raise RuntimeError(f"local server failed to start: {detail}") from self._error
            if time.monotonic() > deadline:
                self.close()
                raise RuntimeError("local server did not start in time")
            self._thread.join(0.01)

    def close(self) -> None:
        if self._thread.is_alive():
            self._server.should_exit = True
            self._thread.join(timeout=10)
        self._sock.close()

    def __enter__(self) -> ServerHandle:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- clients ---------------------------------------------------------------------------------
    def client(self, **kw: Any) -> Client:
        """A `llamakit.Client` of this server."""
        from llamakit.client.client import Client

        kw.setdefault("source", self.source)
        return Client(api_key=kw.pop("api_key", self.api_key), base_url=self.url + "/v1", **kw)

    def async_client(self, **kw: Any) -> AsyncClient:
        """A `llamakit.AsyncClient` of this server."""
        from llamakit.client.client import AsyncClient

        kw.setdefault("source", self.source)
        return AsyncClient(api_key=kw.pop("api_key", self.api_key), base_url=self.url + "/v1", **kw)

    # -- admin -----------------------------------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        """Requests by status, billed calls, credits spent and balances, as ``GET
        /_llamakit/stats`` gives them: credit figures are exact decimal strings (``Decimal(...)``
        reads them)."""
        return self._state.stats_dict()

    def set_faults(self, **faults: Any) -> dict[str, Any]:
        """Change fault settings at runtime (unnamed settings keep their value)."""
        return self._state.faults.update(faults).as_dict()

    @property
    def faults(self) -> dict[str, Any]:
        return self._state.faults.settings.as_dict()

    def set_credits(self, amount: float | Decimal, api_key: str | None = None) -> None:
        self._state.ledger.set_balance(self._label(api_key), amount)

    def balance(self, api_key: str | None = None) -> Decimal:
        """The ledger's exact balance of ``api_key`` (default: the primary key), in USD credits."""
        return self._state.ledger.balance(self._label(api_key))

    def add_key(self, api_key: str, credits: Decimal | float = 1.0) -> None:
        """Accept another key (with its own balance) from now on."""
        self._state.add_key(api_key, credits)

    def key_label(self, api_key: str | None = None) -> str:
        """The label stats use for `api_key` (default: the primary key)."""
        return self._label(api_key)

    def _label(self, api_key: str | None) -> str:
        label = key_label(api_key or self.api_key)
        if label not in self._state.keyring.labels:
            raise KeyError("unknown API key for this server")
        return label


def local_server(
    backend: str | None = None,
    *,
    credits: Decimal | float = 1.0,
    api_key: str | None = None,
    keys: Mapping[str, float] | Sequence[str] | None = None,
    rpm: int | None = None,
    db: str | Path | None = None,
    rules: str | Path | Sequence[Mapping[str, Any]] | None = None,
    upstream_url: str | None = None,
    upstream_api_key: str | None = None,
    upstream_model: str | None = None,
    cost_per_call: float | Decimal = LOCAL_COST_PER_CALL,
    cost_per_token: float | Decimal | tuple[float | Decimal, float | Decimal] | None = None,
    slugs: Sequence[str] | None = None,
    slug_costs: Mapping[str, float | str | Decimal] | None = None,
    port: int = 0,
    host: str = LOCAL_HOST,
    rpm_window_s: float = 60.0,
    v2_expiry_s: float = 3600.0,
    admin_key: str | None = None,
    upstream_timeout_s: float = DEFAULT_UPSTREAM_TIMEOUT_S,
    guard: ConnectionGuard | None = None,
    **faults: Any,
) -> ServerHandle:
    """Start a Segmind-compatible server on a background thread and return its handle.

    `backend` None picks "smollm2" when llama_cpp and the GGUF are installed, else "scripted".
    `api_key` None generates `SG_local_<hex>`; `keys` adds more keys (a list, or {key: credits}).
    `admin_key` lets HTTP callers holding it read every key's stats and change every key's faults
    and balance; without it each key's admin calls are scoped to that key (README, "Admin routes").
    `slugs` lists the model slugs served (default: Segmind's Llama siblings, all answered by the
    one backend); `slug_costs` gives some of them a flat price per request in USD credits
    (default: the published siblings' prices, ``LOCAL_COST_BY_MODEL``; ``{}`` bills every slug
    by `cost_per_call`/`cost_per_token`).
    `upstream_timeout_s` bounds each call to the upstream backend. `guard` sets connection limits
    (header/body timeouts, connections per client, total connections; see `protocol.py`).
    Extra keyword arguments are fault settings (latency_ms, fail_rate, rate_429, drop_rate, ...).
    Raises ValueError for a bad setting.
    """
    from .backends import default_backend

    key_map = build_keys(api_key, keys, credits)
    config = ServerConfig(
        keys=key_map,
        backend=backend or default_backend(),
        rpm=rpm,
        rpm_window_s=rpm_window_s,
        db=Path(db) if db is not None else None,
        rules=Path(rules) if isinstance(rules, str) else rules,
        upstream_url=upstream_url,
        upstream_api_key=upstream_api_key,
        upstream_model=upstream_model,
        cost_per_call=cost_per_call,
        cost_per_token=cost_per_token,
        slugs=tuple(slugs) if slugs is not None else KNOWN_SLUGS,
        slug_costs=slug_costs,
        faults=FaultSettings().updated(faults),
        v2_expiry_s=v2_expiry_s,
        admin_key=admin_key,
        upstream_timeout_s=upstream_timeout_s,
        guard=guard or ConnectionGuard(),
    )
    return ServerHandle(config, host=host, port=port)
