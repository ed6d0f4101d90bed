"""``rktcfg rm UUID...``: remove pods that are not running."""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse

    from rktcfg.cli.context import Context


def configure(parser: argparse.ArgumentParser) -> None:
    parser.description = "Remove pods (a running pod is refused: stop it first)."
    parser.add_argument("pods", nargs="+", metavar="UUID")


def run(args: argparse.Namespace, ctx: Context) -> int:
    from rktcfg.errors import ExitCode, RktcfgError
    from rktcfg.pods import Pods

    pods = Pods(ctx.data_dir())
    status = ExitCode.OK
    for ref in args.pods:
        try:
            pod = pods.get(ref)
            pods.remove(pod)
        except RktcfgError as exc:
            ctx.err.write(f"rktcfg: error: {exc.message}\n")
            status = max(status, exc.exit_code)
            continue
        ctx.out.write(f'"{pod.uuid}"\n')
    return int(status)
