"""Llama 3's byte-level BPE, run by ``tiktoken`` on the vocabulary of Meta's ``tokenizer.json``.

Meta tokenizes Llama 3 with ``tiktoken`` (its reference ``tokenizer.model`` is a tiktoken rank
file); the ``tokenizer.json`` we ship holds the same 128,000 ranks as token ids, written in GPT-2's
byte-to-character alphabet. Loading converts them back to bytes and hands them, with the split
pattern and the special tokens from the same file, to ``tiktoken.Encoding``.

Why not the ``tokenizers`` library that reads the file directly: that file sets
``ignore_merges: false``, so ``tokenizers`` runs merges even on a piece that is a whole vocabulary
entry and splits ~0.5% of the vocabulary (588 entries, e.g. " Việt" becomes 3 tokens instead of
id 101798) where Meta's tokenizer, and Hugging Face's own later Llama 3 files
(``ignore_merges: true``, tokenizers PR #1493), give one. And tiktoken is faster: ~7 us for a
short prompt against ~28 us, 86 us for 3,600 characters against 680 us (measured here).

Text that spells a special token (``<|eot_id|>``) counts as that token, as the model's server
tokenizes a rendered chat template; everything between special tokens is encoded on its own.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import tiktoken

# Ids that identify the Llama 3 vocabulary, checked so a wrong file never passes as exact.
_EXPECTED_IDS = {"<|begin_of_text|>": 128000, "<|start_header_id|>": 128006, "<|eot_id|>": 128009}
_RANKS = 128_000
# Every Llama 3 special token has this shape; a cheap scan finds the candidates.
_SPECIAL_SHAPE = re.compile(r"<\|[A-Za-z0-9_]+\|>")
# tiktoken needs valid UTF-8; one U+FFFD per lone surrogate keeps character offsets.
_SURROGATE = re.compile("[\ud800-\udfff]")
# tiktoken's regex engine overflows its stack on a run of ~1,000,000 whitespace characters (a
# Rust panic, which Python sees as a BaseException; openai/tiktoken#15, #245). Meta's reference
# tokenizer (llama3 tokenizer.py) encodes text in slices of at most 400,000 characters, each cut
# so that no run of whitespace or of non-whitespace is longer than 25,000; we cut the same way.
_MAX_ENCODE_CHARS = 400_000
_MAX_RUN_CHARS = 25_000
_LONG_RUN = re.compile(rf"\s{{{_MAX_RUN_CHARS + 1},}}|\S{{{_MAX_RUN_CHARS + 1},}}")
# Known encodings, checked at load so a file with the right shape but other ids (a shuffled
# vocabulary) never passes as exact.
_KNOWN = {"tell me a joke on cats": [73457, 757, 264, 22380, 389, 19987], " Việt": [101798]}


class NotLlama3(ValueError):
    """The file loads but is not the Llama 3 vocabulary."""


class EncodeError(Exception):
    """tiktoken failed on a text (its Rust panics reach Python as a BaseException)."""


def _gpt2_alphabet() -> dict[str, int]:
    """GPT-2's printable stand-in character for each byte, inverted: character -> byte."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1)]
    printable += range(ord("®"), ord("ÿ") + 1)
    chars = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in chars:
            chars[b] = chr(256 + extra)
            extra += 1
    return {c: b for b, c in chars.items()}


class Llama3BPE:
    """Encode text to Llama 3 token ids; built by ``load``. Thread-safe (tiktoken is)."""

    def __init__(
        self, encoding: tiktoken.Encoding, special: Mapping[str, int], pieces: list[bytes]
    ) -> None:
        self._encoding = encoding
        self._encode = encoding.encode_ordinary
        self._special = dict(special)
        self._pieces = pieces  # token id -> its bytes, for cutting text after N tokens

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text``, special tokens included where the text spells them.

        Raises ``EncodeError`` if tiktoken fails on it."""
        text = _SURROGATE.sub("\ufffd", text)
        if "<|" not in text:
            return self._ordinary(text)
        ids: list[int] = []
        start = 0
        for match in _SPECIAL_SHAPE.finditer(text):
            special = self._special.get(match.group())
            if special is None:
                continue
            if match.start() > start:
                ids += self._ordinary(text[start : match.start()])
            ids.append(special)
            start = match.end()
        if start < len(text):
            ids += self._ordinary(text[start:])
        return ids

    def _ordinary(self, text: str) -> list[int]:
        try:
            if len(text) <= _MAX_RUN_CHARS:
                return self._encode(text)
            ids: list[int] = []
            for start in range(0, len(text), _MAX_ENCODE_CHARS):
                for piece in _slices(text[start : start + _MAX_ENCODE_CHARS]):
                    ids += self._encode(piece)
            return ids
        except BaseException as exc:
            # pyo3's PanicException derives from BaseException; let the rest (Ctrl-C) through.
            if isinstance(exc, Exception) or type(exc).__name__ == "PanicException":
                raise EncodeError(
                    f"tiktoken failed on a text of {len(text)} characters ({type(exc).__name__})"
                ) from None
            raise

    def prefix(self, text: str, ids: list[int], n: int) -> str:
        """The part of ``text`` that its first ``n`` token ids (``ids = encode(text)``) cover.

        A character whose bytes the cut splits is left out (a model would show a broken byte).
        """
        size = sum(len(self._pieces[i]) for i in ids[:n])
        clean = _SURROGATE.sub("\ufffd", text)
        head = clean.encode("utf-8")[:size].decode("utf-8", "ignore")
        return text[: len(head)]

    def decode(self, ids: list[int]) -> str:
        """The text of ``ids`` (invalid UTF-8 shown as U+FFFD)."""
        return b"".join(self._pieces[i] for i in ids).decode("utf-8", "replace")


def _slices(text: str) -> list[str]:
    """``text`` cut inside each run of whitespace or non-whitespace longer than 25,000 characters,
    every 25,000 characters of the run (where Meta's ``_split_whitespaces_or_nonwhitespaces``
    cuts)."""
    cuts = [
        cut
        for run in _LONG_RUN.finditer(text)
        for cut in range(run.start() + _MAX_RUN_CHARS, run.end(), _MAX_RUN_CHARS)
    ]
    return [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True)]


def load(path: Path) -> Llama3BPE:
    """Read ``tokenizer.json`` at ``path``.

    Raises ``ImportError`` without tiktoken, ``NotLlama3`` for another vocabulary and
    ``OSError`` / ``ValueError`` / ``KeyError`` for a file that cannot be read.
    """
    import tiktoken

    spec: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    model = spec.get("model") or {}
    special = {t["content"]: int(t["id"]) for t in spec.get("added_tokens") or []}
    vocab = model.get("vocab") or {}
    if (
        model.get("type") != "BPE"
        or len(vocab) != _RANKS
        or any(special.get(tok) != i for tok, i in _EXPECTED_IDS.items())
    ):
        raise NotLlama3(f"{path} is not the Llama 3 vocabulary")
    alphabet = _gpt2_alphabet()
    ranks = {bytes(alphabet[c] for c in tok): int(i) for tok, i in vocab.items()}
    if sorted(ranks.values()) != list(range(_RANKS)):
        raise NotLlama3(f"{path} is not the Llama 3 vocabulary (its ids are not 0..{_RANKS - 1})")
    pattern = _split_pattern(spec)
    if pattern is None:
        raise NotLlama3(f"{path} is not the Llama 3 vocabulary (no split pattern)")
    encoding = tiktoken.Encoding(
        "llama3", pat_str=pattern, mergeable_ranks=ranks, special_tokens=special
    )
    pieces = [b""] * (max(special.values()) + 1)
    for piece, i in ranks.items():
        pieces[i] = piece
    for token, i in special.items():
        pieces[i] = token.encode("utf-8")
    bpe = Llama3BPE(encoding, special, pieces)
    if any(bpe.encode(text) != ids for text, ids in _KNOWN.items()):
        raise NotLlama3(f"{path} is not the Llama 3 vocabulary (known texts encode differently)")
    return bpe


def _split_pattern(spec: dict[str, Any]) -> str | None:
    """The pre-tokenizer's split regex (Llama 3 has one ``Split`` step, then ``ByteLevel``)."""
    pre = spec.get("pre_tokenizer") or {}
    for step in pre.get("pretokenizers") or [pre]:
        if step.get("type") == "Split":
            return str(step["pattern"]["Regex"])
    return None
