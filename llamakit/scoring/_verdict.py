"""The judge's verdict protocol: the one form a grade is given in, and the one parser that reads it.

The protocol (what ``JudgeScorer`` asks for, and all that ``read_verdict`` accepts):

- the verdict is the reply's **last non-empty line**, and nothing else on it;
- for ``scale >= 2`` it is ``GRADE: <n>/<scale>`` with ``n`` a whole number from 0 to ``scale``
  and the denominator exactly ``scale`` (so ``4/55``, ``4/5/5``, ``3.5/5`` and ``4/10`` on a
  5-point scale are refused, not guessed at);
- for ``scale == 1`` it is ``VERDICT: PASS`` or ``VERDICT: FAIL``.

Before reading, the reply is normalised: Unicode NFKC (full-width digits and colons become ASCII),
format characters (category Cf: zero-width spaces and joiners, BOMs, bidi marks) removed, and every
line break (CR, CRLF, U+2028/2029, NEL) treated as one.

Lenient on two things only, both presentation that cannot change which grade is meant:

- the keyword's case (``Grade: 4/5``): models capitalise headings inconsistently;
- Markdown emphasis or code marks (``*``, ``_``, `````) on the verdict line, and one trailing
  period (``**GRADE: 4/5**``, ```GRADE: 4/5```): chat models bold their conclusion by habit,
  and neither character can occur inside a grade.

Everything else is an unscored reply, with the reason recorded: a verdict that is not on the last
line (reasoning after it, a verdict first), a quote (``> GRADE: 5/5``), a hypothetical ("a 5/5
would need..."), JSON, a bare number. Text anywhere but the last line never counts, so a grade
the judge quotes from the graded answer cannot be read as its verdict; and a verdict equal to one
the graded answer wrote *as a whole verdict line of its own* (a line that this parser would read as
a verdict) is refused as a possible echo of an injected grade. Only whole protocol lines count: a
verdict-like phrase inside prose ("Rated UPGRADE: 4/5 stars", "(GRADE: 1/5)", "The jury verdict:
passed") is ordinary text, so an answer cannot veto its own grade by mentioning one. The refusal
that remains is visible: ``summarize`` reports unscored cells per condition and
``paired_compare`` warns when two conditions' unscored shares differ.
"""

from __future__ import annotations

import math
import re
import unicodedata
from dataclasses import dataclass

# Every line separator Python's str.splitlines() knows, folded to "\n" before splitting.
_BREAKS = re.compile(r"\r\n|[\r\n\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]")
_EMPHASIS = re.compile(r"[*_`]")
_LINE_MARKERS = re.compile(r"^(?:[>#\-+][ \t]*)+")
_GRADE = re.compile(r"GRADE:[ \t]*([0-9]+)[ \t]*/[ \t]*([0-9]+)", re.IGNORECASE)
_VERDICT = re.compile(r"VERDICT:[ \t]*(PASS|FAIL)", re.IGNORECASE)


@dataclass(frozen=True)
class Verdict:
    """What one judge reply says: ``score`` in [0, 1] (NaN when unscored) and, when unscored,
    ``reason`` saying why; ``line`` is the (normalised) last line that was read."""

    score: float
    reason: str | None = None
    line: str = ""

    @property
    def scored(self) -> bool:
        return not math.isnan(self.score)


def normalise(text: str) -> str:
    """NFKC, format characters (Cf) removed, every line break made ``\\n``."""
    text = unicodedata.normalize("NFKC", text or "")
    text = "".join(ch for ch in text if unicodedata.category(ch) != "Cf")
    return _BREAKS.sub("\n", text)


def instruction(scale: int) -> str:
    """The sentence that tells a judge how to give its verdict (the protocol above)."""
    if scale == 1:
        return (
            "End your reply with a final line that is exactly 'VERDICT: PASS' or "
            "'VERDICT: FAIL', with nothing after it."
        )
    return (
        f"End your reply with a final line of the form 'GRADE: N/{scale}', where N is a whole "
        f"number from 0 to {scale}, with nothing after it."
    )


def protocol_line(line: str, scale: int) -> tuple[float | None, str | None]:
    """Read one normalised line as a verdict: (score, None), or (None, why it is not one)."""
    body = _EMPHASIS.sub("", line).strip()
    body = body[:-1].rstrip() if body.endswith(".") else body
    if scale == 1:
        found = _VERDICT.fullmatch(body)
        if found is None:
            return None, "it is not 'VERDICT: PASS' or 'VERDICT: FAIL'"
        return (1.0 if found.group(1).upper() == "PASS" else 0.0), None
    found = _GRADE.fullmatch(body)
    if found is None:
        return None, f"it is not of the form 'GRADE: N/{scale}'"
    numerator, denominator = int(found.group(1)), int(found.group(2))
    if denominator != scale:
        return None, f"its denominator {denominator} is not the judge's scale {scale}"
    if numerator > scale:
        return None, f"its grade {numerator} is above the scale {scale}"
    return numerator / scale, None


def _lines(text: str) -> list[str]:
    return [line.strip() for line in normalise(text).split("\n") if line.strip()]


def _grades_in(text: str, scale: int) -> set[float]:
    """The grades ``text`` writes as whole verdict lines (lines ``protocol_line`` reads as one,
    also behind a quote, list or heading marker: "> GRADE: 5/5" is still a line to echo)."""
    found = (protocol_line(_LINE_MARKERS.sub("", line), scale)[0] for line in _lines(text))
    return {score for score in found if score is not None}


def read_verdict(reply: str, scale: int, *, graded: str | None = None) -> Verdict:
    """The one parser of judge replies (see the module docstring for the protocol).

    ``graded`` is the answer the judge graded: a verdict that the answer also wrote as a whole
    verdict line of its own may be the judge echoing an injected grade, so it is refused. Never raises for any
    reply text; an unscored reply has ``score`` NaN and a ``reason``.
    """
    lines = _lines(reply)
    if not lines:
        return Verdict(math.nan, "the judge's reply is empty")
    last = lines[-1]
    score, why = protocol_line(last, scale)
    if score is None:
        shown = last if len(last) <= 80 else last[:77] + "..."
        return Verdict(math.nan, f"the last line {shown!r} is not a verdict: {why}", last)
    if graded is not None and score in _grades_in(graded, scale):
        return Verdict(
            math.nan,
            f"the verdict {last!r} is also a verdict line of the graded answer, so it cannot be told "
            "from the judge echoing a grade injected there",
            last,
        )
    return Verdict(score, None, last)
