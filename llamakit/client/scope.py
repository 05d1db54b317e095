"""What a run adds to a client's calls, scoped to the run's own calls by context.

A run logs each HTTP attempt against its cell and gives up retrying once its breaker has
tripped. It used to set both on the client it was given (chaining onto ``on_attempt``, wrapping
the retry policy) and put them back when it ended; two runs sharing one client, in threads or as
tasks on one loop, put them back out of order, so a finished run kept logging and a running one
lost its attempts. A run now adds a ``RunScope`` to a context variable instead: its tasks, and
the threads that carry its calls (they run in a copy of its context), see it; nothing else does.
The client consults it for each attempt (``Core._report``, the retry loop).
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from .types import Attempt


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
