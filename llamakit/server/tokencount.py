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


def truncate_to_tokens(text: str, max_tokens: int) -> tuple[str, int, bool]:
    """The first `max_tokens` tokens of `text`, from one tokenization: (head, its tokens, cut?).

    As a model stopped by `max_tokens`: `head` is a prefix of `text` that may end mid-word, and
    its count is `max_tokens` when cut (see `llamakit.tokens.truncate`). The fallback estimate
    cuts at its own pieces.
    """
    mod = _tokens_module()
    if mod is not None:
        try:
            head, tokens, cut = mod.truncate(text, max_tokens)
            return str(head), int(tokens), bool(cut)
        except Exception:
            pass
    used = end = 0
    for match in _PIECE.finditer(text):
        if used + 1 > max_tokens:
            return text[:end], used, True
        used, end = used + 1, match.end()
    return text, used, False
