"""ipywidgets views for JupyterLab: a chat panel, a live run view and a side-by-side comparison.

Each widget is a ``VBox`` subclass, so it displays like any widget, and keeps its state in plain
attributes so that notebooks and tests can drive it from code and assert on what it shows.
ipywidgets is imported only when one of these names is first used.

Layer: the top of the flow with ``llamakit.plots``; widgets may import every layer but the CLI.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["ChatPanel", "CompareView", "RunView"]

_LAZY = {
    "ChatPanel": "llamakit.widgets.chat",
    "CompareView": "llamakit.widgets.compare",
    "RunView": "llamakit.widgets.runview",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'llamakit.widgets' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
