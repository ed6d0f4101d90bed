"""``rktcfg run-prepared UUID``: start a prepared pod."""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse

    from rktcfg.cli.context import Context


def configure(parser: argparse.ArgumentParser) -> None:
    parser.description = "Start a prepared pod (attached unless --detach)."
    parser.add_argument("pod", metavar="UUID", help="UUID, unique UUID prefix or pod name")
    parser.add_argument("-d", "--detach", action="store_true", help="print the UUID and return")


def run(args: argparse.Namespace, ctx: Context) -> int:
    from rktcfg.cli.run import attach
    from rktcfg.pods import Pods

    pods = Pods(ctx.data_dir())
    pod = pods.run_prepared(args.pod)
    if args.detach:
        ctx.out.write(pod.uuid + "\n")
        return 0
    return attach(pods, pod.uuid, ctx)
