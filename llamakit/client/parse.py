"""Reading replies off the wire: every shape a server can send becomes a value or an APIError.

Pure functions of an ``httpx.Response``; never a bare KeyError or JSONDecodeError.
"""

from __future__ import annotations

import json
import logging
import math
import re
import time
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

import httpx

from ..errors import APIConnectionError, APIError, APIResponseError, APITimeoutError
from .secrets import json_may_hold_known, mask_known, mask_known_in, redact
from .transport import Failure, ResponseTooLarge
from .types import ChatResponse, Usage

log = logging.getLogger("llamakit.client")
_SNIPPET = 200
# A plain or scientific decimal number in ASCII digits (Python's \d and Decimal() also take
# '３' or '٣'); NaN, Infinity and hex are no amount of money.
# Beyond this no balance is real (and 1e400 would be inf as soon as a plot drew it).
_MAX_CREDITS = Decimal("1e15")
_DECIMAL = re.compile(r"^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$", re.ASCII)
# How much of a body is decoded and redacted before a snippet is cut from it.
_REDACT_SPAN = 65_536


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
    content = message.get("content")
    joined = _content_text(content)
    if joined is None:
        raise bad("choices[0].message.content is not text")
    # Each part was masked alone; a secret split across parts is whole only once joined. Then
    # ``raw`` keeps the masked whole, not the pieces.
    text = mask_known(joined) if isinstance(content, list) else joined
    if text != joined:
        message["content"] = text
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


def _json_body(resp: httpx.Response) -> Any:
    """The decoded JSON body, any registered secret in it masked: a server that echoes the key
    inside a reply (a proxy, a misconfigured upstream) must not get it into the store."""
    try:
        raw = resp.content
        text = raw.decode(json.detect_encoding(raw), "surrogatepass")  # as json.loads(bytes)
        data = json.loads(text)
        if not json_may_hold_known(text):
            return data
        masked = mask_known_in(data)
        if masked != data:
            log.warning(
                "a reply from the server contained a secret (API key or URL password); masked"
            )
        return masked
    except (ValueError, UnicodeDecodeError) as exc:
        ctype = header_text(resp, "content-type", "no content-type")
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
            if isinstance(value, dict) and value.get("message"):
                value = value["message"]
            if value:
                # The strings of a list or an object joined by spaces, not its repr: the masking
                # tolerates whitespace inside a long secret, not the quotes and commas between
                # two strings a secret was split across. Redacted before it is cut, so a secret
                # straddling the cut is still masked.
                text = " ".join(_strings(value))[:_REDACT_SPAN]
                return redact(text)[: _SNIPPET * 2]
    ctype = header_text(resp, "content-type", "no content-type").split(";")[0]
    snippet = _snippet(resp)
    return f"non-JSON error body ({ctype}): {snippet}" if snippet else f"empty body ({ctype})"


def _strings(value: Any) -> list[str]:
    """Every string (and number) inside decoded JSON, in order: an object's keys and values."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in (*_strings(k), *_strings(v))]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return [] if value is None else [str(value)]


def _snippet(resp: httpx.Response) -> str:
    try:
        text = resp.content[:_REDACT_SPAN].decode(resp.encoding or "utf-8", "replace")
    except LookupError:  # a charset Python does not know
        text = resp.content[:_REDACT_SPAN].decode("utf-8", "replace")
    text = redact(text)  # before anything is cut or dropped (NULs of UTF-16 read as UTF-8)
    title = re.search(r"<title[^>]*>(.*?)</title>", text, re.I | re.S)
    if title:
        text = title.group(1)
    text = re.sub(r"<[^>]+>", " ", text).replace("\x00", "")
    return " ".join(text.split())[:_SNIPPET]


def header_text(resp: httpx.Response, name: str, default: str) -> str:
    """A header's value as it may be shown or stored, any secret in it masked: a server can echo
    the key in any header, and headers reach exceptions and the store as they are."""
    value = resp.headers.get(name)
    return default if value is None else redact(value)


def request_id(resp: httpx.Response, body: Any) -> str | None:
    rid = header_text(resp, "x-request-id", "")
    if rid:
        return rid
    if isinstance(body, dict):
        for key in ("request_id", "id"):
            value = body.get(key)
            if isinstance(value, str):
                return value
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
        prompt_tokens=count("prompt_tokens"),
        completion_tokens=count("completion_tokens"),
        total_tokens=count("total_tokens"),
        extras={k: v for k, v in raw.items() if k not in names},
    )


def partial_response(fields: Any) -> ChatResponse | None:
    if not isinstance(fields, dict):
        return None
    now = time.time()
    return ChatResponse(**fields, attempts=1, started_at=now, finished_at=now)


def failure_error(failure: Failure, url: str, *, timeout: float, billable: bool) -> APIError:
    """The llamakit error for an attempt without a complete response (see ``transport``).

    ``billable``: the request is a paid one (a chat or a v2 submission), so a failure after it
    was fully sent may have been billed, and says so (``may_be_billed``; not retried by default).
    """
    exc, status = failure.error, failure.status
    host = _display_host(url)
    # A v2 submission that timed out may have created a job whose id never arrived: v2 cannot
    # help with that one, so the hint is only given on v1.
    hint = _V2_HINT if "/v2/" not in urlsplit(url).path else _V2_SUBMIT_HINT
    if isinstance(exc, ResponseTooLarge):
        paid = (
            " (HTTP 200: the call was billed, but its reply is not kept)" if status == 200 else ""
        )
        return APIResponseError(
            f"the reply from {host} is larger than max_response_bytes={exc.limit}{paid}; pass a "
            "larger max_response_bytes= to the client if replies this large are expected"
        )
    kind = type(exc).__name__
    sent = status is not None or isinstance(
        exc, (httpx.ReadTimeout, httpx.ReadError, httpx.RemoteProtocolError)
    )
    if status is not None and 200 <= status < 300 and billable:
        # A 2xx status line arrived, so the server finished (and billed) the call; the rest of
        # the reply did not arrive whole. An error status cut off the same way was not billed.
        timed_out = isinstance(exc, httpx.TimeoutException)
        cls = APITimeoutError if timed_out else APIConnectionError
        rest = "its body" if failure.head_complete else "its headers"
        return cls(
            f"HTTP {status} from {host} but {rest} did not arrive complete "
            + (f"within timeout={timeout:g}s" if timed_out else f"({kind})")
            + ": the call was probably billed, so it was not retried. "
            + ("Pass a larger timeout=, or " if timed_out else "")
            + hint,
            may_be_billed=True,
        )
    if isinstance(exc, httpx.TimeoutException):
        if isinstance(exc, httpx.ReadTimeout) and billable:
            return APITimeoutError(
                f"no complete answer from {host} within timeout={timeout:g}s (the whole attempt: "
                "connect, send, headers and body). The request had been sent, so the call may "
                "have been billed; it was not retried, to avoid paying twice. Pass a larger "
                "timeout=, or " + hint,
                may_be_billed=True,
            )
        what = f"no answer from {host}" if sent else f"{host} not reached (nothing was sent)"
        return APITimeoutError(
            f"{what} within timeout={timeout:g}s ({kind}); pass a larger timeout= if the "
            "server needs longer"
        )
    detail = redact(str(exc))[:_SNIPPET] or kind
    return APIConnectionError(
        f"could not talk to {host}: {kind}: {detail}. Check base_url and the "
        "network (for a local server: is it still running?)"
    )


def cause_of(exc: BaseException) -> BaseException:
    """What a llamakit error is chained to: the transport's exception with its message
    redacted and without the request it carries (whose URL may hold credentials)."""
    try:
        clean = type(exc)(redact(str(exc)))
    except Exception:  # an exception type with another signature
        clean = RuntimeError(f"{type(exc).__name__}: {redact(str(exc))}")
    return clean


_V2_SUBMIT_HINT = (
    "check the provider's request history before submitting again (the job may be running)"
)
_V2_HINT = (
    'use api="v2" (client.submit() then client.wait(); exp.run(client, api="v2")), which '
    "journals the job and resumes it safely instead of paying again"
)


def _display_host(url: str) -> str:
    """host[:port] of ``url``, never its credentials."""
    parts = urlsplit(url)
    host = parts.hostname or "?"
    if ":" in host:
        host = f"[{host}]"
    return host if parts.port is None else f"{host}:{parts.port}"


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
