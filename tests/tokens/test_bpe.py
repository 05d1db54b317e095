"""The tiktoken-run Llama 3 BPE: whole vocabulary entries, special tokens, surrogates, cuts."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llamakit import tokens
from llamakit.tokens.bpe import Llama3BPE

SPECIALS = [
    "<|begin_of_text|>",
    "<|eot_id|>",
    "<|start_header_id|>",
    "<|reserved_special_token_5|>",
]


@pytest.fixture(scope="module")
def bpe() -> Llama3BPE:
    assert tokens.is_exact(), f"Llama 3 tokenizer not found ({tokens.tokenizer_path()})"
    assert tokens._tokenizer is not None
    return tokens._tokenizer


@pytest.mark.parametrize(
    ("text", "ids"),
    [
        # Whole vocabulary entries that merges alone never reach: Meta's tokenizer gives one id
        # (the `tokenizers` library on this file, which lacks ignore_merges, gave 3).
        (" Việt", [101798]),
        (" việc", [100769]),
        (" nhiều", [100937]),
        ("ektedir", [101673]),
    ],
)
def test_a_whole_vocabulary_entry_is_one_token(bpe: Llama3BPE, text: str, ids: list[int]) -> None:
    assert bpe.encode(text) == ids
    assert tokens.count(text) == 1


def test_text_that_spells_a_special_token_is_that_token(bpe: Llama3BPE) -> None:
    assert bpe.encode("<|eot_id|>") == [128009]
    assert bpe.encode("a<|eot_id|>b") == [64, 128009, 65]
    assert bpe.encode("<|<|eot_id|>") == bpe.encode("<|") + [128009]
    # A look-alike that is not in the vocabulary's specials is ordinary text.
    assert 128009 not in bpe.encode("<|eot_idx|>") and len(bpe.encode("<|not_a_token|>")) > 1


_text = st.lists(
    st.one_of(st.text(max_size=30), st.sampled_from(SPECIALS), st.sampled_from(["<|", "|>", "<"])),
    max_size=8,
).map("".join)


@settings(max_examples=300, deadline=None)
@given(_text)
def test_encode_equals_tiktoken_with_every_special_allowed(bpe: Llama3BPE, text: str) -> None:
    # tiktoken's own special-token path is the reference for our split on specials.
    clean = text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    if len(clean) != len(text):
        return  # a surrogate pair spelled as two code points: tiktoken merges it, we keep offsets
    assert bpe.encode(text) == bpe._encoding.encode(clean, allowed_special="all")


@settings(max_examples=300, deadline=None)
@given(_text, st.integers(0, 40))
def test_a_cut_is_the_first_n_tokens_of_the_text(bpe: Llama3BPE, text: str, n: int) -> None:
    head, used, cut = tokens.truncate(text, n)
    assert text.startswith(head)
    ids = bpe.encode(text)
    assert cut == (len(ids) > n) and used == min(n, len(ids))
    if cut:
        # The head is the first n tokens' bytes, less at most one split character (< 4 bytes).
        covered = b"".join(bpe._pieces[i] for i in ids[:n])
        shown = head.encode("utf-8", "surrogatepass")
        clean = "".join("\ufffd" if 0xD800 <= ord(c) < 0xE000 else c for c in head)
        assert covered.startswith(clean.encode("utf-8")), (covered, shown)
        assert len(covered) - len(clean.encode("utf-8")) < 4


def test_lone_surrogates_are_counted_not_refused(bpe: Llama3BPE) -> None:
    text = "ab\ud800cd\udfffe"
    assert tokens.count(text) == tokens.count("ab\ufffdcd\ufffde")
    head, used, cut = tokens.truncate(text, 2)
    assert cut and used == 2 and text.startswith(head)


def test_a_cut_inside_a_character_leaves_it_out(bpe: Llama3BPE) -> None:
    text = "🧪🧪"  # each emoji is several byte-level tokens
    first = len(bpe.encode("🧪"))
    assert first > 1
    assert tokens.truncate(text, 1) == ("", 1, True)
    assert tokens.truncate(text, first) == ("🧪", first, True)


def _meta_slices(s: str, max_run: int) -> list[str]:
    """Meta's ``_split_whitespaces_or_nonwhitespaces`` (llama3 tokenizer.py), character by
    character: the reference our regex cut is checked against."""
    out, run, start = [], 0, 0
    space = s[0].isspace() if s else False
    for i, c in enumerate(s):
        if space ^ c.isspace():
            run, space = 1, c.isspace()
        else:
            run += 1
            if run > max_run:
                out.append(s[start:i])
                start, run = i, 1
    out.append(s[start:])
    return out


@pytest.mark.parametrize(
    "text",
    [
        " " * 25_000 + "x",
        " " * 25_001 + "x",
        "a" * 60_000,
        "x" + "\t" * 75_002 + "y" * 25_001 + " end",
        ("word " * 9_000) + "\u00a0" * 50_001,
    ],
    ids=["run-at-limit", "run-over", "letters", "tabs-then-letters", "nbsp"],
)
def test_long_runs_are_cut_where_meta_cuts_them(text: str) -> None:
    from llamakit.tokens import bpe

    assert bpe._slices(text) == _meta_slices(text, bpe._MAX_RUN_CHARS)


@pytest.mark.parametrize("blank", [" ", "\t", "\u00a0", " \t"])
def test_a_million_blanks_are_counted_not_a_crash(bpe: Llama3BPE, blank: str) -> None:
    # tiktoken's regex overflowed its stack on ~1,000,000 whitespace characters (a Rust panic).
    text = "x" + blank * (1_000_000 // len(blank)) + "y"
    n = tokens.count(text)
    assert 0 < n <= len(text)
    head, used, cut = tokens.truncate(text, 3)
    assert cut and used == 3 and text.startswith(head)


def test_an_engine_failure_falls_back_to_the_estimate(
    bpe: Llama3BPE, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    class PanicException(BaseException):  # the shape of pyo3's panics
        pass

    def panic(text: str) -> list[int]:
        raise PanicException("regex stack overflow")

    monkeypatch.setattr(bpe, "_encode", panic)
    with caplog.at_level("WARNING", logger="llamakit.tokens"):
        assert tokens.count("tell me a joke on cats") == tokens.estimate("tell me a joke on cats")
        assert tokens.count_messages("hi") > 0
        assert tokens.truncate("one two three", 1)[2]
    assert "tiktoken failed on a text of" in caplog.text and "estimate" in caplog.text

    def interrupted(text: str) -> list[int]:
        raise KeyboardInterrupt

    monkeypatch.setattr(bpe, "_encode", interrupted)
    with pytest.raises(KeyboardInterrupt):
        tokens.count("x")
