"""Reading replies off the wire: every shape a server can send becomes a value or an APIError.

Pure functions of an ``httpx.Response``; never a bare KeyError or JSONDecodeError.
"""

from __future__ import annotations

import json
import math
import re
import time
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

import httpx

from ._secrets import redact
from .errors import APIConnectionError, APIError, APIResponseError, APITimeoutError
from .types import ChatResponse, Usage

_SNIPPET = 200
# A plain or scientific decimal number; NaN, Infinity and hex are no amount of money.
# Beyond this no balance is real (and 1e400 would be inf as soon as a plot drew it).
_MAX_CREDITS = Decimal("1e15")
_DECIMAL = re.compile(r"^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$")


def parse_chat(resp: httpx.Response) -> dict[str, Any]:
    data = _json_body(resp)
    return chat_fields(data, request_id(resp, data))


def parse_v2_result(resp: httpx.Response) -> dict[str, Any]:
    """A v2 result: ``output`` holds the provider's chat completion as a JSON *string*."""
    data = _json_body(resp)
    rid = request_id(resp, data)
    output = data.get("output") if isinstance(data, dict) else None
    if not isinstance(output, str):
        raise APIResponseError("the v2 result has no 'output' string", request_id=rid)
    try:
        completion = json.loads(output)
    except ValueError:
        # The vendor SDK treats a non-JSON output as the reply text itself; so do we.
        completion = {"choices": [{"message": {"role": "assistant", "content": output}}]}
    return chat_fields(completion, rid)


def parse_v2_submit(resp: httpx.Response) -> dict[str, str]:
    data = _json_body(resp)
    rid = request_id(resp, data)
    names = ("request_id", "status_url", "response_url")
    if not isinstance(data, dict) or not all(isinstance(data.get(n), str) for n in names):
        raise APIResponseError(
            "the v2 submit reply lacks request_id / status_url / response_url", request_id=rid
        )
    return {n: data[n] for n in names}


def parse_v2_status(resp: httpx.Response) -> str:
    data = _json_body(resp)
    status = data.get("status") if isinstance(data, dict) else None
    if not isinstance(status, str):
        raise APIResponseError(
            "the v2 status reply has no 'status'", request_id=request_id(resp, data)
        )
    return status


def chat_fields(data: Any, rid: str | None) -> dict[str, Any]:
    """The ChatResponse fields of an OpenAI chat.completion object, or APIResponseError."""

    def bad(what: str) -> APIResponseError:
        return APIResponseError(
            f"HTTP 200 but the reply is not a chat completion: {what}", request_id=rid
        )

    if not isinstance(data, dict):
        raise bad(f"expected a JSON object, got {type(data).__name__}")
    choices = data.get("choices")
    if not isinstance(choices, list) or not choices:
        raise bad("no 'choices'")
    choice = choices[0]
    message = choice.get("message") if isinstance(choice, dict) else None
    if not isinstance(message, dict):
        raise bad("choices[0] has no 'message' object")
    text = _content_text(message.get("content"))
    if text is None:
        raise bad("choices[0].message.content is not text")
    finish = choice.get("finish_reason")
    model = data.get("model")
    return {
        "text": text,
        "usage": _usage(data.get("usage")),
        "finish_reason": finish if isinstance(finish, str) else None,
        "credits_remaining": None,  # filled in from the header by the retry loop
        "latency_s": 0.0,  # filled in by the retry loop, which timed the attempt
        "request_id": rid,
        "model": model if isinstance(model, str) else None,
        "raw": data,
    }


def credit_amount(text: str) -> Decimal:
    """The exact amount a credit figure's text states: ``"9.99937"`` -> ``Decimal("9.99937")``.

    The one parser of credit figures (the ``x-remaining-credits`` header and the balance
    endpoint's JSON numbers), so money is never a binary float on its way in. Raises ValueError
    for text that is not a decimal number of at most 64 characters below 1e15 in size.
    """
    if not isinstance(text, str) or not _DECIMAL.match(text.strip()) or len(text) > 64:
        raise ValueError(f"not a decimal number: {str(text)[:64]!r}")
    value = Decimal(text.strip())
    if not abs(value) < _MAX_CREDITS:
        raise ValueError(f"not a plausible credit figure: {text!r}")
    return value


def parse_credits(resp: httpx.Response) -> Decimal:
    """Credits plus free credits from GET /v1/get-user-credits, exact (JSON numbers read as text)."""
    try:
        data = json.loads(resp.content, parse_float=Decimal, parse_int=Decimal)
    except (ValueError, UnicodeDecodeError):
        data = _json_body(resp)  # raises the usual "not valid JSON" error
    try:
        if not isinstance(data["credits"], Decimal):  # a JSON number, not a string or bool
            raise TypeError
        credits = credit_amount(str(data["credits"]))
        free = data.get("free-credits", 0)
        return credits + (credit_amount(str(free)) if isinstance(free, Decimal) else 0)
    except (TypeError, KeyError, AttributeError, ValueError):
        raise APIResponseError(
            "the balance endpoint did not return {'credits': <number>, 'free-credits': <number>}",
            request_id=request_id(resp, data if isinstance(data, dict) else None),
        ) from None


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header: delta-seconds or an HTTP date; None when unusable."""
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        from email.utils import parsedate_to_datetime

        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when is None:
            return None
        seconds = when.timestamp() - time.time()
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)


def _json_body(resp: httpx.Response) -> Any:
    try:
        return json.loads(resp.content)
    except (ValueError, UnicodeDecodeError) as exc:
        ctype = resp.headers.get("content-type", "no content-type")
        raise APIResponseError(
            f"HTTP {resp.status_code} but the body is not valid JSON ({ctype}, "
            f"{len(resp.content)} bytes): {_snippet(resp)!r}",
            request_id=request_id(resp, None),
        ) from exc


def json_or_none(resp: httpx.Response) -> Any:
    try:
        return json.loads(resp.content)
    except (ValueError, UnicodeDecodeError):
        return None


def error_message(resp: httpx.Response, body: Any) -> str:
    if isinstance(body, dict):
        for key in ("error", "message", "detail"):
            value = body.get(key)
            if isinstance(value, dict):
                value = value.get("message") or json.dumps(value)[:_SNIPPET]
            if value:
                return redact(str(value))[: _SNIPPET * 2]
    ctype = resp.headers.get("content-type", "no content-type").split(";")[0]
    snippet = _snippet(resp)
    return f"non-JSON error body ({ctype}): {snippet}" if snippet else f"empty body ({ctype})"


def _snippet(resp: httpx.Response) -> str:
    text = resp.content[:2000].decode("utf-8", "replace")
    title = re.search(r"<title[^>]*>(.*?)</title>", text, re.I | re.S)
    if title:
        text = title.group(1)
    text = re.sub(r"<[^>]+>", " ", text)
    return redact(" ".join(text.split()))[:_SNIPPET]


def request_id(resp: httpx.Response, body: Any) -> str | None:
    rid = resp.headers.get("x-request-id")
    if rid:
        return rid
    if isinstance(body, dict):
        for key in ("request_id", "id"):
            if isinstance(body.get(key), str):
                return body[key]
    return None


def _content_text(content: Any) -> str | None:
    if isinstance(content, str):
        return content
    # Some providers return a list of {"type": "text", "text": ...} parts.
    if isinstance(content, list) and all(
        isinstance(p, dict) and isinstance(p.get("text"), str) for p in content
    ):
        return "".join(p["text"] for p in content)
    return None


def _usage(raw: Any) -> Usage:
    if not isinstance(raw, dict):
        return Usage()

    def count(name: str) -> int | None:
        value = raw.get(name)
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    names = ("prompt_tokens", "completion_tokens", "total_tokens")
    return Usage(
        *(count(n) for n in names), extras={k: v for k, v in raw.items() if k not in names}
    )


def partial_response(fields: Any) -> ChatResponse | None:
    if not isinstance(fields, dict):
        return None
    now = time.time()
    return ChatResponse(**fields, attempts=1, started_at=now, finished_at=now)


def transport_error(exc: httpx.HTTPError, url: str) -> APIError:
    host = urlsplit(url).netloc
    detail = redact(str(exc))[:_SNIPPET] or type(exc).__name__
    if isinstance(exc, httpx.TimeoutException):
        return APITimeoutError(
            f"no complete answer from {host} within the timeout ({type(exc).__name__}); "
            "pass a larger timeout= if the model needs longer"
        )
    return APIConnectionError(
        f"could not talk to {host}: {type(exc).__name__}: {detail}. Check base_url and the "
        "network (for a local server: is it still running?)"
    )
