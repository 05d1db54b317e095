"""llamakit: a notebook-first research toolkit for Llama 3 8B Instruct on Segmind's hosted API.

Public names are loaded lazily so that ``import llamakit`` stays light: pandas, matplotlib,
ipywidgets, starlette and llama_cpp are imported only by the features that use them.
"""

import importlib as _importlib
from typing import Any as _Any

from .errors import (
    APIConnectionError,
    APIError,
    APIResponseError,
    APIStatusError,
    APITimeoutError,
    APIUnreachableError,
    AuthenticationError,
    BudgetExceededError,
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
