"""The runs this process is executing: one run per experiment at a time, found again on resume.

A run is registered while it executes, so running the same experiment twice at once (in this
process, or in another one sharing the store) is refused rather than paying for its cells twice.
"""

from __future__ import annotations

import os
import secrets
import sys
import threading
import time
from typing import TYPE_CHECKING, Any

from .errors import LlamakitError

if TYPE_CHECKING:
    from .experiment import Experiment
    from .run import Run
    from .store import Store

# Runs of this process that are still executing, so the same experiment is not run twice at once.
_LIVE: dict[str, Run] = {}
_LIVE_LOCK = threading.Lock()


def register_run(
    experiment: Experiment,
    store: Store,
    *,
    fingerprint: str,
    model: str,
    source: str,
    total: int,
    budget: float | None,
    mode: str,
) -> Run:
    """The run to execute, resumed or new, registered as executing in this process."""
    from .run import Run

    with _LIVE_LOCK:
        run_id = _resume_or_create(
            experiment, store, fingerprint, model, source, total, budget, mode
        )
        run = Run(run_id, store, scorer_names=[s.name for s in experiment.scorers])
        run._done.clear()
        _LIVE[run_id] = run
    return run


def release_run(run: Run) -> None:
    """Unregister a run that stopped executing and wake whoever waits on it."""
    with _LIVE_LOCK:
        _LIVE.pop(run.id, None)
    run._done.set()


def _resume_or_create(
    experiment: Experiment,
    store: Store,
    fingerprint: str,
    model: str,
    source: str,
    total: int,
    budget: float | None,
    mode: str,
) -> str:
    from .run import effective_status

    latest = store.latest_run(fingerprint)
    if latest is not None and latest["status"] != "finished":
        live = _LIVE.get(latest["run_id"])
        if live is not None and not live._done.is_set():
            raise LlamakitError(
                f"run {latest['run_id']} of {experiment.name!r} is still running in this process; "
                "call run.wait() or run.stop() first"
            )
        others = [
            s
            for s in store.sessions(latest["run_id"])
            if s["finished_at"] is None and s["pid"] != os.getpid()
        ]
        if effective_status(store, latest) == "running" and others:
            raise LlamakitError(
                f"run {latest['run_id']} of {experiment.name!r} is running in another process; "
                "wait for it (running both would pay for the same cells twice)"
            )
        return str(latest["run_id"])
    run_id = time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + "-" + secrets.token_hex(3)
    store.create_run(
        {
            "run_id": run_id,
            "name": experiment.name,
            "fingerprint": fingerprint,
            "model": model,
            "status": "running",
            "mode": mode,
            "started_at": time.time(),
            "finished_at": None,
            "cells_total": total,
            "budget": budget,
            "config": experiment.config(model, source),
        }
    )
    return run_id


def execute_in_background(run: Run, runner: Any) -> None:
    """Start the run on a daemon thread of its own; ``run.wait()`` joins it."""
    thread = threading.Thread(
        target=_execute, args=(run, runner), name=f"llamakit-run-{run.id}", daemon=True
    )
    run._thread = thread
    thread.start()


def _execute(run: Run, runner: Any) -> None:
    from ._asyncio import run_sync

    try:
        run_sync(runner.execute())
    except BaseException as exc:  # handed to the caller by run.wait()
        run._error = exc
    finally:
        release_run(run)


def wait_or_interrupt(run: Run, runner: Any) -> None:
    """Wait for a background run. Ctrl-C stops it after the calls in flight are recorded (a second
    Ctrl-C abandons them) and re-raises KeyboardInterrupt."""
    try:
        while not run._done.wait(0.1):
            pass
    except KeyboardInterrupt:
        runner.request_stop("interrupted")
        print(
            f"llamakit: stopping run {run.id} after the calls in flight "
            "(Ctrl-C again to abandon them) ...",
            file=sys.stderr,
        )
        try:
            while not run._done.wait(0.1):
                pass
        except KeyboardInterrupt:
            runner.cancel_now()
            run._done.wait(10)
        p = run.progress
        print(
            f"llamakit: run {run.id} interrupted at {p.done}/{p.total} cells; "
            "run it again to resume",
            file=sys.stderr,
        )
        raise
