"""rkt's own configuration files (``rktKind`` / ``rktVersion`` JSON), read unchanged.

rkt 0.14 read ``paths`` files in ``paths.d`` (``data``, ``stage1-images``) and ``stage1`` files
in ``stage1.d`` (``name``, ``version``, ``location`` of the default stage1 image). An empty
string meant "not set" to rkt, so it sets nothing here either. A stage1 file names the
default stage1: it becomes that flavor's settings and the default flavor (``stage1-fly`` and
``stage1-kvm`` images name those flavors; any other name, like rkt's ``stage1-coreos``, is the
``default`` flavor).

Pure: data in, translated data or problems out.
"""

from __future__ import annotations

from typing import Any

from rktcfg.config.readers import KeyPath
from rktcfg.errors import Problem, describe_value

RKT_KINDS = {"paths": ("data", "stage1-images"), "stage1": ("name", "version", "location")}


def is_rkt_document(data: dict[str, Any]) -> bool:
    return "rktKind" in data or "rktVersion" in data


def flavor_of_stage1(name: str, location: str) -> str:
    """The rktcfg flavor an rkt stage1 image name (or its file name) stands for."""
    for text in (name, location.rsplit("/", 1)[-1]):
        if "stage1-fly" in text:
            return "fly"
        if "stage1-kvm" in text:
            return "kvm"
    return "default"


def translate(
    kind: str, data: dict[str, Any], lines: dict[KeyPath, int], file: str
) -> tuple[dict[str, Any], dict[KeyPath, int], list[Problem]]:
    """An rkt document as native data for ``kind``, with the line of each translated key."""
    problems: list[Problem] = []

    def problem(expected: str, key: str | None, got: Any = None) -> None:
        line = lines.get((key,)) if key else 1
        shown = None if got is None else describe_value(got)
        problems.append(Problem(expected, file=file, line=line, field=key, got=shown))

    rkt_kind = data.get("rktKind")
    if kind not in RKT_KINDS:
        problem(
            "rkt JSON files (rktKind) are read only in paths.d and stage1.d", "rktKind", rkt_kind
        )
        return {}, {}, problems
    if rkt_kind != kind:
        problem(f'must be "{kind}" in {kind}.d', "rktKind", rkt_kind)
    if data.get("rktVersion") != "v1":
        problem('must be "v1"', "rktVersion", data.get("rktVersion"))
    values: dict[str, str] = {}
    for key, value in data.items():
        if key in ("rktKind", "rktVersion"):
            continue
        if key not in RKT_KINDS[kind]:
            known = ", ".join(RKT_KINDS[kind])
            problem(f"unknown key for rktKind {kind} (known: {known})", key)
        elif not isinstance(value, str):
            problem("must be a string", key, value)
        elif value != "":
            values[key] = value
    if problems:
        return {}, {}, problems
    if kind == "paths":
        return values, {(k,): lines[(k,)] for k in values if (k,) in lines}, []
    if ("name" in values) != ("version" in values):
        problem(
            "name and version must be given together", "name" if "name" in values else "version"
        )
        return {}, {}, problems
    if not values:
        return {}, {}, []
    flavor = flavor_of_stage1(values.get("name", ""), values.get("location", ""))
    out = {"default-flavor": flavor, flavor: values}
    new_lines: dict[KeyPath, int] = {("default-flavor",): lines.get(("rktKind",), 1)}
    for key in values:
        if (key,) in lines:
            new_lines[(flavor, key)] = lines[(key,)]
    return out, new_lines, []
