"""The exit codes of every `llamakit` command, in one place (the README's table lists the same).

A script or CI job can tell "all done" from "stopped early, rerun to resume" from "some cells
failed" from "broken": a run that did nothing never exits 0.
"""

from __future__ import annotations

import sys
from typing import Any, NoReturn

EXIT_OK = 0  # the command did everything it was asked (for a run: every cell done, no errors;
# for a sequential run: its stop rule answered)
EXIT_ERROR = 1  # a llamakit error stopped the command (bad spec, unreachable API, bad key, ...)
EXIT_USAGE = 2  # the command line itself is wrong (argparse's convention)
EXIT_STOPPED = 3  # the run stopped early (budget, 406, stop request): rerun to resume
EXIT_CELLS_FAILED = 4  # the run went through every cell but some failed: rerun to retry them
EXIT_INTERRUPTED = 130  # Ctrl-C (128 + SIGINT, the shell's convention)


def run_exit_code(run: Any) -> int:
    """The exit code for a run that returned: OK only if it finished with every cell done."""
    progress = run.progress
    if run.status == "interrupted":
        return EXIT_INTERRUPTED
    if run.status == "failed":
        return EXIT_ERROR
    if run.status == "decided":
        return EXIT_OK
    if run.status != "finished":
        return EXIT_STOPPED
    if progress.error_count or progress.done < progress.total:
        return EXIT_CELLS_FAILED
    return EXIT_OK


def exit_process(code: int) -> NoReturn:
    """End a ``python -m llamakit.cli`` process with ``code``, as ``sys.exit`` does.

    CPython marks a KeyboardInterrupt that ends any string ``exec``/``eval`` (a dataclass or
    namedtuple being built while a module loads, say) as unhandled even when a caller catches
    it, and under ``-m`` then ends the process by SIGINT (status -2) instead of with our code
    (``run_eval_code_obj`` and ``Py_RunMain`` in CPython 3.8-3.13; bpo-41602 added the ``-m``
    check). Each string eval clears that mark when it starts, so one harmless eval here keeps
    Ctrl-C's one line and 130 true whenever the signal landed."""
    eval("None")  # noqa: S307  (a constant: clears CPython's stale KeyboardInterrupt mark)
    sys.exit(code)
