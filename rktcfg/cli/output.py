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
    """Print ``data`` as JSON or YAML, or ``text()`` for humans."""
    fmt = getattr(ctx.options, "output", "text")
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
