"""`Run`: one execution of an experiment, live or loaded from the store; `runs()` and `load_run()`."""

from __future__ import annotations

import json
import logging
import os
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._defaults import DEFAULT_MODEL
from ..client.credits import ZERO, combine_sources, own_calls, session_spend, to_credits
from ..errors import LlamakitError
from ..store._claims import pid_alive
from .models import model_list
from .pricing import Prices
from .results_cache import ResultsCache
from .sources import recorded_source
from .spans import merged, session_spans

if TYPE_CHECKING:
    from ..store import Store, StoreArg

log = logging.getLogger("llamakit.run")

FINAL_STATUSES = (
    "finished",
    "decided",
    "stopped",
    "budget",
    "insufficient_credits",
    "interrupted",
    "failed",
)


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


def effective_status(store: Store, row: dict[str, Any]) -> str:
    """A run left "running" by a process that no longer exists was killed: report "interrupted"."""
    status: str = row["status"]
    if status != "running":
        return status
    open_sessions = [s for s in store.sessions(row["run_id"]) if s["finished_at"] is None]
    if open_sessions and not any(pid_alive(s["pid"]) for s in open_sessions):
        return "interrupted"
    return "running"


def run_spend(store: Store, run_id: str) -> dict[str, Any]:
    """credits_spent, spend_source, balance_before, balance_after of a run, summed over sessions
    (exact Decimals, USD)."""
    model = (store.run_row(run_id) or {}).get("model")
    # Where no balance or header shows a session's spend, each paid call is priced at its own
    # model's price (a run over several models, a judge on another model).
    prices = Prices(store)
    fallback = model_list(model)[0] if model else DEFAULT_MODEL
    total, sources = Decimal(0), []
    sessions = store.sessions(run_id)
    calls = {s["session"]: store.session_responses(run_id, s["session"]) for s in sessions}
    # Sessions that overlapped (processes sharing the run) are one span: each of their balances
    # moved with the others' calls too, so only the span's are this run's spend (see spans.py).
    spans = session_spans(sessions, calls)
    for i, span in enumerate(spans):
        whole = merged(span, calls)
        # The span's balances are its run client's account's: a judge's own client's calls
        # (another account) are not in them, nor in its headers (credits.attribute_by_account).
        paid = own_calls([c for s in span for c in calls[s["session"]]], whole["account"])
        later = [
            n["balance_before"]
            for nxt in spans[i + 1 :]
            for n in nxt
            if n["balance_before"] is not None
        ]
        spent, source = session_spend(
            whole,
            [c["credits_remaining"] for c in paid],
            len(paid),
            sum((prices.of(c["model"] or fallback) for c in paid), ZERO),
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
            raise LlamakitError(
                f"no run {run_id!r} in {store.path}; llamakit.runs() (`llamakit runs`) lists them"
            )
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
        self._results = ResultsCache()
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
        cells = self.store.cell_rows(
            self.id, "1 GROUP BY status, error", columns="status, error, COUNT(*) AS n"
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

    def spend_by_model(self) -> dict[str, Decimal]:
        """Credits (USD, exact) this run paid per model slug: each call it paid for, judge
        grading calls included, under the slug it was sent to. Sums to ``credits_spent`` once
        every call's credits are attributed."""
        return model_spend(self.store, self.id)

    @property
    def spend_source(self) -> str:
        return str(run_spend(self.store, self.id)["spend_source"])

    @property
    def results(self) -> Any:
        """One row per cell (PLAN.md's columns), with ``<scorer>_reason`` per scorer (a judge's
        full reply; why a scorer gave no score) and, for a run with judges, ``judge_credits``
        (credits this run paid for the cell's grading calls). Kept between reads while the store
        is unchanged (``results_cache``); each read gets a copy of its own."""
        key = (self.store.version(), tuple(self.scorer_names), self.source)
        return self._results.get(key, self._build_results)

    def _build_results(self) -> Any:
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

    def iter_results(self, chunk: int = 2000) -> Iterator[Any]:
        """``results`` as DataFrames of at most ``chunk`` rows, in order, read from the store
        one chunk at a time: memory stays flat however many cells the run has. The chunks
        concatenate to ``results`` (a judge's grading credits go to the first cell, as there)."""
        from ..store._store import RUN_CELLS_CHUNK
        from .results import results_frame

        credited: set[str] = set()
        judges = self.judge_names
        expected = self.store.row_keys(self.id, "expected")
        for cells in self.store.iter_run_cells(self.id, chunk or RUN_CELLS_CHUNK):
            replies, found = judge_replies(self.store, cells)
            yield results_frame(
                cells,
                self.scorer_names,
                judge_replies=replies,
                judge_names=judges or found,
                source=self.source,
                credited=credited,
                expected_columns=expected,
            )

    @property
    def judge_names(self) -> list[str]:
        """Names of this run's model-graded scorers (from its stored config)."""
        row = self.store.run_row(self.id) or {}
        return list(json.loads(row.get("config") or "{}").get("judges", []))

    def summary(self, **kwargs: Any) -> Any:
        """``stats.summarize`` of the results: one row per condition (variant, and params when
        the run has more than one setting); ``credits`` includes ``judge_credits``. For a
        sequential run it also prints ``run.sequential`` (kept in the table's ``attrs``)."""
        from ..scoring import stats

        table = stats.summarize(self.results, **kwargs)
        report = self.sequential
        if report is not None:  # a sequential run: what it decided and saved rides along
            table.attrs["sequential"] = report
            print(report)
        return table

    @property
    def sequential(self) -> Any:
        """A sequential run's ``SequentialReport`` (decision, bounds per batch, items used per
        condition, credits spent vs the full grid's); None for a run without a stop rule."""
        from .sequential_report import sequential_report

        return sequential_report(self.store, self.id, self.credits_spent)

    def compare(self, a: Any, b: Any, metric: str | None = None, *, margin: float = 0.0) -> Any:
        """``stats.paired_compare`` on this run's results. ``a`` and ``b`` are conditions: a
        variant name, ``(variant, {param: value, ...})`` to pick one param setting (needed
        when the variant ran with several), or ``{"model": slug, "variant": ...}`` in a run
        over several models (a bare model slug works when the run has one variant). ``margin``:
        the non-inferiority margin (see ``llamakit.compare``). The result carries each side's
        credits per item. Raises ValidationError for an unknown condition or metric, and for
        conditions that share no scored item."""
        from ..scoring import stats

        if metric is None:
            if not self.scorer_names:
                raise LlamakitError("this run has no scorers; pass metric= a results column")
            metric = self.scorer_names[0]
        # paired_compare resolves a scorer name ("exact") to its column ("score_exact").
        return stats.paired_compare(self.results, a, b, metric, margin=margin)

    def to_csv(self, path: str | os.PathLike[str], *, excel: bool = False) -> str:
        """Write the results as tidy CSV; returns the path. By default the text is exact:
        ``pandas.read_csv`` gives every reply back unchanged (bare ``\r``, NUL, quotes and all).
        ``excel=True`` writes a UTF-8 BOM and prefixes cells beginning with = + - @ tab or CR
        with ``'`` so a spreadsheet shows them as text (see ``llamakit.experiment.csv_export``)."""
        from .csv_export import write_csv

        return write_csv(self.results, path, excel=excel)

    def save(self, path: str | os.PathLike[str], *, format: str | None = None) -> str:
        """Write this run as one portable run file (config, every cell, request, reply, usage,
        credits, scores, reasons, timings and reproducibility metadata); returns the path.
        ``format`` is "jsonl" or "parquet" (default: from the suffix, else jsonl). Read it back
        with ``llamakit.load_run(path)``; see ``llamakit.experiment.runfile``."""
        from .runfile import write_run_file

        return str(write_run_file(self.store, self.id, path, format))

    def to_html(self, path: str | os.PathLike[str], *others: Run) -> str:
        """Write a self-contained HTML report of this run (and ``others``, compared with it):
        summary with CIs, plots, credit spend, every cell per item; returns the path. See
        ``llamakit.experiment.report``."""
        from .report import write_report

        return str(write_report([self, *others], path))


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


def model_spend(store: Store, run_id: str) -> dict[str, Decimal]:
    """Credits run ``run_id`` paid per model slug (see ``Run.spend_by_model``)."""
    out: dict[str, Decimal] = {}
    for row in store.query("SELECT model, credits FROM responses WHERE run_id = ?", (run_id,)):
        paid = to_credits(row["credits"])
        if paid is not None:
            out[str(row["model"])] = out.get(str(row["model"]), ZERO) + paid
    return dict(sorted(out.items()))


def judge_spend(store: Store, run_id: str) -> Decimal:
    """Credits run ``run_id`` paid for judge grading calls (each call once)."""
    cells = store.cell_rows(run_id, "judge_keys IS NOT NULL", columns="judge_keys")
    replies, _ = judge_replies(store, cells)
    paid = (to_credits(r["credits"]) for r in replies.values() if r["run_id"] == run_id)
    return sum((c for c in paid if c is not None), ZERO)


def runs(store: StoreArg = None) -> Any:
    """Every run in the store with when it ran, who answered it (``source``: the hosted API's URL
    or ``llamakit-local/<backend>``), its cells, errors and credit spend (``credits_spent``, of
    which ``judge_credits`` paid for judge grading calls, and ``credits_by_model`` per slug)."""
    from ..store import as_store
    from .results import runs_frame
    from .sources import recorded_source

    store = as_store(store)
    rows = []
    for row in store.run_rows():
        rows.append(
            {
                **row,
                **run_spend(store, row["run_id"]),
                "judge_credits": judge_spend(store, row["run_id"]),
                "credits_by_model": model_spend(store, row["run_id"]),
                "status": effective_status(store, row),
                "source": recorded_source(row.get("config")),
            }
        )
    return runs_frame(rows)


def load_run(ref: str | os.PathLike[str], store: StoreArg = None) -> Run:
    """A run by id from ``store`` (default store), or from a run file (a path object, or text
    naming an existing file or ending in .jsonl / .parquet).

    A run file is imported into ``store`` when one is given (idempotent: see ``import_run``),
    else into a private temporary store, leaving the default store untouched. Raises
    LlamakitError for an unknown run id, ValidationError for a file that is missing, not a run
    file, of a newer format version, or truncated."""
    from ..store import Store, as_store
    from .runfile import looks_like_run_file

    if looks_like_run_file(ref):
        if store is None:
            store = Store(Path(tempfile.mkdtemp(prefix="llamakit-run-")) / "llamakit.db")
        return import_run(ref, store)
    return Run(str(ref), as_store(store))


def import_run(path: str | os.PathLike[str], store: StoreArg = None) -> Run:
    """Import a run file into ``store`` (default store) and return the run. Importing the same
    file twice adds nothing; afterwards ``exp.run(None, mode="replay", store=store)`` replays
    it offline (no key, no server). Raises ValidationError for a bad file (see ``load_run``)
    and StoreError when the store holds another run under the same id."""
    from ..store import as_store
    from .runfile import import_run_file

    store = as_store(store)
    run_id, _ = import_run_file(path, store)
    return Run(run_id, store)
