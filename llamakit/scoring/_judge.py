"""A model-graded scorer: ask a model to grade a response against a rubric.

The runner sends ``grading_messages`` as a cell of its own (cached, budgeted, costed like any
other call) and turns the reply into a score with ``parse``. Calling the scorer directly does
the same with its own client, for use outside an experiment.
"""

from __future__ import annotations

import json
import numbers
import re
from collections.abc import Mapping
from typing import Any

from ..errors import ValidationError
from ._base import check_name

# Enough for a sentence or two of reasoning before the score line; graders that ramble get cut.
DEFAULT_JUDGE_MAX_TOKENS = 256

_NUM = r"(-?\d+(?:\.\d+)?)"
# "Score: 4/5", "**Score:** 4 out of 5", "final score = 3". The last one wins: reasoning that
# mentions a score comes before the verdict.
_LABELLED = re.compile(
    r"\bscore\b\s*(?:\([^)\n]*\))?[\s:=*_]*(?:(?:is|of)\b[\s:=*_]*)?"
    rf"{_NUM}(?:\s*(?:/|out\s+of)\s*{_NUM})?",
    re.IGNORECASE,
)
_VERDICT = re.compile(r"\b(PASS(?:ED)?|FAIL(?:ED)?)\b")
_WORD_VERDICTS = {
    "pass": 1.0,
    "passed": 1.0,
    "yes": 1.0,
    "correct": 1.0,
    "fail": 0.0,
    "failed": 0.0,
    "no": 0.0,
    "incorrect": 0.0,
}
_FRACTION = re.compile(rf"^{_NUM}\s*(?:/|out\s+of)\s*{_NUM}$", re.IGNORECASE)
_BARE = re.compile(rf"^{_NUM}$")
_JSON_OBJECT = re.compile(r"\{.*\}", re.DOTALL)


class JudgeScorer:
    """Grades a response by asking ``client`` (None: the experiment's client) with a rubric.

    Scores are fractions in [0, 1]: "Score: 4/5" -> 0.8, "PASS" -> 1.0, a bare number or
    ``{"score": n}`` is read on the judge's ``scale`` (n / scale). With ``scale=1`` the judge is
    asked for PASS or FAIL, so its scores are 0/1 and summaries report pass@k for it.
    """

    def __init__(
        self,
        client: Any,
        rubric: str,
        *,
        name: str = "judge",
        scale: int = 5,
        max_tokens: int = DEFAULT_JUDGE_MAX_TOKENS,
        temperature: float = 0.0,
    ) -> None:
        import jinja2

        self.name = check_name(name)
        if not isinstance(rubric, str) or not rubric.strip():
            raise ValidationError("the judge's rubric must be a non-empty string", field="rubric")
        if isinstance(scale, bool) or not isinstance(scale, int) or scale < 1:
            raise ValidationError(f"scale must be a positive integer, got {scale!r}", field="scale")
        if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
            raise ValidationError(
                f"max_tokens must be a positive integer, got {max_tokens!r}", field="max_tokens"
            )
        if isinstance(temperature, bool) or not isinstance(temperature, numbers.Real):
            raise ValidationError(
                f"temperature must be a number, got {temperature!r}", field="temperature"
            )
        env = jinja2.Environment(undefined=jinja2.StrictUndefined, autoescape=False)
        try:
            self._template = env.from_string(rubric)
        except jinja2.TemplateSyntaxError as exc:
            raise ValidationError(
                f"the judge's rubric is not a valid template: {exc}", field="rubric"
            ) from None
        import jinja2.meta

        # The row fields the rubric names, checked against the dataset when the experiment is built.
        fields = jinja2.meta.find_undeclared_variables(env.parse(rubric)) - set(env.globals)
        self.reads = {str(f): "rubric" for f in sorted(fields)}
        self.client = client
        self.rubric = rubric
        self.scale = scale
        self.max_tokens = max_tokens
        self.temperature = float(temperature)

    @property
    def params(self) -> dict[str, Any]:
        """Sampling parameters for the grading call (greedy by default, so grades are repeatable)."""
        return {"max_tokens": self.max_tokens, "temperature": self.temperature}

    def grading_messages(self, text: str, row: Mapping[str, Any]) -> list[dict[str, str]]:
        """The chat messages that ask the judge to grade ``text``; the rubric sees the row's fields."""
        import jinja2

        try:
            rubric = self._template.render(**{str(k): v for k, v in dict(row).items()})
        except jinja2.UndefinedError as exc:
            raise ValidationError(
                f"the judge's rubric uses a missing field: {exc}", field="rubric"
            ) from None
        if self.scale == 1:
            answer = "End your reply with a final line that is exactly PASS or FAIL."
        else:
            answer = (
                f"End your reply with a final line of the form 'Score: N/{self.scale}', "
                f"where N is a whole number from 0 to {self.scale}."
            )
        system = (
            "You are a strict, impartial grader. You judge one response against a rubric. "
            "Be brief. " + answer
        )
        user = f"Rubric:\n{rubric.strip()}\n\nResponse to grade:\n<response>\n{text}\n</response>"
        return [{"role": "system", "content": system}, {"role": "user", "content": user}]

    def parse(self, reply_text: str) -> float:
        """The score in [0, 1] that the judge's reply gives; ValueError if it gives none."""
        text = (reply_text or "").strip()
        value = _from_json(text, self.scale)
        if value is None:
            value = _from_label(text, self.scale)
        if value is None:
            value = _from_verdict(text)
        if value is None:
            value = _from_last_line(text, self.scale)
        if value is None:
            snippet = text if len(text) <= 200 else text[:200] + "..."
            raise ValueError(f"judge {self.name!r} gave no score in its reply: {snippet!r}")
        return value

    def __call__(self, text: str, row: Mapping[str, Any]) -> float:
        if self.client is None:
            raise ValidationError(
                f"judge {self.name!r} has no client of its own; run it in an experiment "
                "or pass judge(client, ...)",
                field="client",
            )
        reply = self.client.chat(self.grading_messages(text, row), **self.params)
        return self.parse(reply.text)

    def __repr__(self) -> str:  # the client stays out: its repr is not ours to vouch for
        return f"JudgeScorer(name={self.name!r}, scale={self.scale}, max_tokens={self.max_tokens})"


def judge(
    client: Any,
    rubric: str,
    *,
    name: str = "judge",
    scale: int = 5,
    max_tokens: int = DEFAULT_JUDGE_MAX_TOKENS,
    temperature: float = 0.0,
) -> JudgeScorer:
    """A model-graded scorer. ``rubric`` is a Jinja2 template over the dataset row
    (e.g. ``"The answer must name {{ expected }}."``); see JudgeScorer for how replies are read."""
    return JudgeScorer(
        client, rubric, name=name, scale=scale, max_tokens=max_tokens, temperature=temperature
    )


def _fraction(numerator: float, denominator: float) -> float:
    if denominator <= 0 or not 0 <= numerator <= denominator:
        raise ValueError(f"judge score {numerator:g}/{denominator:g} is out of range")
    return numerator / denominator


def _on_scale(value: Any, scale: int) -> float | None:
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, numbers.Real):
        return _fraction(float(value), float(scale))
    if isinstance(value, str):
        return _from_last_line(value, scale) if value.strip() else None
    return None


def _from_json(text: str, scale: int) -> float | None:
    found = _JSON_OBJECT.search(text)
    if not found:
        return None
    try:
        document = json.loads(found.group(0))
    except ValueError:
        return None
    if not isinstance(document, dict):
        return None
    for key, value in document.items():
        if str(key).lower() in ("score", "grade", "rating"):
            return _on_scale(value, scale)
    return None


def _from_label(text: str, scale: int) -> float | None:
    matches = list(_LABELLED.finditer(text))
    if not matches:
        return None
    numerator, denominator = matches[-1].groups()
    if denominator is not None:
        return _fraction(float(numerator), float(denominator))
    return _fraction(float(numerator), float(scale))


def _from_verdict(text: str) -> float | None:
    matches = _VERDICT.findall(text)
    if matches:
        return 1.0 if matches[-1].startswith("PASS") else 0.0
    return None


def _from_last_line(text: str, scale: int) -> float | None:
    # A reply whose last line is only a verdict word, "4/5", or a number; Markdown stripped.
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        return None
    last = re.sub(r"[*_`]", "", lines[-1]).strip().rstrip(".!").strip()
    if last.lower() in _WORD_VERDICTS:
        return _WORD_VERDICTS[last.lower()]
    fraction = _FRACTION.match(last)
    if fraction:
        return _fraction(float(fraction.group(1)), float(fraction.group(2)))
    bare = _BARE.match(last)
    if bare:
        return _fraction(float(bare.group(1)), float(scale))
    return None
