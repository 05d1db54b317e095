"""``Run.to_html`` / ``llamakit report``: one self-contained HTML page for one or more runs.

The page holds the runs and their credit spend, each run's summary with 95% CIs and paired
comparisons (each condition against the run's first, on its first scorer), figures (score per
condition with CIs, credits per condition) and every cell side by side per item with its scores
and the scorers' reasons, with a checkbox that keeps only the items where the conditions'
scores disagree. It is rendered in the package's one Jinja sandbox with every value escaped (see
``templating.sandbox.render_package_template``) and needs nothing from a network to display.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

from ..errors import LlamakitError, ValidationError
from ..templating.sandbox import render_package_template
from .report_figures import Interval, credits_figure, scores_figure
from .report_template import TEMPLATE

# A run is duck-typed (id, name, model, source, status, progress, credits_spent, spend_source,
# results, summary()): run.py imports this module, so this one does not import run.py.
Run = Any


def _num(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _text(value: Any) -> str:
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else str(value)


def _label(index: Any) -> str:
    return " / ".join(str(part) for part in index) if isinstance(index, tuple) else str(index)


def _params_label(params: str, several: bool) -> str:
    if not several:
        return ""
    try:
        return " " + ", ".join(f"{k}={v}" for k, v in json.loads(params).items())
    except (ValueError, AttributeError):
        return f" {params}"


def _summary(run: Run, metrics: list[str]) -> tuple[list[str], list[list[str]], Any]:
    summary = run.summary()
    columns = ["condition", "n", "items", "errors", *metrics, "latency p50 (s)", "credits (USD)"]
    rows = []
    for index, row in summary.iterrows():
        cells = [_label(index), _num(row.get("n")), _num(row.get("items")), _num(row.get("errors"))]
        for metric in metrics:
            mean = row.get(f"score_{metric}_mean")
            low, high = row.get(f"score_{metric}_ci_low"), row.get(f"score_{metric}_ci_high")
            ci = f" [{_num(low)}, {_num(high)}]" if _num(low) and _num(high) else ""
            cells.append(_num(mean) + ci)
        cells += [_num(row.get("latency_p50")), _num(row.get("credits"))]
        rows.append(cells)
    return columns, rows, summary


def _comparisons(run: Run, metrics: list[str]) -> list[dict[str, str]]:
    """Each variant against the run's first on its first scorer (skipped when a variant ran
    with several param settings: then the conditions need naming, see ``Run.compare``)."""
    from ..scoring import stats

    if not metrics:
        return []
    results = run.results
    variants = list(dict.fromkeys(results["variant"]))
    out = []
    for other in variants[1:]:
        try:
            c = stats.paired_compare(results, other, variants[0], metrics[0])
        except LlamakitError:
            continue
        out.append(
            {
                "name": f"{c.a} - {c.b} on {metrics[0]}",
                "diff": f"{c.diff:+.3f}",
                "ci": f"[{c.ci_low:+.3f}, {c.ci_high:+.3f}]",
                "p": f"{c.p_value:.3g}",
                "n": str(c.n_items),
                "wlt": f"{c.wins} / {c.losses} / {c.ties}",
            }
        )
    return out


def _intervals(label: str, summary: Any, metric: str) -> list[Interval]:
    out = []
    for index, row in summary.iterrows():
        values = [row.get(f"score_{metric}_{k}") for k in ("mean", "ci_low", "ci_high")]
        mean, low, high = (float(v) if v is not None else math.nan for v in values)
        out.append(Interval(f"{label}{_label(index)}", mean, low, high))
    return out


def _cells(runs: Sequence[Run], metrics: list[str]) -> list[dict[str, Any]]:
    """Items in first-seen order, each with every cell of every run and its disagreements."""
    several_runs = len(runs) > 1
    items: dict[str, dict[str, Any]] = {}
    for run in runs:
        results = run.results
        several_params = results["params"].nunique() > 1
        for row in results.to_dict(orient="records"):
            item = items.setdefault(
                str(row["item_id"]),
                {"id": str(row["item_id"]), "expected": row.get("expected"), "cells": []},
            )
            where = f"{run.name} ({run.id}) · " if several_runs else ""
            params = _params_label(str(row["params"]), several_params)
            scores = [
                {
                    "metric": m,
                    "value": _num(row.get(f"score_{m}")),
                    "reason": _text(row.get(f"{m}_reason")),
                }
                for m in metrics
            ]
            item["cells"].append(
                {
                    "condition": f"{where}{row['variant']}{params} #{row['repeat']}",
                    "reply": _text(row.get("response")),
                    "error": _text(row.get("error_message") or row.get("error")),
                    "prompt": _text(row.get("prompt")),
                    "scores": scores,
                    "credits": _num(row.get("credits")),
                    "latency": _num(row.get("latency_s")),
                }
            )
    for item in items.values():
        item["disagree"] = [
            m
            for i, m in enumerate(metrics)
            if len({c["scores"][i]["value"] for c in item["cells"]} - {""}) > 1
        ]
    return list(items.values())


def _metrics(runs: Sequence[Run]) -> list[str]:
    names: dict[str, None] = {}
    for run in runs:
        for column in run.results.columns:
            if str(column).startswith("score_"):
                names[str(column)[len("score_") :]] = None
    return list(names)


def render_report(runs: Sequence[Run], *, title: str | None = None) -> str:
    """The report's HTML text for ``runs`` (at least one). Raises ValidationError for no runs."""
    from .. import __version__

    if not runs:
        raise ValidationError("a report needs at least one run", field="runs")
    metrics = _metrics(runs)
    views, figures, labels, credits = [], [], [], []
    intervals: dict[str, list[Interval]] = {m: [] for m in metrics}
    for run in runs:
        columns, rows, summary = _summary(run, metrics)
        progress = run.progress
        results = run.results
        judged = results.get("judge_credits", [])

        views.append(
            {
                "id": run.id,
                "name": run.name,
                "model": run.model,
                "source": run.source or "unknown",
                "status": run.status,
                "done": progress.done,
                "total": progress.total,
                "errors": progress.error_count,
                "credits": _num(run.credits_spent),
                "judge_credits": _num(sum((Decimal(str(c)) for c in judged if c), Decimal(0))),
                "spend_source": run.spend_source,
                "summary_columns": columns,
                "summary_rows": rows,
                "comparisons": _comparisons(run, metrics),
            }
        )
        prefix = f"{run.name} · " if len(runs) > 1 else ""
        for metric in metrics:
            intervals[metric] += _intervals(prefix, summary, metric)
        for index, row in summary.iterrows():
            labels.append(f"{prefix}{_label(index)}")
            credits.append(Decimal(str(row.get("credits") or 0)))
    for metric, found in intervals.items():
        if found:
            figures.append({"alt": f"{metric} per condition", "uri": scores_figure(metric, found)})
    if labels:
        figures.append({"alt": "credits per condition", "uri": credits_figure(labels, credits)})
    items = _cells(runs, metrics)
    names = ", ".join(dict.fromkeys(r.name for r in runs))
    return render_package_template(
        TEMPLATE,
        {
            "title": title or names,
            "version": __version__,
            "written_at": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "runs": views,
            "figures": figures,
            "scorers": metrics,
            "items": items,
            "disagree_count": sum(1 for i in items if i["disagree"]),
        },
        where="the HTML report",
    )


def write_report(
    runs: Sequence[Run], path: str | os.PathLike[str], *, title: str | None = None
) -> Path:
    """Write ``render_report(runs)`` to ``path`` (UTF-8) and return the path."""
    target = Path(path).expanduser()
    text = render_report(runs, title=title)
    partial = target.with_name(target.name + ".partial")
    partial.write_text(text, encoding="utf-8")
    os.replace(partial, target)
    return target
