"""v2 async inference (CONTRACT §8): submit, then poll status and fetch the result.

The call is admitted (and its cost held) at submit; it is billed when it completes. The result
response carries `x-remaining-credits` as it stood right after this job's debit."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from .inference import Admitted, admit, generate
from .jobs import Job
from .ledger import format_credits
from .responses import ApiError, DelayedJSONResponse
from .state import ServerState, get_state


async def submit(request: Request) -> Response:
    state = get_state(request)
    slug = request.url.path.rsplit("/", 1)[-1]
    admitted = await admit(state, request, slug)
    job = state.jobs.add(admitted.request_id, admitted.label, slug)
    job.task = asyncio.create_task(_run(state, admitted, job), name=f"llamakit-v2-{job.id}")
    body = {"request_id": job.id, "status": job.status, **_urls(request, job.id)}
    headers = {"x-remaining-credits": format_credits(state.balance(admitted.label))}
    return DelayedJSONResponse(body, headers=headers, body_delay_s=admitted.faults.slow_body_s)


async def status(request: Request) -> Response:
    state = get_state(request)
    job = _job(state, request)
    body: dict[str, Any] = {
        "status": job.status,
        "request_id": job.id,
        **_urls(request, job.id),
        "metrics": job.metrics(),
    }
    if job.status == "FAILED":
        body["error"] = job.error
        return JSONResponse(body, status_code=422)
    return JSONResponse(body)


async def result(request: Request) -> Response:
    state = get_state(request)
    job = _job(state, request)
    body: dict[str, Any] = {
        "status": job.status,
        "request_id": job.id,
        "error": job.error,
        "metrics": job.metrics(),
        "output": job.output,
    }
    if job.status == "FAILED":
        return JSONResponse(body, status_code=422)
    headers = {}
    if job.balance_after is not None:
        headers["x-remaining-credits"] = format_credits(job.balance_after)
    return JSONResponse(body, headers=headers)


async def _run(state: ServerState, admitted: Admitted, job: Job) -> None:
    job.status = "PROCESSING"
    job.started = state.jobs.now()
    try:
        body, balance = await generate(state, admitted)
    except ApiError as exc:
        job.status, job.error = "FAILED", exc.message
    except asyncio.CancelledError:
        job.status, job.error = "FAILED", "server shut down before the request completed"
        raise
    except Exception as exc:  # a bug in a backend must fail the job, not leave it PROCESSING
        job.status, job.error = (
            "FAILED",
            f"Server had some issue with processing: {type(exc).__name__}",
        )
    else:
        job.output = json.dumps(body)
        job.balance_after = balance
        job.status = "COMPLETED"
    finally:
        job.finished = state.jobs.now()


def _job(state: ServerState, request: Request) -> Job:
    label = state.authenticate(request)
    job_id = request.path_params["request_id"]
    job = state.jobs.get(job_id, label)
    if job is None:
        raise ApiError(
            404,
            f"request {job_id} not found (unknown, or expired: results are kept "
            f"{state.jobs.expiry_s:g} s after submission)",
        )
    return job


def _urls(request: Request, job_id: str) -> dict[str, str]:
    # Absolute URLs back to this server: the SDK polls exactly what it is given.
    base = str(request.base_url).rstrip("/")
    return {
        "poll_url": f"{base}/v1/requests/{job_id}",
        "status_url": f"{base}/v2/requests/{job_id}/status",
        "response_url": f"{base}/v2/requests/{job_id}",
    }
