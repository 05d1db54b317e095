"""Settings of one local server, gathered in a single value so app, CLI and handle agree."""

from __future__ import annotations

import hashlib
import json
import math
import re
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from .._defaults import CONTEXT_WINDOW, LOCAL_COST_BY_MODEL, LOCAL_COST_PER_CALL
from .costs import to_decimal
from .faults import FaultSettings
from .protocol import ConnectionGuard
from .redact import check_upstream_url, public_url

# Model slugs served on /v1/{slug} and /v2/{slug}. Segmind's Llama siblings share one contract
# (CONTRACT §1), so the local server answers all of them with whichever backend it runs.
KNOWN_SLUGS: tuple[str, ...] = (
    "llama-v3-8b-instruct",
    "llama-v3p1-8b-instruct",
    "llama-v3p1-70b-instruct",
    "llama-v3p1-405b-instruct",
    "mixtral-8x22b-instruct",
)

# Bodies above this are answered 413 (a JSON error, like every other status). Chat requests for an
# 8k-token model are far smaller; the cap keeps a hostile client from filling memory.
MAX_BODY_BYTES = 1024 * 1024
# Oversized bodies are read and discarded up to this size so the client gets its 413 instead of a
# broken pipe; beyond it the connection is closed after the 413.
DRAIN_BODY_BYTES = 64 * 1024 * 1024

# Reply length when a request does not say (real providers have a default too).
DEFAULT_MAX_TOKENS = 512
# Segmind keeps v2 results for an hour after submission (CONTRACT §8).
DEFAULT_V2_EXPIRY_S = 3600.0
DEFAULT_RPM_WINDOW_S = 60.0
# How long the upstream backend waits for the upstream server's whole reply.
DEFAULT_UPSTREAM_TIMEOUT_S = 120.0


_SLUG = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def generate_api_key() -> str:
    """A fresh local key in Segmind's `SG_` format."""
    return "SG_local_" + secrets.token_hex(12)


def key_label(api_key: str) -> str:
    """A stable, non-reversible name for a key: what stats, logs and the SQLite ledger show."""
    return "key-" + hashlib.sha256(api_key.encode("utf-8")).hexdigest()[:10]


@dataclass
class ServerConfig:
    """Everything `create_app` needs. `keys` maps each accepted API key to its starting balance."""

    keys: dict[str, Decimal]
    backend: str = "scripted"
    rpm: int | None = None
    rpm_window_s: float = DEFAULT_RPM_WINDOW_S
    db: Path | None = None
    rules: Path | Sequence[Mapping[str, Any]] | None = None
    upstream_url: str | None = None
    upstream_api_key: str | None = None
    upstream_model: str | None = None
    cost_per_call: float | Decimal = LOCAL_COST_PER_CALL
    # A number (read exactly, as Decimal): one price per token; (prompt, completion): separate
    # prices. None: flat per call.
    cost_per_token: float | Decimal | tuple[float | Decimal, float | Decimal] | None = None
    faults: FaultSettings = field(default_factory=FaultSettings)
    v2_expiry_s: float = DEFAULT_V2_EXPIRY_S
    max_body_bytes: int = MAX_BODY_BYTES
    context_window: int = CONTEXT_WINDOW
    default_max_tokens: int = DEFAULT_MAX_TOKENS
    slugs: tuple[str, ...] = KNOWN_SLUGS
    # Flat price per request of particular slugs (USD credits), over `cost_per_call`/
    # `cost_per_token`. None: the published siblings' prices (LOCAL_COST_BY_MODEL); {}: none.
    slug_costs: Mapping[str, float | str | Decimal] | None = None
    # The operator's key for the admin routes (every key's stats, faults and balances). Without
    # it, each key's admin calls see and change that key's own state only.
    admin_key: str | None = None
    upstream_timeout_s: float = DEFAULT_UPSTREAM_TIMEOUT_S
    guard: ConnectionGuard = field(default_factory=ConnectionGuard)

    def __post_init__(self) -> None:
        if self.admin_key is not None:
            if not self.admin_key or any(c.isspace() for c in self.admin_key):
                raise ValueError("the admin key must be non-empty and contain no whitespace")
            if self.admin_key in self.keys:
                raise ValueError("the admin key must differ from every API key")
        if self.upstream_url is not None:
            check_upstream_url(self.upstream_url)
        if not (math.isfinite(self.upstream_timeout_s) and self.upstream_timeout_s > 0):
            raise ValueError("upstream_timeout_s must be a finite number of seconds > 0")
        self.slugs = tuple(self.slugs)
        if not self.slugs or any(not _SLUG.match(str(s)) for s in self.slugs):
            raise ValueError(f"slugs must be a non-empty list of model slugs, got {self.slugs!r}")
        for slug, price in (self.slug_costs or {}).items():
            amount = to_decimal(price)
            if not amount.is_finite() or amount < 0:
                raise ValueError(f"slug_costs[{slug!r}] must be a price >= 0 in USD, got {price!r}")

    def prices(self) -> dict[str, Decimal]:
        """Each served slug's own flat price per request, where it has one (exact)."""
        table = LOCAL_COST_BY_MODEL if self.slug_costs is None else self.slug_costs
        return {s: to_decimal(p) for s, p in table.items() if s in self.slugs}

    def __repr__(self) -> str:  # keys are secrets: show their labels only
        labels = ", ".join(key_label(k) for k in self.keys)
        return f"ServerConfig(backend={self.backend!r}, keys=[{labels}], rpm={self.rpm!r})"

    def reply_source(self) -> str:
        """What produces this server's replies, for clients' cache keys (`Client.source`).

        Stable across restarts and ports, so a rerun on a fresh local server still hits the cache,
        but different for each backend (and each set of scripted rules, each upstream), so a
        stand-in's replies are never served as another model's.
        """
        if self.backend == "scripted" and self.rules is not None:
            return f"llamakit-local/scripted#{_rules_digest(self.rules)}"
        if self.backend == "upstream":
            # Clients store their source: the URL's credentials (if any) must not travel with it.
            url = public_url(self.upstream_url or "")
            return f"llamakit-local/upstream {url} {self.upstream_model or ''}".strip()
        return f"llamakit-local/{self.backend}"


def _rules_digest(rules: Path | Sequence[Mapping[str, Any]]) -> str:
    if isinstance(rules, (str, Path)):
        try:
            data = Path(rules).read_bytes()
        except OSError:  # create_app reports the unreadable file; the digest falls back to its name
            data = str(rules).encode()
    else:
        data = json.dumps(list(rules), sort_keys=True, default=str).encode()
    return hashlib.sha256(data).hexdigest()[:12]


def build_keys(
    api_key: str | None,
    keys: Mapping[str, float | Decimal] | Sequence[str] | None,
    credits: float | Decimal,
) -> dict[str, Decimal]:
    """Merge the primary key and any extra keys into {key: starting balance (exact)}."""
    # The primary key comes first: handles and the CLI present it as "the" key.
    result: dict[str, Decimal] = {api_key or generate_api_key(): to_decimal(credits)}
    if isinstance(keys, Mapping):
        result.update({str(k): to_decimal(v) for k, v in keys.items()})
    elif keys is not None:
        if isinstance(keys, str):
            raise TypeError("keys must be a list of keys or a {key: credits} mapping, not a str")
        result.update({str(k): to_decimal(credits) for k in keys})
    for key in result:
        if not key or any(c.isspace() for c in key):
            raise ValueError("API keys must be non-empty and contain no whitespace")
    return result
