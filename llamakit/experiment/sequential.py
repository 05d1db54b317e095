"""Sequential runs: which cells to send next, and when to stop (issue 19).

The runner asks a ``SequentialPolicy`` for the next batch of cell ids between batches (its only
hook: ``Runner.policy``). The policy visits the dataset's items in a seeded random order, a batch
at a time (batch size: the run's concurrency in cells at the start, recorded), reads the scores
of the batch from the store, updates one confidence sequence per pair of conditions still
sampled (``llamakit.scoring.sequential``, paired per item, repeats averaged per item), and
answers None once the stop rule is answered or the dataset is used up.

Everything that decides the sequence is recorded in the store (``sequential_steps``): step 0 the
item order and batch size, each later step the batch's items, the bounds, the variants still
sampled and the decision. A resumed run replays the recorded steps from the stored scores (the
bounds are a deterministic function of them) and goes on from the next item. An item whose cell
failed for a condition is not observed for that condition's pairs.

The sequences treat the items as a sample (with replacement): the question is whether a variant
is better on items like these, not on this dataset alone. The without-replacement sequence of
``scoring.sequential`` answers the latter and would end every run on a finite dataset with the
sign of its exact difference, however small: under no true difference that "declares" one in
most runs (benchmarks/sequential.py showed 82%).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from ..errors import ValidationError
from ..scoring.sequential import ConfidenceSequence
from .stop import Best, Compare, StopRule, parse_stop

if TYPE_CHECKING:
    from ..store import Store
    from .cells import Cell


def check_rule(stop: Any, experiment: Any) -> tuple[StopRule, tuple[float, float]] | None:
    """Validate a stop rule against an experiment before any call; returns (rule, bounds).

    Raises ValidationError for an experiment with one variant, a variant the experiment does not
    have, several param settings per variant, a metric that is not one of its scorers, or a
    metric whose bounds are not declared."""
    rule = parse_stop(stop)
    if rule is None:
        return None
    variants = list(experiment.variants)
    if len(variants) < 2:
        raise ValidationError(
            f"a stop rule compares conditions, but {experiment.name!r} has one variant "
            f"({variants[0]!r}); add a variant or run without stop=",
            field="stop",
        )
    unknown = [c for c in rule.conditions(variants) if c not in variants]
    if unknown:
        raise ValidationError(
            f"stop rule names {unknown[0]!r}, which is not a variant of {experiment.name!r} "
            f"(variants: {', '.join(variants)})",
            field="stop",
        )
    if any(len(experiment.variant_params[v]) != 1 for v in variants):
        raise ValidationError(
            "sequential stopping compares variants, and this experiment runs some variant with "
            "several param settings; give each setting its own variant",
            field="stop",
        )
    scorers = {s.name: s for s in experiment.scorers}
    if rule.metric not in scorers:
        raise ValidationError(
            f"stop rule metric {rule.metric!r} is not a scorer of {experiment.name!r} "
            f"(scorers: {', '.join(scorers) or 'none'})",
            field="metric",
        )
    bounds = rule.bounds or getattr(scorers[rule.metric], "bounds", None)
    if bounds is None:
        raise ValidationError(
            f"metric {rule.metric!r} has no declared bounds, and sequential stopping needs "
            "bounded scores; pass bounds=(lo, hi) to the stop rule or as_scorer(..., bounds=...)",
            field="metric",
        )
    return rule, (float(bounds[0]), float(bounds[1]))


def rule_key(rule: StopRule) -> str:
    return json.dumps(rule.key(), sort_keys=True)


def item_order(run_id: str, rule: StopRule, item_ids: Sequence[str]) -> list[str]:
    """The seeded random order of the items: the rule's ``seed``, else a function of the run and
    the rule."""
    import numpy as np

    seed = rule.seed
    if seed is None:
        digest = hashlib.sha256(f"{run_id}\0{rule_key(rule)}".encode()).hexdigest()
        seed = int(digest[:16], 16)
    permutation = np.random.default_rng(seed).permutation(len(item_ids))
    return [item_ids[int(i)] for i in permutation]


class SequentialPolicy:
    """Chooses the cells of each batch and decides when to stop; see the module docstring."""

    def __init__(
        self,
        rule: StopRule,
        bounds: tuple[float, float],
        *,
        store: Store,
        run_id: str,
        cells: Iterable[Cell],
        variants: Sequence[str],
        concurrency: int,
    ) -> None:
        self.rule = rule
        self.key = rule_key(rule)
        self.store = store
        self.run_id = run_id
        self.cells_by: dict[tuple[str, str], list[str]] = defaultdict(list)
        items: dict[str, None] = {}  # in dataset order (one pass: ``cells`` may be a generator)
        for cell in cells:
            self.cells_by[(cell.variant, cell.item_id)].append(cell.cell_id)
            items.setdefault(cell.item_id)
        self.active = rule.conditions(variants)
        self.names = list(self.active)
        lo, hi = bounds
        pairs = list(itertools.combinations(self.active, 2))
        alpha = rule.alpha / len(pairs)  # Bonferroni over the pairs watched
        self.cs = {pair: ConfidenceSequence(alpha, (lo - hi, hi - lo)) for pair in pairs}
        self.decision: str | None = None
        self.step = 0
        self.position = 0
        self.pending: list[str] = []
        self.repeats = max(len(ids) for ids in self.cells_by.values())
        steps = store.sequential_steps(run_id, self.key)
        if steps:
            header = json.loads(steps[0]["record"])
            self.order, self.batch_cells = header["order"], header["batch_cells"]
            for row in steps[1:]:
                self._observe(json.loads(row["record"])["items"], record=False)
        else:
            self.order = item_order(run_id, rule, list(items))
            self.batch_cells = concurrency
            header = {"order": self.order, "batch_cells": concurrency, "rule": rule.key()}
            store.record_sequential_step(run_id, self.key, 0, header)

    # -- the runner's hook -------------------------------------------------------------------
    def next_batch(self) -> list[str] | None:
        """Cell ids to send next, after observing the last batch; None when done."""
        if self.pending:
            self._observe(self.pending, record=True)
            self.pending = []
        if self.decision is not None or self.position >= len(self.order):
            return None
        per_item = len(self.active) * self.repeats
        size = max(1, math.ceil(self.batch_cells / per_item))
        self.pending = self.order[self.position : self.position + size]
        return [
            cid for item in self.pending for v in self.active for cid in self.cells_by[(v, item)]
        ]

    # -- statistics --------------------------------------------------------------------------
    def _scores(self, items: Sequence[str]) -> dict[tuple[str, str], float]:
        """Mean score per (variant, item) over the done cells with a score (repeats averaged)."""
        marks = ",".join("?" * len(items))
        rows = self.store.cell_rows(
            self.run_id,
            f"status = 'done' AND item_id IN ({marks})",
            tuple(items),
            columns="variant, item_id, scores",
        )
        sums: dict[tuple[str, str], list[float]] = defaultdict(list)
        for row in rows:
            value = json.loads(row["scores"] or "{}").get(self.rule.metric)
            if isinstance(value, (bool, int, float)) and not (
                isinstance(value, float) and math.isnan(value)
            ):
                sums[(row["variant"], row["item_id"])].append(float(value))
        return {k: sum(v) / len(v) for k, v in sums.items()}

    def _observe(self, items: Sequence[str], *, record: bool) -> None:
        scores = self._scores(items)
        for x, y in itertools.combinations(self.active, 2):
            cs = self.cs.get((x, y))
            if cs is None:
                continue
            diffs = [
                scores[(x, i)] - scores[(y, i)]
                for i in items
                if (x, i) in scores and (y, i) in scores
            ]
            cs.update(diffs)
        self.position += len(items)
        self.step += 1
        eliminated = self._decide()
        if record:
            self.store.record_sequential_step(
                self.run_id,
                self.key,
                self.step,
                {
                    "items": list(items),
                    "position": self.position,
                    "active": list(self.active),
                    "eliminated": eliminated,
                    "bounds": {
                        f"{x} - {y}": [cs.n, cs.lower, cs.upper] for (x, y), cs in self.cs.items()
                    },
                    "decision": self.decision,
                },
            )

    def _decide(self) -> list[str]:
        rule = self.rule
        if isinstance(rule, Compare):
            cs = self.cs[(rule.a, rule.b)]
            if cs.lower > rule.margin:
                self.decision = f"{rule.a} > {rule.b}"
            elif cs.upper < -rule.margin:
                self.decision = f"{rule.b} > {rule.a}"
            elif rule.margin > 0 and -rule.margin < cs.lower and cs.upper < rule.margin:
                self.decision = f"{rule.a} ~ {rule.b} (within {rule.margin:g})"
            return []
        assert isinstance(rule, Best)
        worse = []
        for v in self.active:
            for w in self.active:
                if w == v:
                    continue
                if (w, v) in self.cs and self.cs[(w, v)].lower > 0:
                    worse.append(v)
                    break
                if (v, w) in self.cs and self.cs[(v, w)].upper < 0:
                    worse.append(v)
                    break
        self.active = [v for v in self.active if v not in worse]
        if len(self.active) == 1:
            self.decision = f"{self.active[0]} is best"
        return worse
