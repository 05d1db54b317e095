"""How `llamakit serve` stops: on SIGINT or SIGTERM, whenever it arrives, within a bounded time.

Signal handlers here only record the request. A handler that raises (SystemExit, KeyboardInterrupt)
can fire inside a weakref callback or ``__del__``, where Python prints the exception and swallows it:
the process then keeps serving after being told to stop. uvicorn checks ``should_exit`` on its own
loop, so recording is enough once it runs, and a stop recorded earlier is handed over to it.
"""

from __future__ import annotations

import contextlib
import faulthandler
import signal
import sys
from collections.abc import Iterator
from typing import Any

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
# Requests still running this long after the stop signal are cancelled (uvicorn's graceful timeout).
GRACEFUL_SHUTDOWN_S = 5
# Still alive this long after the first stop signal means something is stuck: dump every thread's
# stack to stderr, so the hang can be diagnosed, and exit with status 1.
STOP_DEADLINE_S = GRACEFUL_SHUTDOWN_S + 10


class StopRequest:
    """Whether a stop signal has arrived; install() makes SIGINT/SIGTERM set it."""

    def __init__(self) -> None:
        self.requested = False

    def install(self) -> None:
        # Also overrides an inherited SIG_IGN (dispositions survive exec): a server must stop.
        for sig in STOP_SIGNALS:
            signal.signal(sig, self._record)

    def _record(self, signum: int, frame: object) -> None:
        if not self.requested:
            arm_stop_deadline()
        self.requested = True


def arm_stop_deadline() -> None:
    # faulthandler's watchdog is a C thread: it fires even when the interpreter is stuck holding the
    # GIL or joining threads at exit, where a Python timer thread would never run.
    faulthandler.dump_traceback_later(STOP_DEADLINE_S, exit=True, file=sys.stderr)


def bounded_server(config: Any, stop: StopRequest) -> Any:
    """A uvicorn.Server that honours `stop` and finishes stopping within STOP_DEADLINE_S."""
    import uvicorn

    class BoundedServer(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            with super().capture_signals():
                # uvicorn's handlers are in place now; a stop recorded before this is handed over.
                if stop.requested:
                    self.should_exit = True
                yield

        def handle_exit(self, sig: int, frame: Any) -> None:
            if not self.should_exit:
                arm_stop_deadline()
            super().handle_exit(sig, frame)

    return BoundedServer(config)
