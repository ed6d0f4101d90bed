"""Merging: associative on agreeing shapes, last layer wins for scalars, UNSET says nothing."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from rktcfg.config.merge import merge_layers, merge_trees
from rktcfg.config.tree import UNSET, Leaf, Origin, Tree, tree_origins, tree_values

# A fixed shape, as validated files have: each key is always a table or always a leaf.
SHAPE: dict[str, Any] = {
    "a": {"x": None, "y": None},
    "b": None,
    "c": {"z": {"w": None, "v": None}, "u": None},
    "d": None,
}
scalars = st.one_of(st.integers(-3, 3), st.sampled_from(["", "s", "t"]), st.just(UNSET))


def _layer(shape: dict[str, Any], name: str) -> st.SearchStrategy[Tree]:
    entries: dict[str, st.SearchStrategy[Any]] = {}
    for key, sub in shape.items():
        if sub is None:
            entries[key] = st.one_of(scalars, st.lists(st.integers(0, 3), max_size=2)).map(
                lambda v, k=key: Leaf(v, Origin.in_file(name, len(k)))
            )
        else:
            entries[key] = _layer(sub, name)
    return st.fixed_dictionaries({}, optional=entries)


layers = st.tuples(_layer(SHAPE, "one"), _layer(SHAPE, "two"), _layer(SHAPE, "three"))


@given(layers)
def test_merge_is_associative(abc: tuple[Tree, Tree, Tree]) -> None:
    a, b, c = abc
    left = merge_trees(merge_trees(a, b), c)
    right = merge_trees(a, merge_trees(b, c))
    assert tree_values(left) == tree_values(right)
    assert tree_origins(left) == tree_origins(right)


def _leaves(tree: Tree, prefix: tuple[str, ...] = ()) -> dict[tuple[str, ...], Leaf]:
    out: dict[tuple[str, ...], Leaf] = {}
    for key, node in tree.items():
        if isinstance(node, Leaf):
            out[(*prefix, key)] = node
        else:
            out.update(_leaves(node, (*prefix, key)))
    return out


@given(layers)
def test_last_layer_that_sets_a_scalar_wins(abc: tuple[Tree, Tree, Tree]) -> None:
    merged = _leaves(merge_layers(abc))
    expected: dict[tuple[str, ...], Leaf] = {}
    for layer in abc:
        for path, leaf in _leaves(layer).items():
            if leaf.value is not UNSET:
                expected[path] = leaf
    assert merged == expected


def test_empty_string_overrides_but_unset_does_not() -> None:
    low = {"memory": Leaf("512M", Origin.in_file("low", 1))}
    cleared = merge_trees(low, {"memory": Leaf("", Origin.in_file("high", 1))})
    assert tree_values(cleared) == {"memory": ""}
    kept = merge_trees(low, {"memory": Leaf(UNSET, Origin.flag("--memory"))})
    assert tree_values(kept) == {"memory": "512M"}


def test_merge_does_not_modify_inputs() -> None:
    low: Tree = {"t": {"a": Leaf(1, Origin.in_file("low", 1))}}
    high: Tree = {"t": {"b": Leaf(2, Origin.in_file("high", 1))}}
    merged = merge_trees(low, high)
    assert tree_values(merged) == {"t": {"a": 1, "b": 2}}
    assert tree_values(low) == {"t": {"a": 1}}
    assert tree_values(high) == {"t": {"b": 2}}
