"""``llamakit.connect()``: the one call a notebook needs to get a working client.

It lives beside the stand-in it may start. It is not ``llamakit/connect.py``: importing a
submodule named ``llamakit.connect`` would rebind the package attribute ``llamakit.connect`` to the
module, shadowing the function.
"""

from __future__ import annotations

import atexit
import os
import sys
import threading
from typing import TYPE_CHECKING, Any

from .._defaults import ENV_API_KEY, ENV_BACKEND, ENV_BASE_URL
from ..client.client import Client

if TYPE_CHECKING:
    from .handle import ServerHandle

_lock = threading.Lock()
_server: ServerHandle | None = None  # the process-wide local server, started on first need


def connect(
    *,
    backend: str | None = None,
    rules: str | os.PathLike[str] | None = None,
    quiet: bool = False,
    **kwargs: Any,
) -> Client:
    """A ``Client`` of the hosted API when ``SEGMIND_API_KEY`` is set (or ``api_key=`` given),
    else of a local stand-in server started once for this process and stopped at exit.

    The local backend is ``backend``, else ``$LLAMAKIT_BACKEND``, else ``smollm2`` when installed,
    else ``scripted``. ``rules`` (a YAML/JSON file of regex -> reply) steers the scripted backend.

    Prints one line saying which. Safe inside a running event loop (a Jupyter cell): the local
    server runs on its own thread and the returned client is sync.
    """
    from .notebook_errors import show_errors_in_one_line

    show_errors_in_one_line()  # in a notebook, a llamakit error from now on is one line
    hosted = kwargs.get("api_key") or os.environ.get(ENV_API_KEY)
    if hosted:
        client = Client(**kwargs)
        where = "a local server" if client.is_local else "the hosted API"
        _say(f"llamakit: using {where} at {client.base_url} (model {client.model})", quiet)
        return client
    if kwargs.get("base_url") or os.environ.get(ENV_BASE_URL):
        # A base URL without a key would only ever get 401s: say so before any request.
        from ..errors import ValidationError

        raise ValidationError(
            f"a base_url is set but no API key: pass api_key=... or set {ENV_API_KEY}",
            field="api_key",
        )
    server = _local_server(backend or os.environ.get(ENV_BACKEND) or None, rules)
    client = server.client(**kwargs)
    _say(
        f"llamakit: no {ENV_API_KEY} set, so using a local {server.backend} server at "
        f"{server.url} (model {client.model})",
        quiet,
    )
    return client


def _local_server(backend: str | None, rules: Any) -> ServerHandle:
    global _server
    with _lock:
        if _server is not None and backend is not None and _server.backend != backend:
            raise ValueError(
                f"the local server of this process already runs backend {_server.backend!r}"
            )
        if _server is None:
            from . import local_server

            _server = local_server(backend=backend, rules=rules)
            atexit.register(_shutdown)
        return _server


def _shutdown() -> None:
    global _server
    with _lock:
        if _server is not None:
            _server.close()
            _server = None


def _say(line: str, quiet: bool) -> None:
    if not quiet:
        print(line, file=sys.stdout, flush=True)
