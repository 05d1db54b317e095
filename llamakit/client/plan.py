"""The two steps a request plan yields (see ``attempt``): send this ``Request``, or ``Sleep``.

A module of its own so that the retry loop, the transport and the clients share these types
without importing one another.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Request:
    """One HTTP request of a plan. ``billable``: a paid call (chat, v2 submission). ``headers``
    and ``timeout`` (seconds for the whole attempt) are filled in by ``Core._attempts``, the only
    place that attaches the API key, after checking the URL's origin."""

    method: str
    url: str
    json: dict[str, Any] | None = None
    billable: bool = False
    headers: dict[str, str] | None = None
    timeout: float = 0.0


@dataclass(frozen=True)
class Sleep:
    """Wait ``seconds``. ``stoppable``: the wait comes before a paid attempt (a retry's backoff,
    a rate-limit slot), so an interrupted run may cut it short (``scope.pause``)."""

    seconds: float
    stoppable: bool = False


Plan = Generator["Request | Sleep", Any, T]
