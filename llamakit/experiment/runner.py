"""The asyncio runner behind ``Experiment.run``: bounded concurrency, budget, resume, replay.

Invariants (each one is a test):
- a paid response is committed to SQLite before its worker takes the next cell, so a killed process
  loses at most the calls in flight;
- a cell whose key is in the store is never sent again (resume, rerun, shared cache);
- a request is claimed in the transaction that checks the store before it is sent, so processes
  sharing a store never send it twice (a cell another process holds is deferred, then read back);
- a store write that fails stops the run (StoreError) with the reply kept in the spill file;
- before each send, spent + (calls in flight + 1) x expected cost must fit the budget;
- a 406 stops the run ("insufficient_credits"), keeping every finished row;
- replay never touches the network and fails on the first cell it has never seen;
- interrupted (Ctrl-C, or its task cancelled: ``task.cancel()``, a ``wait_for`` timeout), it takes
  no new cell, ends the calls waiting to retry, commits the replies of the calls on the wire,
  ends the session "interrupted", then lets the cancellation go on; a second interrupt while it
  waits abandons those calls, and says how many.

What a SIGKILL can still cost: on v1 a call in flight when the process dies is billed by the server
when it completes, and the rerun pays for that cell again (at most ``concurrency`` calls). With
``api="v2"`` each job is journaled (``inflight`` table) right after it is submitted, and the rerun
collects it by request id instead; only a kill inside the few milliseconds between the server
accepting a submission and the journal commit can still cost a second call.

Sync clients run on a thread pool of ``concurrency`` threads (the client is thread-safe and its
rate limiter is shared); async clients are awaited directly.

Where the parts live: ``runner_calls`` (one paid call per request key, within the budget),
``runner_budget`` (credits spent and attributed), ``journal`` (v2 jobs), ``runner_scoring``
(scorers and judges), ``gradings`` (a judge's grading request and its key), ``runner_hooks``
(the attempt log's hook on every client the run calls through), ``runner_cancel`` (waiting out a
cancellation), and ``runner_progress``; this module runs the cells.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from typing import Any

from ..client import scope
from ..client.credits import ZERO, account_of, to_credits
from ..errors import APIError, ClientClosedError, StoreError, ValidationError
from ..store._claims import Lease
from .cells import Cell
from .gradings import judge_call
from .live_runs import announce_abandoned, announce_stopping
from .run import Run, RunProgress, run_spend
from .runner_budget import Spending, attribute_session, repair_earlier_sessions
from .runner_calls import FATAL, ClaimedElsewhere, Responses, Stop
from .runner_cancel import cancel_all, shielded
from .runner_commits import Commits
from .runner_feed import CellFeed, Ordinals, done_among
from .runner_gc import frozen_heap
from .runner_hooks import hook_attempts
from .runner_progress import ProgressBar
from .runner_reach import check_served, hook_breaker
from .runner_scoring import is_judge, score_cell, score_without_judges

# How often a cell another process is paying for is looked at again.
CLAIM_POLL_S = 0.05
# Cells claimed in one transaction when a worker takes a cell not yet claimed: one write-lock
# wait for many cells, while another process sharing the run still finds most of it unclaimed.
CLAIM_AHEAD = 16
# Cached cells are looked up and recorded this many at a time (one transaction each).
PREPARE_CHUNK = 2000


class Runner:
    def __init__(
        self,
        *,
        run: Run,
        cells: Callable[..., Iterator[Cell]],
        total: int,
        scorers: Sequence[Any],
        client: Any,
        model: str,
        source: str,
        concurrency: int,
        budget: Decimal | None,
        progress: bool,
        mode: str,
        unit_cost: Decimal,
        api: str = "v1",
        poll_interval: float = 1.0,
        models: Sequence[str] = (),
    ) -> None:
        self.run = run
        self.store = run.store
        # Called for each pass over the cells (``wanted=`` a set of ordinals: only those);
        # never held as a list, so memory stays flat in the number of cells (``runner_feed``).
        self.cells = cells
        self.total = total
        self.scorers = list(scorers)
        self.judges = [s for s in self.scorers if is_judge(s)]
        self.client = client
        self.model = model
        self.models = list(models)  # slugs to check are served before the first paid call
        self.source = source
        self.concurrency = concurrency
        self.show_progress = progress
        self.mode = mode
        self.spending = Spending(budget=budget, unit_cost=unit_cost)
        self.responses = Responses(
            store=self.store,
            run_id=run.id,
            mode=mode,
            api=api,
            spending=self.spending,
            poll_interval=poll_interval,
        )
        self.sends = False
        self.done = 0
        self.cached = 0
        self.errors: Counter[str] = Counter()
        self.prior_spent = ZERO
        self.feed = CellFeed(())  # the workers' queue (replaced for each drain)
        self.needed: set[str] = set()  # models of the cells still to send or grade
        self.bar = ProgressBar()
        self.commits = Commits(self.store)
        self._task: asyncio.Task[str] | None = None
        self.halt = scope.Halt()  # set on interruption: calls in backoff send nothing more
        self._abandon = False  # cancel_now: a cancellation abandons the calls in flight
        # Between batches, a sequential run's policy picks the next cells (experiment.sequential).
        self.policy: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def stop_reason(self) -> str | None:
        return self.responses.stop_reason

    # -- control from other threads ------------------------------------------------------------
    def request_stop(self, reason: str) -> None:
        self.responses.request_stop(reason)
        if reason == "interrupted":  # a call waiting to retry has nothing on the wire: it ends
            self.halt.set()

    def cancel_now(self) -> None:
        """Abandon the calls in flight (the sync path's second Ctrl-C)."""
        self._abandon = True
        if self._loop is not None and self._task is not None:
            self._loop.call_soon_threadsafe(self._task.cancel)

    # -- one cell ------------------------------------------------------------------------------
    async def _process(self, cell: Cell) -> None:
        started = time.time()
        was_cached = preloaded = cell.cell_key in self.responses.cache
        try:
            row = await self.responses.fetch(
                self.client, cell.cell_key, cell.messages, cell.params, cell.repeat, cell.model
            )
        except Stop:
            return
        except ClaimedElsewhere:  # another process is paying for it right now
            self.feed.deferred.append(cell)
            return
        except (APIError, ValidationError) as exc:  # a per-cell failure: recorded, run goes on
            await self._record_error(cell, exc, started)
            return
        if row.get("_from_store"):  # another process paid for it while this one waited
            was_cached = True
            if self.store.cell_done(self.run.id, cell.cell_id):  # and recorded it in this run
                self.responses.cache.pop(cell.cell_key, None)
                self.done += 1
                self._publish()
                return
        fields = self._cell_fields(cell, row, cached=was_cached)
        paid_now = not was_cached  # INSERT OR IGNORE: a duplicate of a shared key is harmless
        if self.judges:
            # Commit the paid response first: judging may stop the run, the response must stay.
            await self.commits.commit(
                row if paid_now else None, [cell.record(**fields, status="scoring")]
            )
            paid_now = False
        try:
            scores, score_errors, judge_keys = await score_cell(
                self.scorers, cell, row["text"], self._judge
            )
        except Stop:
            return
        fields.update(
            scores=scores, score_errors=score_errors or None, judge_keys=judge_keys or None
        )
        # Group commit: durable before this worker takes its next cell, shared with neighbours.
        await self.commits.commit(row if paid_now else None, [cell.record(**fields, status="done")])
        if self.feed.preloaded(cell.cell_key):  # loaded with its chunk of the queue
            self.feed.release(cell.cell_key)  # and dropped when its last queued cell is done
        elif not preloaded:
            # Committed, a reply (paid here or by another process) is found in the store by
            # any later cell asking the same, through its claim: keeping each here would grow
            # a live run's memory with its cells.
            self.responses.cache.pop(cell.cell_key, None)
        for key in (
            k for keys in judge_keys.values() for k in ([keys] if isinstance(keys, str) else keys)
        ):
            self.responses.cache.pop(key, None)  # committed: a later cell finds it in the store
        self.done += 1
        self.cached += int(was_cached)
        self._publish()

    async def _record_error(self, cell: Cell, exc: Exception, started: float) -> None:
        attempts = self.store.query(
            "SELECT COUNT(*) AS n FROM attempts WHERE run_id = ? AND session = ? AND cell_key = ?",
            (self.run.id, self.responses.session, cell.cell_key),
        )[0]["n"]
        await self.commits.commit(
            None,
            [
                cell.record(
                    run_id=self.run.id,
                    status="error",
                    error=type(exc).__name__,
                    error_message=str(exc),
                    attempts=attempts or None,
                    started_at=started,
                    finished_at=time.time(),
                )
            ],
        )
        self.errors[type(exc).__name__] += 1
        self._publish()

    def _cell_fields(self, cell: Cell, row: dict[str, Any], *, cached: bool) -> dict[str, Any]:
        return {
            "run_id": self.run.id,
            "cached": cached,
            "attempts": row.get("attempts"),
            "latency_s": row.get("latency_s"),
            "started_at": row.get("started_at"),
            "finished_at": row.get("finished_at"),
        }

    async def _judge(
        self, scorer: Any, cell: Cell, text: str, messages: list[dict[str, str]] | None
    ) -> tuple[str, str]:
        """The judge's grading call (or re-ask, ``messages``) is a cell of its own: cached,
        budgeted and costed."""
        call = judge_call(
            scorer,
            text,
            cell.row,
            client=self.client,
            model=self.model,
            source=self.source,
            messages=messages,
        )
        responses = self.responses
        if call.key not in responses.cache and call.key not in responses.pending:
            stored = self.store.cached_responses([call.key]).get(call.key)
            if stored is not None:
                responses.cache[call.key] = stored
        while True:  # a grading another process is paying for: wait for its reply
            try:
                row = await responses.fetch(
                    call.client, call.key, call.messages, call.params, 0, call.model, commit=True
                )
                return row["text"], call.key
            except ClaimedElsewhere:
                if self.stop_reason is not None:
                    raise Stop from None
                await asyncio.sleep(CLAIM_POLL_S)

    # -- the run -------------------------------------------------------------------------------
    async def _balance(self) -> Decimal | None:
        if self.mode == "replay" or self.client is None or not hasattr(self.client, "credits"):
            return None
        if self.responses.reach.tripped:  # no point asking a server we know we cannot reach
            return None
        try:
            balance = await self.responses.call(self.client.credits)
        except FATAL:
            raise
        except APIError as exc:
            if self.responses.reach.observe(exc):
                self.responses.stop_unreachable(self.client)
                raise self.responses.fatal from None  # type: ignore[misc]
            return None
        self.responses.reach.answered()
        return to_credits(balance)

    async def _other_balances(self) -> dict[str, Decimal | None]:
        """The balance of each account other than the run's that a judge's own client pays
        from (free requests, like ``_balance``); None where it cannot be read."""
        if not self.sends or self.mode == "replay":
            return {}
        own = account_of(self.client)
        clients: dict[str, Any] = {}
        for judge in self.judges:
            client = getattr(judge, "client", None)
            account = account_of(client) if client is not None else None
            if account is not None and account != own and hasattr(client, "credits"):
                clients.setdefault(account, client)
        balances: dict[str, Decimal | None] = {}
        for account, client in clients.items():
            try:
                balances[account] = to_credits(await self.responses.call(client.credits))
            except (APIError, ClientClosedError):
                balances[account] = None
        return balances

    def _publish(self, *, finished: bool = False, status: str | None = None) -> None:
        snapshot = RunProgress(
            total=self.total,
            done=self.done,
            errors=dict(self.errors),
            credits_spent=self.prior_spent + self.spending.spent(),
            credits_left=self.spending.credits_left(),
            finished=finished,
            status=status or "running",
            cached=self.cached,
        )
        self.bar.show(snapshot)
        self.run._publish(snapshot)

    def _prepare(self) -> Ordinals:
        """The first pass over the cells, a chunk at a time: count those done, record cached ones
        with no judge to call in bulk right here, and note the rest (their ordinals, and their
        models in ``self.needed``) for the workers' pass. Only a chunk's cells and replies are
        in memory at once, never the run's."""
        shared = self.store.cells_run(self.run.id) != self.run.id  # a rerun sharing a run's cells
        rest = Ordinals(self.total)
        stream = self.cells()
        while chunk := list(itertools.islice(stream, PREPARE_CHUNK)):
            done = done_among(self.store, self.run.id, chunk)
            todo = [c for c in chunk if c.cell_id not in done]
            self.done += len(done)
            self.cached += len(done) if shared else 0
            cached = {} if self.judges else self.store.cached_responses(c.cell_key for c in todo)
            batch = []
            for cell in todo:
                row = cached.get(cell.cell_key)
                if row is None:  # to send, or (with judges) to grade
                    rest.add(cell.ordinal)
                    self.needed.add(cell.model)
                    continue
                scores, errors, _ = score_without_judges(self.scorers, cell, row["text"])
                fields = self._cell_fields(cell, row, cached=True)
                batch.append(
                    cell.record(**fields, status="done", scores=scores, score_errors=errors or None)
                )
            self._flush(batch)
        return rest

    def _feed(self, rest: Ordinals) -> CellFeed:
        """The workers' pass: the cells noted by ``_prepare``, generated again."""

        def done_meanwhile(n: int) -> None:  # by another process sharing the run
            self.done += n
            self._publish()

        return CellFeed(
            self.cells(wanted=rest.__contains__),
            store=self.store,
            run_id=self.run.id,
            on_done=done_meanwhile,
            preload=self.responses.cache if self.judges else None,
        )

    def _flush(self, batch: list[dict[str, Any]]) -> None:
        if batch:
            self.store.record_cells(batch)
            self.done += len(batch)
            self.cached += len(batch)
            batch.clear()
            self._publish()

    async def _worker(self, feed: CellFeed) -> None:
        while self.stop_reason is None:
            try:
                cell = feed.take()
                if cell is None:
                    if not feed.deferred:
                        return
                    await asyncio.sleep(CLAIM_POLL_S)
                    feed.requeue()
                    continue
                if cell.cell_key not in self.responses.held:
                    # As many as the workers send at once: the next round of this session.
                    ahead = feed.ahead(min(CLAIM_AHEAD, self.concurrency) - 1)
                    self.responses.claim_ahead([cell.cell_key, *(c.cell_key for c in ahead)])
                await self._process(cell)
            except StoreError as exc:  # the store cannot take more: stop this run, keep the rest
                self.responses.fail(exc)

    async def _drain(self, feed: CellFeed, cells: int) -> None:
        """Send ``cells`` cells from ``feed`` on at most ``concurrency`` workers.

        Cancelled (Ctrl-C under ``asyncio.run``, ``task.cancel()``, a ``wait_for`` timeout) or
        interrupted, it takes no new cell and waits for the calls already sent: the server bills
        them, so their replies are stored before the cancellation goes on to the caller."""
        self.feed = feed
        workers = [
            asyncio.create_task(self._worker(feed)) for _ in range(min(self.concurrency, cells))
        ]
        if not workers:  # a batch with nothing left to send (asyncio.wait refuses none)
            return
        try:
            # asyncio.wait, unlike gather, leaves the workers running when this task is cancelled.
            await asyncio.wait(workers, return_when=asyncio.FIRST_EXCEPTION)
        except (asyncio.CancelledError, KeyboardInterrupt):
            await self._wind_down(workers)
            raise
        failed = [w for w in workers if w.done() and not w.cancelled() and w.exception()]
        if failed:  # a worker's unexpected error: stop the others and raise it, as gather did
            await cancel_all(workers)
            failed[0].result()

    async def _wind_down(self, workers: list[asyncio.Task[None]]) -> None:
        """The run's task was cancelled (or interrupted): let the calls on the wire finish and
        be committed, unless this is the second cancellation (or ``cancel_now``)."""
        if not self._abandon:
            self.request_stop("interrupted")
            announce_stopping(self.run.id)
            try:
                await asyncio.wait(workers)
                return
            except (asyncio.CancelledError, KeyboardInterrupt):
                pass  # cancelled again while waiting: abandon the calls in flight
        on_wire = self.spending.inflight
        await cancel_all(workers)
        announce_abandoned(self.run.id, on_wire, self.responses.api)

    async def _drain_by_policy(self, rest: Ordinals) -> bool:
        """Send the cells the policy picks, a batch at a time, until it (or a stop) says enough;
        returns whether cells are left unsent (``experiment.sequential``). A sequential run
        holds its cells still to send by id, to pick them by item."""
        left = {c.cell_id: c for c in self.cells(wanted=rest.__contains__)}
        while self.stop_reason is None and self.policy is not None:
            chosen = self.policy.next_batch()
            if chosen is None:
                break
            batch = [left.pop(i) for i in chosen if i in left]
            await self._drain(CellFeed(batch), len(batch))
        return bool(left)

    async def execute(self) -> str:
        """Run the cells; returns the run's status (the run's error is raised)."""
        with frozen_heap():
            return await self._execute()

    async def _execute(self) -> str:
        self._loop = asyncio.get_running_loop()
        self._task = asyncio.current_task()
        self.prior_spent = run_spend(self.store, self.run.id)["credits_spent"]
        self.responses.pool = ThreadPoolExecutor(
            max_workers=self.concurrency, thread_name_prefix="llamakit-cell"
        )
        try:
            repair_earlier_sessions(self.store, self.run.id, self.responses.session)
            # Cached cells are recorded first, with no network at all: a fully cached rerun
            # sends not even the (free) balance requests.
            rest = self._prepare()
            if rest.count and self.mode != "replay":
                await check_served(self.responses.call, self.client, self.models, self.needed)
            self.bar.begin(self.done)
        except BaseException:  # no session yet: still, leave no run "running" behind
            with contextlib.suppress(StoreError):
                self.store.end_session(self.run.id, 0, status="failed", balance_after=None)
            raise
        self.sends = bool(rest.count)
        status = "failed"
        hook: Callable[[], None] = lambda: None  # noqa: E731
        unhook_breaker = hook_breaker(self.client, self.responses.reach)
        try:
            # Taken before the balance is read: the session must span that reading (spans.py).
            opened = time.time()
            self.spending.account = account_of(self.client)
            self.spending.balance_before = await self._balance() if self.sends else None
            for account, balance in (await self._other_balances()).items():
                self.spending.opened(account, balance)
            self.responses.session = self.store.start_session(
                self.run.id,
                balance_before=self.spending.balance_before,
                started_at=opened,
                account=self.spending.account,
                account_balances={a: [o[0], None] for a, o in self.spending.others.items()},
            )
            if self.mode != "replay":
                self.responses.lease = Lease(self.store, self.run.id).start()
            # Every client the run calls through, its judges' own included: one attempt log.
            clients = [self.client, *(getattr(j, "client", None) for j in self.judges)]
            hook = hook_attempts(clients, self.responses.on_attempt, halt=self.halt)
            if self.policy is None:
                left = False
                if rest.count:
                    await self._drain(self._feed(rest), rest.count)
                    left = not self.feed.exhausted
            else:
                left = await self._drain_by_policy(rest)
            status = self.stop_reason or ("stopped" if left else "finished")
            if status == "finished" and self.done < self.total and not self.errors:
                status = "stopped"
            if status == "stopped" and getattr(self.policy, "decision", None) is not None:
                status = "decided"  # a sequential run answered its question: the rest is unsent
        except (asyncio.CancelledError, KeyboardInterrupt):
            status = "interrupted"
            raise
        finally:
            hook()
            try:
                # Shielded: a cancellation while the replies are committed must not drop them.
                await shielded(self._finish(status))
            finally:
                unhook_breaker()
        if self.responses.fatal is not None:
            raise self.responses.fatal
        return status

    async def _finish(self, status: str) -> None:
        pool = self.responses.pool
        session = self.responses.session
        # Every reply handed to the writer is committed before the claims are dropped: another
        # process must find the reply, not a free claim it would pay for again.
        await self.commits.close()
        if self.responses.lease is not None:
            self.responses.lease.close()
        try:
            balance_after = None
            if status != "interrupted" and self.sends and session:
                try:
                    balance_after = await self._balance()
                except (APIError, ClientClosedError):
                    balance_after = None
                closing = await self._other_balances()
                if closing:
                    opening = {a: o[0] for a, o in self.spending.others.items()}
                    self.store.set_account_balances(
                        self.run.id, session, {a: [opening.get(a), b] for a, b in closing.items()}
                    )
            # The run's status is set by the last of its live sessions to end (session 0: this
            # process failed before it opened one).
            self.store.end_session(self.run.id, session, status=status, balance_after=balance_after)
            if session:
                attribute_session(
                    self.store, self.run.id, session, self.spending.balance_before, balance_after
                )
                repair_earlier_sessions(self.store, self.run.id, session)  # v2 jobs of a kill
        except StoreError as exc:  # the session's end is in the spill file; say why it stopped
            self.responses.fail(exc)
            status = "failed"
        finally:
            if pool is not None:
                pool.shutdown(wait=False, cancel_futures=True)
            self._publish(finished=True, status=status)
            self.bar.close()

    def open_bar(self) -> None:
        """Create the progress bar; called from the caller's thread so that Jupyter shows the
        widget under the cell that started the run."""
        if self.show_progress:
            self.bar.open(total=self.total, desc=self.run.name)
