"""Credit attribution from the provider's figures (pure functions; the runner tests cover them
against the server)."""

from __future__ import annotations

from decimal import Decimal as D

import pytest

import llamakit as lk
from llamakit.client.credits import attribute_calls, combine_sources, session_spend
from llamakit.experiment.templates import parse_prompts


def call(key: str, start: float, end: float, left: str | None) -> dict:
    left_ = None if left is None else D(left)
    return {"cell_key": key, "started_at": start, "finished_at": end, "credits_remaining": left_}


def test_calls_that_do_not_overlap_are_exact_and_overlapping_ones_apportioned() -> None:
    calls = [
        call("a", 0.0, 1.0, "9.9"),  # alone
        call("b", 2.0, 3.0, "9.7"),  # b and c overlap: they share 9.9 - 9.6
        call("c", 2.5, 3.5, "9.6"),
        call("d", 4.0, 5.0, "9.5"),
    ]
    out = {k: (credits, precision) for credits, precision, k in attribute_calls(calls, D("10"))}
    assert out["a"] == (D("0.1"), "exact")
    assert out["b"] == out["c"] == (D("0.15"), "apportioned")
    assert out["d"] == (D("0.1"), "exact")


def test_unknown_headers_or_a_top_up_give_no_per_call_figure() -> None:
    assert attribute_calls([call("a", 0, 1, "9.9")], None) == [(None, None, "a")]
    assert attribute_calls([call("a", 0, 1, "12.0")], D("10")) == [(None, None, "a")]


def test_a_killed_sessions_spend_comes_from_the_next_sessions_opening_balance() -> None:
    killed = {"balance_before": D("10"), "balance_after": None, "finished_at": None}
    # it committed replies down to 9.9, but calls in flight were billed to 9.8 after it died
    headers = [D("9.95"), D("9.9")]
    # the 4th argument is the paid calls' estimated cost, each at its model's price
    assert session_spend(killed, headers, 2, D("0.1"), next_balance=D("9.8")) == (
        D("0.2"),
        "balance",
    )
    assert session_spend(killed, headers, 2, D("0.1")) == (D("0.1"), "headers")
    assert session_spend({"balance_before": None}, [None], 2, D("0.0019101056600713583")) == (
        D("0.0019101056600713583"),
        "estimate",
    )
    assert combine_sources(["balance", "headers", "balance"]) == "headers"


@pytest.mark.parametrize(
    "template,row",
    [("{{ a / b }}", {"a": [1], "b": [2]}), ("{{ a + b }}", {"a": 1, "b": "x"})],
)
def test_a_template_failing_on_a_rows_values_is_a_validation_error(template, row) -> None:
    (t,) = parse_prompts(template)
    with pytest.raises(lk.ValidationError, match="failed to render for item '7': TypeError"):
        t.render(row, item_id="7")
