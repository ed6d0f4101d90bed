"""Field diffs between a recorded pod spec and a desired one, and the plan as readable text.

Pure. Field paths name what changed the way a user would point at it in the pod file::

    apps[web].isolators.memory       64M → 128M
    apps[web].env.GREETING           (none) → hello      an entry added
    apps[web].ports[http].hostPort   8080 → 8081         lists of named things, keyed by name
    apps[web].mounts[site].readOnly  false → true        mounts keyed by volume
    volumes[site].source             /a → /b
    labels["app.kubernetes.io/name"]                      keys with dots are quoted
    image[web]                       sha512-aaa… → sha512-bbb…   the tag points at another image
    file[/x/pods/site]               content changed      a read-only host file's content

A list of dicts is keyed by ``name``, else by ``volume``, else by ``volume:path``, when that
key is unique on both sides; any other list is one value. Added and removed entries show as
old None or new None. The order is deterministic: dict keys sorted; keyed entries in the
desired order, then the removed ones in the recorded order.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

TYPE_CHECKING = False
if TYPE_CHECKING:
    from rktcfg.plan.planner import Action, Change, Plan

#: (field, old, new)
FieldChange = tuple[str, Any, Any]

_PLAIN_KEY = re.compile(r"^[A-Za-z0-9_/-]+$")
_LIST_KEYS: tuple[tuple[str, ...], ...] = (("name",), ("volume",), ("volume", "path"))
#: Image IDs and hashes in text: the prefix and this many hex digits.
SHORT_HEX = 12


# --- the diff ----------------------------------------------------------------------------


def spec_changes(old: Any, new: Any) -> list[FieldChange]:
    """The fields that differ between two canonical specs."""
    out: list[FieldChange] = []
    _walk("", old, new, out)
    return out


def image_changes(
    old_spec: Mapping[str, Any],
    new_spec: Mapping[str, Any],
    old_images: Mapping[str, Any] | None,
    new_images: Mapping[str, Any],
) -> list[FieldChange]:
    """``image[<app>]`` for each app in both specs whose resolved image ID differs.

    ``old_images`` is what the pod recorded at creation (ref -> id); None when unknown, which
    reports nothing (the hash comparison still sees the change)."""
    if old_images is None:
        return []
    old_apps = {a.get("name"): a for a in old_spec.get("apps") or () if isinstance(a, Mapping)}
    out: list[FieldChange] = []
    for app in new_spec.get("apps") or ():
        old_app = old_apps.get(app.get("name"))
        if old_app is None or old_app.get("image") not in old_images:
            continue
        old_id = old_images[old_app["image"]]
        new_id = new_images.get(app.get("image"))
        if old_id != new_id:
            out.append((f"image[{app.get('name')}]", old_id, new_id))
    return out


def file_changes(
    paths: Sequence[str], old_files: Mapping[str, Any] | None, new_files: Mapping[str, Any]
) -> list[FieldChange]:
    """``file[<path>]`` for each host file whose content hash differs from the recorded one
    (paths not recorded at creation are new volumes: the spec diff shows those)."""
    if old_files is None:
        return []
    return [
        (f"file[{path}]", old_files[path], new_files.get(path))
        for path in sorted(set(paths))
        if path in old_files and old_files[path] != new_files.get(path)
    ]


def _key_path(path: str, key: object) -> str:
    text = str(key)
    if _PLAIN_KEY.match(text):
        return f"{path}.{text}" if path else text
    return f"{path}[{json.dumps(text)}]"


def _same(a: Any, b: Any) -> bool:
    """Equality as canonical JSON sees it: ``1`` is not ``true``, tuples are lists."""
    if isinstance(a, tuple):
        a = list(a)
    if isinstance(b, tuple):
        b = list(b)
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def _list_key(old: Sequence[Any], new: Sequence[Any]) -> tuple[str, ...] | None:
    items = [*old, *new]
    if not items or not all(isinstance(i, dict) for i in items):
        return None
    for fields in _LIST_KEYS:
        if not all(all(isinstance(i.get(f), str) for f in fields) for i in items):
            continue
        old_keys = [tuple(i[f] for f in fields) for i in old]
        new_keys = [tuple(i[f] for f in fields) for i in new]
        if len(set(old_keys)) == len(old_keys) and len(set(new_keys)) == len(new_keys):
            return fields
    return None


def _walk(path: str, old: Any, new: Any, out: list[FieldChange]) -> None:
    # Each node is compared once: dicts by descending into their keys, lists as a whole
    # first (then by key when they are lists of named things), scalars by value.
    if isinstance(old, dict) and isinstance(new, dict):
        for key in sorted(old.keys() | new.keys(), key=str):
            _walk(_key_path(path, key), old.get(key), new.get(key), out)
        return
    if _same(old, new):
        return
    if isinstance(old, list | tuple) and isinstance(new, list | tuple):
        fields = _list_key(old, new)
        if fields is not None:
            _walk_keyed(path, fields, old, new, out)
            return
    out.append((path or "spec", old, new))


def _walk_keyed(
    path: str,
    fields: tuple[str, ...],
    old: Sequence[Mapping[str, Any]],
    new: Sequence[Mapping[str, Any]],
    out: list[FieldChange],
) -> None:
    def key(item: Mapping[str, Any]) -> str:
        return ":".join(str(item[f]) for f in fields)

    old_by = {key(i): i for i in old}
    new_by = {key(i): i for i in new}
    common_old = [k for k in old_by if k in new_by]
    common_new = [k for k in new_by if k in old_by]
    if common_old != common_new:
        out.append((path, [key(i) for i in old], [key(i) for i in new]))
    for k in [*new_by, *(k for k in old_by if k not in new_by)]:
        _walk(f"{path}[{k}]", old_by.get(k), new_by.get(k), out)


# --- text --------------------------------------------------------------------------------

SYMBOLS = {
    "create": "+",
    "replace": "~",
    "start": ">",
    "stop": ".",
    "remove": "-",
    "collect": "-",
    "unchanged": "=",
    "conflict": "!",
}
_COLORS = {
    "create": "32",
    "replace": "33",
    "start": "36",
    "stop": "33",
    "remove": "31",
    "collect": "31",
    "unchanged": "2",
    "conflict": "1;31",
}
#: The summary's parts, in order; the first four are always shown.
_SUMMARY = (
    ("create", "to create"),
    ("replace", "to replace"),
    ("start", "to start"),
    ("stop", "to stop"),
    ("remove", "to remove"),
    ("collect", "to collect"),
    ("unchanged", "unchanged"),
    ("conflict", "conflict"),
)
_ALWAYS = ("create", "replace", "remove", "unchanged")


def _paint(text: str, code: str, color: bool) -> str:
    return f"\x1b[{code}m{text}\x1b[0m" if color else text


def shorten(value: str) -> str:
    """``sha512-`` or ``sha256:`` and 12 hex digits, then an ellipsis."""
    for prefix in ("sha512-", "sha256:"):
        if value.startswith(prefix) and len(value) > len(prefix) + SHORT_HEX:
            return value[: len(prefix) + SHORT_HEX] + "…"
    return value


def format_value(value: Any) -> str:
    if value is None:
        return "(none)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return shorten(value) if value else '""'
    if isinstance(value, int | float):
        return str(value)
    return json.dumps(value, sort_keys=True, separators=(", ", ": "), ensure_ascii=False)


def format_change(change: Change, *, color: bool = False) -> str:
    """One field line: ``apps[web].isolators.memory: 64M → 128M``."""
    if change.field.startswith("file["):
        what = "missing" if change.new is None else "content changed"
        return f"{change.field}: {_paint(what, '33', color)}"
    if change.old is None and isinstance(change.new, dict | list):
        return f"{change.field}: {_paint('added', '32', color)}"
    if change.new is None and isinstance(change.old, dict | list):
        return f"{change.field}: {_paint('removed', '31', color)}"
    old = _paint(format_value(change.old), "31", color)
    new = _paint(format_value(change.new), "32", color)
    return f"{change.field}: {old} → {new}"


def format_header(action: Action, *, color: bool = False) -> str:
    """``~ web (3f2a1b4c): spec changed: apps[web].isolators.memory``."""
    symbol = SYMBOLS.get(action.kind, "?")
    who = action.pod
    if action.uuid is not None and action.kind not in ("create", "unchanged"):
        who += f" ({action.uuid[:8]})"
    return _paint(f"{symbol} {who}: {action.reason}", _COLORS.get(action.kind, "0"), color)


def summary(plan: Plan) -> str:
    """``2 to create, 1 to replace, 0 to remove, 5 unchanged`` (others only when non-zero)."""
    counts = plan.counts()
    parts = []
    for kind, label in _SUMMARY:
        n = counts.get(kind, 0)
        if n or kind in _ALWAYS:
            plural = "s" if kind == "conflict" and n != 1 else ""
            parts.append(f"{n} {label}{plural}")
    return ", ".join(parts)


def render_text(plan: Plan, color: bool = False) -> str:
    """The plan as a readable diff: a header line per action, indented field lines, and a
    summary line. ANSI colours only when ``color``."""
    lines: list[str] = []
    for action in plan.actions:
        lines.append(format_header(action, color=color))
        lines.extend("    " + format_change(c, color=color) for c in action.changes)
    lines.append(summary(plan))
    return "\n".join(lines) + "\n"
