"""Token counts for `usage`: Llama 3's tokenizer via `llamakit.tokens` when it works, else an estimate.

`llamakit.tokens` is imported at call time (not at import) so the server keeps working when the
tokenizer package is missing or broken, and picks it up as soon as it is there.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from types import ModuleType
from typing import Any

# Rough stand-in for a BPE tokenizer: words, digit groups of up to 3 (as Llama 3 splits numbers),
# and single punctuation marks, each with its leading whitespace.
_PIECE = re.compile(r"\s*(?:[^\W\d_]+|\d{1,3}|\S)|\s+")


def _tokens_module() -> ModuleType | None:
    try:
        from llamakit import tokens
    except Exception:
        return None
    return tokens


def have_llama3_counts() -> bool:
    """True when `llamakit.tokens` is importable (its counts are Llama 3's, exact or estimated)."""
    return _tokens_module() is not None


def count_text(text: str) -> int:
    mod = _tokens_module()
    if mod is not None:
        try:
            return int(mod.count(text))
        except Exception:
            pass
    return len(_PIECE.findall(text))


def count_messages(messages: Sequence[dict[str, Any]]) -> int:
    mod = _tokens_module()
    if mod is not None:
        try:
            return int(mod.count_messages(list(messages)))
        except Exception:
            pass
    # Llama 3 chat template: <|begin_of_text|>, then per message a 3-token header, the role, "\n\n"
    # and <|eot_id|>; finally the 4-token assistant header the model answers after.
    return 1 + sum(count_text(str(m.get("content", ""))) + 5 for m in messages) + 4


def truncate_to_tokens(text: str, max_tokens: int) -> tuple[str, bool]:
    """The longest prefix of `text` (cut at piece boundaries) of at most `max_tokens` tokens."""
    if count_text(text) <= max_tokens:
        return text, False
    cuts = [m.end() for m in _PIECE.finditer(text)]
    lo, hi = (
        0,
        len(cuts),
    )  # invariant: cuts[:lo] fit; binary search is fine as counts grow with length
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if count_text(text[: cuts[mid - 1]]) <= max_tokens:
            lo = mid
        else:
            hi = mid - 1
    return (text[: cuts[lo - 1]] if lo else ""), True
