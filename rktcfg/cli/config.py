"""``rktcfg config``: the effective configuration, each value's origin, and ``--check DIR``."""

from __future__ import annotations

from rktcfg.config.layers import KINDS

TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    from typing import Any

    from rktcfg.cli.context import Context
    from rktcfg.config.loader import Effective

DESCRIPTION = """\
Show the effective configuration: the vendor, system and user layers' drop-ins merged in
lexical order of file name, then RKTCFG_DIR and --dir. With --show-origin, every value's
source (file and line, flag, env or built-in), like `git config --show-origin`.

--check DIR validates a directory of drop-ins (a layer with paths.d/ stage1.d/ isolators.d/
net.d/, or one of those directories) over the vendor layer, before you install it: exit 0
when clean, 2 with every problem listed."""


def configure(parser: argparse.ArgumentParser) -> None:
    from rktcfg.cli.output import add_output_option

    parser.description = DESCRIPTION
    parser.add_argument("kind", nargs="?", choices=KINDS, help="show only this kind")
    parser.add_argument("--show-origin", action="store_true", help="show where each value is set")
    parser.add_argument("--check", metavar="DIR", help="validate a directory of drop-ins")
    add_output_option(parser)


def flatten(document: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    """(dotted key, value) for every leaf, in document order."""
    rows: list[tuple[str, Any]] = []
    for key, value in document.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            rows.extend(flatten(value, path + "."))
        elif not isinstance(value, dict):
            rows.append((path, value))
    return rows


def _select(effective: Effective, kind: str | None) -> tuple[dict[str, Any], dict[str, str]]:
    document = effective.document
    origins = effective.origins
    if kind is None:
        return document, origins
    prefix = kind + "."
    return {kind: document[kind]}, {k: v for k, v in origins.items() if k.startswith(prefix)}


def render_text(document: dict[str, Any], origins: dict[str, str], show_origin: bool) -> str:
    from rktcfg.cli.output import scalar_text

    rows = flatten(document)
    if not show_origin:
        return "".join(f"{key} = {scalar_text(value)}\n" for key, value in rows)
    width = max((len(origins.get(key, "")) for key, _ in rows), default=0)
    return "".join(
        f"{origins.get(key, ''):<{width}}  {key} = {scalar_text(value)}\n" for key, value in rows
    )


def run(args: argparse.Namespace, ctx: Context) -> int:
    from rktcfg.cli.output import emit

    if args.check is not None:
        return _check(args, ctx)
    effective = ctx.effective()
    document, origins = _select(effective, args.kind)
    data: dict[str, Any] = document
    if args.show_origin:
        data = {
            "config": document,
            "origins": origins,
            "layers": effective.layers,
            "files": effective.sources,
        }
    emit(ctx, data, lambda: render_text(document, origins, args.show_origin))
    return 0


def _check(args: argparse.Namespace, ctx: Context) -> int:
    """Validate afresh. With ``-o json|yaml`` the verdict, problems included, goes to stdout."""
    from rktcfg.cli.output import emit
    from rktcfg.config.loader import check_directory
    from rktcfg.errors import ConfigError, ExitCode

    try:
        effective, count = check_directory(args.check, vendor=ctx.options.vendor_config)
    except ConfigError as exc:
        if args.output == "text":
            raise
        problems = [p.as_dict() for p in exc.problems]
        emit(ctx, {"directory": args.check, "ok": False, "files": [], "problems": problems}, str)
        return int(ExitCode.BAD_INPUT)
    for note in effective.notes:
        ctx.debug(note)
    checked = [s["path"] for s in effective.sources if s["layer"] == "checked"]
    data = {"directory": args.check, "ok": True, "files": checked, "problems": []}
    emit(ctx, data, lambda: f"{args.check}: ok, {count} file(s) valid\n")
    return 0
