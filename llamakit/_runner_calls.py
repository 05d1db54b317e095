"""How the runner makes one call and keeps track of it: the per-task call context that routes
the client's ``on_attempt`` reports to their cell, the errors that stop a run, the v2 job journal,
and the replay check. Split from ``_runner`` to keep each module readable at once."""

from __future__ import annotations

import contextvars
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from ._cells import Cell, cell_key
from .errors import (
    AuthenticationError,
    MethodNotAllowedError,
    NotFoundError,
    ReplayMissError,
    UnprocessableRequestError,
)

# The cell (and its attempt counter) the current task is working on, so the client's on_attempt
# callback, which knows only a call id, can log each attempt against its cell.
CURRENT: contextvars.ContextVar[CallContext | None] = contextvars.ContextVar(
    "llamakit_runner_call", default=None
)
# Errors that would hit every cell alike: stop the run instead of recording N identical failures.
FATAL = (AuthenticationError, NotFoundError, MethodNotAllowedError)


class CallContext:
    """One call's attempts, held until the call ends: a successful call's attempts are written
    in the transaction that stores its response (one commit per call, not per attempt); a
    failed call's are written when it fails."""

    __slots__ = ("cell_key", "records")

    def __init__(self, key: str) -> None:
        self.cell_key = key
        self.records: list[dict[str, Any]] = []


class Stop(Exception):
    """Raised inside a worker when the run must stop before this cell completes."""


def describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def endpoint(client: Any) -> str | None:
    url = getattr(client, "base_url", None)
    return None if url is None else str(url).split("?", 1)[0]


class Journal:
    """v2 jobs in flight, journaled in the store (``inflight``) right after they are submitted and
    removed in the transaction that stores their response. A rerun after a kill collects a job
    by request id (it is billed when it completes, whether anyone waits or not) instead of
    submitting it again."""

    def __init__(
        self, store: Any, call: Callable[..., Awaitable[Any]], poll_interval: float
    ) -> None:
        self.store = store
        self.call = call
        self.poll_interval = poll_interval

    async def submit_and_wait(
        self, client: Any, key: str, messages: list[dict], params: dict, run_id: str, session: int
    ) -> Any:
        job = await self.call(client.submit, messages, **params)
        self.store.record_inflight(
            {
                "cell_key": key,
                "run_id": run_id,
                "session": session,
                "request_id": job.request_id,
                "status_url": job.status_url,
                "response_url": job.response_url,
                "call_id": job.call_id,
                "submitted_at": job.submitted_at,
            }
        )
        try:
            return await self.call(client.wait, job, poll_interval=self.poll_interval)
        except (UnprocessableRequestError, NotFoundError):
            # FAILED (never billed) or gone: a later run submits it afresh. Any other error
            # (timeout, connection) keeps the journal, and the job is collected next time.
            self.store.drop_inflight(key)
            raise

    async def recover(self, client: Any, key: str) -> tuple[Any, str, int] | None:
        """Collect a job an earlier (killed) run submitted for this key, if there is one."""
        from .types import Job

        entry = self.store.inflight(key)
        if entry is None:
            return None
        job = Job(
            request_id=entry["request_id"],
            status_url=entry["status_url"],
            response_url=entry["response_url"],
            call_id=entry["call_id"] or "",
            submitted_at=entry["submitted_at"],
        )
        try:
            response = await self.call(client.wait, job, poll_interval=self.poll_interval)
        except (UnprocessableRequestError, NotFoundError):
            self.store.drop_inflight(key)
            return None
        return response, entry["run_id"], entry["session"]


def check_replay(
    store: Any, cells: Sequence[Cell], judges: Sequence[Any], client: Any, model: str
) -> None:
    """Raise ReplayMissError for the first cell (or judge grading) the store has never seen."""
    cache = store.cached_responses(c.cell_key for c in cells)
    for cell in cells:
        row = cache.get(cell.cell_key)
        if row is None:
            raise ReplayMissError(
                f"replay: cell (variant={cell.variant!r}, item={cell.item_id!r}, "
                f"params={cell.params_json}, repeat={cell.repeat}) was never recorded in "
                f"{store.path}; run it live once first"
            )
        for scorer in judges:
            messages = scorer.grading_messages(row["text"], cell.row)
            judge_client = scorer.client if scorer.client is not None else client
            judge_model = getattr(judge_client, "model", None) or model
            key = cell_key(judge_model, messages, dict(scorer.params), 0)
            if not store.cached_responses([key]):
                raise ReplayMissError(
                    f"replay: judge {scorer.name!r} never graded cell (variant="
                    f"{cell.variant!r}, item={cell.item_id!r}, repeat={cell.repeat})"
                )


def hook_attempts(client: Any, fn: Callable[[Any], None]) -> Callable[[], None]:
    """Chain ``fn`` onto the client's on_attempt callback for this run; returns the undo.

    llamakit's clients keep the callback on their shared core; any other client with a settable
    ``on_attempt`` works too, and one without simply goes unlogged per attempt.
    """
    target = getattr(client, "_core", client)
    if client is None or not hasattr(target, "on_attempt"):
        return lambda: None
    previous = target.on_attempt

    def both(attempt: Any) -> None:
        fn(attempt)
        if previous is not None:
            previous(attempt)

    target.on_attempt = both
    return lambda: setattr(target, "on_attempt", previous)
