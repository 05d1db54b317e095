"""Reply rules for the scripted backend: regex on the last user message -> reply template.

File format (YAML or JSON), a list of rules or `{"rules": [...]}`; the first matching rule wins:

    - pattern: "capital of (?P<country>\\w+)"   # re.search on the last user message
      flags: "i"                                 # optional: i (ignore case, default), s, m, or "" for none
      system: "pirate"                           # optional regex the system message must match
      reply: "The capital of {country} is ..."  # str.format: {0} whole match, {1}.. groups, {name}
      replies: ["...", "..."]                    # or several; one is picked by the request's hash
      error: "scripted failure"                  # or: fail the call (500; FAILED on v2)
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_FLAGS = {"i": re.IGNORECASE, "s": re.DOTALL, "m": re.MULTILINE, "x": re.VERBOSE}


@dataclass(frozen=True)
class Rule:
    pattern: re.Pattern[str]
    replies: tuple[str, ...]
    system: re.Pattern[str] | None = None
    error: str | None = None

    def match(self, last_user: str, system: str) -> re.Match[str] | None:
        if self.system is not None and not self.system.search(system):
            return None
        return self.pattern.search(last_user)

    def render(self, match: re.Match[str], pick: int) -> str:
        template = self.replies[pick % len(self.replies)]
        groups = [match.group(0), *(g or "" for g in match.groups())]
        named = {k: v or "" for k, v in match.groupdict().items()}
        try:
            return template.format(*groups, **named)
        except (IndexError, KeyError) as exc:
            raise ValueError(f"rule reply {template!r} refers to a missing group {exc}") from None


def load_rules(source: Path | str | Sequence[Mapping[str, Any]] | None) -> list[Rule]:
    if source is None:
        return []
    if isinstance(source, (str, Path)):
        path = Path(source)
        text = path.read_text(encoding="utf-8")
        if path.suffix.lower() == ".json":
            data = json.loads(text)
        else:
            from ...safe_yaml import load_yaml

            data = load_yaml(text, path.name, "rules")
    else:
        data = list(source)
    if isinstance(data, Mapping):
        data = data.get("rules", [])
    if not isinstance(data, list):
        raise ValueError("rules must be a list of {pattern, reply} objects")
    return [_rule(i, item) for i, item in enumerate(data)]


def _rule(i: int, item: Any) -> Rule:
    where = f"rules[{i}]"
    if not isinstance(item, Mapping):
        raise ValueError(f"{where}: must be a mapping with pattern and reply")
    flags = 0
    for letter in str(item.get("flags", "i")):
        if letter not in _FLAGS:
            raise ValueError(f"{where}.flags: unknown flag {letter!r} (use i, s, m, x)")
        flags |= _FLAGS[letter]
    try:
        pattern = re.compile(str(item.get("pattern", "")), flags)
        system = re.compile(str(item["system"]), flags) if item.get("system") else None
    except re.error as exc:
        raise ValueError(f"{where}: bad regex: {exc}") from None
    replies = item.get("replies") or ([item["reply"]] if "reply" in item else [])
    error = item.get("error")
    if not replies and error is None:
        raise ValueError(f"{where}: needs reply, replies or error")
    return Rule(pattern, tuple(str(r) for r in replies), system, str(error) if error else None)
