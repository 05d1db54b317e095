"""httpcore's connection pool with its bookkeeping pass made linear in the number of connections.

httpcore (1.0.x) runs ``_assign_requests_to_connections`` each time a request joins or leaves the
pool. For every idle connection it re-counts the whole pool, and for every queued request it
filters every connection twice: at concurrency 32 that is ~5,000 ``is_idle()`` calls per request,
most of a bare httpx client's CPU per call. The same pass also compares ``len(connections)``,
not the number of idle ones, with ``max_keepalive_connections`` (httpcore issue #1035, "Bug 1"),
so past that many connections it closes idle ones it should keep.

``linear(pool)`` gives a pool (sync or async) a pass that does the same work in one walk of the
connections plus one short search per queued request: closed connections are dropped, expired
ones closed, idle ones beyond ``max_keepalive_connections`` closed (oldest first); then each
queued request takes the first available connection to its origin, else a new connection while
under ``max_connections``, else the place of the first idle connection. Ported from the linear
rewrite in pydantic/httpx2 PR #974 (itself after encode/httpcore PR #1035), with two fixes of
that fork's PR #1075 and httpcore issue #1110: over HTTP/1.1 a connection already handed to a
request is neither handed to another (httpcore would wake both, re-queue the loser with
``ConnectionNotAvailable`` and run the pass again) nor closed as idle before its request starts,
and a connection no request holds that is not idle either (its request was cancelled before it
started) is closed instead of kept forever.

A pool of another httpcore version than the one this was checked against keeps its own pass.
"""

from __future__ import annotations

from typing import Any

import httpcore

# The httpcore releases whose pool internals (_connections, _requests, is_queued,
# assign_to_connection, create_connection) this pass was written against.
_CHECKED = ("1.0.",)


def _assign(pool: Any) -> list[Any]:
    # Connections a request holds (assigned, not yet released). Over HTTP/1.1 none can take
    # another request, nor be closed as idle: it may not have started its request yet.
    held_only = not pool._http2
    held = {id(r.connection) for r in pool._requests if r.connection} if held_only else set()
    closing: list[Any] = []
    kept: list[Any] = []
    idle: list[Any] = []
    for connection in pool._connections:
        if connection.is_closed():
            continue
        if id(connection) in held:
            # Never closed here, even past its keep-alive expiry: its request may start on it
            # before the close is awaited, and closing a connection whose request the server
            # already has loses a paid reply (the retry pays again).
            kept.append(connection)
            continue
        if connection.has_expired():
            closing.append(connection)
            continue
        if held_only and not connection.is_idle():
            # Neither idle nor used by any request: its request was cancelled between getting
            # the connection and starting on it (state NEW). httpcore keeps such a connection
            # forever; max_connections of them and every later request waits for the pool.
            closing.append(connection)
            continue
        kept.append(connection)
        if connection.is_idle():
            idle.append(connection)
    for connection in idle[: max(0, len(idle) - pool._max_keepalive_connections)]:
        kept.remove(connection)
        idle.remove(connection)
        closing.append(connection)
    pool._connections[:] = kept
    kept = pool._connections  # the rest changes the pool's own list

    for request in [r for r in pool._requests if r.is_queued()]:
        origin = request.request.url.origin
        connection = next(
            (
                c
                for c in kept
                if id(c) not in held and c.can_handle_request(origin) and c.is_available()
            ),
            None,
        )
        if connection is None:
            if len(kept) >= pool._max_connections:
                if not idle:
                    continue  # every connection is busy: the request waits for one
                spare = idle.pop(0)
                kept.remove(spare)
                closing.append(spare)
            connection = pool.create_connection(origin)
            kept.append(connection)
        if held_only:
            held.add(id(connection))
            if connection in idle:
                idle.remove(connection)
        request.assign_to_connection(connection)
    return closing


class _LinearPool(httpcore.ConnectionPool):
    def _assign_requests_to_connections(self) -> list[Any]:
        return _assign(self)


class _LinearAsyncPool(httpcore.AsyncConnectionPool):
    def _assign_requests_to_connections(self) -> list[Any]:
        return _assign(self)


def linear(pool: Any) -> None:
    """Give ``pool`` (an ``httpcore.ConnectionPool`` or ``AsyncConnectionPool``) the linear
    pass, in place: its state and every other method stay httpcore's."""
    if not httpcore.__version__.startswith(_CHECKED):
        return
    if type(pool) is httpcore.AsyncConnectionPool:
        pool.__class__ = _LinearAsyncPool
    elif type(pool) is httpcore.ConnectionPool:
        pool.__class__ = _LinearPool
