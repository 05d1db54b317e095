"""`llamakit compare RUN_A RUN_B --metric M`: two runs (or two conditions of them) paired on
items, as ``llamakit.compare`` prints it; ``--gate`` fails (exit 1) on a regression, as
``llamakit.check_no_regression``."""

from __future__ import annotations

import argparse
import math
from typing import Any

from .args import existing_store


def _margin(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text!r}")
    return value


def _alpha(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number such as 0.05, got {text!r}") from None
    if not 0 < value < 0.5:
        raise argparse.ArgumentTypeError(f"must be between 0 and 0.5, got {text!r}")
    return value


def condition(text: str) -> Any:
    """``terse`` (a variant or a model slug) or ``model=SLUG,variant=NAME`` -> a condition."""
    if "=" not in text:
        return text
    spec: dict[str, str] = {}
    for part in text.split(","):
        key, sep, value = part.partition("=")
        if not sep or key.strip() not in ("model", "variant") or not value.strip():
            raise argparse.ArgumentTypeError(
                f"a condition is a variant or model name, or model=SLUG,variant=NAME; got {text!r}"
            )
        spec[key.strip()] = value.strip()
    return spec


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "compare",
        help="compare two runs paired on items",
        description=(
            "Compare two runs from the store (or two conditions of one run) on a metric, paired "
            "on the dataset items they share: the difference A - B with its 95%% interval, the "
            "p-value, wins/losses/ties and the credits each side cost per item."
        ),
    )
    parser.add_argument("run_a", metavar="RUN_A", help="run id of side A (see `llamakit runs`)")
    parser.add_argument("run_b", metavar="RUN_B", help="run id of side B (may equal RUN_A)")
    parser.add_argument("--metric", default=None, help="scorer name (default: the first shared)")
    parser.add_argument(
        "--a", dest="a", type=condition, default=None, metavar="COND",
        help="condition of RUN_A: a variant or model, or model=SLUG,variant=NAME",
    )  # fmt: skip
    parser.add_argument(
        "--b", dest="b", type=condition, default=None, metavar="COND",
        help="condition of RUN_B, as --a",
    )  # fmt: skip
    parser.add_argument(
        "--margin", type=_margin, default=0.0,
        help="non-inferiority margin in the metric's units (default 0)",
    )  # fmt: skip
    parser.add_argument(
        "--gate", action="store_true",
        help="exit 1 when RUN_B is worse than RUN_A beyond --margin (a regression gate for CI)",
    )  # fmt: skip
    parser.add_argument("--alpha", type=_alpha, default=0.05, help="the gate's alpha (0.05)")
    parser.add_argument(
        "--store", default=None, type=existing_store, metavar="PATH", help="SQLite store path"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..experiment.compare import check_no_regression, compare
    from ..experiment.run import Run
    from ..store import Store

    store = Store(args.store or None, create=False)
    runs = [Run(run_id, store) for run_id in (args.run_a, args.run_b)]
    if args.gate:
        found = check_no_regression(
            runs[0], runs[1], args.metric, args.margin, alpha=args.alpha, a=args.a, b=args.b
        )
        print(found)
        print(f"no regression on {found.metric} beyond margin {args.margin:g}")
        return 0
    print(compare(runs[0], runs[1], args.metric, a=args.a, b=args.b, margin=args.margin))
    return 0
