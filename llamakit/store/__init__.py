"""The SQLite store: runs, cells, every call attempt, chat turns and the response cache."""

from ._paths import check_store_path
from ._store import Store, default_path

__all__ = ["Store", "check_store_path", "default_path"]
