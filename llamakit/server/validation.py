"""Request bodies -> ChatRequest, or a BodyError that names the offending field (a 422)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

ROLES = ("system", "user", "assistant")


class BodyError(Exception):
    """An invalid request body. `str()` is the message for the 422 (it names the field)."""

    def __init__(self, field_name: str | None, problem: str, status: int = 422) -> None:
        super().__init__(f"{field_name}: {problem}" if field_name else problem)
        self.field = field_name
        self.status = status


@dataclass(frozen=True)
class ChatRequest:
    """A validated chat call. `messages` content is always a str (text parts joined)."""

    messages: list[dict[str, str]]
    max_tokens: int
    max_tokens_given: bool = False
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    seed: int | None = None
    stop: tuple[str, ...] = ()
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    repetition_penalty: float | None = None
    response_format: dict[str, Any] | None = None
    model: str | None = None
    extras: dict[str, Any] = field(default_factory=dict)
    # OpenAI route only: answer as Server-Sent Events, and end them with a usage chunk.
    stream: bool = False
    stream_usage: bool = False

    def sampling(self) -> dict[str, Any]:
        """The sampling parameters that were given (for backends that forward them)."""
        names = ("temperature", "top_p", "top_k", "seed", "presence_penalty", "frequency_penalty")
        out = {n: getattr(self, n) for n in names if getattr(self, n) is not None}
        if self.repetition_penalty is not None:
            out["repetition_penalty"] = self.repetition_penalty
        if self.stop:
            out["stop"] = list(self.stop)
        if self.response_format is not None:
            out["response_format"] = self.response_format
        return out


def parse_json_body(raw: bytes) -> dict[str, Any]:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BodyError("body", f"is not valid UTF-8 (byte {exc.start})") from None
    if not text.strip():
        raise BodyError("body", "is empty; send a JSON object with `messages`")
    try:
        body = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BodyError(
            "body", f"is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"
        ) from None
    except RecursionError:
        raise BodyError("body", "is nested too deeply") from None
    except ValueError as exc:  # e.g. an integer literal longer than CPython's 4300-digit limit
        raise BodyError("body", f"is not usable JSON ({exc})") from None
    try:
        # A JSON escape like "\ud800" decodes to a lone surrogate, which no later step can encode.
        json.dumps(body, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise BodyError(
            "body", "contains a lone UTF-16 surrogate escape (not valid Unicode)"
        ) from None
    except RecursionError:
        raise BodyError("body", "is nested too deeply") from None
    if not isinstance(body, dict):
        raise BodyError("body", f"must be a JSON object, got {_type_name(body)}")
    return body


def validate_chat(
    body: Mapping[str, Any],
    *,
    context_window: int,
    default_max_tokens: int,
    require_model: bool = False,
) -> ChatRequest:
    messages = _messages(body)
    model = body.get("model")
    if require_model and not isinstance(model, str):
        raise BodyError("model", "is required (a model name string)")
    max_given = body.get("max_tokens") is not None
    max_tokens = _int(body, "max_tokens", lo=1) if max_given else None
    if max_tokens is not None and max_tokens > context_window:
        raise BodyError(
            "max_tokens",
            f"{max_tokens} exceeds the model's context window of {context_window} tokens",
        )
    n = _int(body, "n", lo=1)
    if n not in (None, 1):
        raise BodyError("n", "only n=1 is supported")
    return ChatRequest(
        messages=messages,
        max_tokens=max_tokens if max_tokens is not None else default_max_tokens,
        max_tokens_given=max_given,
        temperature=_number(body, "temperature", lo=0.0, hi=2.0),
        top_p=_number(body, "top_p", lo=0.0, hi=1.0),
        top_k=_int(body, "top_k", lo=0),
        seed=_int(body, "seed"),
        stop=_stop(body.get("stop")),
        presence_penalty=_number(body, "presence_penalty", lo=-2.0, hi=2.0),
        frequency_penalty=_number(body, "frequency_penalty", lo=-2.0, hi=2.0),
        repetition_penalty=_number(body, "repetition_penalty", lo=0.0, hi=10.0),
        response_format=_response_format(body.get("response_format")),
        model=model if isinstance(model, str) else None,
    )


# Fields of OpenAI's chat API that this server cannot honour. On the OpenAI route each is refused
# with a 422 that names it, rather than silently answered as if it had not been sent; the Segmind
# routes ignore unknown fields, as the gateway does (CONTRACT §2).
_UNSUPPORTED = {
    "tools": "tool calling is not supported by this server; remove `tools`",
    "tool_choice": "tool calling is not supported by this server; remove `tool_choice`",
    "functions": "function calling is not supported by this server; remove `functions`",
    "function_call": "function calling is not supported by this server; remove `function_call`",
    "logprobs": "log probabilities are not available from this server; remove `logprobs`",
    "top_logprobs": "log probabilities are not available from this server; remove `top_logprobs`",
    "audio": "audio output is not supported by this server; remove `audio`",
}
# Values that mean "not asked for", accepted for each of those fields.
_NOT_ASKED: dict[str, tuple[Any, ...]] = {
    "tools": (None, []),
    "tool_choice": (None, "none"),
    "functions": (None, []),
    "function_call": (None, "none"),
    "logprobs": (None, False),
    "top_logprobs": (None, 0),
    "audio": (None,),
}


def openai_options(body: Mapping[str, Any]) -> tuple[bool, bool]:
    """Check the OpenAI-only fields of `body`; return (stream, include usage in the stream).
    Raises BodyError naming the field that is malformed or asks for something unsupported."""
    for name, problem in _UNSUPPORTED.items():
        value = body.get(name)
        if not any(value == ok and type(value) is type(ok) for ok in _NOT_ASKED[name]):
            raise BodyError(name, problem)
    modalities = body.get("modalities")
    if modalities not in (None, ["text"]):
        raise BodyError("modalities", 'only ["text"] is supported')
    stream = body.get("stream")
    if stream is None:
        stream = False
    if not isinstance(stream, bool):
        raise BodyError("stream", f"must be true or false, got {_type_name(stream)}")
    options = body.get("stream_options")
    if options is None:
        return stream, False
    if not stream:
        raise BodyError("stream_options", "is only allowed when stream is true")
    if not isinstance(options, dict):
        raise BodyError("stream_options", f"must be an object, got {_type_name(options)}")
    usage = options.get("include_usage", False)
    if not isinstance(usage, bool):
        raise BodyError("stream_options.include_usage", "must be true or false")
    return stream, usage


def check_context(prompt_tokens: int, req: ChatRequest, context_window: int) -> None:
    """Prompt plus the reply budget must fit the context window (Llama 3 8B: 8192 tokens)."""
    if prompt_tokens + (req.max_tokens if req.max_tokens_given else 0) > context_window:
        raise BodyError(
            "messages" if not req.max_tokens_given else "max_tokens",
            f"prompt of {prompt_tokens} tokens plus max_tokens {req.max_tokens if req.max_tokens_given else 0} "
            f"exceeds the context window of {context_window} tokens",
        )


def _messages(body: Mapping[str, Any]) -> list[dict[str, str]]:
    raw = body.get("messages")
    prompt = body.get("prompt")
    if raw is None:
        if prompt is None:
            raise BodyError("messages", "is required (a non-empty list of {role, content})")
        if not isinstance(prompt, str) or not prompt.strip():
            raise BodyError("prompt", "must be a non-empty string")
        return [{"role": "user", "content": prompt}]
    if not isinstance(raw, list):
        raise BodyError("messages", f"must be a list, got {_type_name(raw)}")
    if not raw:
        raise BodyError("messages", "must not be empty")
    out = []
    for i, m in enumerate(raw):
        where = f"messages[{i}]"
        if not isinstance(m, dict):
            raise BodyError(where, f"must be an object with role and content, got {_type_name(m)}")
        role = m.get("role")
        if role not in ROLES:
            raise BodyError(f"{where}.role", f"must be one of {', '.join(ROLES)}; got {role!r}")
        out.append({"role": role, "content": _content(m.get("content"), f"{where}.content")})
    return out


def _content(content: Any, where: str) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for j, part in enumerate(content):
            if not isinstance(part, dict) or part.get("type") != "text":
                raise BodyError(f"{where}[{j}]", "only {type: text, text: ...} parts are supported")
            if not isinstance(part.get("text"), str):
                raise BodyError(f"{where}[{j}].text", "must be a string")
            parts.append(part["text"])
        return "".join(parts)
    raise BodyError(where, f"must be a string or a list of text parts, got {_type_name(content)}")


def _number(body: Mapping[str, Any], name: str, *, lo: float, hi: float) -> float | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise BodyError(name, f"must be a number, got {_type_name(value)}")
    if not lo <= value <= hi:
        raise BodyError(name, f"must be between {lo:g} and {hi:g}, got {value!r}")
    return float(value)


def _int(body: Mapping[str, Any], name: str, *, lo: int | None = None) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise BodyError(name, f"must be an integer, got {_type_name(value)}")
    if lo is not None and value < lo:
        raise BodyError(name, f"must be >= {lo}, got {value}")
    return value


def _stop(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(s, str) and s for s in value):
        raise BodyError("stop", "must be a non-empty string or a list of non-empty strings")
    if len(value) > 4:
        raise BodyError("stop", f"at most 4 stop sequences, got {len(value)}")
    return tuple(value)


def _response_format(value: Any) -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, dict) or value.get("type") not in (
        "text",
        "json_object",
        "json_schema",
    ):
        raise BodyError(
            "response_format", 'must be {"type": "text" | "json_object" | "json_schema"}'
        )
    if not isinstance(value.get("json_schema", {}), dict):
        raise BodyError("response_format.json_schema", "must be an object")
    return dict(value)


def _type_name(value: Any) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}.get(
        type(value), "number" if isinstance(value, (int, float)) else type(value).__name__
    )
