"""The asyncio runner behind ``Experiment.run``: bounded concurrency, budget, resume, replay.

Invariants (each one is a test):
- a paid response is committed to SQLite before its worker takes the next cell, so a killed process
  loses at most the calls in flight;
- a cell whose key is in the store is never sent again (resume, rerun, shared cache);
- before each send, spent + (calls in flight + 1) x expected cost must fit the budget;
- a 406 stops the run ("insufficient_credits"), keeping every finished row;
- replay never touches the network and fails on the first cell it has never seen.

What a SIGKILL can still cost: on v1 a call in flight when the process dies is billed by the server
when it completes, and the rerun pays for that cell again (at most ``concurrency`` calls). With
``api="v2"`` each job is journaled (``inflight`` table) right after it is submitted, and the rerun
collects it by request id instead; only a kill inside the few milliseconds between the server
accepting a submission and the journal commit can still cost a second call.

Sync clients run on a thread pool of ``concurrency`` threads (the client is thread-safe and its
rate limiter is shared); async clients are awaited directly.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ._cells import Cell, cell_key
from ._credits import attribute_calls
from ._runner_calls import (
    CURRENT,
    FATAL,
    CallContext,
    Journal,
    Stop,
    describe,
    endpoint,
    hook_attempts,
)
from .errors import (
    APIError,
    InsufficientCreditsError,
    ReplayMissError,
    ValidationError,
)
from .run import Run, RunProgress, run_spend
from .store._store import response_fields


class Runner:
    def __init__(
        self,
        *,
        run: Run,
        cells: Sequence[Cell],
        scorers: Sequence[Any],
        client: Any,
        model: str,
        concurrency: int,
        budget: float | None,
        progress: bool,
        mode: str,
        unit_cost: float,
        local_tokens: Callable[[Cell], int | None],
        api: str = "v1",
        poll_interval: float = 1.0,
    ) -> None:
        self.run = run
        self.store = run.store
        self.cells = list(cells)
        self.scorers = list(scorers)
        self.judges = [s for s in self.scorers if hasattr(s, "grading_messages")]
        self.client = client
        self.model = model
        self.concurrency = concurrency
        self.budget = budget
        self.show_progress = progress
        self.mode = mode
        self.unit_cost = unit_cost
        self.local_tokens = local_tokens
        self.api = api
        self.journal = Journal(self.store, self._call, poll_interval)
        # Local token counts are informative, and loading the tokenizer takes seconds: they are
        # counted on a side thread and written into the cells when the run finishes.
        self._tokens: dict[tuple[str, str], int | None] = {}
        self._token_thread: threading.Thread | None = None
        self.session = 0
        self.sends = False
        self.balance_before: float | None = None
        self.min_header: float | None = None
        self.paid = 0
        self.inflight = 0
        self.stop_reason: str | None = None
        self.fatal: BaseException | None = None
        self.done = 0
        self.cached = 0
        self.errors: Counter[str] = Counter()
        self.prior_spent = 0.0
        self.cache: dict[str, dict[str, Any]] = {}
        self.pending: dict[str, asyncio.Future[dict[str, Any] | None]] = {}
        self._bar: Any = None
        self._pool: ThreadPoolExecutor | None = None
        self._task: asyncio.Task[str] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- control from other threads ------------------------------------------------------------
    def request_stop(self, reason: str) -> None:
        if self.stop_reason is None:
            self.stop_reason = reason

    def cancel_now(self) -> None:
        if self._loop is not None and self._task is not None:
            self._loop.call_soon_threadsafe(self._task.cancel)

    # -- calls ---------------------------------------------------------------------------------
    async def _call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if inspect.iscoroutinefunction(fn):
            return await fn(*args, **kwargs)
        # A sync client: run it on our own pool (the default executor is too small for
        # concurrency 32 on a 2-core box), carrying the context so on_attempt finds its cell.
        loop = asyncio.get_running_loop()
        ctx = contextvars.copy_context()
        return await loop.run_in_executor(
            self._pool, ctx.run, functools.partial(fn, *args, **kwargs)
        )

    def _on_attempt(self, attempt: Any) -> None:
        ctx = CURRENT.get()
        record = {
            "run_id": self.run.id,
            "session": self.session,
            "cell_key": ctx.cell_key if ctx else None,
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
        if ctx is not None:
            ctx.records.append(record)
        else:  # a call made outside any cell (cannot happen today; logged all the same)
            self.store.record_attempts([record])

    def _reserve(self) -> bool:
        """Take a budget slot for one more call, or stop the run if it might not fit."""
        if self.stop_reason is not None:
            return False
        if self.budget is not None:
            projected = self._spent() + (self.inflight + 1) * self._expected_cost()
            if projected > self.budget * (1 + 1e-9):
                self.request_stop("budget")
                return False
        self.inflight += 1
        return True

    def _expected_cost(self) -> float:
        spent = self._spent()
        observed = spent / self.paid if self.paid else 0.0
        return max(self.unit_cost, observed)

    def _spent(self) -> float:
        """Credits spent by this session so far, from the provider's headers when we have them."""
        if self.balance_before is not None and self.min_header is not None:
            return max(0.0, self.balance_before - self.min_header)
        return self.paid * self.unit_cost

    async def _send(
        self, client: Any, key: str, messages: list[dict], params: dict, repeat: int, model: str
    ) -> dict[str, Any]:
        """One paid call; returns the response row (committed by the caller).

        Raises Stop when the run must stop first, or the per-cell error."""
        if self.mode == "replay":
            raise ReplayMissError(f"replay: no recorded response for cell {key}")
        if self.api == "v2":
            recovered = await self.journal.recover(client, key)
            if recovered is not None:
                response, run_id, session = recovered
                return self._row(
                    response, client, key, messages, params, repeat, model, run_id, session
                )
        if not self._reserve():
            raise Stop
        ctx = CallContext(key)
        token = CURRENT.set(ctx)
        try:
            if self.api == "v2":
                response = await self.journal.submit_and_wait(
                    client, key, messages, params, self.run.id, self.session
                )
            else:
                response = await self._call(client.chat, messages, **params)
        except BaseException as exc:
            self.store.record_attempts(ctx.records)
            if isinstance(exc, InsufficientCreditsError):
                self.request_stop("insufficient_credits")
                raise Stop from None
            if isinstance(exc, FATAL):
                self.fatal = exc
                self.request_stop("failed")
                raise Stop from None
            raise
        finally:
            CURRENT.reset(token)
            self.inflight -= 1
        self.paid += 1
        if response.credits_remaining is not None:
            header = float(response.credits_remaining)
            self.min_header = header if self.min_header is None else min(self.min_header, header)
        row = self._row(
            response, client, key, messages, params, repeat, model, self.run.id, self.session
        )
        row["_attempts"] = ctx.records  # written with the response, in one transaction
        return row

    def _row(
        self,
        response: Any,
        client: Any,
        key: str,
        messages: list[dict],
        params: dict,
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
            "messages": messages,
            "params": params,
            "repeat": repeat,
            "run_id": run_id,
            "session": session,
            "created_at": time.time(),
        }

    async def _response_for(self, cell: Cell) -> dict[str, Any]:
        """The cell's response row from the cache, a call already in flight, or a new call."""
        return await self._fetch(
            self.client, cell.cell_key, cell.messages, cell.params, cell.repeat, cell.model
        )

    async def _fetch(
        self,
        client: Any,
        key: str,
        messages: list[dict],
        params: dict,
        repeat: int,
        model: str,
        *,
        commit: bool = False,
    ) -> dict[str, Any]:
        """A response row for ``key``: from the cache, from an identical call already in flight
        (two cells, or two gradings, with the same request pay once), or from a new call.
        ``commit`` writes a new response to the store before anyone else can use it."""
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
            self.cache[key] = row
            future.set_result(row)
        except (APIError, ValidationError) as exc:  # whoever shares this key records it too
            future.set_exception(exc)
            future.add_done_callback(lambda f: f.exception())
            raise
        except BaseException:
            future.set_result(None)
            raise
        finally:
            self.pending.pop(key, None)
        return row

    # -- one cell ------------------------------------------------------------------------------
    async def _process(self, cell: Cell) -> None:
        started = time.time()
        was_cached = cell.cell_key in self.cache
        try:
            row = await self._response_for(cell)
        except Stop:
            return
        except (APIError, ValidationError) as exc:  # a per-cell failure: recorded, run goes on
            attempts = self.store.query(
                "SELECT COUNT(*) AS n FROM attempts WHERE run_id = ? AND session = ? "
                "AND cell_key = ?",
                (self.run.id, self.session, cell.cell_key),
            )[0]["n"]
            self.store.record_cells(
                [
                    cell.record(
                        run_id=self.run.id,
                        status="error",
                        error=type(exc).__name__,
                        error_message=str(exc),
                        attempts=attempts or None,
                        started_at=started,
                        finished_at=time.time(),
                        local_prompt_tokens=self._tokens.get((cell.variant, cell.item_id)),
                    )
                ]
            )
            self.errors[type(exc).__name__] += 1
            self._publish()
            return
        fields = self._cell_fields(cell, row, cached=was_cached)
        paid_now = not was_cached  # INSERT OR IGNORE: a duplicate of a shared key is harmless
        if self.judges:
            # Commit the paid response first: judging may stop the run, the response must stay.
            self.store.record_call(
                row if paid_now else None, [cell.record(**fields, status="scoring")]
            )
            paid_now = False
        try:
            scores, score_errors, judge_keys = await self._score(cell, row["text"])
        except Stop:
            return
        fields.update(
            scores=scores, score_errors=score_errors or None, judge_keys=judge_keys or None
        )
        self.store.record_call(row if paid_now else None, [cell.record(**fields, status="done")])
        self.done += 1
        self.cached += int(was_cached)
        self._publish()

    def _cell_fields(self, cell: Cell, row: dict[str, Any], *, cached: bool) -> dict[str, Any]:
        return {
            "run_id": self.run.id,
            "cached": cached,
            "attempts": row.get("attempts"),
            "latency_s": row.get("latency_s"),
            "started_at": row.get("started_at"),
            "finished_at": row.get("finished_at"),
            "local_prompt_tokens": self._tokens.get((cell.variant, cell.item_id)),
        }

    async def _score(self, cell: Cell, text: str) -> tuple[dict, dict, dict]:
        scores: dict[str, float] = {}
        errors: dict[str, str] = {}
        judge_keys: dict[str, str] = {}
        for scorer in self.scorers:
            try:
                if hasattr(scorer, "grading_messages"):
                    reply, judge_keys[scorer.name] = await self._judge(scorer, cell, text)
                    value = scorer.parse(reply)
                else:
                    value = scorer(text, cell.row)
                scores[scorer.name] = float(value)
            except (Stop, ReplayMissError):
                raise
            except Exception as exc:  # a scorer's failure is recorded on its cell, not fatal
                errors[scorer.name] = describe(exc)
        return scores, errors, judge_keys

    async def _judge(self, scorer: Any, cell: Cell, text: str) -> tuple[str, str]:
        """The judge's grading call is a cell of its own: cached, budgeted and costed."""
        messages = scorer.grading_messages(text, cell.row)
        client = scorer.client if scorer.client is not None else self.client
        model = getattr(client, "model", None) or self.model
        params = dict(scorer.params)
        key = cell_key(model, messages, params, 0)
        if key not in self.cache and key not in self.pending:
            stored = self.store.cached_responses([key]).get(key)
            if stored is not None:
                self.cache[key] = stored
        row = await self._fetch(client, key, messages, params, 0, model, commit=True)
        return row["text"], key

    # -- the run -------------------------------------------------------------------------------
    async def _balance(self) -> float | None:
        if self.mode == "replay" or self.client is None or not hasattr(self.client, "credits"):
            return None
        try:
            return float(await self._call(self.client.credits))
        except FATAL:
            raise
        except APIError:
            return None

    def _publish(self, *, finished: bool = False, status: str | None = None) -> None:
        spent = self.prior_spent + self._spent()
        left = self.min_header if self.min_header is not None else self.balance_before
        error_count = sum(self.errors.values())
        snapshot = RunProgress(
            total=len(self.cells),
            done=self.done,
            errors=dict(self.errors),
            credits_spent=spent,
            credits_left=left,
            finished=finished,
            status=status or "running",
            cached=self.cached,
        )
        if self._bar is not None:
            postfix = {"errors": error_count, "credits": f"{spent:.5f}"}
            if left is not None:
                postfix["left"] = f"{left:.4f}"
            self._bar.set_postfix(postfix, refresh=False)
            # update() redraws at most every mininterval: a CI log gets a few lines, not one per cell
            self._bar.update(self.done + error_count - self._bar.n)
        self.run._publish(snapshot)

    def _prepare(self) -> list[Cell]:
        """Cells still to do; cached ones with no judge to call are recorded in bulk right here."""
        done_ids = self.store.done_cell_ids(self.run.id)
        self.done = sum(1 for c in self.cells if c.cell_id in done_ids)
        todo = [c for c in self.cells if c.cell_id not in done_ids]
        self.cache = self.store.cached_responses(c.cell_key for c in todo)
        if self.judges:
            return todo
        remaining, batch = [], []
        for cell in todo:
            row = self.cache.get(cell.cell_key)
            if row is None:
                remaining.append(cell)
                continue
            scores, errors, _ = self._score_sync(cell, row["text"])
            fields = self._cell_fields(cell, row, cached=True)
            batch.append(
                cell.record(**fields, status="done", scores=scores, score_errors=errors or None)
            )
            if len(batch) >= 2000:
                self._flush(batch)
        self._flush(batch)
        return remaining

    def _flush(self, batch: list[dict[str, Any]]) -> None:
        if batch:
            self.store.record_cells(batch)
            self.done += len(batch)
            self.cached += len(batch)
            batch.clear()
            self._publish()

    def _score_sync(self, cell: Cell, text: str) -> tuple[dict, dict, dict]:
        coro = self._score(cell, text)
        try:
            coro.send(None)  # no judges: the coroutine never awaits, so it finishes here
        except StopIteration as done:
            return done.value
        coro.close()
        raise RuntimeError("scoring awaited without judges")

    def _repair_earlier_sessions(self) -> None:
        # A killed session never attributed its calls; do it now from what it committed.
        for s in self.store.sessions(self.run.id):
            if s["session"] == self.session:
                continue
            calls = self.store.session_responses(self.run.id, s["session"])
            if any(c["credits"] is None for c in calls):
                self.store.set_response_credits(attribute_calls(calls, s["balance_before"]))

    async def _worker(self, queue: deque[Cell]) -> None:
        while queue and self.stop_reason is None:
            await self._process(queue.popleft())

    async def execute(self) -> str:
        self._loop = asyncio.get_running_loop()
        self._task = asyncio.current_task()  # type: ignore[assignment]
        self.prior_spent = run_spend(self.store, self.run.id)["credits_spent"]
        self._pool = ThreadPoolExecutor(
            max_workers=self.concurrency, thread_name_prefix="llamakit-cell"
        )
        self._repair_earlier_sessions()
        # Cached cells are recorded first, with no network at all: a fully cached rerun sends
        # not even the (free) balance requests.
        self._start_token_counts()
        queue = deque(self._prepare())
        self.sends = bool(queue)
        status = "failed"
        hook = lambda: None  # noqa: E731
        try:
            self.balance_before = await self._balance() if self.sends else None
            self.session = self.store.start_session(self.run.id, balance_before=self.balance_before)
            hook = hook_attempts(self.client, self._on_attempt)
            workers = [
                asyncio.create_task(self._worker(queue))
                for _ in range(min(self.concurrency, len(queue)))
            ]
            try:
                await asyncio.gather(*workers)
            except BaseException:
                for w in workers:
                    w.cancel()
                await asyncio.gather(*workers, return_exceptions=True)
                raise
            status = self.stop_reason or ("finished" if not queue else "stopped")
            if status == "finished" and self.done < len(self.cells) and not self.errors:
                status = "stopped"
        except asyncio.CancelledError:
            status = "interrupted"
            raise
        except KeyboardInterrupt:
            status = "interrupted"
            raise
        finally:
            hook()
            await self._finish(status)
        if self.fatal is not None:
            raise self.fatal
        return status

    def _start_token_counts(self) -> None:
        done_ids = self.store.done_cell_ids(self.run.id)
        firsts = {(c.variant, c.item_id): c for c in self.cells if c.cell_id not in done_ids}

        def count() -> None:
            for key, cell in firsts.items():
                self._tokens[key] = self.local_tokens(cell)

        self._token_thread = threading.Thread(target=count, name="llamakit-tokens", daemon=True)
        self._token_thread.start()

    def _backfill_token_counts(self) -> None:
        if self._token_thread is None:
            return
        self._token_thread.join(timeout=120)
        updates = [
            (n, self.run.id, c.cell_id)
            for c in self.cells
            if (n := self._tokens.get((c.variant, c.item_id))) is not None
        ]
        self.store.set_local_tokens(updates)

    async def _finish(self, status: str) -> None:
        if status != "interrupted":
            await asyncio.get_running_loop().run_in_executor(
                self._pool, self._backfill_token_counts
            )
        balance_after = None
        if status != "interrupted" and self.sends and self.session:
            try:
                balance_after = await self._balance()
            except APIError:
                balance_after = None
        self.store.finish_session(
            self.run.id, self.session, status=status, balance_after=balance_after
        )
        calls = self.store.session_responses(self.run.id, self.session)
        if calls:
            self.store.set_response_credits(attribute_calls(calls, self.balance_before))
        self._repair_earlier_sessions()  # v2 jobs collected now for a killed session
        self.store.set_run_status(self.run.id, status, finished_at=time.time())
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
        self._publish(finished=True, status=status)
        if self._bar is not None:
            self._bar.refresh()
            self._bar.close()

    def open_bar(self) -> None:
        """Create the progress bar; called from the caller's thread so that Jupyter shows the
        widget under the cell that started the run."""
        if not self.show_progress:
            return
        from tqdm.auto import tqdm

        self._bar = tqdm(total=len(self.cells), desc=self.run.name, unit="cell", dynamic_ncols=True)
