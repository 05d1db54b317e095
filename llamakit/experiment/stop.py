"""Stop rules for sequential runs: ``exp.run(client, stop=lk.stop.compare("a", "b", "exact"))``.

- ``compare(a, b, metric, alpha=0.05, margin=0.0)``: is the paired mean difference a - b above
  ``margin``, below ``-margin``, or (with a margin > 0) within it? Stops when the
  (1 - alpha) confidence sequence answers.
- ``best(metric, alpha=0.05)``: which variant is best. Every pair of variants gets a confidence
  sequence at ``alpha / pairs`` (Bonferroni); a variant confidently worse than another still
  sampled stops being sampled (successive elimination); the run stops when one is left.

The statistics are ``llamakit.scoring.sequential`` (betting confidence sequences, Waudby-Smith
and Ramdas 2023). Scores must be bounded: the built-in scorers and judges are in [0, 1]; a scorer
of your own needs ``bounds=(lo, hi)`` here (or ``as_scorer(fn, bounds=...)``).

In spec files: ``stop: {compare: {a: terse, b: chatty, metric: exact, alpha: 0.05}}`` or
``stop: {best: {metric: exact}}``; on the CLI ``--stop compare:terse,chatty,exact`` or
``--stop best:exact``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import ValidationError
from ..scoring.sequential import check_alpha, check_bounds

__all__ = ["Best", "Compare", "StopRule", "best", "compare", "parse_stop"]


def _check_margin(margin: Any) -> float:
    if isinstance(margin, bool) or not isinstance(margin, (int, float)) or not margin >= 0:
        raise ValidationError(
            f"margin must be a number >= 0 in the metric's units, got {margin!r}", field="margin"
        )
    return float(margin)


def _check_name(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise ValidationError(f"{what} must be a non-empty name, got {value!r}", field=what)
    return value


def _check_seed(seed: Any) -> int | None:
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise ValidationError(f"seed must be an integer or None, got {seed!r}", field="seed")
    return seed


def _optional_bounds(bounds: Any) -> tuple[float, float] | None:
    return None if bounds is None else check_bounds(bounds)


@dataclass(frozen=True)
class Compare:
    """Stop rule: compare two variants ``a`` and ``b`` on ``metric`` (see the module docstring)."""

    a: str
    b: str
    metric: str
    alpha: float = 0.05
    margin: float = 0.0
    bounds: tuple[float, float] | None = None
    seed: int | None = None

    def conditions(self, variants: Sequence[str]) -> list[str]:
        return [self.a, self.b]

    def key(self) -> dict[str, Any]:
        key = {
            "rule": "compare",
            "a": self.a,
            "b": self.b,
            "metric": self.metric,
            "alpha": self.alpha,
            "margin": self.margin,
        }
        return key if self.seed is None else {**key, "seed": self.seed}


@dataclass(frozen=True)
class Best:
    """Stop rule: find the best variant on ``metric`` by successive elimination."""

    metric: str
    alpha: float = 0.05
    bounds: tuple[float, float] | None = None
    seed: int | None = None

    def conditions(self, variants: Sequence[str]) -> list[str]:
        return list(variants)

    def key(self) -> dict[str, Any]:
        key = {"rule": "best", "metric": self.metric, "alpha": self.alpha}
        return key if self.seed is None else {**key, "seed": self.seed}


StopRule = Compare | Best


def compare(
    a: str,
    b: str,
    metric: str,
    *,
    alpha: float = 0.05,
    margin: float = 0.0,
    bounds: tuple[float, float] | None = None,
    seed: int | None = None,
) -> Compare:
    """A rule that stops when the paired mean difference ``a - b`` of ``metric`` is confidently
    above ``margin``, below ``-margin``, or within ``(-margin, margin)``. ``alpha`` in (0, 1) is
    the chance of a wrong answer, whenever the run stops. ``seed`` fixes the order the items are
    visited in (default: drawn from the run's id). Raises ValidationError for bad values (the
    variants and the metric are checked against the experiment when the run starts)."""
    a, b = _check_name(a, "a"), _check_name(b, "b")
    if a == b:
        raise ValidationError(f"compare needs two different variants, got {a!r} twice", field="b")
    return Compare(
        a,
        b,
        _check_name(metric, "metric"),
        check_alpha(alpha),
        _check_margin(margin),
        _optional_bounds(bounds),
        _check_seed(seed),
    )


def best(
    metric: str,
    *,
    alpha: float = 0.05,
    bounds: tuple[float, float] | None = None,
    seed: int | None = None,
) -> Best:
    """A rule that drops variants confidently worse than another on ``metric`` and stops when
    one is left; ``alpha`` in (0, 1) bounds the chance that the best one is dropped. ``seed``:
    as in ``compare``."""
    return Best(
        _check_name(metric, "metric"),
        check_alpha(alpha),
        _optional_bounds(bounds),
        _check_seed(seed),
    )


def parse_stop(value: Any) -> StopRule | None:
    """A stop rule from a spec file's ``stop:`` value or the CLI's ``--stop`` text.

    Accepts a rule, None, ``{"compare": {"a": .., "b": .., "metric": .., "alpha": ..,
    "margin": ..}}``, ``{"best": {"metric": .., "alpha": ..}}``, or the text
    ``compare:A,B,METRIC[,ALPHA[,MARGIN]]`` / ``best:METRIC[,ALPHA]``. ValidationError otherwise.
    """
    if value is None or isinstance(value, (Compare, Best)):
        return value
    if isinstance(value, str):
        kind, _, rest = value.partition(":")
        parts = [p.strip() for p in rest.split(",")] if rest else []
        try:
            numbers = [float(p) for p in parts[3 if kind == "compare" else 1 :]]
        except ValueError:
            raise ValidationError(
                f"stop {value!r}: alpha and margin must be numbers", field="stop"
            ) from None
        alpha = numbers[0] if numbers else 0.05
        if kind == "compare" and 3 <= len(parts) <= 5:
            margin = numbers[1] if len(numbers) > 1 else 0.0
            return compare(parts[0], parts[1], parts[2], alpha=alpha, margin=margin)
        if kind == "best" and 1 <= len(parts) <= 2:
            return best(parts[0], alpha=alpha)
        raise ValidationError(
            f"stop {value!r} is not a stop rule; write compare:A,B,METRIC[,ALPHA[,MARGIN]] or "
            "best:METRIC[,ALPHA]",
            field="stop",
        )
    if isinstance(value, Mapping) and len(value) == 1:
        ((kind, args),) = value.items()
        if isinstance(args, Mapping):
            try:
                if kind == "compare":
                    return compare(**dict(args))
                if kind == "best":
                    return best(**dict(args))
            except TypeError as exc:
                raise ValidationError(f"stop {kind}: {exc}", field="stop") from None
    raise ValidationError(
        f"stop must be {{compare: {{a, b, metric, alpha, margin}}}} or {{best: {{metric, alpha}}}}, "
        f"got {value!r}",
        field="stop",
    )
