"""Shared by the reliability tests (imported by module name: this folder is on sys.path)."""

from __future__ import annotations

from collections import Counter

# How many inputs each fuzz target sent (issue 6's closing note reports the count).
FUZZED: Counter[str] = Counter()
