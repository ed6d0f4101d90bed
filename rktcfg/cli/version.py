"""``rktcfg version``: rktcfg, the appc spec it implements, the API, and the default stage1."""

from __future__ import annotations

from rktcfg.version import (
    API_VERSION,
    APPC_SPEC_READS,
    APPC_SPEC_VERSION,
    BUILTIN_DEFAULT_FLAVOR,
    STAGE1_NAME_PREFIX,
    __version__,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    from typing import Any

    from rktcfg.cli.context import Context


def _lines(flavor: str, name: str, version: str, origin: str) -> str:
    return (
        f"rktcfg {__version__}\n"
        f"appc spec {APPC_SPEC_VERSION} (also reads {APPC_SPEC_READS} images)\n"
        f"api {API_VERSION}\n"
        f"stage1 {flavor} ({name} {version}) from {origin}\n"
    )


def builtin_text() -> str:
    """``rktcfg --version``: answered from constants, without reading any configuration."""
    name = STAGE1_NAME_PREFIX + BUILTIN_DEFAULT_FLAVOR
    return _lines(BUILTIN_DEFAULT_FLAVOR, name, __version__, "built-in defaults")


def configure(parser: argparse.ArgumentParser) -> None:
    from rktcfg.cli.output import add_output_option

    parser.description = (
        "Show the versions of rktcfg, the appc spec it implements (and the oldest it reads),\n"
        "the API service, and the default stage1 flavor as the configuration sets it.\n"
        "`rktcfg --version` shows the same without reading the configuration."
    )
    add_output_option(parser)


def run(args: argparse.Namespace, ctx: Context) -> int:
    from rktcfg.cli.output import emit

    effective = ctx.effective()
    stage1 = effective.document["stage1"]
    flavor = stage1["default-flavor"]
    data: dict[str, Any] = {
        "rktcfg": __version__,
        "appc": {"spec": APPC_SPEC_VERSION, "reads": APPC_SPEC_READS},
        "api": API_VERSION,
        "stage1": {
            "flavor": flavor,
            "name": stage1[flavor]["name"],
            "version": stage1[flavor]["version"],
            "origin": effective.origins["stage1.default-flavor"],
        },
    }
    s1 = data["stage1"]
    emit(ctx, data, lambda: _lines(flavor, s1["name"], s1["version"], s1["origin"]))
    return 0
