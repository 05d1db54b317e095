"""The SQLite store: runs, cells, every call attempt, chat turns and the response cache.

Layer: client -> runner -> **store** -> tables/plots/widgets. It may import only errors and
_defaults: the runner and the chat panel write to it, and it knows neither.
"""

from ._connection import WouldWait
from ._given import StoreArg, as_store
from ._paths import check_store_path
from ._store import Store, default_path

__all__ = ["Store", "StoreArg", "WouldWait", "as_store", "check_store_path", "default_path"]
