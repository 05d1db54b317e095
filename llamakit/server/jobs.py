"""v2 jobs: submitted requests, their state, and their expiry (Segmind keeps results 1 hour)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Literal

JobStatus = Literal["QUEUED", "PROCESSING", "COMPLETED", "FAILED"]


@dataclass
class Job:
    id: str
    label: str
    slug: str
    created: float
    status: JobStatus = "QUEUED"
    started: float | None = None
    finished: float | None = None
    output: str | None = None  # json.dumps(chat.completion), as Segmind double-encodes it
    error: str | None = None
    balance_after: Decimal | None = None
    task: asyncio.Task[None] | None = field(default=None, repr=False)

    def metrics(self) -> dict[str, Any]:
        if self.started is None or self.finished is None:
            return {}
        return {"inference_time": round(self.finished - self.started, 4)}


class JobStore:
    def __init__(self, expiry_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.expiry_s = expiry_s
        self._clock = clock
        self._jobs: dict[str, Job] = {}

    def add(self, job_id: str, label: str, slug: str) -> Job:
        self._purge()
        job = Job(job_id, label, slug, self._clock())
        self._jobs[job_id] = job
        return job

    def get(self, job_id: str, label: str) -> Job | None:
        """The caller's job, or None if unknown, expired, or another key's."""
        job = self._jobs.get(job_id)
        if job is None or job.label != label:
            return None
        if self._expired(job):
            self._jobs.pop(job_id, None)
            return None
        return job

    def now(self) -> float:
        return self._clock()

    def running_tasks(self) -> list[asyncio.Task[None]]:
        return [j.task for j in self._jobs.values() if j.task is not None and not j.task.done()]

    def _expired(self, job: Job) -> bool:
        return self._clock() - job.created > self.expiry_s

    def _purge(self) -> None:
        for job_id in [k for k, j in self._jobs.items() if self._expired(j) and j.finished]:
            del self._jobs[job_id]
