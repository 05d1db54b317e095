"""llamakit: a notebook-first research toolkit for Llama 3 8B Instruct on Segmind's hosted API.

Public names are loaded lazily so that ``import llamakit`` stays light: pandas, matplotlib,
ipywidgets, starlette and llama_cpp are imported only by the features that use them.
"""

import sys as _sys


def _interrupted_while_loading(signum: int, frame: object) -> None:
    # Ctrl-C while the `llamakit` command is still loading: one line and 130, never a traceback.
    _sys.stderr.write("\nllamakit: interrupted\n")
    raise SystemExit(130)


def _guard_cli_startup() -> None:
    """First thing when this package is imported by the `llamakit` command (the console script or
    ``python -m llamakit.cli``): Ctrl-C exits quietly until ``llamakit.cli.main`` takes over (it
    restores Python's handler and reports interrupts per command). Anywhere else, nothing."""
    import contextlib
    import os
    import signal

    argv = list(getattr(_sys, "orig_argv", []))
    at = argv.index("-m") + 1 if "-m" in argv else len(argv)
    as_module = argv[at : at + 1] == ["llamakit.cli"]
    as_script = os.path.basename(_sys.argv[0] if _sys.argv else "") == "llamakit"
    if (as_module or as_script) and signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        with contextlib.suppress(ValueError):  # not the main thread: leave signals alone
            signal.signal(signal.SIGINT, _interrupted_while_loading)


_guard_cli_startup()

import importlib as _importlib  # noqa: E402  (after the guard, which must come first)
from typing import Any as _Any  # noqa: E402

from .errors import (  # noqa: E402
    APIConnectionError,
    APIError,
    APIResponseError,
    APIStatusError,
    APITimeoutError,
    APIUnreachableError,
    AuthenticationError,
    BudgetExceededError,
    ClientClosedError,
    InsufficientCreditsError,
    LlamakitError,
    MethodNotAllowedError,
    NotFoundError,
    RateLimitError,
    RegressionError,
    ReplayMissError,
    ServerError,
    StoreError,
    UnprocessableRequestError,
    ValidationError,
)

__version__ = "0.1.0"

# public name -> module that defines it
_LAZY: dict[str, str] = {
    "AsyncClient": "llamakit.client.client",
    "Attempt": "llamakit.client.types",
    "ChatResponse": "llamakit.client.types",
    "Client": "llamakit.client.client",
    "Conversation": "llamakit.client.conversation",
    "Experiment": "llamakit.experiment.experiment",
    "Message": "llamakit.client.types",
    "Run": "llamakit.experiment.run",
    "Store": "llamakit.store",
    "Usage": "llamakit.client.types",
    "check_no_regression": "llamakit.experiment.compare",
    "compare": "llamakit.experiment.compare",
    "connect": "llamakit.server.connect",
    "import_run": "llamakit.experiment.run",
    "load_run": "llamakit.experiment.run",
    "local_server": "llamakit.server",
    "runs": "llamakit.experiment.run",
}

__all__ = [
    "APIConnectionError",
    "APIError",
    "APIResponseError",
    "APIStatusError",
    "APITimeoutError",
    "APIUnreachableError",
    "AsyncClient",
    "Attempt",
    "AuthenticationError",
    "BudgetExceededError",
    "ChatResponse",
    "Client",
    "ClientClosedError",
    "Conversation",
    "Experiment",
    "InsufficientCreditsError",
    "LlamakitError",
    "Message",
    "MethodNotAllowedError",
    "NotFoundError",
    "RateLimitError",
    "RegressionError",
    "ReplayMissError",
    "Run",
    "ServerError",
    "Store",
    "StoreError",
    "UnprocessableRequestError",
    "Usage",
    "ValidationError",
    "__version__",
    "check_no_regression",
    "compare",
    "connect",
    "import_run",
    "load_run",
    "local_server",
    "runs",
]


# Submodules reachable as attributes (``lk.scoring.contains()``) without importing them eagerly.
_SUBMODULES: dict[str, str] = {
    "plots": "llamakit.plots",
    "scoring": "llamakit.scoring",
    "stats": "llamakit.scoring.stats",
    "stop": "llamakit.experiment.stop",
    "tokens": "llamakit.tokens",
    "widgets": "llamakit.widgets",
}


def __getattr__(name: str) -> _Any:
    if name in _SUBMODULES:
        return _importlib.import_module(_SUBMODULES[name])
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'llamakit' has no attribute {name!r}")
    value = getattr(_importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
