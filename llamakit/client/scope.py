"""What a run adds to a client's calls, scoped to the run's own calls by context.

A run logs each HTTP attempt against its cell and gives up retrying once its breaker has
tripped. It used to set both on the client it was given (chaining onto ``on_attempt``, wrapping
the retry policy) and put them back when it ended; two runs sharing one client, in threads or as
tasks on one loop, put them back out of order, so a finished run kept logging and a running one
lost its attempts. A run now adds a ``RunScope`` to a context variable instead: its tasks, and
the threads that carry its calls (they run in a copy of its context), see it; nothing else does.
The client consults it for each attempt (``Core._report``, the retry loop).

A run that is interrupted (Ctrl-C, its task cancelled) lets the calls on the wire finish, so their
billed replies are stored, but a call waiting before its next paid attempt (a retry's backoff, a
rate-limit slot) has nothing on the wire: the run's ``Halt`` wakes it and it ends with ``Halted``,
sending nothing more. Polls of a v2 job already submitted (paid) are not stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from .types import Attempt


class Halted(Exception):
    """A run's call stopped before a paid attempt because the run was interrupted: nothing of it
    is on the wire. Raised only inside a run's scope; the runner turns it into a clean stop."""


class Halt:
    """Set once, from any thread: a run's paid calls send no further attempt, and those waiting
    (``pause``, ``apause``) wake at once. Thread-safe: sync clients wait on a thread pool, async
    ones on an event loop, and the interrupt may come from another thread."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self._lock = threading.Lock()
        self._waiters: set[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = set()

    def set(self) -> None:
        with self._lock:
            self._event.set()
            waiters, self._waiters = self._waiters, set()
        for loop, waiter in waiters:
            with contextlib.suppress(RuntimeError):  # its loop closed: nobody waits any more
                loop.call_soon_threadsafe(_wake, waiter)

    def is_set(self) -> bool:
        return self._event.is_set()

    def wait(self, seconds: float) -> None:
        self._event.wait(seconds)

    async def await_(self, seconds: float) -> None:
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        with self._lock:
            if self._event.is_set():
                return
            self._waiters.add((loop, waiter))
        try:
            await asyncio.wait([waiter], timeout=seconds)
        finally:
            with self._lock:
                self._waiters.discard((loop, waiter))


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


@dataclass
class RunScope:
    """One run's observers of one client's calls.

    ``core``: the client's core; only its calls are the run's. A run enters one scope per
    client it calls through (its own, and each judge's own client).
    ``on_attempt``: called with each ``Attempt``, after the client's own ``on_attempt``.
    ``give_up(error, attempts_made) -> bool``: True stops retrying now (the run's breaker).
    """

    core: Any
    on_attempt: Callable[[Attempt], None] | None = None
    give_up: Callable[[Any, int], bool] | None = None
    # Set when the run is interrupted: its calls send no further paid attempt (see ``Halt``).
    halt: Halt | None = None
    # Set by the undo: a task started from the run's context may outlive the run, and must not
    # go on logging as the run or obeying its breaker.
    ended: bool = False


_SCOPES: contextvars.ContextVar[tuple[RunScope, ...]] = contextvars.ContextVar(
    "llamakit_run_scopes", default=()
)


def enter(scope: RunScope) -> Callable[[], None]:
    """Add ``scope`` for the current context (and tasks and copies made from it from now on);
    returns the undo, to be called in the same context."""
    token = _SCOPES.set((*_SCOPES.get(), scope))

    def undo() -> None:
        scope.ended = True
        _SCOPES.reset(token)

    return undo


def scopes_of(core: Any) -> Iterator[RunScope]:
    """The scopes in effect here for calls of ``core`` (of runs not yet ended)."""
    return (s for s in _SCOPES.get() if s.core is core and not s.ended)


def _halt_of(core: Any) -> Halt | None:
    return next((s.halt for s in scopes_of(core) if s.halt is not None), None)


def check_halted(core: Any) -> None:
    """Raise ``Halted`` when the run this call belongs to has been interrupted."""
    halt = _halt_of(core)
    if halt is not None and halt.is_set():
        raise Halted("the run was interrupted before this call's next attempt was sent")


def pause(core: Any, seconds: float, *, stoppable: bool) -> None:
    """``time.sleep(seconds)``, cut short when this call's run is interrupted (``stoppable``:
    nothing of the call is on the wire, so there is nothing to wait for)."""
    halt = _halt_of(core) if stoppable else None
    if halt is None:
        time.sleep(seconds)
    else:
        halt.wait(seconds)


async def apause(core: Any, seconds: float, *, stoppable: bool) -> None:
    """``pause`` for an event loop."""
    halt = _halt_of(core) if stoppable else None
    if halt is None:
        await asyncio.sleep(seconds)
    else:
        await halt.await_(seconds)
