"""Configuration values that remember where they came from.

A layer is a :data:`Tree`: nested dicts whose leaves are :class:`Leaf` values, each carrying
its :class:`Origin`. Lists are leaves (a later layer replaces a list whole). :data:`UNSET` is
the value of a leaf that says nothing (a flag that was not given, an rkt JSON ``""``); it is
never confused with an empty string, which is a real value that can override a lower layer.

Pure: no I/O.
"""

from __future__ import annotations

from typing import Any, TypeAlias


class _Unset:
    __slots__ = ()

    def __repr__(self) -> str:
        return "UNSET"

    def __bool__(self) -> bool:
        return False


#: The value of a leaf that sets nothing.
UNSET: Any = _Unset()


class Origin:
    """Where a value came from: a file and line, a flag, an environment variable, or built-in."""

    __slots__ = ("file", "kind", "line", "name")

    def __init__(
        self, kind: str, *, file: str | None = None, line: int | None = None, name: str = ""
    ) -> None:
        self.kind = kind  # "file" | "flag" | "env" | "built-in"
        self.file = file
        self.line = line
        self.name = name

    @classmethod
    def in_file(cls, file: str, line: int | None) -> Origin:
        return cls("file", file=file, line=line)

    @classmethod
    def flag(cls, name: str) -> Origin:
        return cls("flag", name=name)

    @classmethod
    def env(cls, name: str) -> Origin:
        return cls("env", name=name)

    def __str__(self) -> str:
        if self.kind == "file":
            return f"file:{self.file}" + (f":{self.line}" if self.line is not None else "")
        if self.kind == "flag":
            return f"flag {self.name}"
        if self.kind == "env":
            return f"env {self.name}"
        return "built-in"

    def __repr__(self) -> str:
        return f"Origin({str(self)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Origin) and str(self) == str(other)

    def __hash__(self) -> int:
        return hash(str(self))


BUILTIN = Origin("built-in")


class Leaf:
    """One value and its origin."""

    __slots__ = ("origin", "value")

    def __init__(self, value: Any, origin: Origin) -> None:
        self.value = value
        self.origin = origin

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Leaf) and self.value == other.value and self.origin == other.origin

    def __hash__(self) -> int:
        return hash((repr(self.value), self.origin))

    def __repr__(self) -> str:
        return f"Leaf({self.value!r}, {self.origin})"


Tree: TypeAlias = dict[str, "Tree | Leaf"]
Path: TypeAlias = tuple[str, ...]


def tree_from_data(data: dict[str, Any], origin_of: Any, prefix: Path = ()) -> Tree:
    """Wrap plain data into a tree; ``origin_of(path)`` gives each leaf's origin."""
    tree: Tree = {}
    for key, value in data.items():
        path = (*prefix, key)
        if isinstance(value, dict):
            tree[key] = tree_from_data(value, origin_of, path)
        else:
            tree[key] = Leaf(value, origin_of(path))
    return tree


def tree_values(tree: Tree) -> dict[str, Any]:
    """The plain values of a tree, UNSET leaves left out."""
    out: dict[str, Any] = {}
    for key, node in tree.items():
        if isinstance(node, Leaf):
            if node.value is not UNSET:
                out[key] = node.value
        else:
            out[key] = tree_values(node)
    return out


def tree_origins(tree: Tree, prefix: Path = ()) -> dict[str, Origin]:
    """Every set leaf's origin, by dotted key path."""
    out: dict[str, Origin] = {}
    for key, node in tree.items():
        path = (*prefix, key)
        if isinstance(node, Leaf):
            if node.value is not UNSET:
                out[".".join(path)] = node.origin
        else:
            out.update(tree_origins(node, path))
    return out


def first_origin(node: Tree | Leaf) -> Origin | None:
    """The origin of a leaf, or of the first set leaf below a table (for errors about tables)."""
    if isinstance(node, Leaf):
        return node.origin
    for child in node.values():
        found = first_origin(child)
        if found is not None:
            return found
    return None
