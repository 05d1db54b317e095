"""`tokens.truncate`: the first N tokens of a text, from one tokenization, as a model cuts."""

from __future__ import annotations

from typing import Any

import pytest

from llamakit import tokens
from llamakit.errors import ValidationError

TEXTS = [
    "Here is a concise answer about the sea. Start from a concrete example, then generalise.",
    "Numbers 1234567 and 3.14159 split in groups; don't, we'll, it's.",
    "déjà vu — naïve façade, Straßenbahn, 東京は大きい都市です, Привет мир",
    "emoji 🙂🙂🧪 in a row, then text\n\nnew paragraph\twith tabs   and   spaces",
    "x",
    "",
    "supercalifragilisticexpialidocious antidisestablishmentarianism " * 40,
]


@pytest.mark.parametrize("text", TEXTS, ids=range(len(TEXTS)))
def test_every_budget_gives_a_prefix_within_budget(text: str) -> None:
    total = tokens.count(text)
    for n in sorted({0, 1, 2, 3, 5, 8, total - 1, total, total + 1, total + 50} - {-1}):
        head, used, cut = tokens.truncate(text, n)
        assert text.startswith(head)
        assert cut == (n < total)
        if cut:
            assert used == n
            assert tokens.count(head) <= n
            assert len(head) < len(text)
        else:
            assert (head, used) == (text, total)


def test_one_encode_however_long_the_text(monkeypatch: pytest.MonkeyPatch) -> None:
    if not tokens.is_exact():
        pytest.skip("needs the Llama 3 tokenizer")
    real = tokens._tokenizer
    calls: list[int] = []

    class Counting:
        def encode(self, text: str) -> Any:
            calls.append(len(text))
            return real.encode(text)  # type: ignore[union-attr]

        def __getattr__(self, name: str) -> Any:
            return getattr(real, name)

    monkeypatch.setattr(tokens, "_tokenizer", Counting())
    long = "The quick brown fox jumps over the lazy dog. " * 2000
    head, used, cut = tokens.truncate(long, 4096)
    assert (used, cut) == (4096, True)
    assert calls == [len(long)]


def test_the_cut_matches_the_model_s_first_tokens() -> None:
    if not tokens.is_exact():
        pytest.skip("needs the Llama 3 tokenizer")
    text = TEXTS[0]
    ids = tokens._tokenizer.encode(text)  # type: ignore[union-attr]
    for n in (1, 4, 9):
        head, _, _ = tokens.truncate(text, n)
        decoded = tokens._tokenizer.decode(ids[:n])  # type: ignore[union-attr]
        assert head == decoded


def test_without_the_tokenizer_the_estimate_s_pieces_are_cut(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(tokens, "_get_tokenizer", lambda: None)
    for text in TEXTS:
        total = tokens.estimate(text)
        for n in range(0, min(total, 40) + 2):
            head, used, cut = tokens.truncate(text, n)
            assert text.startswith(head)
            assert used == tokens.estimate(head) <= n
            assert cut == (n < total)


@pytest.mark.parametrize("bad", [-1, 1.5, "3", True, None])
def test_a_bad_budget_is_a_clear_error(bad: Any) -> None:
    with pytest.raises(ValidationError, match="max_tokens"):
        tokens.truncate("some text", bad)


def test_text_must_be_a_string() -> None:
    with pytest.raises(ValidationError, match="text must be a string"):
        tokens.truncate(b"bytes", 3)  # type: ignore[arg-type]
