"""``-o/--output {text,json,yaml}`` for every command that prints data."""

from __future__ import annotations

import json

TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable
    from typing import Any

    from rktcfg.cli.context import Context

FORMATS = ("text", "json", "yaml")


def add_output_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-o",
        "--output",
        choices=FORMATS,
        default="text",
        help="output format (default: text)",
    )


def emit(ctx: Context, data: Any, text: Callable[[], str]) -> None:
    """Print ``data`` as JSON or YAML, or ``text()`` for humans. ``data`` may be a callable,
    so that listings build their machine-readable form only when it is asked for."""
    fmt = getattr(ctx.options, "output", "text")
    if fmt != "text" and callable(data):
        data = data()
    if fmt == "json":
        ctx.out.write(json.dumps(data, indent=2) + "\n")
    elif fmt == "yaml":
        import yaml

        ctx.out.write(yaml.safe_dump(data, sort_keys=False, default_flow_style=False))
    else:
        ctx.out.write(text())


def scalar_text(value: Any) -> str:
    """A value as it would be written in a TOML drop-in; None reads ``(unset)``."""
    if value is None:
        return "(unset)"
    return json.dumps(value)


def table(headers: list[str], rows: list[list[str]], *, legend: bool = True) -> str:
    """Columns padded to their widest cell, separated by two spaces, like rkt's listings."""
    shown = [headers, *rows] if legend else rows
    if not shown:
        return ""
    widths = [max(len(row[i]) for row in shown) for i in range(len(headers))]
    lines = []
    for row in shown:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=True)]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines) + "\n"


_IEC = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")


def iec_size(size: int) -> str:
    """``512B``, ``12MiB``, ``1.5GiB``."""
    value = float(size)
    for unit in _IEC:
        if value < 1024 or unit == _IEC[-1]:
            if unit == "B" or value >= 10:
                return f"{value:.0f}{unit}"
            return f"{value:.1f}{unit}"
        value /= 1024
    raise AssertionError("unreachable")


def ago(then_ns: int, now_ns: int) -> str:
    """``just now``, ``5 minutes ago``, ``3 days ago``."""
    seconds = max(0, (now_ns - then_ns) // 1_000_000_000)
    for unit, length in (("day", 86400), ("hour", 3600), ("minute", 60), ("second", 1)):
        if seconds >= length:
            count = seconds // length
            return f"{count} {unit}{'s' if count != 1 else ''} ago"
    return "just now"
