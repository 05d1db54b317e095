"""The ASGI app: routes of the Segmind contract, the OpenAI-compatible route, and admin routes."""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp

from . import v2
from .config import DRAIN_BODY_BYTES, ServerConfig
from .costs import CostModel
from .inference import admit, generate
from .ledger import format_credits
from .middleware import BODY_KEY, BODY_SIZE_KEY, OuterMiddleware
from .responses import MESSAGES, ApiError, DelayedJSONResponse, error_response
from .state import ServerState, get_state
from .streaming import sse_response
from .tokencount import count_messages
from .validation import BodyError, parse_json_body


async def chat_v1(request: Request) -> Response:
    """POST /v1/{slug} and POST /v1/chat/completions (slug from the body's `model`)."""
    state = get_state(request)
    slug = (
        None
        if request.url.path.endswith("/chat/completions")
        else request.url.path.rsplit("/", 1)[-1]
    )
    admitted = await admit(state, request, slug)
    body, balance = await generate(state, admitted)
    headers = {"x-remaining-credits": format_credits(balance), "x-request-id": admitted.request_id}
    if admitted.chat.stream:
        return sse_response(
            body,
            include_usage=admitted.chat.stream_usage,
            headers=headers,
            first_delay_s=admitted.faults.slow_body_s,
        )
    return DelayedJSONResponse(body, headers=headers, body_delay_s=admitted.faults.slow_body_s)


async def list_models(request: Request) -> Response:
    """GET /v1/models (OpenAI's model list): every slug this server answers."""
    state = get_state(request)
    state.authenticate(request)
    return JSONResponse({"object": "list", "data": [_model(s) for s in state.config.slugs]})


async def get_model(request: Request) -> Response:
    """GET /v1/models/{model}: one entry of that list, or 404."""
    state = get_state(request)
    state.authenticate(request)
    slug = request.path_params["model"]
    if slug not in state.config.slugs:
        raise ApiError(
            404, f"model: {slug!r} does not exist (known: {', '.join(state.config.slugs)})"
        )
    return JSONResponse(_model(slug))


def _model(slug: str) -> dict[str, Any]:
    return {"id": slug, "object": "model", "created": 0, "owned_by": "llamakit-local"}


async def user_credits(request: Request) -> Response:
    """GET /v1/get-user-credits: the balance (never billed, never faulted)."""
    state = get_state(request)
    label = state.authenticate(request)
    return _credits_response(state.balance(label), free=True)


async def admin_stats(request: Request) -> Response:
    """GET: the calling key's figures; with the admin key, every key's (see `ServerState.admin_scope`)."""
    state = get_state(request)
    label = state.admin_scope(request)
    return JSONResponse(state.stats_dict() if label is None else state.stats_dict_for(label))


async def admin_faults(request: Request) -> Response:
    """GET: the fault settings the caller's requests get. POST {setting: value, ...}: change some
    of them, for the calling key only (with the admin key: for every key)."""
    state = get_state(request)
    label = state.admin_scope(request)
    if request.method == "POST":
        changes = _admin_body(request)
        try:
            state.faults.update(changes, label=label)
        except ValueError as exc:
            raise ApiError(422, f"Validation error: {exc}") from None
    return JSONResponse(state.faults.settings_for(label).as_dict())


async def admin_credits(request: Request) -> Response:
    """POST {"credits": x}: set the calling key's own balance. With the admin key, name the
    account: {"key": "<key label>", "credits": x}."""
    state = get_state(request)
    caller = state.admin_scope(request)
    body = _admin_body(request)
    amount = body.get("credits")
    if (
        isinstance(amount, bool)
        or not isinstance(amount, (int, float))
        # NaN/Infinity parse as JSON but are no balance; nor is an int beyond float range.
        or not math.isfinite(float(amount) if abs(amount) < 1e300 else math.inf)
        or amount < 0
    ):
        raise ApiError(422, "Validation error: credits: must be a number >= 0")
    label = _credits_account(state, caller, body.get("key"))
    balance = state.ledger.set_balance(label, amount)
    return _credits_response(balance, free=False)


def _credits_response(balance: Decimal, *, free: bool) -> Response:
    # Written by hand: json.dumps would send the ledger's exact Decimal as the nearest binary
    # float, and a client parsing the number as a decimal must read the ledger's figure.
    extra = ', "free-credits": 0' if free else ""
    body = f'{{"credits": {format_credits(balance)}{extra}}}'
    return Response(body, media_type="application/json")


def _credits_account(state: ServerState, caller: str | None, named: Any) -> str:
    if named is not None and not isinstance(named, str):
        raise ApiError(422, "Validation error: key: must be a key label string")
    if caller is not None:
        if named not in (None, caller):
            raise ApiError(403, "Forbidden: a key can set only its own balance (omit `key`)")
        return caller
    if named is None:
        raise ApiError(
            422,
            "Validation error: key: required with the admin key (a label from /_llamakit/stats)",
        )
    if named not in state.keyring.labels:
        raise ApiError(404, f"key: no account labelled {named!r} on this server")
    return named


def _admin_body(request: Request) -> dict[str, Any]:
    if request.scope.get(BODY_SIZE_KEY, 0) > get_state(request).config.max_body_bytes:
        raise ApiError(413, MESSAGES[413])
    try:
        return parse_json_body(request.scope.get(BODY_KEY, b""))
    except BodyError as exc:
        raise ApiError(422, f"Validation error: {exc}") from None


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return error_response(exc.status, exc.message, exc.headers)


async def _http_error(request: Request, exc: Exception) -> Response:
    """Starlette's routing errors (404 unknown path, 405 wrong method) in our JSON shape."""
    assert isinstance(exc, HTTPException)
    message = MESSAGES.get(exc.status_code, exc.detail)
    if exc.status_code == 405:
        message = f"{message}: {request.method} {request.url.path} (allowed: {(exc.headers or {}).get('Allow', '')})"
    elif exc.status_code == 404:
        message = f"{message}: {request.url.path}"
    return error_response(exc.status_code, message, exc.headers)


async def _crash(request: Request, exc: Exception) -> Response:
    return error_response(500, MESSAGES[500])


def routes(config: ServerConfig) -> list[Route]:
    # One route per known slug, so an unknown model is a 404 (checked before the key, §4.3).
    # The chat routes come first: Starlette tries routes in order, and they take nearly every
    # request (no two routes here match the same path, so the order changes nothing else).
    out = [Route(f"/v1/{slug}", chat_v1, methods=["POST"]) for slug in config.slugs]
    out += [
        Route("/v1/chat/completions", chat_v1, methods=["POST"]),
        Route("/v1/get-user-credits", user_credits, methods=["GET"]),
        Route("/v1/models", list_models, methods=["GET"]),
        Route("/v1/models/{model:path}", get_model, methods=["GET"]),
        Route("/v1/requests/{request_id}", v2.result, methods=["GET"]),
        Route("/v2/requests/{request_id}/status", v2.status, methods=["GET"]),
        Route("/v2/requests/{request_id}", v2.result, methods=["GET"]),
        Route("/_llamakit/stats", admin_stats, methods=["GET"]),
        Route("/_llamakit/faults", admin_faults, methods=["GET", "POST"]),
        Route("/_llamakit/credits", admin_credits, methods=["POST"]),
    ]
    out += [Route(f"/v2/{slug}", v2.submit, methods=["POST"]) for slug in config.slugs]
    return out


def create_app(config: ServerConfig, *, cost_model: CostModel | None = None) -> ASGIApp:
    """Build the server's ASGI app. Its ServerState is reachable as `app.state` (see handle.py)."""
    state = ServerState.build(config, cost_model=cost_model)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await state.backend.start()
        # Load the Llama 3 tokenizer now (about a second, once per process), not on the first call.
        await asyncio.to_thread(count_messages, [{"role": "user", "content": "warm up"}])
        try:
            yield
        finally:
            tasks = state.jobs.running_tasks()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await state.backend.aclose()
            state.ledger.close()

    app = Starlette(
        routes=routes(config),
        exception_handlers={ApiError: _api_error, HTTPException: _http_error, Exception: _crash},
        lifespan=lifespan,
    )
    app.state.llamakit = state
    outer = OuterMiddleware(
        app, state.stats, max_body=config.max_body_bytes, drain_limit=DRAIN_BODY_BYTES
    )
    outer.state = state  # type: ignore[attr-defined]
    return outer


__all__ = ["create_app"]
