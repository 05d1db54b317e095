"""Credits truth: what a run and each of its calls cost, from the provider's own figures.

Every amount is an exact ``Decimal`` (USD), read from the text the provider sent
(``_parse.credit_amount``); nothing here rounds. A session's spend is its balance before minus its
balance after (the free balance endpoint), or, for a session that never finished (killed process),
before minus the lowest ``x-remaining-credits`` header it saw. Per call, a header delta is exact
only when no other call of the session was in flight at the same time; overlapping calls split
their cluster's delta ("apportioned", :func:`split_exactly`). Whatever the session spent that no
header accounts for (calls with no header, spend after the last header) is split over the calls
it could belong to and labelled "apportioned_total", so per-call credits always sum to the
session's spend exactly when both balances are known.

A balance, and so a delta between two figures, belongs to one account: the key a call was sent
with, at the origin it was sent to (:func:`account_of`). A judge with its own client may pay from
another account; its figures are never subtracted from the run's (:func:`attribute_by_account`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import ROUND_FLOOR, Decimal, localcontext
from typing import Any, Literal

from .._defaults import PUBLISHED_COST_BY_MODEL, PUBLISHED_COST_PER_CALL

SpendSource = Literal["balance", "headers", "estimate"]
_RANK = {"balance": 0, "headers": 1, "estimate": 2}
ZERO = Decimal(0)
# Digits kept below an amount's own last digit when it is split: 0.001 over 3 calls is
# 0.000333334 + 0.000333333 + 0.000333333, exact in sum, readable per call.
_SPLIT_DIGITS = 6

Attribution = tuple[Decimal | None, str | None, str]


def account_of(client: Any) -> str | None:
    """The account ``client``'s calls are billed to: a llamakit client's ``account`` (its origin
    and a digest of its key, never the key), else its base URL; None for a client that names
    neither (a duck-typed chat callable)."""
    account = getattr(client, "account", None)
    if isinstance(account, str) and account:
        return account
    url = getattr(client, "base_url", None)
    return str(url).rstrip("/") if url else None


def published_cost(model: str) -> Decimal:
    """Segmind's published average cost per request of ``model`` (USD, exact); a slug without a
    published figure is assumed to cost what llama-v3-8b-instruct does. Where a price comes
    from before the store has observed one (``llamakit.experiment.pricing``)."""
    return PUBLISHED_COST_BY_MODEL.get(model, PUBLISHED_COST_PER_CALL)


def to_credits(value: Any) -> Decimal | None:
    """An exact Decimal for a credit figure from the store or a caller (None stays None).

    Floats are read at the 15 significant digits a double holds reliably (a caller's 0.05 is 0.05).
    """
    if value is None or isinstance(value, Decimal):
        return value
    if isinstance(value, float):
        return Decimal(f"{value:.15g}")
    return Decimal(str(value))


def split_exactly(total: Decimal, parts: int) -> list[Decimal]:
    """``total`` split into ``parts`` shares that differ by at most one unit and sum to it exactly.

    The unit is ``_SPLIT_DIGITS`` decimal places finer than ``total``'s own last digit (fewer
    when that would pass 27 significant digits); the remainder units go to the first shares, so
    the split is deterministic for a given order.
    """
    if parts < 1:
        return []
    _, digits, exponent = total.as_tuple()
    exponent = exponent if isinstance(exponent, int) else 0
    # Shares keep within 27 significant digits, so that summing them in Decimal's default
    # 28-digit context (a user's ``results["credits"].sum()``) is exact too; never coarser
    # than the total's own last digit.
    finest = max(exponent - _SPLIT_DIGITS, total.adjusted() - 26)
    unit = Decimal(1).scaleb(min(exponent, finest))
    with localcontext() as ctx:  # enough digits for any amount the parser accepts, never rounded
        ctx.prec = max(ctx.prec, len(digits) + _SPLIT_DIGITS + len(str(parts)) + 2)
        base = (total / parts).quantize(unit, rounding=ROUND_FLOOR)
        extra = int((total - base * parts) / unit)
        shares = [base + unit if i < extra else base for i in range(parts)]
        return [_tidy(s) for s in shares]


def split_cluster(total: Decimal, calls: Sequence[Mapping[str, Any]]) -> list[Decimal]:
    """``total`` over overlapping ``calls``: evenly when they went to one model; across models
    (a run over several slugs) in proportion to each model's published price per request, so a
    cheap sibling is not charged the dear one's share. The shares sum to ``total`` exactly."""
    models = [c.get("model") for c in calls]
    if len(set(models)) <= 1:
        return split_exactly(total, len(calls))
    weights = [published_cost(str(m)) for m in models]
    whole = sum(weights, ZERO)
    exponent = total.as_tuple().exponent
    exponent = exponent if isinstance(exponent, int) else 0
    # As in split_exactly: finer than the total's last digit, within 27 significant digits.
    unit = Decimal(1).scaleb(max(exponent - _SPLIT_DIGITS, total.adjusted() - 26))
    with localcontext() as ctx:
        ctx.prec = 60
        shares = [(total * w / whole).quantize(unit, rounding=ROUND_FLOOR) for w in weights]
        extra = int((total - sum(shares, ZERO)) / unit)
        shares = [s + unit if i < extra else s for i, s in enumerate(shares)]
    return [_tidy(s) for s in shares]


def _tidy(amount: Decimal) -> Decimal:
    # Drop the trailing zeros a split adds (0.000210000000 -> 0.00021) without switching to
    # exponent notation (normalize() alone turns 10 into 1E+1).
    return Decimal(format(amount.normalize(), "f"))


def attribute_calls(
    calls: Sequence[Mapping[str, Any]],
    balance_before: Decimal | None,
    balance_after: Decimal | None = None,
) -> list[Attribution]:
    """(credits, precision, cell_key) for each call of one session.

    ``calls`` need ``cell_key``, ``started_at``, ``finished_at`` and ``credits_remaining``.
    ``balance_after`` (the session's closing balance, when known) lets the spend no header
    explains be apportioned too, so the credits sum to ``balance_before - balance_after``.
    """
    ordered = sorted(
        calls, key=lambda c: (c["started_at"] or 0.0, c["finished_at"] or 0.0, c["cell_key"])
    )
    clusters: list[list[Mapping[str, Any]]] = []
    end = float("-inf")
    for call in ordered:
        if clusters and (call["started_at"] or 0.0) < end:
            clusters[-1].append(call)
        else:
            clusters.append([call])
        end = max(end, call["finished_at"] or 0.0)
    out: dict[str, Attribution] = {}
    unknown: list[str] = []  # calls no header delta can price
    previous = to_credits(balance_before)
    for cluster in clusters:
        keys = [c["cell_key"] for c in cluster]
        headers = [to_credits(c["credits_remaining"]) for c in cluster]
        known = [h for h in headers if h is not None]
        if previous is None or len(known) < len(headers):
            unknown.extend(keys)
            previous = min(known, default=previous)
            continue
        low = min(known)
        spent, previous = previous - low, low
        if spent < 0:  # a top-up landed inside the session: no honest per-call figure
            out.update((k, (None, None, k)) for k in keys)
            continue
        precision = "exact" if len(cluster) == 1 else "apportioned"
        out.update(
            (k, (s, precision, k)) for k, s in zip(keys, split_cluster(spent, cluster), strict=True)
        )
    _apportion_rest(out, unknown, ordered, balance_before, balance_after)
    return [out.get(c["cell_key"], (None, None, c["cell_key"])) for c in ordered]


def attribute_by_account(
    calls: Sequence[Mapping[str, Any]],
    account: str | None,
    balance_before: Decimal | None,
    balance_after: Decimal | None = None,
    others: Mapping[str, Sequence[Any]] | None = None,
) -> list[Attribution]:
    """:func:`attribute_calls` for the calls of one session (or span) that may have paid from
    several accounts (``account`` in each call: a judge with its own client).

    The session's balances are ``account``'s; a call of that account, or of none recorded (a
    store older than accounts), is priced from them. Every other account's calls are priced
    among themselves, from that account's own (before, after) in ``others`` when the session read
    them, else from their own headers only (the first call of such an account then has no
    figure: None, never a delta taken against another account's balance)."""
    groups: dict[str | None, list[Mapping[str, Any]]] = {}
    for call in calls:
        owner = call.get("account")
        groups.setdefault(None if owner in (None, account) else owner, []).append(call)
    out: list[Attribution] = []
    for owner, group in groups.items():
        if owner is None:
            out += attribute_calls(group, balance_before, balance_after)
        else:
            before, after = (others or {}).get(owner, (None, None))
            out += attribute_calls(group, to_credits(before), to_credits(after))
    return out


def own_calls(calls: Sequence[Mapping[str, Any]], account: str | None) -> list[Mapping[str, Any]]:
    """The calls of ``calls`` paid from ``account`` (a call recording no account counts as its)."""
    return [c for c in calls if c.get("account") in (None, account)]


def _apportion_rest(
    out: dict[str, Attribution],
    unknown: list[str],
    ordered: Sequence[Mapping[str, Any]],
    balance_before: Any,
    balance_after: Any,
) -> None:
    """Split what the session spent beyond its header deltas over the calls it may belong to."""
    before, after = to_credits(balance_before), to_credits(balance_after)
    if before is None or after is None or after > before or not ordered:
        return
    if any(credits is None for credits, _, _ in out.values()):
        return  # a top-up inside the session: the total is not this session's spend
    rest = before - after - sum((credits or ZERO for credits, _, _ in out.values()), ZERO)
    if rest < 0:
        return
    if unknown:
        targets = unknown
    elif rest > 0:
        # Billed after the last header (a reply that never arrived, a judge call's header
        # missing): the calls of the last cluster are the nearest candidates.
        targets = [ordered[-1]["cell_key"]]
    else:
        return
    for key, share in zip(targets, split_exactly(rest, len(targets)), strict=True):
        known = out.get(key, (ZERO, None, key))[0] or ZERO
        out[key] = (known + share, "apportioned_total", key)


def session_spend(
    session: Mapping[str, Any],
    headers: Sequence[Any],
    paid_calls: int,
    estimated_cost: Any,
    *,
    next_balance: Any = None,
) -> tuple[Decimal, SpendSource]:
    """The credits one session spent (exact), and how that figure was obtained.

    A killed (or hard-interrupted) session never read its closing balance; the next session's
    opening balance stands in for it, which also counts the calls the server billed after the
    process died (they were in flight; their responses were never committed). Without one, the
    lowest header it saw. With neither, ``estimated_cost``: the ``paid_calls`` priced each at
    its own model's price (``llamakit.experiment.pricing``), labelled "estimate".
    """
    before = to_credits(session.get("balance_before"))
    after = to_credits(session.get("balance_after"))
    if after is None:
        after = to_credits(next_balance)
    if paid_calls == 0 and after is None:  # nothing was paid for that we know of
        return ZERO, "balance"
    if before is not None and after is not None and after <= before:
        return before - after, "balance"
    if paid_calls == 0:
        return ZERO, "balance"
    seen = [h for h in (to_credits(x) for x in headers) if h is not None]
    if before is not None and seen and min(seen) <= before:
        return before - min(seen), "headers"
    return to_credits(estimated_cost) or ZERO, "estimate"


def combine_sources(sources: Sequence[SpendSource]) -> SpendSource:
    """A run's figure is only as good as its weakest session's."""
    return max(sources, key=_RANK.__getitem__) if sources else "estimate"
