"""Throughput of ``llamakit.tokens.count_messages`` on a 1 MB corpus, and the fallback's error.

The corpus is built deterministically from the docstrings of Python's own standard library (files
in sorted order, tests excluded: the same bytes for a given Python version), packed into 4-message
conversations (system, user, assistant, user) until the message contents reach 1 MB of UTF-8.
Run: ``.venv/bin/python benchmarks/tokens_throughput.py``.

Prints tokens/s and MB/s of exact counting (best of --repeats), the same for the tokenizer-free
estimate, and how far the estimate (and a flat bytes/4 rule) lands from the exact counts, on the
docstring corpus and on stdlib source code.
"""

from __future__ import annotations

import argparse
import ast
import math
import sysconfig
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from llamakit import tokens

CORPUS_BYTES = 1_000_000
TURN_BYTES = 2_000  # roughly a paragraph-sized message
ROLES = ("system", "user", "assistant", "user")


def _stdlib_files() -> list[Path]:
    root = Path(sysconfig.get_paths()["stdlib"])
    # Installed packages and the stdlib's own test suite are not "the standard library's docs".
    skip = {"site-packages", "dist-packages", "test", "tests", "idle_test"}
    files = (p for p in root.rglob("*.py") if not skip & set(p.relative_to(root).parts))
    return sorted(files, key=lambda p: p.relative_to(root).parts)


def _docstrings() -> Iterator[str]:
    for path in _stdlib_files():
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                doc = ast.get_docstring(node)
                if doc and len(doc) >= 40:
                    yield doc


def _turns(texts: Iterator[str]) -> Iterator[str]:
    """Concatenate texts into ~TURN_BYTES messages."""
    buffer: list[str] = []
    size = 0
    for text in texts:
        buffer.append(text)
        size += len(text.encode())
        if size >= TURN_BYTES:
            yield "\n\n".join(buffer)
            buffer, size = [], 0


def build_corpus(total_bytes: int = CORPUS_BYTES) -> list[list[dict[str, str]]]:
    conversations: list[list[dict[str, str]]] = []
    current: list[dict[str, str]] = []
    size = 0
    for turn in _turns(_docstrings()):
        current.append({"role": ROLES[len(current)], "content": turn})
        size += len(turn.encode())
        if len(current) == len(ROLES):
            conversations.append(current)
            current = []
        if size >= total_bytes:
            break
    if size < total_bytes:
        raise SystemExit(f"only {size} bytes of docstrings found; expected {total_bytes}")
    return conversations + ([current] if current else [])


def _best_time(fn: Callable[[], object], repeats: int) -> float:
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def _error(exact: Sequence[int], guess: Sequence[int]) -> str:
    aggregate = sum(guess) / sum(exact) - 1
    rel = sorted(g / e - 1 for g, e in zip(guess, exact, strict=True) if e)
    mean_abs = sum(abs(r) for r in rel) / len(rel)
    p5, p95 = rel[len(rel) // 20], rel[-(len(rel) // 20) - 1]
    return (
        f"aggregate {aggregate:+6.1%}   mean |error| {mean_abs:5.1%}   "
        f"5th..95th percentile {p5:+6.1%} .. {p95:+6.1%}   (n={len(rel)})"
    )


def _bytes_over_4(text: str) -> int:
    return math.ceil(len(text.encode()) / 4)


def _source_chunks(limit: int = 1500) -> list[str]:
    chunks = []
    for path in _stdlib_files():
        text = path.read_text(encoding="utf-8", errors="replace")
        chunks += [text[i : i + 2000] for i in range(0, len(text), 2000)]
        if len(chunks) >= limit:
            break
    return chunks[:limit]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    start = time.perf_counter()
    exact_available = tokens.is_exact()
    load_s = time.perf_counter() - start
    if not exact_available:
        raise SystemExit("the Llama 3 tokenizer is not installed: nothing exact to measure")

    corpus = build_corpus()
    contents = [m["content"] for conv in corpus for m in conv]
    mb = sum(len(c.encode()) for c in contents) / 1e6
    total = sum(tokens.count_messages(conv) for conv in corpus)
    print(f"tokenizer: {tokens.tokenizer_path()} (loaded in {load_s:.2f} s)")
    print(
        f"corpus: {mb:.2f} MB of stdlib docstrings in {len(corpus)} conversations "
        f"({len(contents)} messages), {total:,} tokens with the chat template"
    )

    exact_s = _best_time(lambda: [tokens.count_messages(conv) for conv in corpus], args.repeats)
    print(
        f"count_messages (exact):  {total / exact_s:12,.0f} tokens/s  {mb / exact_s:6.2f} MB/s  "
        f"{len(corpus) / exact_s:8,.0f} conversations/s  ({exact_s:.3f} s, best of {args.repeats})"
    )
    print(f"FIGURE count_messages throughput (exact): {total / exact_s:.0f} tokens/s ({mb:.2f} MB)")
    estimate_s = _best_time(lambda: [tokens.estimate(c) for c in contents], args.repeats)
    print(
        f"estimate (fallback):     {total / estimate_s:12,.0f} tokens/s  {mb / estimate_s:6.2f} MB/s  "
        f"({estimate_s:.3f} s; ratio exact/estimate time {exact_s / estimate_s:.2f})"
    )

    print("fallback error against the exact tokenizer, per text:")
    exact_counts = [tokens.count(c) for c in contents]
    print(
        f"  docstrings  estimate():  {_error(exact_counts, [tokens.estimate(c) for c in contents])}"
    )
    print(
        f"  docstrings  bytes/4:     {_error(exact_counts, [_bytes_over_4(c) for c in contents])}"
    )
    code = _source_chunks()
    code_exact = [tokens.count(c) for c in code]
    print(f"  source code estimate():  {_error(code_exact, [tokens.estimate(c) for c in code])}")
    print(f"  source code bytes/4:     {_error(code_exact, [_bytes_over_4(c) for c in code])}")


if __name__ == "__main__":
    main()
