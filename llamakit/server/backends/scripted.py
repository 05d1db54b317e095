"""The scripted backend: instant, deterministic replies (same request -> same reply).

Order of answers: the first matching rule (see `rules.py`), then simple arithmetic ("What is
17 + 25?" -> "17 + 25 = 42", or "42" when the system message asks for only the number), then a reply built from a hash of the request. JSON replies when `response_format`
asks for them. `stop` and `max_tokens` are honoured like a real model ("length" when cut).
"""

from __future__ import annotations

import ast
import hashlib
import json
import operator
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..tokencount import truncate_to_tokens
from ..validation import ChatRequest
from .base import BackendError, Generation
from .rules import Rule, load_rules

_OPENERS = (
    "Short answer: {topic} comes down to a few clear points.",
    "Good question. Here is how I would think about {topic}.",
    "Here is a concise answer about {topic}.",
    "Let me answer that directly: {topic} is simpler than it looks.",
    "In brief, {topic} depends on the details, but the main idea is clear.",
)
_POINTS = (
    "Start from a concrete example, then generalise once the example works.",
    "State the assumptions first, because most disagreements hide there.",
    "The simplest explanation that fits the facts is usually the right one.",
    "Check the result on a small case before trusting it on a large one.",
    "Separate what is known from what is guessed, and say which is which.",
    "Trade-offs matter more than rules: name them and choose deliberately.",
    "Keep the answer short enough that someone else can verify it.",
)
_CLOSERS = (
    "I hope this helps.",
    "Let me know if you want more detail on any part.",
    "That is the core of it.",
    "Happy to expand on this if needed.",
)
_ARITH = re.compile(r"(-?\d+(?:\.\d+)?)\s*([-+*/×x÷])\s*(-?\d+(?:\.\d+)?)")
_TERSE = re.compile(r"\b(?:only|just)\b.{0,20}\b(?:number|answer|result)\b", re.IGNORECASE)
_OPS = {
    "+": operator.add,
    "-": operator.sub,
    "*": operator.mul,
    "x": operator.mul,
    "×": operator.mul,
}


class ScriptedBackend:
    name = "scripted"

    def __init__(self, rules: Path | str | Sequence[Mapping[str, Any]] | None = None) -> None:
        self.rules: list[Rule] = load_rules(rules)

    async def start(self) -> None:
        return None

    async def aclose(self) -> None:
        return None

    async def generate(self, request: ChatRequest, slug: str) -> Generation:
        text = self.reply(request, slug)
        finish = "stop"
        cut = min((text.find(s) for s in request.stop if s in text), default=-1)
        if cut >= 0:
            text = text[:cut]
        # One tokenization of the reply gives both the cut and the count; the prompt was counted
        # once at admission (prompt_tokens None).
        text, completion_tokens, truncated = truncate_to_tokens(text, request.max_tokens)
        if truncated:
            finish = "length"
        return Generation(text, finish, None, completion_tokens)

    def reply(self, request: ChatRequest, slug: str = "") -> str:
        """The full reply before `stop`/`max_tokens` are applied."""
        digest = _request_hash(request)
        last_user = next(
            (m["content"] for m in reversed(request.messages) if m["role"] == "user"), ""
        )
        system = "\n".join(m["content"] for m in request.messages if m["role"] == "system")
        for rule in self.rules:
            match = rule.match(last_user, system, slug)
            if match is None:
                continue
            if rule.error is not None:
                raise BackendError(rule.error)
            try:
                return rule.render(match, digest)
            except ValueError as exc:
                raise BackendError(str(exc)) from None
        answer = _arithmetic(last_user, terse=bool(_TERSE.search(system)))
        fmt = (request.response_format or {}).get("type")
        if fmt in ("json_object", "json_schema"):
            return _json_reply(request.response_format or {}, answer or _topic(last_user), digest)
        if answer is not None:
            return answer
        return _prose(_topic(last_user), digest)


def _request_hash(request: ChatRequest) -> int:
    # max_tokens and stop are left out so a cut reply is a prefix of the full one, as with a model.
    key = {"messages": request.messages, **request.sampling(), "model": request.model}
    key.pop("stop", None)
    raw = json.dumps(key, sort_keys=True, ensure_ascii=False).encode("utf-8")
    return int.from_bytes(hashlib.sha256(raw).digest()[:8], "big")


_LEAD_IN = re.compile(
    r"^(?:(?:please|can you|could you|would you|tell me|explain|describe|summari[sz]e|write|give me|"
    r"what (?:is|are|was|were)|who (?:is|was)|how (?:do|does|can|to)(?: i| you| we)?|why (?:is|are|do|does)|"
    r"about|a|an|the|me|some|briefly)\b[\s,]*)+",
    re.IGNORECASE,
)


def _topic(text: str) -> str:
    first = re.split(r"(?<=[.?!])\s", text.strip(), maxsplit=1)[0] if text.strip() else ""
    words = re.findall(r"[\w'-]+", _LEAD_IN.sub("", first))[:8] or re.findall(r"[\w'-]+", first)[:8]
    return " ".join(words).lower() if words else "this"


def _prose(topic: str, digest: int) -> str:
    opener = _OPENERS[digest % len(_OPENERS)].format(topic=topic)
    first = _POINTS[(digest >> 8) % len(_POINTS)]
    second = _POINTS[((digest >> 8) + 1 + (digest >> 16) % (len(_POINTS) - 1)) % len(_POINTS)]
    closer = _CLOSERS[(digest >> 24) % len(_CLOSERS)]
    return f"{opener} {first} {second} {closer}"


def _arithmetic(text: str, *, terse: bool = False) -> str | None:
    match = _ARITH.search(text)
    if match is None:
        return None
    a, op, b = match.groups()
    x, y = ast.literal_eval(a), ast.literal_eval(b)
    if op in ("/", "÷"):
        if y == 0:
            return f"{a} / {b} is undefined: division by zero."
        value = x / y
    else:
        value = _OPS[op](x, y)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    shown = round(value, 6) if isinstance(value, float) else value
    return str(shown) if terse else f"{a} {op} {b} = {shown}"


def _json_reply(response_format: Mapping[str, Any], answer: str, digest: int) -> str:
    schema = (response_format.get("json_schema") or {}).get("schema") or {}
    props = schema.get("properties") if isinstance(schema, Mapping) else None
    if not isinstance(props, Mapping) or not props:
        return json.dumps({"answer": answer})
    out: dict[str, Any] = {}
    for i, (name, spec) in enumerate(props.items()):
        kind = spec.get("type") if isinstance(spec, Mapping) else None
        if kind == "integer":
            out[name] = (digest >> i) % 100
        elif kind == "number":
            out[name] = round(((digest >> i) % 1000) / 1000, 3)
        elif kind == "boolean":
            out[name] = bool((digest >> i) & 1)
        elif kind == "array":
            out[name] = []
        elif kind == "object":
            out[name] = {}
        else:
            out[name] = answer
    return json.dumps(out)
