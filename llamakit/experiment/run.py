"""`Run`: one execution of an experiment, live or loaded from the store; `runs()` and `load_run()`."""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from .._defaults import PUBLISHED_COST_PER_CALL
from ..client.credits import ZERO, combine_sources, session_spend, to_credits
from ..errors import LlamakitError
from .sources import recorded_source

if TYPE_CHECKING:
    from ..store import Store

log = logging.getLogger("llamakit.run")

FINAL_STATUSES = ("finished", "stopped", "budget", "insufficient_credits", "interrupted", "failed")


@dataclass(frozen=True)
class RunProgress:
    """A snapshot of a run, handed to ``Run.subscribe`` callbacks after every cell."""

    total: int
    done: int
    errors: dict[str, int] = field(default_factory=dict)
    credits_spent: Decimal = Decimal(0)
    credits_left: Decimal | None = None
    finished: bool = False
    status: str = "running"
    cached: int = 0

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())


def _pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def effective_status(store: Store, row: dict[str, Any]) -> str:
    """A run left "running" by a process that no longer exists was killed: report "interrupted"."""
    if row["status"] != "running":
        return row["status"]
    open_sessions = [s for s in store.sessions(row["run_id"]) if s["finished_at"] is None]
    if open_sessions and not any(_pid_alive(s["pid"]) for s in open_sessions):
        return "interrupted"
    return "running"


def run_spend(store: Store, run_id: str) -> dict[str, Any]:
    """credits_spent, spend_source, balance_before, balance_after of a run, summed over sessions
    (exact Decimals, USD)."""
    model = (store.run_row(run_id) or {}).get("model")
    unit = store.observed_cost_per_call(model) or PUBLISHED_COST_PER_CALL
    total, sources = Decimal(0), []
    sessions = store.sessions(run_id)
    for i, s in enumerate(sessions):
        calls = store.session_responses(run_id, s["session"])
        later = [n["balance_before"] for n in sessions[i + 1 :] if n["balance_before"] is not None]
        spent, source = session_spend(
            s,
            [c["credits_remaining"] for c in calls],
            len(calls),
            unit,
            next_balance=later[0] if later else None,
        )
        total += spent
        sources.append(source)
    return {
        "credits_spent": total,
        "spend_source": combine_sources(sources),
        "balance_before": sessions[0]["balance_before"] if sessions else None,
        "balance_after": sessions[-1]["balance_after"] if sessions else None,
    }


class Run:
    """A run of an experiment. Live runs update as cells finish; loaded runs read the store.

    ``results`` is one row per cell (see PLAN.md for the columns), ``summary()`` and
    ``compare(a, b, metric)`` are the statistics, ``to_csv(path)`` the tidy export.
    """

    def __init__(self, run_id: str, store: Store, *, scorer_names: list[str] | None = None) -> None:
        row = store.run_row(run_id)
        if row is None:
            raise LlamakitError(f"no run {run_id!r} in {store.path}")
        self.id = run_id
        self.name: str = row["name"]
        self.model: str | None = row["model"]
        self.store = store
        config = json.loads(row["config"])
        # Who answered (hosted URL or llamakit-local/<backend>); None for runs recorded before it.
        self.source: str | None = recorded_source(row["config"])
        self.scorer_names = scorer_names if scorer_names is not None else config.get("scorers", [])
        self._live_status: str | None = None
        self._progress: RunProgress | None = None
        self._subscribers: list[Callable[[RunProgress], None]] = []
        self._done = threading.Event()
        self._done.set()  # a loaded run is complete as far as this process is concerned
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._stop_request: Callable[[str], None] | None = None

    def __repr__(self) -> str:
        p = self.progress
        return (
            f"Run(id={self.id!r}, name={self.name!r}, status={self.status!r}, "
            f"done={p.done}/{p.total}, errors={p.error_count}, credits_spent={self.credits_spent:.6f})"
        )

    # -- live state ---------------------------------------------------------------------------
    @property
    def status(self) -> str:
        if self._live_status is not None:
            return self._live_status
        row = self.store.run_row(self.id)
        return effective_status(self.store, row) if row else "failed"

    @property
    def progress(self) -> RunProgress:
        if self._progress is not None:
            return self._progress
        row = self.store.run_row(self.id) or {}
        cells = self.store.query(
            "SELECT status, error, COUNT(*) AS n FROM run_cells WHERE run_id = ? "
            "GROUP BY status, error",
            (self.store.cells_run(self.id),),
        )
        errors = {c["error"]: c["n"] for c in cells if c["status"] == "error"}
        done = sum(c["n"] for c in cells if c["status"] != "error")
        spend = run_spend(self.store, self.id)
        status = self.status
        return RunProgress(
            total=row.get("cells_total", 0),
            done=done,
            errors=errors,
            credits_spent=spend["credits_spent"],
            credits_left=spend["balance_after"],
            finished=status in FINAL_STATUSES,
            status=status,
        )

    def subscribe(self, fn: Callable[[RunProgress], None]) -> Callable[[], None]:
        """Call ``fn(progress)`` after each cell (from the runner's thread); returns an unsubscribe."""
        self._subscribers.append(fn)
        return lambda: self._subscribers.remove(fn) if fn in self._subscribers else None

    def _publish(self, progress: RunProgress) -> None:
        self._progress = progress
        self._live_status = progress.status
        for fn in list(self._subscribers):
            try:
                fn(progress)
            except Exception:  # a broken widget callback must not kill a paid run
                log.exception("a Run.subscribe callback raised; the run continues")

    def wait(self, timeout: float | None = None) -> Run:
        """Block until a background run (``Experiment.start``) ends; re-raise what failed it."""
        if not self._done.wait(timeout):
            raise TimeoutError(f"run {self.id} still running after {timeout}s")
        if self._error is not None:
            raise self._error
        return self

    def stop(self) -> None:
        """Ask a live run to stop after the calls in flight (status "stopped"); a no-op otherwise."""
        if self._stop_request is not None:
            self._stop_request("stopped")

    # -- results ------------------------------------------------------------------------------
    @property
    def credits_spent(self) -> Decimal:
        """What the run cost, exactly (USD): the sum over its sessions of balance before minus
        balance after (see ``spend_source`` for where the figure came from)."""
        spent: Decimal = run_spend(self.store, self.id)["credits_spent"]
        return spent

    @property
    def spend_source(self) -> str:
        return str(run_spend(self.store, self.id)["spend_source"])

    @property
    def results(self) -> Any:
        """One row per cell (PLAN.md's columns), with ``<scorer>_reason`` per scorer (a judge's
        full reply; why a scorer gave no score) and, for a run with judges, ``judge_credits``
        (credits this run paid for the cell's grading calls)."""
        from .results import results_frame

        cells = self.store.run_cells(self.id)
        replies, judges = judge_replies(self.store, cells)
        return results_frame(
            cells,
            self.scorer_names,
            judge_replies=replies,
            judge_names=self.judge_names or judges,
            source=self.source,
        )

    def iter_results(self, chunk: int = 5000) -> Iterator[Any]:
        """``results`` as DataFrames of at most ``chunk`` rows, in order, read from the store
        one chunk at a time: memory stays flat however many cells the run has. The chunks
        concatenate to ``results`` (a judge's grading credits go to the first cell, as there)."""
        from ..store._store import RUN_CELLS_CHUNK
        from .results import results_frame

        credited: set[str] = set()
        judges = self.judge_names
        for cells in self.store.iter_run_cells(self.id, chunk or RUN_CELLS_CHUNK):
            replies, found = judge_replies(self.store, cells)
            yield results_frame(
                cells,
                self.scorer_names,
                judge_replies=replies,
                judge_names=judges or found,
                source=self.source,
                credited=credited,
            )

    @property
    def judge_names(self) -> list[str]:
        """Names of this run's model-graded scorers (from its stored config)."""
        row = self.store.run_row(self.id) or {}
        return list(json.loads(row.get("config") or "{}").get("judges", []))

    def summary(self, **kwargs: Any) -> Any:
        """``stats.summarize`` of the results: one row per condition (variant, and params when
        the run has more than one setting); ``credits`` includes ``judge_credits``."""
        from ..scoring import stats

        return stats.summarize(self.results, **kwargs)

    def compare(self, a: Any, b: Any, metric: str | None = None) -> Any:
        """``stats.paired_compare`` on this run's results. ``a`` and ``b`` are conditions: a
        variant name, or ``(variant, {param: value, ...})`` to pick one param setting (needed
        when the variant ran with several). Raises ValidationError for an unknown condition or
        metric, and for conditions that share no scored item."""
        from ..scoring import stats

        if metric is None:
            if not self.scorer_names:
                raise LlamakitError("this run has no scorers; pass metric= a results column")
            metric = self.scorer_names[0]
        # paired_compare resolves a scorer name ("exact") to its column ("score_exact").
        return stats.paired_compare(self.results, a, b, metric)

    def to_csv(self, path: str | os.PathLike[str], *, excel: bool = False) -> str:
        """Write the results as tidy CSV; returns the path. By default the text is exact:
        ``pandas.read_csv`` gives every reply back unchanged (bare ``\r``, NUL, quotes and all).
        ``excel=True`` writes a UTF-8 BOM and prefixes cells beginning with = + - @ tab or CR
        with ``'`` so a spreadsheet shows them as text (see ``llamakit.experiment.csv_export``)."""
        from .csv_export import write_csv

        return write_csv(self.results, path, excel=excel)


def judge_replies(
    store: Store, cells: list[dict[str, Any]]
) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """The stored responses (text, credits, run_id) of these cells' grading calls, by key, and
    the names of the judges that made them."""
    from .results import judge_keys

    keys: list[str] = []
    names: dict[str, None] = {}
    for cell in cells:
        for name, found in judge_keys(cell).items():
            names[name] = None
            keys.extend(found)
    if not keys:
        return {}, []
    return store.cached_responses(keys, columns="cell_key, text, credits, run_id"), list(names)


def judge_spend(store: Store, run_id: str) -> Decimal:
    """Credits run ``run_id`` paid for judge grading calls (each call once)."""
    cells = store.query(
        "SELECT judge_keys FROM run_cells WHERE run_id = ? AND judge_keys IS NOT NULL", (run_id,)
    )
    replies, _ = judge_replies(store, cells)
    paid = (to_credits(r["credits"]) for r in replies.values() if r["run_id"] == run_id)
    return sum((c for c in paid if c is not None), ZERO)


def runs(store: Store | None = None) -> Any:
    """Every run in the store with when it ran, who answered it (``source``: the hosted API's URL
    or ``llamakit-local/<backend>``), its cells, errors and credit spend (``credits_spent``, of
    which ``judge_credits`` paid for judge grading calls)."""
    from ..store import Store
    from .results import runs_frame
    from .sources import recorded_source

    store = store or Store()
    rows = []
    for row in store.run_rows():
        rows.append(
            {
                **row,
                **run_spend(store, row["run_id"]),
                "judge_credits": judge_spend(store, row["run_id"]),
                "status": effective_status(store, row),
                "source": recorded_source(row.get("config")),
            }
        )
    return runs_frame(rows)


def load_run(run_id: str, store: Store | None = None) -> Run:
    from ..store import Store

    return Run(run_id, store or Store())
