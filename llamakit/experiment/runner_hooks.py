"""Routing a client's attempt reports to the run: one hook for every client a run calls
through (its own and its judges' own), so the run's attempt log holds each of its calls'
attempts whichever client made them."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from ..client import scope


def hook_attempts(
    clients: Iterable[Any], fn: Callable[[Any], None], *, halt: scope.Halt | None = None
) -> Callable[[], None]:
    """Call ``fn`` with each attempt of this run's calls of each of ``clients`` (the run's own
    and its judges' own: a grading call is logged against its key whichever client makes it);
    returns the undo, to be called in the same context. ``halt``: set when the run is
    interrupted, so those calls send no further paid attempt (``scope.Halt``).

    For llamakit's clients ``fn`` joins the run's scope (``llamakit.client.scope``): it sees
    only this run's calls, however many runs share the client, and the client's own
    ``on_attempt`` is left alone. Another client with a settable ``on_attempt`` gets ``fn``
    chained onto it; one without simply goes unlogged per attempt.
    """
    undos: list[Callable[[], None]] = []
    seen: set[int] = set()
    for client in clients:
        if client is None or id(client) in seen:
            continue
        seen.add(id(client))
        undos.append(_hook_one(client, fn, halt))

    def undo() -> None:
        for one in reversed(undos):  # context variable tokens are reset newest first
            one()

    return undo


def _hook_one(
    client: Any, fn: Callable[[Any], None], halt: scope.Halt | None
) -> Callable[[], None]:
    core = getattr(client, "_core", None)
    if core is not None and hasattr(core, "on_attempt"):
        return scope.enter(scope.RunScope(core, on_attempt=fn, halt=halt))
    if not hasattr(client, "on_attempt"):
        return lambda: None
    previous = client.on_attempt

    def both(attempt: Any) -> None:
        fn(attempt)
        if previous is not None:
            previous(attempt)

    client.on_attempt = both
    return lambda: setattr(client, "on_attempt", previous)
