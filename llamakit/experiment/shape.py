"""What the estimate and the run registry need of an experiment, as a Protocol.

``Experiment`` imports both modules; were they to import ``Experiment`` back (even for type
hints), the three would form an import cycle. They depend on this shape instead.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from .cells import Cell
    from .dataset import Item


class ExperimentShape(Protocol):
    """The parts of ``llamakit.Experiment`` that ``estimate`` and ``register_run`` read."""

    name: str
    scorers: list[Any]
    items: list[Item]

    def resolve_model(self, client: Any) -> str: ...

    def iter_cells(self, model: str, source: str = "") -> Iterator[Cell]: ...

    def fingerprint(self, model: str, source: str = "") -> str: ...

    def config(self, model: str, source: str = "") -> dict[str, Any]: ...

    def _local_tokens(self, cell: Cell) -> int | None: ...
