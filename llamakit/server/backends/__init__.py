"""Backends that produce replies: `scripted` (deterministic), `smollm2` (a real small model via
llama-cpp-python) and `upstream` (any OpenAI-compatible server). Each module is imported only
when its backend is chosen, so llama_cpp is never loaded for a scripted server."""

from __future__ import annotations

import importlib.util
from typing import TYPE_CHECKING

from .base import Backend, BackendError, Generation

if TYPE_CHECKING:
    from ..config import ServerConfig

BACKENDS = ("smollm2", "scripted", "upstream")

__all__ = ["BACKENDS", "Backend", "BackendError", "Generation", "default_backend", "make_backend"]


def default_backend() -> str:
    """ "smollm2" when llama_cpp and the SmolLM2 GGUF are installed, else "scripted"."""
    from .smollm2 import find_gguf

    if importlib.util.find_spec("llama_cpp") is not None and find_gguf() is not None:
        return "smollm2"
    return "scripted"


def make_backend(config: ServerConfig) -> Backend:
    name = config.backend
    if name == "scripted":
        from .scripted import ScriptedBackend

        return ScriptedBackend(config.rules)
    if name == "smollm2":
        from .smollm2 import SmolLM2Backend

        return SmolLM2Backend()
    if name == "upstream":
        from .upstream import UpstreamBackend

        if not config.upstream_url:
            raise ValueError(
                "the upstream backend needs upstream_url (an OpenAI-compatible base URL)"
            )
        return UpstreamBackend(
            config.upstream_url,
            config.upstream_api_key,
            config.upstream_model,
            timeout=config.upstream_timeout_s,
        )
    raise ValueError(f"unknown backend {name!r} (choose from {', '.join(BACKENDS)})")
