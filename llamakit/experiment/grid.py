"""An experiment's grid of cells (variant x item x params x repeat x model), generated on demand.

A run of 200,000 cells never holds 200,000 ``Cell`` objects: each pass over the cells (the
fingerprint, the replay check, the runner's passes) generates them one at a time from what the
experiment keeps per item and variant, the canonical JSON of the rendered prompt (rendered once,
when the experiment is built, which is also where a template that fails is reported). The count is
known without generating anything (``count``), so progress shows a total up front.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from .cells import Cell, CellKeys, canonical_json
from .dataset import Item
from .models import model_list

# One record per cell while the fingerprint sorts them: cell_id and cell_key as their 16 bytes,
# then the item's index (big-endian, so the bytes sort as the hex text does).
_RECORD = 36


class CellGrid:
    """The cells of one experiment. ``prompts``: per variant, the canonical JSON of each item's
    rendered messages (in item order); ``param_sets``: per variant, its param sets."""

    def __init__(
        self,
        *,
        variants: Sequence[str],
        items: Sequence[Item],
        prompts: Mapping[str, Sequence[str]],
        param_sets: Mapping[str, Sequence[dict[str, Any]]],
        repeats: int,
    ) -> None:
        self._variants = list(variants)
        self._items = items
        self._prompts = prompts
        self._params = {v: [(p, canonical_json(p)) for p in param_sets[v]] for v in variants}
        self._repeats = repeats
        self._fingerprints: dict[tuple[str, ...], str] = {}

    def count(self, model: str) -> int:
        """How many cells a run over the model key ``model`` has (nothing is generated)."""
        per_model = sum(len(self._params[v]) for v in self._variants) * len(self._items)
        return per_model * self._repeats * len(model_list(model))

    def cells(
        self, model: str, source: str = "", *, wanted: Callable[[int], bool] | None = None
    ) -> Iterator[Cell]:
        """Every cell, generated in a stable order: variant, item, params, repeat. ``source`` is
        who answers (``Client.source``); it keys the response cache. ``model`` is a model key
        (see ``Experiment.resolve_model``): with several models their cells interleave (each cell
        of model 1, then the same cell of model 2), so a run stopped early still holds paired
        cells. ``wanted``: only the cells whose ordinal it accepts (the others cost no hashing)."""
        for _, cell in self._walk(model, source, wanted):
            yield cell

    def _walk(
        self, model: str, source: str, wanted: Callable[[int], bool] | None
    ) -> Iterator[tuple[int, Cell]]:
        """(item index, cell) for every cell, in order."""
        slugs = model_list(model)
        if len(slugs) == 1:
            return self._walk_model(slugs[0], source, 1, 0, wanted)
        walks = [self._walk_model(m, source, len(slugs), i, wanted) for i, m in enumerate(slugs)]
        # The models' cells sit side by side (ordinal = position x models + model index): with
        # ``wanted`` some walks skip cells the others yield, so they are merged by ordinal.
        import heapq

        return heapq.merge(*walks, key=lambda pair: pair[1].ordinal)

    def _walk_model(
        self,
        model: str,
        source: str,
        stride: int,
        offset: int,
        wanted: Callable[[int], bool] | None,
    ) -> Iterator[tuple[int, Cell]]:
        keys = CellKeys(model, source)
        repeats = range(self._repeats)
        position = 0
        for variant in self._variants:
            param_sets = self._params[variant]
            for index, (item, prompt) in enumerate(
                zip(self._items, self._prompts[variant], strict=True)
            ):
                for params, params_json in param_sets:
                    first = position
                    position += self._repeats
                    ordinals = [(first + r) * stride + offset for r in repeats]
                    if wanted is not None and not any(wanted(o) for o in ordinals):
                        continue
                    request = keys.request(prompt, params_json)
                    place = keys.place(variant, item.id, params_json)
                    for repeat, ordinal in zip(repeats, ordinals, strict=True):
                        if wanted is not None and not wanted(ordinal):
                            continue
                        yield (
                            index,
                            Cell(
                                cell_id=keys.cell_id(place, repeat),
                                cell_key=keys.cell_key(request, repeat),
                                variant=variant,
                                item_id=item.id,
                                params=params,
                                params_json=params_json,
                                repeat=repeat,
                                model=model,
                                prompt=prompt,
                                row=item.row,
                                ordinal=ordinal,
                            ),
                        )

    def fingerprint(self, model: str, source: str, head: Sequence[str]) -> str:
        """A hash of ``head`` (the experiment's name, model, source and scorers), then of each
        cell's id, its request key and its item's row, in order of cell id; computed once per
        model, source and head. The cells are sorted as 36-byte records (not as objects), so a
        run of 200,000 cells takes 7 MB for it, for a moment."""
        memo = (model, source, *head)
        found = self._fingerprints.get(memo)
        if found is not None:
            return found
        import numpy as np

        digest = hashlib.sha256()
        for part in head:
            digest.update(part.encode("utf-8", "surrogatepass") + b"\0")
        records = bytearray(_RECORD * self.count(model))
        for n, (index, cell) in enumerate(self._walk(model, source, None)):
            at = n * _RECORD
            records[at : at + 16] = bytes.fromhex(cell.cell_id)
            records[at + 16 : at + 32] = bytes.fromhex(cell.cell_key)
            records[at + 32 : at + _RECORD] = index.to_bytes(4, "big")
        fields = [("id0", ">u8"), ("id1", ">u8"), ("rest", f"V{_RECORD - 16}")]
        table = np.frombuffer(records, dtype=np.dtype(fields))
        for n in np.lexsort((table["id1"], table["id0"])).tolist():
            record = records[n * _RECORD : (n + 1) * _RECORD]
            digest.update(f"{record[:16].hex()}:{record[16:32].hex()}:".encode())
            row = self._items[int.from_bytes(record[32:], "big")].row
            digest.update(canonical_json(row).encode("utf-8", "surrogatepass") + b"\0")
        self._fingerprints[memo] = found = digest.hexdigest()[:32]
        return found
