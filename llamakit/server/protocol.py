"""Connection-level limits that uvicorn lacks, so an exposed server survives slow or greedy clients.

uvicorn has no timeout on receiving a request: its keep-alive timer is cancelled by every byte
received, so a client that trickles a header one byte at a time holds a connection (and a file
descriptor) forever, and a few hundred such clients can exhaust the process (uvicorn issue #157,
"--timeout-request-start", still open). ASGI middleware cannot help: it runs only once the head is
parsed. So the HTTP protocol itself is wrapped here:

- a request's head must arrive within `header_timeout_s` of the connection (or of the previous
  response) and its body within `body_timeout_s` after that, else the client gets a 408 and the
  connection is closed;
- one client address may hold at most `max_connections_per_client` connections; more are answered
  503 and closed at once, so one greedy host cannot take the whole server;
- uvicorn's own `limit_concurrency` (`max_connections`) bounds connections plus running requests
  for everyone (503 beyond), and h11's `max_incomplete_event_size` bounds a request head (16 KiB).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import uvicorn

log = logging.getLogger("llamakit.server")

DEFAULT_HEADER_TIMEOUT_S = 10.0
DEFAULT_BODY_TIMEOUT_S = 60.0
DEFAULT_MAX_CONNECTIONS_PER_CLIENT = 256
DEFAULT_MAX_CONNECTIONS = 1024
# h11's own default; named here because it is part of what the server promises.
MAX_REQUEST_HEAD_BYTES = 16 * 1024


@dataclass(frozen=True)
class ConnectionGuard:
    """Limits on connections (see the module docstring). Times in seconds."""

    header_timeout_s: float = DEFAULT_HEADER_TIMEOUT_S
    body_timeout_s: float = DEFAULT_BODY_TIMEOUT_S
    max_connections_per_client: int = DEFAULT_MAX_CONNECTIONS_PER_CLIENT
    max_connections: int = DEFAULT_MAX_CONNECTIONS

    def __post_init__(self) -> None:
        for name in ("header_timeout_s", "body_timeout_s"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and 0 < value < float("inf")):
                raise ValueError(f"{name} must be a finite number of seconds > 0, got {value!r}")
        for name in ("max_connections_per_client", "max_connections"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")

    def uvicorn_config(self, app: Any, **kw: Any) -> uvicorn.Config:
        """A uvicorn.Config serving `app` with these limits (and `kw`, uvicorn's own options)."""
        import uvicorn

        return uvicorn.Config(
            app,
            http=guarded_h11_protocol(self),
            limit_concurrency=self.max_connections,
            h11_max_incomplete_event_size=MAX_REQUEST_HEAD_BYTES,
            **kw,
        )


# File descriptors the process needs beyond its connections (its own files, a burst of connections
# accepted before refused ones are closed: asyncio accepts up to a whole backlog at once).
FD_HEADROOM = 512


def raise_fd_limit(guard: ConnectionGuard) -> str | None:
    """Raise this process's soft limit on open files towards its hard limit, so that reaching
    `max_connections` answers 503s instead of failing `accept()` (which stalls every client,
    ordinary ones included). For a process of its own (`llamakit serve`), not an embedding one.
    Returns a warning when even the hard limit leaves too little room, else None."""
    try:
        import resource
    except ImportError:  # not on POSIX: nothing to raise
        return None
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = guard.max_connections + FD_HEADROOM
    if soft != resource.RLIM_INFINITY and soft < wanted:
        target = wanted if hard == resource.RLIM_INFINITY else min(hard, wanted)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    if soft != resource.RLIM_INFINITY and soft < wanted:
        return (
            f"the open-file limit ({soft}) is below --max-connections {guard.max_connections} "
            f"plus {FD_HEADROOM}: many connections at once can stall every client; lower "
            "--max-connections or raise `ulimit -n`"
        )
    return None


def _raw_response(status: int, reason: str, message: str) -> bytes:
    body = json.dumps({"error": message}).encode()
    head = (
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


def guarded_h11_protocol(guard: ConnectionGuard) -> type[asyncio.Protocol]:
    """uvicorn's h11 protocol class with `guard`'s deadlines and per-client cap. One class per
    server: the per-client counts are shared by that server's connections only."""
    from uvicorn.protocols.http.h11_impl import H11Protocol

    per_client: Counter[str] = Counter()

    class GuardedH11Protocol(H11Protocol):
        _deadline: asyncio.TimerHandle | None = None
        _counted: str | None = None
        _seen_cycle: Any = None
        _partial_head = False  # bytes of a request head received, the head not complete yet

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            host = self.client[0] if self.client else None
            if host is not None:
                if per_client[host] >= guard.max_connections_per_client:
                    log.warning(
                        "refused a connection from %s: %d already open", host, per_client[host]
                    )
                    transport.write(
                        _raw_response(
                            503,
                            "Service Unavailable",
                            f"too many connections from your address (at most "
                            f"{guard.max_connections_per_client}); reuse or close some",
                        )
                    )
                    transport.close()
                    return
                per_client[host] += 1
                self._counted = host
            self._arm(guard.header_timeout_s)

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            if self._counted is not None:
                per_client[self._counted] -= 1
                if per_client[self._counted] <= 0:
                    del per_client[self._counted]
                self._counted = None
            super().connection_lost(exc)

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            cycle = self.cycle
            self._partial_head = cycle is None or cycle.response_complete
            self._check_progress()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._partial_head = False
            if not self.transport.is_closing():
                # The next request on this kept-alive connection gets its own head deadline.
                self._arm(guard.header_timeout_s)
                self._check_progress()

        def _check_progress(self) -> None:
            cycle = self.cycle
            if cycle is None or cycle.response_complete:
                return  # still waiting for a request head: the head deadline runs
            if cycle is not self._seen_cycle:
                self._seen_cycle = cycle
                self._arm(guard.body_timeout_s)  # the head is in: now the body has its time
            if not cycle.more_body:
                self._disarm()  # the whole request is in; answering it takes what it takes

        def _arm(self, seconds: float) -> None:
            self._disarm()
            self._deadline = self.loop.call_later(seconds, self._expired)

        def _disarm(self) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
                self._deadline = None

        def _expired(self) -> None:
            self._deadline = None
            cycle = self.cycle
            waiting_head = cycle is None or cycle.response_complete
            if not waiting_head and not cycle.more_body:
                return  # received in full meanwhile
            if self.transport.is_closing():
                return
            if waiting_head and not self._partial_head:
                pass  # an idle kept-alive connection: close it quietly, as a keep-alive timeout does
            elif waiting_head or not cycle.response_started:
                what = "request head" if waiting_head else "request body"
                limit = guard.header_timeout_s if waiting_head else guard.body_timeout_s
                self.transport.write(
                    _raw_response(
                        408,
                        "Request Timeout",
                        f"the {what} did not arrive within {limit:g} s; send requests at once",
                    )
                )
            if cycle is not None and not cycle.response_complete:
                cycle.disconnected = True
                cycle.message_event.set()  # wake a handler still waiting for the body
            self.transport.close()

    return GuardedH11Protocol
