"""The path every inference request takes, in CONTRACT §4.3's order (routing has already given
404/405): 401 key -> injected faults -> 429 RPM -> 413/422 body -> 406 credits -> generate -> 200."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any

from starlette.requests import Request

from .backends import BackendError
from .faults import FaultDecision
from .ledger import Hold, InsufficientCredits, format_credits
from .middleware import BODY_KEY, BODY_SIZE_KEY, DropConnection
from .ratelimit import retry_after_header
from .responses import ApiError, completion_body, new_request_id
from .state import ServerState
from .tokencount import count_messages
from .validation import (
    BodyError,
    ChatRequest,
    check_context,
    openai_options,
    parse_json_body,
    validate_chat,
)

_INLINE_COUNT_CHARS = 20_000


@dataclass
class Admitted:
    """A request that passed every check and holds its worst-case cost."""

    label: str
    slug: str
    chat: ChatRequest
    hold: Hold
    faults: FaultDecision
    request_id: str
    prompt_tokens: int  # counted once, here; backends reuse it (Generation.prompt_tokens None)


async def admit(state: ServerState, request: Request, slug: str | None) -> Admitted:
    """Run the checks; raise ApiError with the first failing status. `slug` None: OpenAI route
    (the model comes from the body)."""
    label = state.authenticate(request)
    decision = state.faults.decide(label)
    await _injected_fault(decision)

    wait = state.limiter.acquire(label)
    if wait is not None:
        raise ApiError(
            429,
            f"Rate limit exceeded: {state.limiter.rpm} requests per minute for this key",
            {"Retry-After": retry_after_header(wait)},
        )

    chat = _parse(state, request, openai=slug is None)
    if slug is None:
        slug = chat.model or ""
        if slug not in state.config.slugs:
            raise ApiError(
                404, f"model: {slug!r} does not exist (known: {', '.join(state.config.slugs)})"
            )

    if sum(len(m["content"]) for m in chat.messages) > _INLINE_COUNT_CHARS:
        # Tokenizing up to a MiB takes a while: keep the event loop free for other requests.
        prompt_tokens = await asyncio.to_thread(count_messages, chat.messages)
    else:
        prompt_tokens = count_messages(chat.messages)
    try:
        check_context(prompt_tokens, chat, state.config.context_window)
    except BodyError as exc:
        raise ApiError(422, f"Validation error: {exc}") from None

    estimate = state.cost_for(slug).estimate(prompt_tokens, chat.max_tokens)
    try:
        hold = state.ledger.reserve(label, estimate)
    except InsufficientCredits as exc:
        raise ApiError(
            406,
            f"Not enough credits: balance {format_credits(exc.balance)}, call costs {format_credits(exc.needed)}",
        ) from None
    return Admitted(label, slug, chat, hold, decision, new_request_id(), prompt_tokens)


async def generate(state: ServerState, admitted: Admitted) -> tuple[dict[str, Any], Decimal]:
    """Produce the completion and bill it; on any failure release the hold (nothing is billed).
    Returns (chat.completion body, balance after the debit)."""
    try:
        if admitted.faults.latency_s:
            await asyncio.sleep(admitted.faults.latency_s)
        gen = await state.backend.generate(admitted.chat, admitted.slug)
    except BaseException as exc:
        state.ledger.release(admitted.hold)
        if isinstance(exc, BackendError):
            raise _backend_error(exc) from None
        raise
    prompt_tokens = admitted.prompt_tokens if gen.prompt_tokens is None else gen.prompt_tokens
    cost = state.cost_for(admitted.slug).cost(prompt_tokens, gen.completion_tokens)
    balance = state.ledger.commit(admitted.hold, cost)
    state.stats.record_billed(admitted.label, min(cost, admitted.hold.amount))
    body = completion_body(
        gen, prompt_tokens=prompt_tokens, model=admitted.slug, request_id=admitted.request_id
    )
    return body, balance


def _backend_error(exc: BackendError) -> ApiError:
    if exc.status == 422:
        return ApiError(422, f"Validation error: {exc}")
    if exc.status == 424:  # the upstream refused our configuration: final, see upstream.py
        return ApiError(424, str(exc), {"x-should-retry": "false"})
    if exc.status == 504:
        return ApiError(504, f"Upstream timed out: {exc}")
    if exc.status == 429:
        return ApiError(429, f"Rate limit exceeded: {exc}", {"Retry-After": exc.retry_after or "1"})
    return ApiError(500, f"Server had some issue with processing: {exc}")


async def _injected_fault(decision: FaultDecision) -> None:
    if decision.outcome == "ok":
        return  # latency is spent later, while "generating" (so it overlaps the credit hold)
    if decision.latency_s:
        await asyncio.sleep(decision.latency_s)
    if decision.outcome == "drop":
        raise DropConnection()
    if decision.outcome == "fail":
        raise ApiError(500, "Server had some issue with processing (injected fault)")
    raise ApiError(
        429,
        "Rate limit exceeded (injected fault)",
        # Sub-second values are kept (not rounded up) so reliability tests can run fast.
        {"Retry-After": f"{decision.retry_after_s:g}"},
    )


def _parse(state: ServerState, request: Request, *, openai: bool) -> ChatRequest:
    size = request.scope.get(BODY_SIZE_KEY, 0)
    if size > state.config.max_body_bytes:
        raise ApiError(
            413,
            f"Request body too large: {size} bytes exceeds the limit of {state.config.max_body_bytes} bytes",
        )
    try:
        body = parse_json_body(request.scope.get(BODY_KEY, b""))
        chat = validate_chat(
            body,
            context_window=state.config.context_window,
            default_max_tokens=state.config.default_max_tokens,
            require_model=openai,
        )
        if not openai:
            return chat  # Segmind routes ignore `stream` and OpenAI-only fields (CONTRACT §2, §5)
        stream, stream_usage = openai_options(body)
        return replace(chat, stream=stream, stream_usage=stream_usage)
    except BodyError as exc:
        raise ApiError(422, f"Validation error: {exc}") from None
