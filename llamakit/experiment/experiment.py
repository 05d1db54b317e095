"""`Experiment`: prompt variants x dataset rows x sampling params x repeats, run as cells.

>>> exp = Experiment("capitals", prompts={"terse": "Capital of {{ country }}?"},
...                  dataset="data/capitals.csv", params={"temperature": [0.0, 0.7]}, repeats=2,
...                  scorers=[scoring.contains()])
>>> exp.estimate(client)            # cells to run, projected credits and time; sends nothing paid
>>> run = exp.run(client)           # resumable: only unfinished cells are sent
>>> run.summary()

``models=["llama-v3-8b-instruct", "llama-v3p1-8b-instruct"]`` runs every condition on each
model through the one client (same key and base URL; the slug goes in each call's URL). A
condition is then (model, variant, params); ``summary()`` shows each model's credits apart.

A variant may carry sampling params of its own, merged over ``params`` (its values win):
``prompts={"steps": {"messages": "...", "params": {"max_tokens": 256}}}``. A condition is
(variant, params): statistics treat only repeats of one condition as samples of the same thing.

Every input is checked when the experiment is built (templates and judge rubrics render for every
row, no value they read is missing, all text is valid UTF-8, ids are unique, params are valid), so
a mistake is reported before any credit is spent.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import math
import numbers
import os
from collections.abc import Iterator, Mapping, Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Literal

from .. import scoring
from .._defaults import DEFAULT_MODEL
from ..client.credits import to_credits
from ..errors import ValidationError
from .cells import Cell, canonical_json, expand_params
from .dataset import Item, load_dataset, subset
from .estimate import Estimate
from .grid import CellGrid
from .live_runs import (
    announce_early_stop,
    announce_interrupted,
    execute_in_background,
    register_run,
    release_run,
    wait_or_interrupt,
)
from .models import MODEL_SEPARATOR, check_models, model_list
from .pricing import Prices, judge_slug
from .rows import Missing, check_missing, check_text
from .sequential import SequentialPolicy, check_rule
from .sources import resolve_source
from .templates import parse_prompts

if TYPE_CHECKING:
    from ..store import StoreArg
    from .run import Run

Mode = Literal["live", "replay"]
Api = Literal["v1", "v2"]


def _check_budget(budget: Any) -> Decimal | None:
    """The budget as exact credits (a float is read at 15 digits: 0.05 is 0.05)."""
    if budget is None:
        return None
    if (
        isinstance(budget, bool)
        or not isinstance(budget, (numbers.Real, Decimal))
        or not math.isfinite(float(budget))
        or budget < 0
    ):
        raise ValidationError(
            f"budget must be a non-negative number of credits (USD), got {budget!r}",
            field="budget",
        )
    return to_credits(budget)


def _check_concurrency(concurrency: Any) -> int:
    if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
        raise ValidationError(
            f"concurrency must be a positive integer, got {concurrency!r}", field="concurrency"
        )
    return concurrency


def _check_scorers(scorers: Any) -> list[Any]:
    if scorers is None:
        return []
    if callable(scorers) or isinstance(scorers, (str, bytes)):
        scorers = [scorers]
    out = [s if hasattr(s, "grading_messages") else scoring.as_scorer(s) for s in scorers]
    scoring.check_unique_names(out)
    return out


def _merge_params(
    grid: list[dict[str, Any]], own: Mapping[str, Any] | None, variant: str
) -> list[dict[str, Any]]:
    """A variant's param sets: each of its own sets (a grid too) merged over each of the
    experiment's; the variant's value wins where both name a param."""
    if own is None:
        return grid
    try:
        own_sets = expand_params(own)
    except ValidationError as exc:
        raise ValidationError(
            f"prompts.{variant}.params: {exc}", field=f"prompts.{variant}.params"
        ) from None
    merged: dict[str, dict[str, Any]] = {}
    for base in grid:
        for extra in own_sets:
            params = expand_params({**base, **extra})[0]
            merged.setdefault(canonical_json(params), params)
    return list(merged.values())


def _checked_items(
    dataset: Any, templates: list[Any], scorers: list[Any], missing: Any
) -> list[Item]:
    """Rows whose text is valid UTF-8 and whose values the templates read are present (or, with
    ``missing="empty"``, empty strings); see ``rows``."""
    items = load_dataset(dataset)
    named = (
        f"dataset {os.path.basename(dataset)}"
        if isinstance(dataset, (str, os.PathLike))
        else "dataset"
    )
    check_text(items, named)
    readers = {f"prompt {t.variant!r}": t.variables for t in templates}
    for scorer in scorers:
        if hasattr(scorer, "render_rubric"):
            readers[f"the rubric of judge {scorer.name!r}"] = scorer.variables
    return check_missing(items, readers, missing, named)


class Experiment:
    """Prompt variants compared over a dataset; see the module docstring.

    ``missing="error"`` (the default) refuses a row whose value for a column a template reads is
    empty, None/NaN or absent; ``missing="empty"`` renders such values as empty text.

    ``limit=N`` keeps the first N rows, ``sample=N`` (with ``seed``) N random rows: a priced pilot
    (``estimate``, then ``run``) whose cells the full experiment later takes from the cache.
    """

    def __init__(
        self,
        name: str,
        prompts: Any,
        dataset: Any,
        params: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None,
        repeats: int = 1,
        scorers: Sequence[Any] = (),
        model: str | None = None,
        missing: Missing = "error",
        models: Sequence[str] | None = None,
        *,
        limit: int | None = None,
        sample: int | None = None,
        seed: int = 0,
    ) -> None:
        if not isinstance(name, str) or not name.strip():
            raise ValidationError("an experiment needs a non-empty name", field="name")
        if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
            raise ValidationError(
                f"repeats must be a positive integer, got {repeats!r}", field="repeats"
            )
        if model is not None and (not isinstance(model, str) or not model):
            raise ValidationError(f"model must be a model slug, got {model!r}", field="model")
        self.models = check_models(models, model)
        self.name = name
        self.templates = parse_prompts(prompts)
        self.param_sets = expand_params(params)
        self.variant_params = {
            t.variant: _merge_params(self.param_sets, t.params, t.variant) for t in self.templates
        }
        self.repeats = repeats
        self.scorers = _check_scorers(scorers)
        self.model = model
        self.missing = missing
        # Every row is checked, then a pilot keeps its subset (see ``dataset.subset``).
        checked = _checked_items(dataset, self.templates, self.scorers, missing)
        self.items = subset(checked, limit=limit, sample=sample, seed=seed)
        self.pilot: dict[str, int] | None = None
        if len(self.items) < len(checked):
            self.pilot = {"rows": len(self.items), "of": len(checked)}
            self.pilot.update({"limit": limit} if limit is not None else {"sample": sample or 0})
            self.pilot.update({"seed": seed} if sample is not None else {})
        scoring.check_reads(self.scorers, [(item.id, item.row) for item in self.items])
        # Render everything now: a missing variable fails here, before any call. Kept as the
        # canonical JSON of each prompt (by variant, in item order), from which cells are made.
        prompts = {
            t.variant: [canonical_json(t.render(item.row, item_id=item.id)) for item in self.items]
            for t in self.templates
        }
        for judge in (s for s in self.scorers if hasattr(s, "render_rubric")):
            for item in self.items:
                judge.render_rubric(item.row, item_id=item.id)
        self._token_counts: dict[tuple[str, str], int | None] = {}
        self.grid = CellGrid(
            variants=self.variants,
            items=self.items,
            prompts=prompts,
            param_sets=self.variant_params,
            repeats=repeats,
        )

    def __repr__(self) -> str:
        return (
            f"Experiment({self.name!r}, variants={self.variants}, items={len(self.items)}, "
            f"param_sets={len(self.param_sets)}, repeats={self.repeats}, "
            f"scorers={[s.name for s in self.scorers]})"
        )

    @property
    def variants(self) -> list[str]:
        return [t.variant for t in self.templates]

    def resolve_model(self, client: Any) -> str:
        """The run's model key: one slug, or with ``models=`` the slugs joined by "," (a slug
        holds no comma; ``model_list`` splits it back). Runs, sources and the store key on it."""
        if self.models:
            return MODEL_SEPARATOR.join(self.models)
        client_model = getattr(client, "model", None)
        # A llamakit client sends any slug per call; another chat callable only its own.
        per_call = hasattr(client, "has_model")
        if self.model and client_model and self.model != client_model and not per_call:
            raise ValidationError(
                f"experiment model {self.model!r} differs from the client's {client_model!r}; "
                f"pass a client built with model={self.model!r}",
                field="model",
            )
        return self.model or client_model or DEFAULT_MODEL

    def cells(self, model: str, source: str = "") -> list[Cell]:
        """Every cell as a list (for a look at them; a run generates them one at a time with
        ``iter_cells``). See ``CellGrid.cells`` for their order and keys."""
        return list(self.grid.cells(model, source))

    def iter_cells(self, model: str, source: str = "") -> Iterator[Cell]:
        """Every cell, generated one at a time in the order of ``cells``."""
        return self.grid.cells(model, source)

    def cell_count(self, model: str) -> int:
        """How many cells a run over ``model`` has, without generating them."""
        return self.grid.count(model)

    def fingerprint(self, model: str, source: str = "") -> str:
        """Same fingerprint -> an unfinished run is resumed. It covers everything that changes a
        request or its row in the table: each cell's place (variant, item, params, repeat) and
        its request key (rendered messages, params, model, source), the dataset rows and the
        scorers. An edited prompt, another server or another scorer starts a new run (whose
        unchanged cells still come from the cache), so a run never mixes two versions."""
        head = (self.name, model, source, canonical_json(self._scorer_identity()))
        return self.grid.fingerprint(model, source, head)

    def _scorer_identity(self) -> list[list[Any]]:
        """Each scorer's name, kind and, for a judge, its grading setup (rubric, scale, params,
        model, source): what decides its grading requests and scores."""
        from .sources import source_of

        out: list[list[Any]] = []
        for s in self.scorers:
            judge_client = getattr(s, "client", None)
            out.append(
                [
                    s.name,
                    type(s).__qualname__,
                    getattr(s, "rubric", None),
                    getattr(s, "scale", None),
                    getattr(s, "params", None),
                    getattr(judge_client, "model", None),
                    source_of(judge_client) if judge_client is not None else None,
                ]
            )
        return out

    def config(self, model: str, source: str = "") -> dict[str, Any]:
        return {
            "source": source,
            "prompts": {t.variant: [list(m) for m in t.messages] for t in self.templates},
            "params": self.param_sets,
            "variant_params": {
                t.variant: dict(t.params) for t in self.templates if t.params is not None
            },
            "repeats": self.repeats,
            "items": len(self.items),
            "model": model,
            **({"models": model_list(model)} if self.models else {}),
            "scorers": [s.name for s in self.scorers],
            "judges": [s.name for s in self.scorers if hasattr(s, "grading_messages")],
            **({"pilot": self.pilot} if self.pilot else {}),
            "dataset": hashlib.sha256(
                canonical_json([i.row for i in self.items]).encode("utf-8", "surrogatepass")
            ).hexdigest()[:16],
        }

    def _local_tokens(self, cell: Cell) -> int | None:
        key = (cell.variant, cell.item_id)
        if key not in self._token_counts:
            try:
                from ..tokens import count_messages

                self._token_counts[key] = int(count_messages(cell.messages))
            except Exception:  # token counts are informative; never fail a run over them
                self._token_counts[key] = None
        return self._token_counts[key]

    # -- estimate ------------------------------------------------------------------------------
    def estimate(
        self, client: Any = None, *, concurrency: int = 8, store: StoreArg = None
    ) -> Estimate:
        """Cells to run (minus finished ones), projected credits (exact Decimals, USD) and time.
        Sends no paid call."""
        from .estimate import estimate

        return estimate(self, client, concurrency=_check_concurrency(concurrency), store=store)

    def plan(
        self,
        client: Any = None,
        *,
        effect: float = 0.1,
        power: float = 0.8,
        alpha: float = 0.05,
        stop: Any = None,
        disagreement: float = 0.2,
        concurrency: int = 8,
        runs: int = 200,
        store: StoreArg = None,
    ) -> Any:
        """Items, credits and time for a fixed-size run vs a sequential one (``stop=``; default
        ``compare`` of the first two variants on the first scorer at ``alpha``), for a true
        ``effect`` (difference in mean score) when the variants disagree on ``disagreement`` of
        the items; from ``runs`` simulations on this experiment's shape. Returns a ``Plan``
        (printable; see ``llamakit.experiment.plan``). Sends no call. ValidationError for values
        outside (0, 1), an effect above the disagreement, or a bad stop rule."""
        from .plan import plan

        return plan(
            self,
            client,
            effect=effect,
            power=power,
            alpha=alpha,
            stop=stop,
            disagreement=disagreement,
            concurrency=_check_concurrency(concurrency),
            runs=runs,
            store=store,
        )

    # -- run -----------------------------------------------------------------------------------
    def _prepare(
        self,
        client: Any,
        *,
        concurrency: int,
        budget: Any,
        progress: bool,
        mode: Mode,
        store: StoreArg,
        api: Api = "v1",
        stop: Any = None,
    ) -> tuple[Run, Any]:
        from ..store import as_store
        from .runner import Runner
        from .runner_budget import check_budget_fits_a_call
        from .runner_calls import check_replay

        concurrency = _check_concurrency(concurrency)
        budget = _check_budget(budget)
        if mode not in ("live", "replay"):
            raise ValidationError(f"mode must be 'live' or 'replay', got {mode!r}", field="mode")
        if api not in ("v1", "v2"):
            raise ValidationError(f"api must be 'v1' or 'v2', got {api!r}", field="api")
        if api == "v2" and client is not None and not hasattr(client, "submit"):
            raise ValidationError("api='v2' needs a client with submit()/wait()", field="api")
        if mode == "live" and client is None:
            raise ValidationError("a live run needs a client (llamakit.connect())", field="client")
        sequential = check_rule(stop, self)  # a bad stop rule fails here, before any call
        store = as_store(store)
        store.require_writable()  # a read-only, full or damaged store fails here, before paying
        model = self.resolve_model(client)
        source = resolve_source(client, store, self.name, model)
        judges = [s for s in self.scorers if hasattr(s, "grading_messages")]
        slugs = model_list(model)
        if mode == "replay":
            check_replay(store, self.iter_cells(model, source), judges, client, slugs[0], source)
        # The budget reserves each call at the dearest price among the models the run calls, its
        # judges' included (never under-reserved); one too small for a single call is refused
        # before the run is registered.
        prices = Prices(store)
        called = [*slugs, *(judge_slug(j, client, slugs[0]) for j in judges)]
        unit_cost = max(prices.reserve(m) for m in called)
        if mode == "live":
            check_budget_fits_a_call(budget, unit_cost)
        run = register_run(
            self,
            store,
            source=source,
            fingerprint=self.fingerprint(model, source),
            model=model,
            total=self.cell_count(model),
            budget=budget,
            mode=mode,
            share=sequential is None,  # a sequential rerun replays its procedure on the cache
        )
        runner = Runner(
            run=run,
            # Generated at each pass over them (never held as a list), with their count up front.
            cells=functools.partial(self.grid.cells, model, source),
            total=self.cell_count(model),
            scorers=self.scorers,
            client=client,
            model=slugs[0],  # judges without a model of their own grade with the first
            # Slugs other than the client's own are checked (free) before the first paid call.
            models=[m for m in slugs if m != getattr(client, "model", None)],
            source=source,
            concurrency=concurrency,
            budget=budget,
            progress=progress,
            mode=mode,
            unit_cost=unit_cost,
            api=api,
            # Local jobs finish in milliseconds; the hosted API's take about a second.
            poll_interval=0.02 if getattr(client, "is_local", False) else 1.0,
        )
        if sequential is not None:
            runner.policy = SequentialPolicy(
                *sequential,
                store=store,
                run_id=run.id,
                cells=self.iter_cells(model, source),
                variants=self.variants,
                concurrency=concurrency,
            )
        run._stop_request = runner.request_stop
        run._runner = runner  # type: ignore[attr-defined]
        runner.open_bar()
        return run, runner

    def start(
        self,
        client: Any = None,
        *,
        concurrency: int = 8,
        budget: float | Decimal | None = None,
        progress: bool = True,
        mode: Mode = "live",
        store: StoreArg = None,
        api: Api = "v1",
        stop: Any = None,
    ) -> Run:
        """Like ``run`` but returns at once; the run works in a background thread.

        ``run.progress`` / ``run.subscribe(fn)`` follow it, ``run.wait()`` joins it, ``run.stop()``
        stops it after the calls in flight.
        """
        run, runner = self._prepare(
            client,
            concurrency=concurrency,
            budget=budget,
            progress=progress,
            mode=mode,
            store=store,
            api=api,
            stop=stop,
        )
        execute_in_background(run, runner)
        return run

    def run(
        self,
        client: Any = None,
        *,
        concurrency: int = 8,
        budget: float | Decimal | None = None,
        progress: bool = True,
        mode: Mode = "live",
        store: StoreArg = None,
        api: Api = "v1",
        stop: Any = None,
    ) -> Run:
        """Run every unfinished cell and return the Run (see the module docstring).

        ``budget`` caps the credits this call may spend (checked before each send, reserving the
        calls in flight); a stopped run resumes when run again, with a budget of its own.
        ``mode="replay"`` serves every cell from the store and needs no client.

        ``stop=lk.stop.compare(a, b, metric)`` or ``lk.stop.best(metric)`` makes it sequential:
        items in a seeded random order, a batch at a time, until the rule is answered (see
        ``llamakit.experiment.sequential``; ``run.sequential`` reports it). A bad rule raises
        ValidationError before any call.

        ``api="v2"`` sends each call as a v2 job (submit, then poll) and journals it first: a
        runner killed mid-call then collects its paid jobs on resume instead of paying again.

        Ctrl-C stops after the calls in flight are recorded (a second Ctrl-C abandons them) and
        re-raises KeyboardInterrupt; rerunning resumes. Works inside Jupyter's running loop.
        """
        run = self.start(
            client,
            concurrency=concurrency,
            budget=budget,
            progress=progress,
            mode=mode,
            store=store,
            api=api,
            stop=stop,
        )
        wait_or_interrupt(run, run._runner)  # type: ignore[attr-defined]
        run.wait()
        announce_early_stop(run)
        return run

    async def arun(
        self,
        client: Any = None,
        *,
        concurrency: int = 8,
        budget: float | Decimal | None = None,
        progress: bool = True,
        mode: Mode = "live",
        store: StoreArg = None,
        api: Api = "v1",
        stop: Any = None,
    ) -> Run:
        """``run`` for async code: the runner works on the caller's event loop, so an
        ``AsyncClient`` already used there can be passed as is.

        Cancelled (Ctrl-C under ``asyncio.run``, ``task.cancel()``, an ``asyncio.wait_for``
        timeout), it sends no new call, waits for the calls already sent (each attempt bounded
        by the client's timeout; a call waiting to retry ends at once) and stores their replies,
        ends the run "interrupted", then re-raises the cancellation (KeyboardInterrupt where that
        arrived). A second cancellation while it waits abandons those calls, and says so."""
        run, runner = self._prepare(
            client,
            concurrency=concurrency,
            budget=budget,
            progress=progress,
            mode=mode,
            store=store,
            api=api,
            stop=stop,
        )
        try:
            await runner.execute()
        except (asyncio.CancelledError, KeyboardInterrupt):
            announce_interrupted(run)
            raise
        finally:
            release_run(run)
        announce_early_stop(run)
        return run
