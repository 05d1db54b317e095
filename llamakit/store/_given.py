"""What a caller may pass as ``store=``: a ``Store``, the path of one, or None (the default)."""

from __future__ import annotations

import os
from typing import Any

from ..errors import ValidationError
from ._store import Store

# What every ``store=`` argument accepts.
StoreArg = Store | str | os.PathLike[str] | None


def as_store(store: Any) -> Store:
    """``store`` as an open ``Store``: itself; the store at a path (str or ``pathlib.Path``,
    created if missing); or, for None, the default store (``$LLAMAKIT_HOME`` or
    ``.llamakit/llamakit.db``). Raises ``ValidationError`` for anything else, and ``StoreError``
    as ``Store()`` does."""
    if store is None:
        return Store()
    if isinstance(store, Store):
        return store
    if isinstance(store, (str, os.PathLike)):
        return Store(store)
    raise ValidationError(
        f"store must be a llamakit Store or the path of a store file, got "
        f"{type(store).__name__}: pass store=lk.Store('results.db') or store='results.db'",
        field="store",
    )
