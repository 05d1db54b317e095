"""What a sequential run decided and what it saved, read back from the store (``run.sequential``)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from ..client.credits import ZERO

if TYPE_CHECKING:
    import pandas as pd

    from ..store import Store


@dataclass
class SequentialReport:
    """A sequential run's outcome.

    ``decision``: the answer (``"A > B"``, ``"B is best"``...) or None if the data or the budget
    ran out first. ``steps``: the per-batch records (items, bounds per pair as [n, lower, upper],
    conditions still sampled, eliminated ones). ``items_used``: items with a finished cell, per
    condition. ``credits_spent`` vs ``credits_full_grid`` (the full grid's projected cost at this
    run's cost per cell), both exact Decimal credits (USD).
    """

    rule: dict[str, Any]
    decision: str | None
    steps: list[dict[str, Any]]
    items_total: int
    items_used: dict[str, int]
    cells_done: int
    cells_total: int
    credits_spent: Decimal
    credits_full_grid: Decimal
    order: list[str] = field(default_factory=list, repr=False)

    @property
    def credits_saved(self) -> Decimal:
        return max(self.credits_full_grid - self.credits_spent, ZERO)

    @property
    def fraction_of_grid(self) -> float:
        """Cells sent as a fraction of the full grid."""
        return self.cells_done / self.cells_total if self.cells_total else 0.0

    def history(self) -> pd.DataFrame:
        """One row per batch and pair while the pair is sampled: step, position (items
        visited), pair, n (paired items observed), lower, upper (bounds of the difference)."""
        import pandas as pd

        rows: list[dict[str, Any]] = []
        last_n: dict[str, int] = {}
        for i, step in enumerate(self.steps):
            for pair, (n, lower, upper) in step["bounds"].items():
                if pair in last_n and n == last_n[pair]:
                    continue  # a pair no longer sampled (a condition eliminated): frozen
                last_n[pair] = n
                rows.append(
                    {
                        "step": i + 1,
                        "position": step["position"],
                        "pair": pair,
                        "n": n,
                        "lower": lower,
                        "upper": upper,
                    }
                )
        return pd.DataFrame(rows, columns=["step", "position", "pair", "n", "lower", "upper"])

    def __str__(self) -> str:
        rule = ", ".join(f"{k}={v}" for k, v in self.rule.items() if k != "rule")
        lines = [
            f"sequential {self.rule.get('rule')}({rule})",
            f"  decision: {self.decision or 'undecided (data or budget ran out)'}",
            "  items used: "
            + ", ".join(f"{c}={n}/{self.items_total}" for c, n in self.items_used.items()),
            f"  cells: {self.cells_done}/{self.cells_total} ({self.fraction_of_grid:.0%} of the grid)",
            f"  credits: {self.credits_spent} spent, {self.credits_full_grid} projected for the "
            f"full grid, {self.credits_saved} saved",
        ]
        last = self.steps[-1]["bounds"] if self.steps else {}
        for pair, (n, lo, hi) in last.items():
            lines.append(f"  {pair}: [{lo:+.3f}, {hi:+.3f}] after {n} paired items")
        return "\n".join(lines)

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        p.text(str(self))


def sequential_report(store: Store, run_id: str, spent: Decimal) -> SequentialReport | None:
    """The report of the run's last stop rule, or None for a run that was not sequential.
    ``spent``: the run's credits spent (``Run.credits_spent``)."""
    rows = store.sequential_steps(run_id)
    if not rows:
        return None
    rule = rows[-1]["rule"]
    rows = [r for r in rows if r["rule"] == rule]
    header = json.loads(rows[0]["record"])
    steps = [json.loads(r["record"]) for r in rows[1:]]
    run_row = store.run_row(run_id) or {}
    cells_total = int(run_row.get("cells_total") or 0)
    # Items the sequence observed per condition: a batch counts for every condition sampled in
    # it (those still active after it, and those it eliminated).
    variants = list(json.loads(run_row.get("config") or "{}").get("prompts", {}))
    items_used = {v: 0 for v in variants}
    for step in steps:
        for v in [*step["active"], *step["eliminated"]]:
            items_used[v] = items_used.get(v, 0) + len(step["items"])
    counts = store.cell_rows(
        run_id,
        "status = 'done'",
        columns="COUNT(*) AS done, SUM(CASE WHEN cached THEN 0 ELSE 1 END) AS paid",
    )[0]
    cells_done, paid = int(counts["done"] or 0), int(counts["paid"] or 0)
    if store.cells_run(run_id) != run_id:  # a fully cached rerun shares cells it did not pay for
        paid = 0
    # The full grid at this run's cost per paid cell (cells served from the cache cost nothing).
    full = (spent * cells_total / paid).quantize(Decimal("0.000001")) if paid else ZERO
    return SequentialReport(
        rule=header.get("rule", json.loads(rule)),
        decision=steps[-1]["decision"] if steps else None,
        steps=steps,
        items_total=len(header["order"]),
        items_used=items_used,
        cells_done=cells_done,
        cells_total=cells_total,
        credits_spent=spent,
        credits_full_grid=full,
        order=header["order"],
    )
