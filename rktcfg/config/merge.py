"""Merging configuration layers: tables deep-merged, lists and scalars replaced, UNSET ignored.

Pure: no I/O. ``merge_layers`` is associative on trees whose shapes agree (a key is a table in
every layer that sets it, or a leaf in every layer) -- which per-file validation guarantees
before anything is merged -- and the last layer that sets a scalar wins.
"""

from __future__ import annotations

from collections.abc import Iterable

from rktcfg.config.tree import UNSET, Leaf, Tree


def merge_trees(lower: Tree, higher: Tree) -> Tree:
    """``higher`` over ``lower``. Neither input is modified; unchanged subtrees are shared."""
    out: Tree = dict(lower)
    for key, node in higher.items():
        if isinstance(node, Leaf):
            if node.value is not UNSET:
                out[key] = node
            continue
        below = out.get(key)
        out[key] = merge_trees(below, node) if isinstance(below, dict) else merge_trees({}, node)
    return out


def merge_layers(layers: Iterable[Tree]) -> Tree:
    """Fold layers lowest first."""
    result: Tree = {}
    for layer in layers:
        result = merge_trees(result, layer)
    return result
