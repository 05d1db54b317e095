"""The v2 path: submit a chat, then poll until it is done (CONTRACT §8). Plans for ``core``'s
drivers, like the v1 call, so ``Client`` and ``AsyncClient`` share them."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import httpx

from ..errors import APIResponseError, APITimeoutError
from .parse import parse_v2_result, parse_v2_status, parse_v2_submit
from .plan import Plan, Request, Sleep, T
from .types import ChatResponse, Job

if TYPE_CHECKING:
    from .core import Core

DEFAULT_WAIT_TIMEOUT = 600.0
DEFAULT_POLL_INTERVAL = 1.0
# A poll cut off this close to wait()'s deadline was cut off by it (socket timeouts fire a hair
# early or late).
_DEADLINE_SLACK_S = 0.05
_PENDING = ("QUEUED", "PROCESSING", "PENDING", "IN_QUEUE", "IN_PROGRESS")


def v2_base(base_url: str) -> str:
    """``https://api.segmind.com/v1`` -> ``https://api.segmind.com/v2`` (the vendor SDK's rule)."""
    return re.sub(r"/v\d+$", "", base_url.rstrip("/")) + "/v2"


def submit_plan(
    core: Core, body: dict[str, Any], deadline_at: float | None = None, model: str | None = None
) -> Plan[Job]:
    call_id = uuid.uuid4().hex
    submitted = time.time()
    request = Request("POST", f"{v2_base(core.url(''))}/{core.slug(model)}", body, billable=True)
    urls, _ = yield from core._attempts(request, parse_v2_submit, call_id, deadline_at=deadline_at)
    return Job(
        request_id=urls["request_id"],
        status_url=urls["status_url"],
        response_url=urls["response_url"],
        call_id=call_id,
        submitted_at=submitted,
    )


def wait_plan(core: Core, job: Job, timeout: float, poll_interval: float) -> Plan[ChatResponse]:
    # The status and response URLs come from the server's reply (or a stored journal): the
    # origin check in Core._attempts refuses any that would take the key to another host.
    # ``timeout`` is a deadline for the whole wait, the poll in flight included (a status reply
    # trickled a byte at a time must not hold wait() past it).
    deadline = time.monotonic() + timeout

    def late(status: str) -> APITimeoutError:
        return APITimeoutError(
            f"v2 job {job.request_id} still {status} after wait(timeout={timeout:g}s); call "
            "wait() again to keep waiting (results are kept for an hour)"
        )

    def fetch(request: Request, parse: Callable[[httpx.Response], T]) -> Plan[T]:
        # Polls are not inference calls: not paced, not reported as attempts.
        try:
            value, _ = yield from core._attempts(
                request, parse, None, paced=False, deadline_at=deadline
            )
        except APITimeoutError as exc:
            if time.monotonic() < deadline - _DEADLINE_SLACK_S:
                raise  # the server's own timeout, not the wait's
            raise late("not complete (the last request to the server was cut short)") from exc
        return value

    while True:
        status = yield from fetch(Request("GET", job.status_url), parse_v2_status)
        if status == "COMPLETED":
            break
        if status not in _PENDING:  # FAILED comes as a 422, raised by the loop itself
            raise APIResponseError(f"v2 job {job.request_id} has unknown status {status!r}")
        if time.monotonic() + poll_interval > deadline:
            raise late(status)
        yield Sleep(poll_interval)
    fields = yield from fetch(Request("GET", job.response_url), parse_v2_result)
    finished = time.time()
    fields["latency_s"] = finished - job.submitted_at
    return ChatResponse(
        **fields,
        attempts=1,
        started_at=job.submitted_at,
        finished_at=finished,
        call_id=job.call_id,
    )
