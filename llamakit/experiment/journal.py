"""The v2 job journal: a job is recorded in the store right after it is submitted, so a runner
killed mid-call collects the paid job on resume instead of paying for it again."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from ..errors import NotFoundError, UnprocessableRequestError


class Journal:
    """v2 jobs in flight, journaled in the store (``inflight``) right after they are submitted and
    removed in the transaction that stores their response. A rerun after a kill collects a job
    by request id (it is billed when it completes, whether anyone waits or not) instead of
    submitting it again."""

    def __init__(
        self, store: Any, call: Callable[..., Awaitable[Any]], poll_interval: float
    ) -> None:
        self.store = store
        self.call = call
        self.poll_interval = poll_interval

    async def submit_and_wait(
        self,
        client: Any,
        key: str,
        messages: list[dict[str, Any]],
        params: dict[str, Any],
        run_id: str,
        session: int,
    ) -> Any:
        job = await self.call(client.submit, messages, **params)
        self.store.record_inflight(
            {
                "cell_key": key,
                "run_id": run_id,
                "session": session,
                "request_id": job.request_id,
                "status_url": job.status_url,
                "response_url": job.response_url,
                "call_id": job.call_id,
                "submitted_at": job.submitted_at,
            }
        )
        try:
            return await self.call(client.wait, job, poll_interval=self.poll_interval)
        except (UnprocessableRequestError, NotFoundError):
            # FAILED (never billed) or gone: a later run submits it afresh. Any other error
            # (timeout, connection) keeps the journal, and the job is collected next time.
            self.store.drop_inflight(key)
            raise

    async def recover(self, client: Any, key: str) -> tuple[Any, str, int] | None:
        """Collect a job an earlier (killed) run submitted for this key, if there is one."""
        from ..client.types import Job

        entry = self.store.inflight(key)
        if entry is None:
            return None
        job = Job(
            request_id=entry["request_id"],
            status_url=entry["status_url"],
            response_url=entry["response_url"],
            call_id=entry["call_id"] or "",
            submitted_at=entry["submitted_at"],
        )
        try:
            response = await self.call(client.wait, job, poll_interval=self.poll_interval)
        except (UnprocessableRequestError, NotFoundError):
            self.store.drop_inflight(key)
            return None
        return response, entry["run_id"], entry["session"]
