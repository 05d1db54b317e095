"""Credits truth: what a run and each of its calls cost, from the provider's own figures.

A session's spend is its balance before minus its balance after (the free balance endpoint), or,
for a session that never finished (killed process), before minus the lowest ``x-remaining-credits``
header it saw. Per call, a header delta is exact only when no other call of the session was in flight
at the same time; overlapping calls share their cluster's delta equally ("apportioned").
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

SpendSource = Literal["balance", "headers", "estimate"]
_RANK = {"balance": 0, "headers": 1, "estimate": 2}


def attribute_calls(
    calls: Sequence[Mapping[str, Any]], balance_before: float | None
) -> list[tuple[float | None, str | None, str]]:
    """(credits, precision, cell_key) for each call of one session.

    ``calls`` need ``cell_key``, ``started_at``, ``finished_at`` and ``credits_remaining``.
    """
    ordered = sorted(calls, key=lambda c: (c["started_at"] or 0.0, c["finished_at"] or 0.0))
    clusters: list[list[Mapping[str, Any]]] = []
    end = float("-inf")
    for call in ordered:
        if clusters and (call["started_at"] or 0.0) < end:
            clusters[-1].append(call)
        else:
            clusters.append([call])
        end = max(end, call["finished_at"] or 0.0)
    out: list[tuple[float | None, str | None, str]] = []
    previous = balance_before
    for cluster in clusters:
        headers = [c["credits_remaining"] for c in cluster]
        if previous is None or any(h is None for h in headers):
            out.extend((None, None, c["cell_key"]) for c in cluster)
            previous = min((h for h in headers if h is not None), default=previous)
            continue
        low = min(headers)
        spent = previous - low
        previous = low
        if spent < 0:  # a top-up landed inside the session: no honest per-call figure
            out.extend((None, None, c["cell_key"]) for c in cluster)
            continue
        precision = "exact" if len(cluster) == 1 else "apportioned"
        share = spent / len(cluster)
        out.extend((share, precision, c["cell_key"]) for c in cluster)
    return out


def session_spend(
    session: Mapping[str, Any],
    headers: Sequence[float | None],
    paid_calls: int,
    unit_cost: float,
    *,
    next_balance: float | None = None,
) -> tuple[float, SpendSource]:
    """The credits one session spent, and how that figure was obtained.

    A killed (or hard-interrupted) session never read its closing balance; the next session's
    opening balance stands in for it, which also counts the calls the server billed after the
    process died (they were in flight; their responses were never committed). Without one, the
    lowest header it saw.
    """
    before, after = session.get("balance_before"), session.get("balance_after")
    if after is None:
        after = next_balance
    if paid_calls == 0 and after is None:  # nothing was paid for that we know of
        return 0.0, "balance"
    if before is not None and after is not None and after <= before:
        return before - after, "balance"
    if paid_calls == 0:
        return 0.0, "balance"
    seen = [h for h in headers if h is not None]
    if before is not None and seen and min(seen) <= before:
        return before - min(seen), "headers"
    return paid_calls * unit_cost, "estimate"


def combine_sources(sources: Sequence[SpendSource]) -> SpendSource:
    """A run's figure is only as good as its weakest session's."""
    return max(sources, key=_RANK.__getitem__) if sources else "estimate"
