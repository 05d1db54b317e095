"""The runner's credit bookkeeping: what this session has spent, whether one more call fits the
budget, and attributing each committed call its cost when a session ends (or, for a session that
was killed, when the run is next resumed)."""

from __future__ import annotations

from decimal import ROUND_CEILING, Decimal
from typing import Any

from ..client.credits import ZERO, attribute_by_account, to_credits
from ..errors import ValidationError
from ..store._store import account_balances
from .spans import merged, session_spans, span_of


def check_budget_fits_a_call(budget: Decimal | None, unit_cost: Decimal) -> None:
    """Refuse a budget (USD) below one call's projected cost (``unit_cost``, USD): no call could
    ever be sent under it, so the run would stop at once and say "rerun to resume" forever.

    Both are exact Decimals, compared digit for digit: a budget one unit of its last digit short
    of a call is refused. Raises ValidationError (field ``budget``) naming the minimum. Called
    before the run is registered or anything is sent; ``None`` (no budget) always passes.
    """
    if budget is None or not budget < unit_cost:
        return
    # Shown rounded up, so the minimum it names is itself enough.
    shown = unit_cost.quantize(Decimal("0.000001"), rounding=ROUND_CEILING)
    raise ValidationError(
        f"budget {budget} credits (USD) is below the cost of one call ({shown}), so no call could "
        f"be sent; give a budget of at least {shown} (or none)",
        field="budget",
    )


class Spending:
    """Credits paid by one session (exact Decimals, USD), from the provider's
    ``x-remaining-credits`` headers when it sends them and from the expected cost per call
    otherwise. Account by account: a judge with its own client pays from another account, whose
    headers say nothing of the run's (``account``'s) balance; the session spends their sum."""

    def __init__(self, *, budget: Decimal | None, unit_cost: Decimal) -> None:
        self.budget = budget
        self.unit_cost = unit_cost
        self.paid = 0
        self.inflight = 0
        self.account: str | None = None
        self.balance_before: Decimal | None = None
        self.min_header: Decimal | None = None
        # Other accounts (a judge's own client's): opening balance, calls paid, lowest header.
        self.others: dict[str, list[Any]] = {}

    def spent(self) -> Decimal:
        """Credits spent by this session so far, from the provider's headers when we have them."""
        own = self.paid - sum(o[1] for o in self.others.values())
        total = _spent(self.balance_before, own, self.min_header, self.unit_cost)
        for before, paid, low in self.others.values():
            total += _spent(before, paid, low, self.unit_cost)
        return total

    def expected_cost(self) -> Decimal:
        spent = self.spent()
        observed = spent / self.paid if self.paid else ZERO
        return max(self.unit_cost, observed)

    def fits_one_more(self) -> bool:
        """Whether the calls in flight plus one more, at the expected cost, stay in the budget."""
        if self.budget is None:
            return True
        projected = self.spent() + (self.inflight + 1) * self.expected_cost()
        return not projected > self.budget

    def opened(self, account: str, balance: Decimal | None) -> None:
        """Another account's opening balance (read when the session starts)."""
        self.others.setdefault(account, [None, 0, None])[0] = balance

    def record_paid(self, credits_remaining: Any, account: str | None = None) -> None:
        self.paid += 1
        header = to_credits(credits_remaining)
        if account not in (None, self.account):
            other = self.others.setdefault(account, [None, 0, None])
            other[1] += 1
            if header is not None:
                other[2] = header if other[2] is None else min(other[2], header)
            return
        if header is not None:
            self.min_header = header if self.min_header is None else min(self.min_header, header)

    def credits_left(self) -> Decimal | None:
        """The run's account's balance as last seen."""
        return self.min_header if self.min_header is not None else self.balance_before


def _spent(before: Decimal | None, paid: int, low: Decimal | None, unit_cost: Decimal) -> Decimal:
    """One account's spend: its balance drop when both ends are known, else its calls priced."""
    if before is not None and low is not None:
        return max(ZERO, before - low)
    return paid * unit_cost


def attribute_session(
    store: Any,
    run_id: str,
    session: int,
    balance_before: Decimal | None,
    balance_after: Decimal | None = None,
) -> None:
    """Give each committed call of ``session`` its cost. When other processes' sessions of the
    run overlapped it, the calls of the whole span are priced together from the span's opening
    and closing balances (see ``spans``); the last session of a span to end prices it finally."""
    sessions = store.sessions(run_id)
    calls = {s["session"]: store.session_responses(run_id, s["session"]) for s in sessions}
    span = span_of(session_spans(sessions, calls), session) if sessions else []
    if len(span) <= 1:
        mine = calls.get(session) or store.session_responses(run_id, session)
        row = span[0] if span else {}
        if mine:
            others = account_balances(row)
            store.set_response_credits(
                attribute_by_account(
                    mine, row.get("account"), balance_before, balance_after, others
                )
            )
        return
    whole = merged(span, calls)
    together = [c for s in span for c in calls[s["session"]]]
    if together:
        store.set_response_credits(_attribute(together, whole, whole["balance_after"]))


def _attribute(calls: list[Any], whole: Any, after: Any) -> Any:
    """The calls of a merged span priced account by account (``credits.attribute_by_account``)."""
    return attribute_by_account(
        calls, whole["account"], whole["balance_before"], after, whole["accounts"]
    )


def repair_earlier_sessions(store: Any, run_id: str, current_session: int) -> None:
    """Price the calls of sessions that were killed before they could (see ``attribute_session``).

    A span still being worked by a live process is left to that process: its calls have no
    credits yet only because it has not ended, and pricing them now, from balances that other
    processes' calls still move, would count those calls again. For a killed span, the next
    span's opening balance stands in for its missing closing one."""
    from ..store._claims import pid_alive

    sessions = store.sessions(run_id)
    calls = {s["session"]: store.session_responses(run_id, s["session"]) for s in sessions}
    spans = session_spans(sessions, calls)
    for i, span in enumerate(spans):
        if any(s["session"] == current_session for s in span):
            continue
        if any(s["finished_at"] is None and pid_alive(s["pid"]) for s in span):
            continue
        together = [c for s in span for c in calls[s["session"]]]
        if not any(c["credits"] is None for c in together):
            continue
        whole = merged(span, calls)
        after = whole["balance_after"]
        if after is None:
            later = (n["balance_before"] for nxt in spans[i + 1 :] for n in nxt)
            after = next((b for b in later if b is not None), None)
        store.set_response_credits(_attribute(together, whole, after))
