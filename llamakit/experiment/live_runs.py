"""The runs this process is executing: one run per experiment at a time, found again on resume.

A run is registered while it executes, so running the same experiment twice at once in this
process is refused. Other processes that start it on the same store join the same run (one
transaction finds or creates it: ``Store.join_run``) and share its cells: each request is claimed
before it is sent (``store/_claims``), so none is paid for twice and a second process speeds the
run up.
"""

from __future__ import annotations

import json
import secrets
import sys
import threading
import time
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from ..errors import LlamakitError

if TYPE_CHECKING:
    from ..store import Store
    from .run import Run
    from .shape import ExperimentShape

# Runs of this process that are still executing, so the same experiment is not run twice at once.
_LIVE: dict[str, Run] = {}
_LIVE_LOCK = threading.Lock()


def register_run(
    experiment: ExperimentShape,
    store: Store,
    *,
    fingerprint: str,
    model: str,
    source: str,
    total: int,
    budget: Decimal | None,
    mode: str,
    share: bool = True,
) -> Run:
    """The run to execute, resumed or new, registered as executing in this process. ``share``:
    whether a rerun of a complete run may share its cells (not a sequential run's)."""
    from .run import Run

    with _LIVE_LOCK:
        run_id = _resume_or_create(
            experiment, store, fingerprint, model, source, total, budget, mode, share
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
    experiment: ExperimentShape,
    store: Store,
    fingerprint: str,
    model: str,
    source: str,
    total: int,
    budget: Decimal | None,
    mode: str,
    share: bool,
) -> str:
    latest = store.latest_run(fingerprint)
    if latest is not None and latest["status"] != "finished":
        live = _LIVE.get(latest["run_id"])
        if live is not None and not live._done.is_set():
            raise LlamakitError(
                f"run {latest['run_id']} of {experiment.name!r} is still running in this process; "
                "call run.wait() or run.stop() first"
            )
    run_id = time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + "-" + secrets.token_hex(3)
    config = experiment.config(model, source)
    run_id, created = store.join_run(
        fingerprint,
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
            "config": config,
        },
        share=share,
        share_scored=_rescored_base(experiment, store, latest) if share else None,
    )
    if created:
        _notice_if_changed(store, experiment.name, run_id, config)
    return run_id


def _rescored_base(
    experiment: ExperimentShape, store: Store, latest: dict[str, Any] | None
) -> str | None:
    """The run whose cells a rerun with scorers may share: the finished run it repeats (or the
    run that one shares), when scoring each of its replies again with today's scorers gives
    exactly the scores stored. A scorer's code and a built-in's arguments are not in the
    fingerprint; this is how a rerun knows they did not change. None with a judge (a grading
    may have failed for a reason that has passed) or when any cell differs, is not done, or
    has no reply."""
    from .runner_scoring import is_judge, same_scores

    scorers = experiment.scorers
    if not scorers or any(is_judge(s) for s in scorers):
        return None
    if latest is None or latest["status"] != "finished":
        return None
    base = store.cells_run(str(latest["run_id"]))
    # The experiment's own rows (the same fingerprint holds the same items), as a live run
    # scores them: not the stored JSON, which may write a value otherwise (2.50 as 2.5).
    rows = {item.id: item.row for item in experiment.items}
    columns = "c.status, c.item_id, c.scores, c.score_errors, r.text"
    for cells in store.iter_run_cells(base, columns=columns):
        for cell in cells:
            row = rows.get(cell["item_id"])
            if cell["status"] != "done" or cell["text"] is None or row is None:
                return None
            if not same_scores(scorers, cell["text"], row, cell):
                return None
    return base


def _notice_if_changed(store: Store, name: str, run_id: str, config: dict[str, Any]) -> None:
    """One line when this experiment's previous run asked for something else, so a user who
    edited a prompt sees why a stopped run was not resumed."""
    sql = "SELECT run_id, config FROM runs WHERE name = ? AND run_id != ? ORDER BY started_at DESC"
    rows = store.query(sql + " LIMIT 1", (name, run_id))
    if not rows:
        return
    try:
        before = json.loads(rows[0]["config"])
    except ValueError:
        return
    changed = [k for k in config if k in before and before[k] != config[k]]
    if not changed:
        return
    print(
        f"llamakit: {name!r} changed since run {rows[0]['run_id']} ({', '.join(changed)}); "
        f"starting run {run_id} (unchanged cells come from the cache, free)",
        file=sys.stderr,
    )


def execute_in_background(run: Run, runner: Any) -> None:
    """Start the run on a daemon thread of its own; ``run.wait()`` joins it."""
    thread = threading.Thread(
        target=_execute, args=(run, runner), name=f"llamakit-run-{run.id}", daemon=True
    )
    run._thread = thread
    thread.start()


def _execute(run: Run, runner: Any) -> None:
    from ..client.loop import run_sync

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
        announce_stopping(run.id)
        try:
            while not run._done.wait(0.1):
                pass
        except KeyboardInterrupt:
            runner.cancel_now()  # the runner says how many calls it abandoned
            run._done.wait(10)
        announce_interrupted(run)
        raise


def announce_stopping(run_id: str) -> None:
    print(
        f"llamakit: stopping run {run_id} after the calls in flight "
        "(Ctrl-C or cancel again to abandon them) ...",
        file=sys.stderr,
    )


def announce_abandoned(run_id: str, on_wire: int, api: str = "v1") -> None:
    """A second interrupt gave up waiting: say what that may cost."""
    if not on_wire:
        print(f"llamakit: run {run_id}: stopped waiting; no call was on the wire", file=sys.stderr)
        return
    if api == "v2":
        cost = (
            "their jobs are journalled, so a rerun collects the replies of those the server "
            "accepted instead of paying again (a submission cut off before its answer may be "
            "billed and sent again)"
        )
    else:
        cost = "the server may bill them, their replies are not stored, and a rerun pays again"
    print(
        f"llamakit: run {run_id}: abandoned {on_wire} call(s) on the wire; {cost}",
        file=sys.stderr,
    )


def announce_interrupted(run: Run) -> None:
    p = run.progress
    rest = (
        "every cell is done (a rerun pays nothing)"
        if p.total and p.done >= p.total
        else "run it again to resume"
    )
    print(
        f"llamakit: run {run.id} interrupted at {p.done}/{p.total} cells; {rest}", file=sys.stderr
    )


# Statuses of a run that stopped before its cells were done, and what to do about each.
_EARLY_STOPS = {
    "budget": "it reached its budget; run it again with a larger budget= to resume",
    "insufficient_credits": (
        "an account it pays from (its client's, or a judge's own client's) ran out of credits "
        "(406); top that one up and run it again to resume"
    ),
}


def announce_early_stop(run: Run) -> None:
    """One line on stderr when a run stopped short of its cells for want of money, so a user
    who called ``exp.run`` in a notebook is not left with a bar stuck short of the end and a
    summary over part of the cells. Finished cells are kept and not paid again."""
    why = _EARLY_STOPS.get(run.status)
    if why is None:
        return
    p = run.progress
    print(
        f"llamakit: run {run.id} stopped at {p.done}/{p.total} cells: {why} "
        "(finished cells are not paid again)",
        file=sys.stderr,
    )
