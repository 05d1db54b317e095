"""``Experiment.estimate``: what a run would send now, and its projected credits and time."""

from __future__ import annotations

import itertools
import math
from dataclasses import asdict, dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Literal

from ..client.credits import ZERO
from .gradings import missing_gradings
from .models import model_list
from .pricing import Prices, judge_slug
from .runner_feed import done_among
from .sources import resolve_source

if TYPE_CHECKING:
    from ..store import Store, StoreArg
    from .cells import Cell
    from .shape import ExperimentShape

# Segmind's published average latency for llama-v3-8b-instruct (llms.txt, 2026-08): the time
# estimate's fallback until the store has observed latencies for the hosted API.
PUBLISHED_LATENCY_S = 1.33946
# Fallbacks for the local stand-in until the store has seen it answer (then the observed latency
# replaces them). SmolLM2 answers one call at a time, so its calls add up whatever the concurrency;
# ~50 tokens/s on 2 cores (README) makes a 64-token reply and its prompt about 2 s. Scripted replies
# take milliseconds.
LOCAL_CALL_S = {"llamakit-local/smollm2": 2.0, "llamakit-local/scripted": 0.005}
SERIAL_SOURCES = ("llamakit-local/smollm2",)
CHUNK = 2000  # cells looked up in the store at a time


@dataclass(frozen=True)
class Estimate:
    """What ``Experiment.run`` would do now: calls to send, their projected credits and time.

    ``credits`` (USD) is the total, ``judge_credits`` the part of it for the ``judge_calls``
    grading calls (one per judge per new response, and one per judge per cached response whose
    grading the store lacks; a new grading without a verdict line costs one re-ask more, which
    no estimate can know), and ``cost_per_call`` (USD) the mean price of the calls to send. All three are exact ``Decimal``
    credits, like every other credit figure; ``seconds`` and ``rpm`` are floats.
    """

    cells_total: int
    cells_finished: int
    cells_to_run: int
    judge_calls: int
    calls: int
    cost_per_call: Decimal
    cost_source: Literal["observed", "published"]
    credits: Decimal
    judge_credits: Decimal
    seconds: float
    rpm: float | None
    concurrency: int
    prompt_tokens: int | None

    def to_dict(self) -> dict[str, Any]:
        """The fields by name. Credit figures stay ``Decimal`` (exact; ``json.dumps`` needs
        ``default=str`` for them)."""
        return asdict(self)

    def __str__(self) -> str:
        tokens = "" if self.prompt_tokens is None else f", {self.prompt_tokens:,} prompt tokens"
        judged = f" (~{self.judge_credits:.4f} credits)" if self.judge_calls else ""
        return (
            f"{self.cells_to_run} of {self.cells_total} cells to run "
            f"({self.cells_finished} already finished) + {self.judge_calls} judge calls{judged}: "
            f"~{self.credits:.4f} credits at {self.cost_per_call:.6f}/call ({self.cost_source}), "
            f"~{self.seconds:.0f}s{tokens}"
        )


def estimate(
    experiment: ExperimentShape, client: Any, *, concurrency: int, store: StoreArg
) -> Estimate:
    """Cells to run (minus finished ones), the grading calls their judges would send, projected
    credits and time. Sends no paid call.

    Grading calls are those a run would pay for: one per judge per new reply (a reply not yet
    known cannot be looked up), and for each cached reply (a run grades every cell it scores)
    the judge's grading when the store lacks it, or the re-ask of a stored grading without a
    verdict when the store lacks that; a request several cells make counts once. Cells a
    resumed run has done are not graded again and count none.

    Credits (exact Decimals, USD): each call at its model's price (``pricing``): the mean
    attributed cost per call observed in the store for that model, else Segmind's published
    average. Time: the slower of latency-bound and
    rate-bound (the client's rpm). Latency-bound is batches of ``concurrency`` calls at the mean
    latency the store observed for this source (who answers: SmolLM2 is far slower than the
    hosted API), else a per-source fallback; a source that answers one call at a time is charged
    every call in sequence."""
    from ..store import as_store

    store = as_store(store)
    model = experiment.resolve_model(client)
    source = resolve_source(client, store, experiment.name, model)
    judges = [s for s in experiment.scorers if hasattr(s, "grading_messages")]
    # Each call at its own model's price (``pricing``): a cell at its model's, a grading call
    # at the model its judge calls.
    prices = Prices(store)
    models: set[str] = set()
    tally = _Tally()
    graded = _Gradings(experiment, store, client, model, source, judges, prices)
    stream = experiment.iter_cells(model, source)
    # A chunk of cells at a time: what is kept of the cells to run is their keys, as numbers;
    # with judges, of the cached replies, the keys of the gradings still to pay for.
    while chunk := list(itertools.islice(stream, CHUNK)):
        keys = [c.cell_key for c in chunk]
        cached = graded.replies(keys) if judges else {}
        known = set(cached) if judges else store.known_responses(keys)
        for cell in chunk:
            models.add(cell.model)
            tally.count(experiment, cell, cell.cell_key in known, prices.of(cell.model))
        if judges:
            graded.count(chunk, cached)
    graders = [judge_slug(j, client, model_list(model)[0]) for j in judges]
    per_cell = sum((prices.of(g) for g in graders), ZERO)
    # One grading per judge per new reply (its text, and so its grading, is not known yet),
    # and the gradings of cached replies the store lacks.
    judge_calls = len(judges) * tally.unique + graded.calls
    calls = tally.unique + judge_calls
    todo_cost = tally.cost
    # Without judges a plain 0: 0 * cost would read 0E-19 in the repr and to_dict().
    judge_credits = (tally.unique * per_cell if tally.unique and judges else ZERO) + graded.cost
    # The mean price of the calls to send: exact when the division ends within Decimal's 28
    # significant digits (with one model and price it gives back that price).
    cost = (todo_cost + judge_credits) / calls if calls else prices.mean(models)
    all_observed = prices.all_observed([*models, *graders])
    seconds = _seconds(store, source, calls, concurrency)
    rpm = getattr(client, "rpm", None)
    if rpm:
        seconds = max(seconds, calls * 60.0 / rpm)
    return Estimate(
        cells_total=tally.total,
        cells_finished=tally.finished,
        cells_to_run=tally.total - tally.finished,
        judge_calls=judge_calls,
        calls=calls,
        cost_per_call=cost,
        cost_source="observed" if all_observed else "published",
        credits=todo_cost + judge_credits,
        judge_credits=judge_credits,
        seconds=seconds,
        rpm=rpm,
        concurrency=concurrency,
        prompt_tokens=tally.prompt_tokens,
    )


class _Tally:
    """What the estimate keeps of the cells, counted one at a time: counts, the credits and
    prompt tokens of the distinct requests to send, and those requests' keys (as integers)."""

    def __init__(self) -> None:
        self.total = 0
        self.finished = 0
        self.unique = 0
        self.cost = ZERO
        self.prompt_tokens: int | None = 0
        self._keys: set[int] = set()

    def count(self, experiment: ExperimentShape, cell: Cell, stored: bool, unit: Decimal) -> None:
        self.total += 1
        if stored:
            self.finished += 1
            return
        key = int(cell.cell_key, 16)
        if key in self._keys:  # the same request as another cell to run: sent once
            return
        self._keys.add(key)
        self.unique += 1
        self.cost += unit
        if self.prompt_tokens is not None:
            n = experiment._local_tokens(cell)
            self.prompt_tokens = None if n is None else self.prompt_tokens + n


class _Gradings:
    """The grading calls of cached replies that a run would pay for (``missing_gradings``, the
    runner's own request keys), counted a chunk of cells at a time: their keys (as integers, so
    a request several cells make counts once) and their credits, each at its judge's model."""

    def __init__(
        self,
        experiment: ExperimentShape,
        store: Store,
        client: Any,
        model: str,
        source: str,
        judges: list[Any],
        prices: Prices,
    ) -> None:
        self._store = store
        self._judges = judges
        self._prices = prices
        # As the runner grades: judges without a model of their own at the run's first.
        self._on: dict[str, Any] = {
            "client": client,
            "model": model_list(model)[0],
            "source": source,
        }
        self._resumed = _resumed_run(experiment, store, model, source) if judges else None
        self._keys: set[int] = set()
        self.calls = 0
        self.cost = ZERO

    def replies(self, keys: list[str]) -> dict[str, dict[str, Any]]:
        """The cached replies of a chunk's cells, by cell key (their text, to grade)."""
        return self._store.cached_responses(keys, columns="cell_key, text")

    def count(self, chunk: list[Cell], cached: dict[str, dict[str, Any]]) -> None:
        # A run resumed skips the cells it has done: their gradings, paid or failed, stand.
        done = done_among(self._store, self._resumed, chunk) if self._resumed else set()
        replies = [
            (c, cached[c.cell_key]["text"])
            for c in chunk
            if c.cell_key in cached and c.cell_id not in done
        ]
        for _, _, call in missing_gradings(self._store, replies, self._judges, **self._on):
            key = int(call.key, 16)
            if key in self._keys:  # the same grading as another cell's: sent once
                continue
            self._keys.add(key)
            self.calls += 1
            self.cost += self._prices.of(call.model)


def _resumed_run(experiment: ExperimentShape, store: Store, model: str, source: str) -> str | None:
    """The unfinished run a run would resume now (``register_run``), or None for a new run."""
    # The fingerprint walks every cell: only worth it when some run of this name is unfinished.
    sql = "SELECT 1 FROM runs WHERE name = ? AND status != 'finished' LIMIT 1"
    if not store.query(sql, (experiment.name,)):
        return None
    latest = store.latest_run(experiment.fingerprint(model, source))
    return None if latest is None or latest["status"] == "finished" else str(latest["run_id"])


def observed_latency(store: Store, source: str) -> float | None:
    """Mean latency (seconds) of the calls the store saw ``source`` answer, cache hits excluded."""
    sql = """SELECT AVG(c.latency_s) AS s FROM run_cells c JOIN runs r ON r.run_id = c.run_id
             WHERE c.status = 'done' AND NOT c.cached AND c.latency_s > 0
               AND json_extract(r.config, '$.source') = ?"""
    value = store.query(sql, (source,))[0]["s"]
    return None if value is None else float(value)


def _seconds(store: Store, source: str, calls: int, concurrency: int) -> float:
    observed = observed_latency(store, source) if source else None
    if observed is not None:
        # A serial server's observed latency already includes the wait behind the other calls in
        # flight, so batches of `concurrency` at that latency are what the next run will see.
        return math.ceil(calls / concurrency) * observed
    local = next((s for s in LOCAL_CALL_S if source.startswith(s)), None)
    per_call = LOCAL_CALL_S[local] if local else PUBLISHED_LATENCY_S
    if source.startswith(SERIAL_SOURCES):
        return calls * per_call
    return math.ceil(calls / concurrency) * per_call
