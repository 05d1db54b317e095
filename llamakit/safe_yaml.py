"""The one way llamakit reads YAML a person wrote (spec files, the scripted backend's rules).

``yaml.safe_load`` builds no Python objects beyond plain data, but its anchors and aliases
(``&a`` / ``*a``) share one node many times: nine levels of nine aliases are a few hundred bytes
of file and 387 million values once anything walks them (hashing params, rendering a row,
writing JSON), which hangs the run at gigabytes of memory. This loader composes the document,
counts the nodes each alias stands for (a shared node counted once per use) and refuses a
document whose aliases add more than MAX_ALIAS_NODES nodes, or that refers to itself, before
any Python object is built.
"""

from __future__ import annotations

from typing import Any

import yaml

from .errors import ValidationError

# Aliases in a real spec repeat a block of params or a row a handful of times.
MAX_ALIAS_NODES = 100_000


class _Refused(yaml.YAMLError):
    """Valid YAML that llamakit will not expand."""


class _CountingLoader(yaml.SafeLoader):
    """SafeLoader that weighs the composed node graph before constructing anything."""

    def get_single_node(self) -> Any:
        node = super().get_single_node()
        if node is not None:
            _check_expansion(node)
        return node


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return []


def _check_expansion(root: yaml.Node) -> None:
    """Nodes the document stands for with every alias expanded, against its own node count."""
    expanded: dict[int, int] = {}
    distinct = 0
    on_path: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:  # iterative post-order: a deep document must not exhaust Python's stack
        node, done = stack.pop()
        key = id(node)
        if done:
            on_path.discard(key)
            expanded[key] = 1 + sum(expanded[id(c)] for c in _children(node))
            if expanded[key] > distinct + MAX_ALIAS_NODES:
                raise _Refused(
                    f"its aliases (*name) expand to more than {MAX_ALIAS_NODES:,} values "
                    "(an alias of an alias, repeated, multiplies); write the values out or "
                    "use fewer nested aliases"
                )
            continue
        if key in on_path:
            raise _Refused("an alias (*name) refers to the block that contains it")
        if key in expanded:
            continue
        distinct += 1
        on_path.add(key)
        stack.append((node, True))
        stack.extend((c, False) for c in _children(node) if id(c) not in expanded)


def load_yaml(text: str, name: str, field: str = "yaml") -> Any:
    """The data in YAML ``text``; ValidationError naming ``name`` (the file) when it is not
    valid YAML, nests too deeply, or its aliases expand past MAX_ALIAS_NODES."""
    try:
        return yaml.load(text, Loader=_CountingLoader)  # noqa: S506 (a SafeLoader subclass)
    except _Refused as exc:
        raise ValidationError(f"{name} is refused: {exc}", field=field) from None
    except yaml.YAMLError as exc:
        raise ValidationError(f"{name} is not valid YAML: {exc}", field=field) from None
    except RecursionError:
        raise ValidationError(
            f"{name} is not valid YAML: it nests lists or mappings too deeply", field=field
        ) from None
