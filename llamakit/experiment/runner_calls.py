"""How the runner makes one call and keeps track of it: ``Responses`` (one response row per
request key, paid for at most once and only within the budget), the per-task call context that
routes the client's ``on_attempt`` reports to their cell, the errors that stop a run, and the
replay check. Split from ``runner`` to keep each module readable at once."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import inspect
import itertools
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from ..client.credits import account_of
from ..client.scope import Halted
from ..errors import (
    APIError,
    AuthenticationError,
    ClientClosedError,
    InsufficientCreditsError,
    MethodNotAllowedError,
    NotFoundError,
    ReplayMissError,
    StoreError,
    ValidationError,
)
from ..store._claims import Busy, Lease
from ..store._rows import response_fields
from .cells import Cell
from .gradings import missing_gradings
from .journal import Journal
from .runner_reach import Reachability

if TYPE_CHECKING:
    from .runner_budget import Spending

# The cell (and its attempt counter) the current task is working on, so the client's on_attempt
# callback, which knows only a call id, can log each attempt against its cell.
CURRENT: contextvars.ContextVar[CallContext | None] = contextvars.ContextVar(
    "llamakit_runner_call", default=None
)
# Errors that would hit every cell alike: stop the run instead of recording N identical failures.
REPLAY_CHUNK = 2000  # cells whose replies a replay check reads at once
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


class ClaimedElsewhere(Exception):
    """Another live process is paying for this request now: leave the cell and come back to it
    (its reply will then be in the store, or its claim dead and free to take)."""


def describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def endpoint(client: Any) -> str | None:
    url = getattr(client, "base_url", None)
    return None if url is None else str(url).split("?", 1)[0]


def check_replay(
    store: Any,
    cells: Iterable[Cell],
    judges: Sequence[Any],
    client: Any,
    model: str,
    source: str,
) -> None:
    """Raise ReplayMissError for the first cell the store has never seen, else (a chunk of
    cells at a time) the first whose judge grading, or re-ask of an unscored grading, it lacks
    (``gradings.missing_gradings``)."""
    # In chunks, so a run of 200,000 cells never holds its cells nor its replies at once;
    # without judges, knowing a reply exists is enough (its text is not read).
    stream = iter(cells)
    while chunk := list(itertools.islice(stream, REPLAY_CHUNK)):
        keys = [c.cell_key for c in chunk]
        if not judges:
            known = store.known_responses(keys)
            for cell in chunk:
                if cell.cell_key not in known:
                    raise _never_recorded(store, cell)
            continue
        cache = store.cached_responses(keys, columns="cell_key, text")
        for cell in chunk:
            if cell.cell_key not in cache:
                raise _never_recorded(store, cell)
        replies = [(c, cache[c.cell_key]["text"]) for c in chunk]
        missing = missing_gradings(
            store, replies, judges, client=client, model=model, source=source
        )
        if missing:
            cell, scorer, _ = missing[0]
            raise ReplayMissError(
                f"replay: judge {scorer.name!r} never graded cell (variant="
                f"{cell.variant!r}, item={cell.item_id!r}, repeat={cell.repeat})"
            )


def _never_recorded(store: Any, cell: Cell) -> ReplayMissError:
    return ReplayMissError(
        f"replay: cell (variant={cell.variant!r}, item={cell.item_id!r}, "
        f"params={cell.params_json}, repeat={cell.repeat}) was never recorded in "
        f"{store.path}; run it live once first"
    )


class Responses:
    """Response rows by request key, each paid for at most once: from the cache, from an
    identical call already in flight (two cells, or two gradings, with the same request pay
    once), or from a new call the budget allows. It holds the run's stop reason, because every
    reason but the user's own (budget, insufficient credits, a fatal error) is found here."""

    def __init__(
        self,
        *,
        store: Any,
        run_id: str,
        mode: str,
        api: str,
        spending: Spending,
        poll_interval: float,
    ) -> None:
        self.store = store
        self.run_id = run_id
        self.mode = mode
        self.api = api
        self.spending = spending
        self.journal = Journal(store, self.call, poll_interval)
        self.session = 0
        self.pool: ThreadPoolExecutor | None = None
        self.stop_reason: str | None = None
        self.fatal: BaseException | None = None
        self.lease: Lease | None = None
        self.cache: dict[str, dict[str, Any]] = {}
        self.reach = Reachability()
        self.pending: dict[str, asyncio.Future[dict[str, Any] | None]] = {}
        self.held: set[str] = set()  # claimed ahead by this session, not yet sent
        self.found: dict[str, dict[str, Any]] = {}  # stored by another process, seen claiming

    def request_stop(self, reason: str) -> None:
        if self.stop_reason is None:
            self.stop_reason = reason

    def fail(self, exc: BaseException) -> None:
        """Stop the run because of ``exc`` (raised to the caller when the run ends)."""
        if self.fatal is None:
            self.fatal = exc
        self.request_stop("failed")

    def stop_closed(self, client: Any, exc: ClientClosedError) -> None:
        """End the run because ``client`` (the run's, or a judge's) was closed under it: the
        calls already on the wire finished (``close()`` waits for them) and are stored."""
        if self.fatal is not None:
            return
        err = ClientClosedError(
            f"{client!r} was closed while this run was using it (close() from another thread, "
            "a scorer or progress callback, or another task): every reply it received is "
            "stored and no further call was sent. Rerun with an open client to resume: cells "
            "already stored are not paid for again"
        )
        err.__cause__ = exc
        self.fail(err)

    def stop_unreachable(self, client: Any) -> None:
        """End the run with one APIUnreachableError (the first caller's) instead of N failures."""
        self.fail(self.reach.error(endpoint(client)))

    async def call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if inspect.iscoroutinefunction(fn):
            return await fn(*args, **kwargs)
        # A sync client: run it on our own pool (the default executor is too small for
        # concurrency 32 on a 2-core box), carrying the context so on_attempt finds its cell.
        loop = asyncio.get_running_loop()
        ctx = contextvars.copy_context()
        return await loop.run_in_executor(
            self.pool, ctx.run, functools.partial(fn, *args, **kwargs)
        )

    def on_attempt(self, attempt: Any) -> None:
        """Log one HTTP attempt of one of this run's calls against its cell (written with the
        call's outcome). A call the run's own code did not make for a cell (a scorer's or a
        progress callback's side call on the same client) is not the run's: not logged here."""
        if attempt.status is not None:  # any answer shows the API is reachable
            self.reach.answered()
        ctx = CURRENT.get()
        if ctx is None:
            return
        ctx.records.append(
            {
                "run_id": self.run_id,
                "session": self.session,
                "cell_key": ctx.cell_key,
                "call_id": attempt.call_id,
                "attempt": attempt.attempt,
                "status": attempt.status,
                "error": attempt.error,
                "message": attempt.message,
                "latency_s": attempt.latency_s,
                "credits_remaining": attempt.credits_remaining,
                "started_at": attempt.started_at,
                "finished_at": attempt.finished_at,
            }
        )

    def _reserve(self) -> bool:
        """Take a budget slot for one more call, or stop the run if it might not fit."""
        if self.stop_reason is not None:
            return False
        if not self.spending.fits_one_more():
            self.request_stop("budget")
            return False
        self.spending.inflight += 1
        return True

    async def fetch(
        self,
        client: Any,
        key: str,
        messages: list[dict[str, Any]],
        params: dict[str, Any],
        repeat: int,
        model: str,
        *,
        commit: bool = False,
    ) -> dict[str, Any]:
        """A response row for ``key``: from the cache, from an identical call already in flight,
        or from a new call. ``commit`` writes a new response to the store before anyone else can
        use it."""
        found = self.cache.get(key)
        if found is not None:
            return found
        waiting = self.pending.get(key)
        if waiting is not None:
            row = await waiting
            if row is None:
                raise Stop
            return row
        future: asyncio.Future[dict[str, Any] | None] = asyncio.get_running_loop().create_future()
        self.pending[key] = future
        try:
            row = await self._send(client, key, messages, params, repeat, model)
            if commit:
                self.store.record_call(row)
            self.cache[key] = row  # until committed: a cell with the same request reuses it
            future.set_result(row)
        except (APIError, ValidationError, ClaimedElsewhere) as exc:  # shared with key sharers
            future.set_exception(exc)
            future.add_done_callback(lambda f: f.exception())
            raise
        except BaseException:
            future.set_result(None)
            raise
        finally:
            self.pending.pop(key, None)
        return row

    async def _send(
        self,
        client: Any,
        key: str,
        messages: list[dict[str, Any]],
        params: dict[str, Any],
        repeat: int,
        model: str,
    ) -> dict[str, Any]:
        """One paid call; returns the response row (committed by the caller).

        Raises Stop when the run must stop first, or the per-cell error."""
        if self.mode == "replay":
            raise ReplayMissError(f"replay: no recorded response for cell {key}")
        claimed = self._claim(key)
        if isinstance(claimed, dict):
            return claimed
        try:
            return await self._send_claimed(client, key, messages, params, repeat, model)
        except BaseException as exc:
            if self.lease is not None:  # unsent, or failed unpaid: free for anyone to retry
                with contextlib.suppress(StoreError):
                    self.store.release_claim(key, self.lease)
            if isinstance(exc, ClientClosedError):
                self.stop_closed(client, exc)
                raise Stop from None
            raise

    def claim_ahead(self, keys: Sequence[str]) -> None:
        """Claim the cells about to be sent in one transaction, so each need not take SQLite's
        write lock for its own (``_claim`` then finds it held). Keys another live process is
        paying for are left for ``_claim`` to report; unused claims go when the lease closes."""
        if self.lease is None:
            return
        keys = [
            k
            for k in dict.fromkeys(keys)
            if k not in self.held and k not in self.found and k not in self.cache
            and k not in self.pending
        ]  # fmt: skip
        if len(keys) < 2:
            return
        for key, taken in self.store.claim_cells(keys, self.lease).items():
            if taken is None:
                self.held.add(key)
            elif isinstance(taken, dict):
                self.found[key] = taken

    def _claim(self, key: str) -> dict[str, Any] | None:
        """None once this session holds the claim on ``key``; the stored reply if another process
        has stored one meanwhile (marked ``_from_store``); ClaimedElsewhere if one is paying now."""
        if self.lease is None:
            return None
        if key in self.held:
            self.held.discard(key)
            return None
        taken: dict[str, Any] | Busy | None = self.found.pop(key, None)
        if taken is None:
            taken = self.store.claim_cell(key, self.lease)
        if isinstance(taken, Busy):
            raise ClaimedElsewhere(taken.owner)
        if taken is not None:
            taken["_from_store"] = True
            self.cache[key] = taken
        return taken

    async def _send_claimed(
        self,
        client: Any,
        key: str,
        messages: list[dict[str, Any]],
        params: dict[str, Any],
        repeat: int,
        model: str,
    ) -> dict[str, Any]:
        if self.api == "v2":
            recovered = await self.journal.recover(client, key)
            if recovered is not None:
                response, run_id, session = recovered
                return response_row(
                    response, client, key, messages, params, repeat, model, run_id, session
                )
        if not self._reserve():
            raise Stop
        ctx = CallContext(key)
        token = CURRENT.set(ctx)
        try:
            if self.api == "v2":
                response = await self.journal.submit_and_wait(
                    client,
                    key,
                    messages,
                    {**params, **slug_kw(client, model)},
                    self.run_id,
                    self.session,
                )
            else:
                response = await self.call(
                    chat_of(client), messages, **params, **slug_kw(client, model)
                )
        except BaseException as exc:
            self.store.record_attempts(ctx.records)
            if isinstance(exc, Halted):  # the run was interrupted: nothing of it is on the wire
                raise Stop from None
            if isinstance(exc, InsufficientCreditsError):
                self.request_stop("insufficient_credits")
                raise Stop from None
            if isinstance(exc, FATAL):
                self.fatal = exc
                self.request_stop("failed")
                raise Stop from None
            if isinstance(exc, APIError) and self.reach.observe(exc):
                self.stop_unreachable(client)
                raise Stop from None
            raise
        finally:
            CURRENT.reset(token)
            self.spending.inflight -= 1
        self.spending.record_paid(response.credits_remaining, account_of(client))
        row = response_row(
            response, client, key, messages, params, repeat, model, self.run_id, self.session
        )
        row["_attempts"] = ctx.records  # written with the response, in one transaction
        return row


def chat_of(client: Any) -> Callable[..., Any]:
    """``client.chat``; for a sync ``lk.Client``, its ``chat`` driven on the run's event loop
    (``Client._chat_on_loop``) where it can be, so a call in flight needs no thread."""
    from ..client.client import Client

    chat = client._chat_on_loop() if isinstance(client, Client) else None
    return chat if chat is not None else client.chat


def slug_kw(client: Any, model: str) -> dict[str, str]:
    """``{"model": model}`` when the call goes to another slug than the client's own (a run
    over several models uses one client); nothing otherwise, so any chat callable works."""
    return {} if model == getattr(client, "model", model) else {"model": model}


def response_row(
    response: Any,
    client: Any,
    key: str,
    messages: list[dict[str, Any]],
    params: dict[str, Any],
    repeat: int,
    model: str,
    run_id: str,
    session: int,
) -> dict[str, Any]:
    return {
        **response_fields(response),
        "cell_key": key,
        "model": model,
        "endpoint": endpoint(client),
        "account": account_of(client),
        "messages": messages,
        "params": params,
        "repeat": repeat,
        "run_id": run_id,
        "session": session,
        "created_at": time.time(),
    }
