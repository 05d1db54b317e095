"""The SQLite store: runs, cells, every call attempt, chat turns and the response cache."""

from ._store import Store, default_path

__all__ = ["Store", "default_path"]
