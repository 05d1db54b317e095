"""Reply rules for the scripted backend: regex on the last user message -> reply template.

File format (YAML or JSON), a list of rules or `{"rules": [...]}`; the first matching rule wins:

    - pattern: "capital of (?P<country>\\w+)"   # re.search on the last user message
      flags: "i"                                 # optional: i (ignore case, default), s, m, or "" for none
      system: "pirate"                           # optional regex the system message must match
      model: "v3p1-8b"                           # optional regex the model slug must match
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

from ...errors import ValidationError

_FLAGS = {"i": re.IGNORECASE, "s": re.DOTALL, "m": re.MULTILINE, "x": re.VERBOSE}


@dataclass(frozen=True)
class Rule:
    pattern: re.Pattern[str]
    replies: tuple[str, ...]
    system: re.Pattern[str] | None = None
    error: str | None = None
    # Only for slugs this matches: sibling models can answer differently on one server.
    model: re.Pattern[str] | None = None

    def match(self, last_user: str, system: str, slug: str = "") -> re.Match[str] | None:
        if self.system is not None and not self.system.search(system):
            return None
        if self.model is not None and not self.model.search(slug):
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


_EXAMPLE = '- {pattern: "capital of (\\w+)", reply: "The capital of {1} is ..."}'


def load_rules(source: Path | str | Sequence[Mapping[str, Any]] | None) -> list[Rule]:
    """The rules in ``source`` (a YAML/JSON file, or a list of mappings), checked.

    The one place rules are read: ``ScriptedBackend``, ``local_server(rules=...)`` and the CLI's
    ``--rules`` all come here, so a bad file is one ValidationError (field ``rules``) naming the
    file, the rule's index and the fix, raised before any server starts.
    """
    if source is None:
        return []
    where = "rules"
    if isinstance(source, (str, Path)):
        where = f"rules file {source}"
        data = _read(Path(source), where)
    else:
        try:
            data = list(source)
        except TypeError:
            raise _bad(where, f"must be a list of rules, got {type(source).__name__}") from None
    if isinstance(data, Mapping) and "rules" in data:
        data = data["rules"]
    # An empty list from Python is "no rules"; an empty file is more likely a mistake.
    if not isinstance(data, list) or (not data and where != "rules"):
        got = "nothing" if data is None or data == [] else type(data).__name__
        raise _bad(where, f"must hold a non-empty list of rules, got {got}")
    return [_rule(f"{where}: rule {i}", item) for i, item in enumerate(data)]


def _read(path: Path, where: str) -> Any:
    try:
        text = path.expanduser().read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise _bad(where, "is not UTF-8 text (a binary file?)") from None
    except IsADirectoryError:
        raise _bad(where, "is a folder; give the YAML/JSON file in it") from None
    except OSError as exc:
        raise _bad(where, f"cannot be read ({exc.strerror or exc})") from None
    if path.suffix.lower() != ".json":
        from ...safe_yaml import load_yaml  # the one YAML loader: bounded alias expansion

        try:
            return load_yaml(text, path.name, "rules")
        except ValidationError as exc:
            what = str(exc).removeprefix(f"{path.name} ")
            if what.startswith("is not valid YAML"):
                first = what.splitlines()[0].removeprefix("is not valid YAML: ")
                raise _bad(where, f"is not valid YAML/JSON ({first})") from None
            raise _bad(where, what) from None
    try:
        return json.loads(text)
    except ValueError as exc:  # json.JSONDecodeError
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise _bad(where, f"is not valid YAML/JSON ({first})") from None


def _bad(where: str, what: str) -> ValidationError:
    return ValidationError(
        f"{where} {what}; write a list of rules, one per item, such as {_EXAMPLE}",
        field="rules",
    )


def _rule(where: str, item: Any) -> Rule:
    if not isinstance(item, Mapping):
        raise _bad(where, f"is {type(item).__name__} {item!r:.40}, not a mapping")
    flags = 0
    for letter in str(item.get("flags", "i")):
        if letter not in _FLAGS:
            raise _bad(where, f"has unknown flag {letter!r} (use i, s, m, x)")
        flags |= _FLAGS[letter]
    for key in ("pattern", "system", "model"):
        if key in item and not isinstance(item[key], str):
            raise _bad(where, f"has {key} {item[key]!r:.40}, which is not text (quote it)")
    try:
        pattern = re.compile(str(item.get("pattern", "")), flags)
        system = re.compile(str(item["system"]), flags) if item.get("system") else None
        model = re.compile(str(item["model"]), flags) if item.get("model") else None
    except re.error as exc:
        raise _bad(where, f"has a bad regex ({exc}); escape special characters with \\") from None
    replies = item.get("replies") or ([item["reply"]] if "reply" in item else [])
    if isinstance(replies, (str, bytes)) or not isinstance(replies, list):
        raise _bad(where, "has replies that are not a list of texts")
    # A bare number (reply: 42) is its text; anything else would be str()-ed into nonsense.
    bad = [r for r in replies if isinstance(r, bool) or not isinstance(r, (str, int, float))]
    if bad:
        raise _bad(where, f"has reply {bad[0]!r:.40}, which is not text (quote it)")
    error = item.get("error")
    if not replies and error is None:
        raise _bad(where, "needs reply, replies or error")
    unknown = sorted(
        set(map(str, item)) - {"pattern", "flags", "system", "model", "reply", "replies", "error"}
    )
    if unknown:
        raise _bad(where, f"has unknown key(s) {', '.join(unknown)}")
    return Rule(
        pattern, tuple(str(r) for r in replies), system, str(error) if error else None, model
    )
