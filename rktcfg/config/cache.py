"""A cache of the validated effective configuration.

Keyed by everything the result depends on (rktcfg's version, the layer directories, every
drop-in file's path, size, mtime, ctime and inode, link targets, and the flag and environment
overrides), so an unchanged machine skips YAML, TOML and cerberus entirely. The cache is an
optimisation only: any error reading or writing it is ignored, and the file is replaced
atomically (write a temp file, fsync, rename).

Stored in ``$XDG_CACHE_HOME/rktcfg/config.json`` (default ``~/.cache/rktcfg``); set
``RKTCFG_NO_CACHE=1`` to bypass it. Imported on every ``rktcfg config``: ``os`` and ``json`` only.
"""

from __future__ import annotations

import json
import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any


def default_cache_file(environ: Mapping[str, str]) -> str | None:
    """Where the cache lives, or None when caching is turned off."""
    if environ.get("RKTCFG_NO_CACHE"):
        return None
    base = environ.get("XDG_CACHE_HOME") or os.path.join(
        environ.get("HOME") or os.path.expanduser("~"), ".cache"
    )
    return os.path.join(base, "rktcfg", "config.json")


def read(path: str, key: Any) -> Any:
    """The cached value stored under exactly ``key`` (JSON-comparable), else None."""
    try:
        with open(path, encoding="utf-8") as handle:
            stored = json.load(handle)
    except (OSError, ValueError):
        return None
    if not isinstance(stored, dict) or stored.get("key") != json.loads(json.dumps(key)):
        return None
    return stored.get("value")


def write(path: str, key: Any, value: Any) -> bool:
    """Store ``value`` under ``key``; False (and nothing changed) if that is not possible."""
    from rktcfg.fsutil import AtomicFile

    try:
        text = json.dumps({"key": key, "value": value}, separators=(",", ":"))
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        with AtomicFile(path) as handle:
            handle.write(text.encode())
    except (OSError, TypeError, ValueError):
        return False
    return True
