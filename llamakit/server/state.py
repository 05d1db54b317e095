"""Everything one running server holds: keys, ledger, limiter, faults, stats, backend, v2 jobs."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from starlette.requests import HTTPConnection

from .auth import KeyRing, presented_key
from .backends import Backend, make_backend
from .config import ServerConfig, key_label
from .costs import CostModel, FlatCost, make_cost_model
from .faults import FaultInjector
from .jobs import JobStore
from .ledger import Ledger
from .middleware import LABEL_KEY
from .ratelimit import RpmLimiter
from .responses import ApiError
from .stats import Stats


@dataclass
class ServerState:
    config: ServerConfig
    keyring: KeyRing
    # The operator's key for the admin routes only (no account, refused on inference routes).
    admin: KeyRing
    ledger: Ledger
    limiter: RpmLimiter
    faults: FaultInjector
    stats: Stats
    backend: Backend
    cost_model: CostModel
    jobs: JobStore
    # Slugs with a flat price of their own; every other slug is billed by `cost_model`.
    slug_costs: dict[str, CostModel] = field(default_factory=dict)

    @classmethod
    def build(cls, config: ServerConfig, *, cost_model: CostModel | None = None) -> ServerState:
        return cls(
            config=config,
            keyring=KeyRing(config.keys),
            admin=KeyRing([config.admin_key] if config.admin_key else []),
            ledger=Ledger({key_label(k): v for k, v in config.keys.items()}, db=config.db),
            limiter=RpmLimiter(config.rpm, config.rpm_window_s),
            faults=FaultInjector(config.faults),
            stats=Stats(),
            backend=make_backend(config),
            cost_model=cost_model or make_cost_model(config.cost_per_call, config.cost_per_token),
            jobs=JobStore(config.v2_expiry_s),
            slug_costs={slug: FlatCost(price) for slug, price in config.prices().items()},
        )

    def cost_for(self, slug: str) -> CostModel:
        """How a call to ``slug`` is billed: its own price, else the server's cost model."""
        return self.slug_costs.get(slug, self.cost_model)

    def authenticate(self, conn: HTTPConnection) -> str:
        """The caller's key label, or ApiError(401). Recorded in the scope for per-key stats."""
        label = self.keyring.match(presented_key(conn))
        if label is None:
            raise ApiError(401)
        conn.scope[LABEL_KEY] = label
        return label

    def admin_scope(self, conn: HTTPConnection) -> str | None:
        """Whose state an admin route may read or change: None for the admin key (every key's),
        else the calling key's label (its own only). ApiError(401) for any other key."""
        presented = presented_key(conn)
        if self.admin.match(presented) is not None:
            return None
        return self.authenticate(conn)

    def add_key(self, api_key: str, credits: Decimal | float) -> str:
        label = self.keyring.add(api_key)
        self.ledger.add_account(label, credits)
        return label

    def stats_dict(self) -> dict[str, Any]:
        return self.stats.as_dict(self.ledger, self.keyring.labels)

    def stats_dict_for(self, label: str) -> dict[str, Any]:
        """The figures of one key, in the shape of `stats_dict` (others' are never included)."""
        return self.stats.as_dict_for(self.ledger, label)

    def balance(self, label: str) -> Decimal:
        return self.ledger.balance(label)


def get_state(conn: HTTPConnection) -> ServerState:
    state: ServerState = conn.app.state.llamakit
    return state
