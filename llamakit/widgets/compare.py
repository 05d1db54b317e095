"""CompareView: every variant's response to one item, side by side, with its scores."""

from __future__ import annotations

import html
import json
import math
from typing import TYPE_CHECKING, Any

import ipywidgets as widgets

from . import _render

if TYPE_CHECKING:  # pragma: no cover - typing only
    import pandas as pd

__all__ = ["CompareView"]

_CSS = """
<style>
.llamakit-compare-card { border: 1px solid #ddd; border-radius: 6px; padding: 4px 10px;
  margin: 4px; flex: 1 1 0; min-width: 220px; }
.llamakit-compare-card .llamakit-error { color: #b00020; }
</style>
"""


class CompareView(widgets.VBox):
    """Pick an item (and a repeat) and see every variant's response with its scores.

    ``only_disagreements`` narrows the item list to items where the variants' scores differ
    (or, for a run without scorers, where their responses differ). State for code and tests:
    ``items`` (the items offered), ``item``/``repeat`` (shown), ``shown`` (variant -> dict of
    response, error, scores, reasons, credits, latency_s), and :meth:`show`. Each score shows
    its reason beside it (the judge's reply; why a scorer gave no score), folded.
    """

    def __init__(self, run: Any) -> None:
        self.run = run
        df = getattr(run, "results", run)
        self.results: pd.DataFrame = df
        self.variants: list[str] = [str(v) for v in dict.fromkeys(df["variant"])] if len(df) else []
        self.score_columns = [c for c in df.columns if str(c).startswith("score_")]
        self.all_items: list[Any] = list(dict.fromkeys(df["item_id"])) if len(df) else []
        self.disagreements: list[Any] = _disagreeing_items(df, self.score_columns)
        self.shown: dict[str, dict[str, Any]] = {}
        self.item: Any = None
        self.repeat: int = 0

        self.item_picker = _render.classed(
            widgets.Dropdown(description="Item"), "llamakit-compare-item"
        )
        repeats = sorted({int(r) for r in df["repeat"]}) if len(df) else [0]
        self.repeat_picker = _render.classed(
            widgets.Dropdown(options=repeats, value=repeats[0], description="Repeat"),
            "llamakit-compare-repeat",
        )
        self.repeat_picker.layout.display = None if len(repeats) > 1 else "none"
        # An experiment with several parameter sets has one cell per set: pick which to show.
        param_sets = list(dict.fromkeys(df["params"])) if "params" in df and len(df) else [None]
        self.params_picker = _render.classed(
            widgets.Dropdown(options=param_sets, value=param_sets[0], description="Params"),
            "llamakit-compare-params",
        )
        self.params_picker.layout.display = None if len(param_sets) > 1 else "none"
        self.disagree_toggle = _render.classed(
            widgets.Checkbox(
                value=False,
                description="only items where variants disagree",
                style={"description_width": "initial"},
            ),
            "llamakit-compare-disagree",
        )
        self.count_label = _render.classed(widgets.HTML(), "llamakit-compare-count")
        self.cards = _render.classed(widgets.HBox(), "llamakit-compare-cards")
        self.cards.layout.flex_flow = "row wrap"
        super().__init__(
            children=[
                widgets.HTML(_CSS),
                widgets.HBox(
                    [
                        self.item_picker,
                        self.repeat_picker,
                        self.params_picker,
                        self.disagree_toggle,
                    ]
                ),
                self.count_label,
                self.cards,
            ]
        )
        self.add_class("llamakit-compare")
        self._set_options()
        self.item_picker.observe(self._on_pick, names="value")
        self.repeat_picker.observe(self._on_pick, names="value")
        self.params_picker.observe(self._on_pick, names="value")
        self.disagree_toggle.observe(lambda _c: self._set_options(), names="value")

    @property
    def items(self) -> list[Any]:
        """The items the picker offers now (all, or only those where variants disagree)."""
        return [value for _label, value in self.item_picker.options]

    @property
    def only_disagreements(self) -> bool:
        return bool(self.disagree_toggle.value)

    @only_disagreements.setter
    def only_disagreements(self, value: bool) -> None:
        self.disagree_toggle.value = bool(value)

    def show(self, item_id: Any, repeat: int | None = None) -> None:
        """Show ``item_id`` (and ``repeat``, default the one selected) in the cards."""
        if repeat is not None:
            self.repeat_picker.value = int(repeat)
        if item_id not in self.items:
            self.disagree_toggle.value = False
        self.item_picker.value = item_id
        self._render()

    def __repr__(self) -> str:
        return (
            f"CompareView(variants={self.variants}, items={len(self.all_items)}, "
            f"disagreements={len(self.disagreements)}, showing={self.item!r})"
        )

    # --- internals -------------------------------------------------------------------------------

    def _set_options(self) -> None:
        pool = self.disagreements if self.only_disagreements else self.all_items
        current = self.item_picker.value
        self.item_picker.options = [(str(i), i) for i in pool]
        if pool:
            self.item_picker.value = current if current in pool else pool[0]
        total, disagree = len(self.all_items), len(self.disagreements)
        self.count_label.value = (
            f"{disagree} items where variants disagree (of {total})"
            if self.only_disagreements
            else f"{total} items \u00b7 {disagree} where variants disagree"
        )
        self._render()

    def _on_pick(self, _change: Any) -> None:
        self._render()

    def _render(self) -> None:
        self.item = self.item_picker.value
        self.repeat = int(self.repeat_picker.value)
        df = self.results
        if self.item is None or len(df) == 0:
            self.shown = {}
            self.cards.children = [widgets.HTML("<i>No items to show.</i>")]
            return
        rows = df[(df["item_id"] == self.item) & (df["repeat"] == self.repeat)]
        shown: dict[str, dict[str, Any]] = {}
        for variant in self.variants:
            match = rows[rows["variant"].astype(str) == variant]
            if self.params_picker.value is not None and len(match):
                # A variant with params of its own never has the picked setting exactly: show
                # its setting closest to it (the same temperature, say).
                setting = _closest(self.params_picker.value, list(dict.fromkeys(match["params"])))
                match = match[match["params"] == setting]
            if len(match):
                shown[variant] = _cell(match.iloc[0], self.score_columns)
        self.shown = shown
        self.cards.children = [_card(v, cell) for v, cell in shown.items()]


def _cell(row: Any, score_columns: list[str]) -> dict[str, Any]:
    def clean(value: Any) -> Any:
        if hasattr(value, "item"):  # numpy scalar -> Python, so state compares and prints plainly
            value = value.item()
        return None if value is None or (isinstance(value, float) and math.isnan(value)) else value

    return {
        "response": clean(row.get("response")),
        "error": clean(row.get("error")),
        "error_message": clean(row.get("error_message")),
        "scores": {c.removeprefix("score_"): clean(row.get(c)) for c in score_columns},
        # Why each score is what it is: a judge's reply, or why a scorer gave no score.
        "reasons": {
            c.removeprefix("score_"): clean(row.get(f"{c.removeprefix('score_')}_reason"))
            for c in score_columns
        },
        "credits": clean(row.get("credits")),
        "latency_s": clean(row.get("latency_s")),
        "expected": clean(row.get("expected")),
    }


def _card(variant: str, cell: dict[str, Any]) -> widgets.HTML:
    if cell["error"]:
        msg = f"{cell['error']}: {cell['error_message'] or ''}"
        body = f"<div class='llamakit-error'>\u26a0 {_render.text_html(msg)}</div>"
    else:
        body = _render.markdown_html(cell["response"] or "")
    scores = " \u00b7 ".join(
        _score_html(name, v, cell["reasons"].get(name)) for name, v in cell["scores"].items()
    )
    meta = f"{_render.credits(cell['credits'])} credits \u00b7 {_render.seconds(cell['latency_s'])}"
    expected = (
        f"<div><small>expected: {_render.text_html(str(cell['expected']))}</small></div>"
        if cell["expected"] is not None
        else ""
    )
    card = widgets.HTML(
        f"<h4>{html.escape(variant)}</h4>{body}<hr>"
        f"<div>{scores or '<i>no scorers</i>'}</div>{expected}<div><small>{meta}</small></div>"
    )
    return _render.classed(card, "llamakit-compare-card")


def _closest(picked: str, settings: list[Any]) -> Any:
    """The setting in ``settings`` (params JSON) that agrees with ``picked`` on most params."""
    if picked in settings:
        return picked
    want = _params(picked)
    return max(
        settings, key=lambda s: sum(_params(s).get(k, object()) == v for k, v in want.items())
    )


def _params(value: Any) -> dict[str, Any]:
    try:
        parsed = json.loads(value) if isinstance(value, str) else value
    except ValueError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def _score_html(name: str, value: Any, reason: str | None) -> str:
    score = f"{html.escape(name)} <b>{_render.number(value)}</b>"
    if not reason:
        return score
    # The reason sits beside its score, folded: a judge's reply can be a paragraph.
    return (
        f"<details class='llamakit-compare-reason' style='display:inline-block'>"
        f"<summary>{score}</summary><small>{_render.text_html(reason)}</small></details>"
    )


def _disagreeing_items(df: pd.DataFrame, score_columns: list[str]) -> list[Any]:
    """Items where the variants' mean scores differ; without scorers, where responses differ."""
    if len(df) == 0:
        return []
    out = []
    for item, group in df.groupby("item_id", sort=False):
        if score_columns:
            means = group.groupby("variant")[score_columns].mean()
            differ = any(means[c].round(9).nunique(dropna=False) > 1 for c in score_columns)
        else:
            texts = group["response"].fillna("").astype(str).str.strip().str.lower()
            differ = texts.groupby(group["variant"]).agg(frozenset).nunique() > 1
        if differ:
            out.append(item)
    return out
