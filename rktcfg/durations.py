"""Durations as Go and rkt write them: ``24h``, ``1h30m``, ``90s``, ``500ms``, ``0``. Pure."""

from __future__ import annotations

import re

_UNITS = {"ns": 1, "us": 10**3, "ms": 10**6, "s": 10**9, "m": 60 * 10**9, "h": 3600 * 10**9}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ns|us|ms|s|m|h)")


def parse_duration(text: str) -> int:
    """Nanoseconds; ValueError with the expected form otherwise."""
    value = text.strip()
    if value == "0":
        return 0
    pos, total = 0, 0.0
    for match in _PART.finditer(value):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    if pos != len(value) or not value:
        raise ValueError(f"must be a duration like 24h, 1h30m or 90s (got {text!r})")
    return int(total)
