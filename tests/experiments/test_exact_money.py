"""Exact money (issue 13, point 7): credits are Decimals from the header's text to the store, the
tables, the CSV and the plots, and a run's spend equals the server ledger's debit to the last
digit, with per-call credits summing to it exactly."""

from __future__ import annotations

import csv
import sqlite3
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from exp_helpers import FAST_RETRIES, make_experiment
from hypothesis import given
from hypothesis import strategies as st

import llamakit as lk
from llamakit import plots
from llamakit._defaults import PUBLISHED_COST_PER_CALL
from llamakit.client.credits import split_exactly
from llamakit.store import Store
from llamakit.store._connection import Database
from llamakit.store._migrations import MIGRATIONS

# A price whose multiples are not binary fractions: float sums of it drift in the 17th digit.
PRICE = Decimal("0.000123456789")
START = Decimal("7.3")


@pytest.fixture
def priced() -> Any:
    with lk.local_server(
        backend="scripted", credits=START, cost_per_call=PRICE, latency_ms=5
    ) as srv:
        yield srv


def _csv_credits(path: Path) -> list[str]:
    with path.open(newline="") as f:
        return [row["credits"] for row in csv.DictReader(f)]


@pytest.mark.parametrize("concurrency", [1, 8])
def test_spend_equals_the_ledgers_debit_exactly_and_calls_sum_to_it(
    priced: Any, concurrency: int, tmp_path: Path
) -> None:
    before = priced.balance()
    run = make_experiment(items=10, repeats=2).run(
        priced.client(retry_policy=FAST_RETRIES), concurrency=concurrency, progress=False
    )
    debit = before - priced.balance()
    assert isinstance(run.credits_spent, Decimal)
    assert debit == 60 * PRICE and run.credits_spent == debit
    frame = run.results
    assert all(isinstance(c, Decimal) for c in frame["credits"])
    assert frame["credits"].sum() == debit
    precisions = set(frame["credits_precision"])
    assert precisions == {"exact"} if concurrency == 1 else precisions <= {"exact", "apportioned"}
    if concurrency == 1:
        assert set(frame["credits"]) == {PRICE}
    # The CSV holds the same exact figures as text: no 0.0006300000000000001.
    texts = _csv_credits(Path(run.to_csv(tmp_path / "out.csv")))
    assert sum(Decimal(t) for t in texts) == debit
    assert all(len(t.split(".")[-1]) <= 20 for t in texts), texts
    # The tables and the plot title carry the exact figure too.
    table = lk.runs()
    assert table["credits_spent"].tolist() == [debit]
    assert table["balance_before"][0] == START and table["balance_after"][0] == START - debit
    assert run.summary()["credits"].sum() == debit
    title = plots.credit_spend(table).get_title()
    assert Decimal(title.split(": ")[1].split(" credits")[0]) == debit


def test_the_store_keeps_the_headers_text_exactly(priced: Any) -> None:
    run = make_experiment(items=2, repeats=1).run(priced.client(), progress=False)
    stored = run.store.query("SELECT credits_remaining, credits FROM responses")
    assert all(isinstance(r["credits_remaining"], Decimal) for r in stored)
    raw = sqlite3.connect(run.store.path).execute(
        "SELECT typeof(credits_remaining), credits_remaining FROM responses"
    )
    for kind, text in raw:
        assert kind == "text" and Decimal(text) <= START  # stored as the decimal text itself
    attempts = run.store.attempts(run.id)
    assert {type(a["credits_remaining"]) for a in attempts if a["status"] == 200} == {Decimal}


class _NoCreditsHeader(httpx.BaseTransport):
    """A provider that sends no x-remaining-credits header (the real server always does)."""

    def __init__(self) -> None:
        self._inner = httpx.HTTPTransport()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self._inner.handle_request(request)
        response.read()
        headers = [(k, v) for k, v in response.headers.items() if k != "x-remaining-credits"]
        return httpx.Response(response.status_code, headers=headers, content=response.content)


def test_without_per_call_headers_the_run_total_is_apportioned_exactly(priced: Any) -> None:
    client = priced.client(transport=_NoCreditsHeader(), retry_policy=FAST_RETRIES)
    before = priced.balance()
    run = make_experiment(items=7, repeats=1).run(client, concurrency=4, progress=False)
    debit = before - priced.balance()
    assert run.credits_spent == debit == 21 * PRICE
    frame = run.results
    assert set(frame["credits_precision"]) == {"apportioned_total"}
    assert frame["credits"].sum() == debit  # remainders placed, nothing lost or invented


def test_the_balance_endpoint_is_read_as_the_ledgers_exact_figure() -> None:
    odd = Decimal("12.3456789012345678901")  # more digits than a float holds
    with lk.local_server(backend="scripted", credits=odd) as srv:
        client = srv.client()
        assert client.credits() == odd == srv.balance()
        reply = client.chat("hi", max_tokens=4)
        assert reply.credits_remaining == odd - Decimal("0.00063") == srv.balance()
        assert client.spent == Decimal("0.00063")


def test_a_budget_is_compared_exactly() -> None:
    # The budget is exactly five calls: the fifth fits to the last digit, the sixth does not.
    price = PUBLISHED_COST_PER_CALL  # 19 decimal places: more than a float keeps
    with lk.local_server(backend="scripted", credits=START, cost_per_call=price) as srv:
        run = make_experiment(items=10, repeats=1).run(
            srv.client(), budget=5 * price, concurrency=1, progress=False
        )
        assert run.status == "budget" and srv.stats()["billed_calls"] == 5
    assert run.credits_spent == 5 * price


def test_an_old_store_with_float_credits_is_migrated_to_exact_text(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    db = Database(path)
    with db.write() as conn:
        conn.execute("CREATE TABLE _migrations (name TEXT PRIMARY KEY, applied_at REAL)")
        for fn in MIGRATIONS[:2]:  # the schema as it shipped before credits became text
            fn(conn)
            conn.execute("INSERT INTO _migrations VALUES (?, 0)", (fn.__name__,))
        conn.execute(
            "INSERT INTO responses (cell_key, messages, params, repeat, credits, "
            "credits_remaining, created_at) VALUES ('k', '[]', '{}', 0, ?, ?, 0)",
            (0.0006300000000000001, 9.99937),
        )
        conn.execute(
            "INSERT INTO run_sessions (run_id, session, started_at, balance_before, "
            "balance_after) VALUES ('r', 1, 0, 10.0, 9.99937)"
        )
    db.close()
    store = Store(path)
    assert "m004_credits_as_decimal_text" in store.migrations()
    row = store.query("SELECT credits, credits_remaining FROM responses")[0]
    assert row == {"credits": Decimal("0.00063"), "credits_remaining": Decimal("9.99937")}
    session = store.sessions("r")[0]
    assert session["balance_before"] - session["balance_after"] == Decimal("0.00063")
    store.close()
    assert Store(path).migrations() == [fn.__name__ for fn in MIGRATIONS]  # applied once


@given(
    st.one_of(
        st.decimals(min_value=0, max_value=1000, places=8, allow_nan=False, allow_infinity=False),
        # long figures, up to the 27 significant digits Decimal's default context sums exactly
        st.from_regex(r"\A[0-9]{1,9}\.[0-9]{1,18}\Z").map(Decimal),
    ),
    st.integers(min_value=1, max_value=64),
)
def test_an_exact_split_sums_to_the_total_and_is_even(total: Decimal, parts: int) -> None:
    shares = split_exactly(total, parts)
    assert len(shares) == parts and sum(shares) == total
    exponent = total.as_tuple().exponent  # shares differ by less than the total's last digit
    assert max(shares) - min(shares) <= Decimal(1).scaleb(int(exponent))
    assert shares == sorted(shares, reverse=True)  # remainders go to the first calls
