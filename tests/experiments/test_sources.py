"""Replies are reused only from the server that gave them (llamakit/experiment/sources.py).

The response cache is shared by every run in a store. Without the source in its key, a run against
the hosted API would be answered with the local stand-in's replies to the same prompts (and a local
run left unfinished would be resumed against the hosted API). Here a client built from a bare base
URL stands in for "another server": its source is that URL, not the handle's backend name.
"""

from __future__ import annotations

from typing import Any

import pytest
from exp_helpers import FAST_RETRIES, billed, client_of, make_experiment

import llamakit as lk
from llamakit.experiment.sources import source_of

ANSWER_42 = [{"pattern": r"\d+ \+ \d+|plus", "reply": "forty-two"}]


def _bare_client(srv: Any) -> lk.Client:
    """A client of `srv` that does not know it is a llamakit stand-in: its source is its URL."""
    return lk.Client(api_key=srv.api_key, base_url=srv.url + "/v1", retry_policy=FAST_RETRIES)


def test_client_source_names_the_backend_for_a_handle_and_the_url_otherwise() -> None:
    with lk.local_server(backend="scripted") as srv:
        assert srv.client().source == "llamakit-local/scripted"
        assert srv.async_client().source == "llamakit-local/scripted"
        assert _bare_client(srv).source == srv.url + "/v1"
        assert srv.client(source="my-proxy").source == "my-proxy"
        with pytest.raises(lk.ValidationError, match="source"):
            srv.client(source=" ")
    assert lk.Client(api_key="SG_x").source == "https://api.segmind.com/v1"
    assert source_of(None) is None


def test_scripted_rules_are_part_of_the_source() -> None:
    with (
        lk.local_server(backend="scripted", rules=ANSWER_42) as a,
        lk.local_server(backend="scripted", rules=[{"pattern": "x", "reply": "y"}]) as b,
        lk.local_server(backend="scripted", rules=ANSWER_42) as c,
    ):
        assert a.source.startswith("llamakit-local/scripted#")
        assert a.source != b.source
        assert a.source == c.source  # same rules on another port: same replies, same source


def test_another_servers_replies_are_never_served_from_the_cache() -> None:
    exp = make_experiment(items=5, repeats=1)  # 15 cells
    with lk.local_server(backend="scripted", credits=10.0, rules=ANSWER_42) as stand_in:
        first = exp.run(client_of(stand_in), progress=False)
        assert first.status == "finished" and billed(stand_in) == 15
        assert set(first.results["response"]) == {"forty-two"}
    with lk.local_server(backend="scripted", credits=10.0) as other:
        second = exp.run(_bare_client(other), progress=False)
        assert second.id != first.id
        assert billed(other) == 15  # every cell paid for again, none taken from the stand-in
        assert not second.results["cached"].any()
        assert "forty-two" not in set(second.results["response"])
    table = lk.runs().set_index("run_id")
    assert table.loc[first.id, "source"].startswith("llamakit-local/scripted#")
    assert table.loc[second.id, "source"] == other.url + "/v1"


def test_the_same_source_on_a_fresh_server_still_hits_the_cache() -> None:
    exp = make_experiment(items=5, repeats=1)
    with lk.local_server(backend="scripted", credits=10.0) as srv:
        first = exp.run(client_of(srv), progress=False)
    with lk.local_server(backend="scripted", credits=10.0) as srv:  # another port
        second = exp.run(client_of(srv), progress=False)
        assert billed(srv) == 0
        assert second.results["cached"].all()
        assert second.results["response"].tolist() == first.results["response"].tolist()


def test_an_unfinished_run_is_not_resumed_by_a_client_of_another_server() -> None:
    exp = make_experiment(items=5, repeats=1)
    with lk.local_server(backend="scripted", credits=5 * 0.00063 + 1e-9) as srv:
        stopped = exp.run(client_of(srv), progress=False)
        assert stopped.status == "insufficient_credits"
        srv.set_credits(10.0)
        elsewhere = exp.run(_bare_client(srv), progress=False)
        assert elsewhere.id != stopped.id and elsewhere.status == "finished"
        assert billed(srv) == 5 + 15
        resumed = exp.run(client_of(srv), progress=False)
        assert resumed.id == stopped.id and resumed.status == "finished"
        assert billed(srv) == 5 + 15 + 10  # the stand-in's own run pays only its missing cells


def test_replay_without_a_client_uses_the_latest_recorded_source() -> None:
    exp = make_experiment(items=4, repeats=1)
    with lk.local_server(backend="scripted", credits=10.0, rules=ANSWER_42) as srv:
        exp.run(client_of(srv), progress=False)
    with lk.local_server(backend="scripted", credits=10.0) as srv:
        latest = exp.run(client_of(srv), progress=False)
    replayed = exp.run(None, mode="replay", progress=False)
    assert replayed.results["response"].tolist() == latest.results["response"].tolist()
    assert "forty-two" not in set(replayed.results["response"])
    assert exp.estimate(None).calls == 0  # estimates without a client look the same way
