"""Sessions of one run that overlap in time, taken together for credit accounting.

Several processes may work on one run at once (they claim cells from each other; see
``store/_claims.py``). Each process's session reads the account's balance when it starts and ends
and sees ``x-remaining-credits`` after each of its calls, but the account is shared: every one of
those figures also moves with the other processes' calls. Summing each session's own balance drop
would count the others' spend again (N processes, N times the ledger), and pricing a call by the
drop since the session's previous header would charge it for the calls other processes made in
between. Only a *span* (a maximal group of sessions whose lifetimes overlap) has an honest opening
balance (its first session's) and closing balance (its last-ending session's), and its calls,
ordered together, an honest sequence of headers.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from ..store._store import account_balances

Session = Mapping[str, Any]


def _end(session: Session, calls: Sequence[Mapping[str, Any]]) -> float:
    """When a session stopped paying: its end, or for a killed one its last committed call."""
    if session.get("finished_at") is not None:
        return float(session["finished_at"])
    ends = [float(c["finished_at"]) for c in calls if c.get("finished_at") is not None]
    return max([float(session["started_at"]), *ends])


def session_spans(
    sessions: Sequence[Session], calls: Mapping[int, Sequence[Mapping[str, Any]]]
) -> list[list[Session]]:
    """``sessions`` grouped into spans, in start order; ``calls`` maps a session number to its
    committed calls (``finished_at`` is read). A run worked by one process at a time has one
    session per span."""
    spans: list[list[Session]] = []
    end = -math.inf
    for s in sorted(sessions, key=lambda s: (s["started_at"], s["session"])):
        stop = _end(s, calls.get(s["session"], ()))
        if spans and float(s["started_at"]) < end:
            spans[-1].append(s)
            end = max(end, stop)
        else:
            spans.append([s])
            end = stop
    return spans


def merged(span: Sequence[Session], calls: Mapping[int, Sequence[Mapping[str, Any]]]) -> Session:
    """The span as one session: its highest opening balance and, once every session of the span
    has ended, its lowest closing balance.

    Why not the first session's and the last one's: under load a process can read its opening
    balance seconds after its session started, when the others have already spent; and balances
    only fall while the span runs (a top-up inside it defeats any accounting from balances)."""
    ended = all(s.get("finished_at") is not None for s in span)
    before, after = _merge(
        [s["balance_before"] for s in span], [s["balance_after"] for s in span], ended
    )
    # Other accounts' (a judge's own client's) balances, merged the same way, account by account.
    others = [account_balances(s) for s in span]
    accounts = {
        a: _merge([o.get(a, (None, None))[0] for o in others],
                  [o.get(a, (None, None))[1] for o in others], ended)
        for a in sorted({a for o in others for a in o})
    }  # fmt: skip
    account = next((s["account"] for s in span if s.get("account")), None)
    return {
        "balance_before": before,
        "balance_after": after,
        "account": account,
        "accounts": accounts,
    }


def _merge(opened: Sequence[Any], closed: Sequence[Any], ended: bool) -> tuple[Any, Any]:
    """The highest opening balance; once every session has ended, the lowest closing one."""
    known = [b for b in opened if b is not None]
    before = max(known) if known else None
    closing = [b for b in closed if b is not None] if ended else []
    return before, (min(closing) if closing else None)


def span_of(spans: Sequence[Sequence[Session]], session: int) -> Sequence[Session]:
    """The span that holds session number ``session``."""
    return next(span for span in spans if any(s["session"] == session for s in span))
