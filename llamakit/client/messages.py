"""Turn what users pass to ``chat`` into the wire shape, or say exactly what is wrong.

Everything here runs before any HTTP request, so a typo never costs credits. Errors are
``ValidationError`` with ``field`` naming the culprit: ``messages[2].role``, ``params.temperature``.
"""

from __future__ import annotations

import difflib
import math
import unicodedata
from collections.abc import Mapping, Sequence
from typing import Any

from .._defaults import CONTEXT_WINDOW
from ..errors import ValidationError
from .types import Message

ROLES = ("system", "user", "assistant")


def normalize_messages(messages: Any) -> list[dict[str, str]]:
    """A plain string (one user turn) or a sequence of dicts / ``Message`` -> list of wire dicts."""
    if isinstance(messages, str):
        messages = [{"role": "user", "content": messages}]
    if isinstance(messages, Message):
        messages = [messages]
    if isinstance(messages, (bytes, Mapping)) or not isinstance(messages, Sequence):
        raise ValidationError(
            "messages must be a string or a list of {'role', 'content'} dicts or Message objects, "
            f"not {type(messages).__name__}",
            field="messages",
        )
    if not messages:
        raise ValidationError("messages is empty: send at least one message", field="messages")
    wire = [_normalize_one(i, m) for i, m in enumerate(messages)]
    if all(is_blank(m["content"]) for m in wire):
        # The provider bills a call whatever it holds; an all-blank one can only waste credits.
        raise ValidationError(
            "messages hold no text (every content is empty, blank or invisible characters only); "
            "write something to send",
            field="messages",
        )
    return wire


def is_blank(text: str) -> bool:
    """True when ``text`` shows nothing: only whitespace and format characters (Unicode category
    Cf: zero-width spaces and joiners, BOMs, bidi marks), which a model reads as no message."""
    return not "".join(ch for ch in text if unicodedata.category(ch) != "Cf").strip()


def _normalize_one(index: int, message: Any) -> dict[str, str]:
    where = f"messages[{index}]"
    if isinstance(message, Message):
        role, content = message.role, message.content
    elif isinstance(message, Mapping):
        unknown = sorted(str(k) for k in message if k not in ("role", "content"))
        if unknown:
            raise ValidationError(
                f"{where} has unexpected key(s) {unknown}; only 'role' and 'content' are sent",
                field=f"{where}.{unknown[0]}",
            )
        if "role" not in message:
            raise ValidationError(f"{where} has no 'role'", field=f"{where}.role")
        if "content" not in message:
            raise ValidationError(f"{where} has no 'content'", field=f"{where}.content")
        role, content = message["role"], message["content"]
    else:
        raise ValidationError(
            f"{where} must be a dict or Message, not {type(message).__name__}", field=where
        )
    if not isinstance(role, str) or role not in ROLES:
        raise ValidationError(
            f"{where}.role is {role!r}; it must be one of {', '.join(ROLES)}", field=f"{where}.role"
        )
    if not isinstance(content, str):
        raise ValidationError(
            f"{where}.content must be a string, not {type(content).__name__}",
            field=f"{where}.content",
        )
    _check_unicode(content, f"{where}.content")
    return {"role": role, "content": content}


def _check_unicode(text: str, field: str) -> None:
    # A lone surrogate (e.g. from a badly decoded file) is not text: the tokenizer rejects it and
    # the server answers 422, so say so here, before any credit is spent.
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValidationError(
            f"{field} is not valid Unicode text: unpaired surrogate at index {exc.start} "
            "(was the source decoded with errors='surrogateescape'?)",
            field=field,
        ) from None


# name -> (kind, low, high, low_inclusive). Ranges follow the OpenAI/Fireworks semantics the
# gateway forwards to (CONTRACT §2); anything outside them would be a 422 or a silent clamp.
_NUMERIC: dict[str, tuple[type, float, float, bool]] = {
    "max_tokens": (int, 1, CONTEXT_WINDOW, True),
    "temperature": (float, 0.0, 2.0, True),
    "top_p": (float, 0.0, 1.0, True),
    "top_k": (int, 0, 1000, True),
    "seed": (int, -(2**63), 2**63 - 1, True),
    "presence_penalty": (float, -2.0, 2.0, True),
    "frequency_penalty": (float, -2.0, 2.0, True),
    "repetition_penalty": (float, 0.0, 10.0, False),
    "n": (int, 1, 1, True),
}
_OTHER = ("stop", "response_format", "stream", "extra_body")
KNOWN_PARAMS = tuple(sorted([*_NUMERIC, *_OTHER]))


def validate_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """Check sampling parameters; returns the dict to merge into the request body.

    ``extra_body`` (a dict) is the escape hatch: its keys are sent verbatim, unchecked.
    """
    out: dict[str, Any] = {}
    for name, value in params.items():
        field = f"params.{name}"
        if name in _NUMERIC:
            out[name] = _check_number(name, value, *_NUMERIC[name])
        elif name == "stop":
            out[name] = _check_stop(value)
        elif name == "response_format":
            if not isinstance(value, Mapping) or value.get("type") not in (
                "text",
                "json_object",
                "json_schema",
            ):
                raise ValidationError(
                    "response_format must be a dict like {'type': 'json_object'} "
                    "(type one of text, json_object, json_schema)",
                    field=field,
                )
            out[name] = dict(value)
        elif name == "stream":
            if value is not False:
                raise ValidationError(
                    "streaming is not supported by the Segmind gateway; leave stream unset",
                    field=field,
                )
        elif name == "extra_body":
            if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
                raise ValidationError("extra_body must be a dict with string keys", field=field)
            out.update(value)
        elif name in ("messages", "prompt", "model"):
            raise ValidationError(
                f"{name} is not a sampling parameter: pass messages as the first argument "
                "and the model to Client(model=...)",
                field=field,
            )
        else:
            close = difflib.get_close_matches(name, KNOWN_PARAMS, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ValidationError(
                f"unknown parameter {name!r}{hint} (known: {', '.join(KNOWN_PARAMS)}; "
                "use extra_body={...} to send other keys verbatim)",
                field=field,
            )
    return out


def _check_number(name: str, value: Any, kind: type, low: float, high: float, incl: bool) -> Any:
    field = f"params.{name}"
    # bool is an int subclass, but temperature=True is always a mistake.
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or (kind is int and not isinstance(value, int))
    ):
        want = "an integer" if kind is int else "a number"
        raise ValidationError(
            f"{name} must be {want}, not {type(value).__name__} ({value!r})", field=field
        )
    if isinstance(value, float) and not math.isfinite(value):
        raise ValidationError(f"{name} must be finite, not {value!r}", field=field)
    below = value < low if incl else value <= low
    if below or value > high:
        if low == high:
            span = f"exactly {low:g} (llamakit reads one choice per call)"
        else:
            span = f"{'in' if incl else 'above'} {low:g} .. {high:g}"
        raise ValidationError(f"{name}={value!r} is out of range: must be {span}", field=field)
    return value


def _check_stop(value: Any) -> str | list[str]:
    if isinstance(value, str):
        if not value:
            raise ValidationError("stop must not be an empty string", field="params.stop")
        _check_unicode(value, "params.stop")
        return value
    if isinstance(value, Sequence) and not isinstance(value, (bytes, bytearray)):
        items = list(value)
        if not 1 <= len(items) <= 4:
            raise ValidationError("stop takes 1 to 4 strings", field="params.stop")
        for i, item in enumerate(items):
            if not isinstance(item, str) or not item:
                raise ValidationError(
                    f"stop[{i}] must be a non-empty string, not {item!r}", field=f"params.stop[{i}]"
                )
            _check_unicode(item, f"params.stop[{i}]")
        return items
    raise ValidationError(
        f"stop must be a string or a list of strings, not {type(value).__name__}",
        field="params.stop",
    )
