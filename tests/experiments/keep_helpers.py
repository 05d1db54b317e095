"""A small judged run with replies that disagree and carry markup, for the run-file and report
tests (and the Chromium test): variant "please" always names the capital; "now" answers with
hostile HTML and misses Chad's, so exactly one item of four disagrees on ``contains``."""

from __future__ import annotations

from typing import Any

import llamakit as lk
from llamakit import scoring

ROWS = [
    {"id": "fr", "country": "France", "expected": "Paris"},
    {"id": "es", "country": "Spain", "expected": "Madrid"},
    {"id": "td", "country": "Chad", "expected": "N'Djamena"},
    {"id": "pe", "country": "Peru", "expected": "Lima"},
]
HOSTILE = {
    "France": "<script>window.pwned = 1</script>Paris",
    "Spain": "<img src='http://198.51.100.7/x.png' onerror='window.pwned = 2'>Madrid",
    "Chad": "<b>no idea</b> <link rel=stylesheet href=https://cdn.example.invalid/x.css>",
    "Peru": '& Lima < Cusco "quoted"',
}
RULES: list[dict[str, Any]] = [
    {"pattern": "must name", "reply": "Reason: <u>it names it</u>.\nVERDICT: PASS"},
    *({"pattern": f"{r['country']} capital please", "reply": r["expected"]} for r in ROWS),
    *({"pattern": f"{c} capital now", "reply": reply} for c, reply in HOSTILE.items()),
]


def keep_experiment(srv: Any, **kw: Any) -> lk.Experiment:
    judge = scoring.judge(srv.client(), "The reply must name {{ expected }}.", scale=1)
    return lk.Experiment(
        kw.pop("name", "keep"),
        prompts={"please": "{{ country }} capital please", "now": "{{ country }} capital now"},
        dataset=kw.pop("dataset", ROWS),
        params={"max_tokens": 32},
        repeats=kw.pop("repeats", 2),
        scorers=[scoring.contains(), judge],
        **kw,
    )


def keep_server(**kw: Any) -> Any:
    return lk.local_server(backend="scripted", credits=50.0, latency_ms=1, rules=RULES, **kw)
