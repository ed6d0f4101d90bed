"""Paths inside a root directory, resolved as if that directory were ``/``.

Standard library only and cheap to import: the pod supervisor's children use it to resolve
mount targets inside an app's rootfs, and the tar extractor builds on it.
"""

from __future__ import annotations

import os
import stat

MAX_LINK_HOPS = 40  # Linux's MAXSYMLINKS


def join(base: str, parts: list[str] | tuple[str, ...]) -> str:
    """The host path of in-root components; ``base`` is the root without its trailing slash."""
    return base + "/" + "/".join(parts) if parts else (base or "/")


def resolve_in_root(root: str, path: str, *, follow_final: bool = True) -> str:
    """The host path of `path` interpreted inside `root` as if root were `/` (symlinks that already
    exist are followed within root, `..` clamps at root). Never returns a path outside root.

    Components that do not exist are taken as written. With ``follow_final=False`` a symlink
    in the last component is returned itself (a trailing ``/`` makes it non-final, as in
    POSIX). More than 40 symlinks on the way is a ValueError.
    """
    return resolve(root, path, follow_final=follow_final, what=path, error=ValueError)


def resolve(root: str, path: str, *, follow_final: bool, what: str, error: type[Exception]) -> str:
    """:func:`resolve_in_root`, raising ``error`` (with ``what`` in its message) on a loop."""
    root = os.path.abspath(root)
    base = root.rstrip("/")
    resolved: list[str] = []
    todo = path.split("/")
    todo.reverse()
    hops = 0
    while todo:
        part = todo.pop()
        if not part or part == ".":
            continue
        if part == "..":
            if resolved:
                resolved.pop()
            continue
        host = join(base, [*resolved, part])
        try:
            st = os.lstat(host)
        except OSError:
            resolved.append(part)  # missing: what follows cannot be a symlink either
            continue
        if stat.S_ISLNK(st.st_mode) and (todo or follow_final):
            hops += 1
            if hops > MAX_LINK_HOPS:
                raise error(f"{what}: too many levels of symbolic links")
            target = os.readlink(host)
            if target.startswith("/"):
                resolved.clear()
            todo.extend(reversed(target.split("/")))
            continue
        resolved.append(part)
    return join(base, resolved)
