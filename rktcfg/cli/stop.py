"""``rktcfg stop UUID...``: stop running pods (SIGTERM, then SIGKILL after the grace period)."""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse

    from rktcfg.cli.context import Context


def configure(parser: argparse.ArgumentParser) -> None:
    parser.description = "Stop pods; stopping a pod that is not running does nothing."
    parser.add_argument("pods", nargs="+", metavar="UUID")
    parser.add_argument("--force", action="store_true", help="SIGKILL the pod at once")


def run(args: argparse.Namespace, ctx: Context) -> int:
    from rktcfg.pods import Pods

    pods = Pods(ctx.data_dir())
    for ref in args.pods:
        pod = pods.get(ref)
        if pods.stop(pod, force=args.force):
            pods.mark_stopped_by_user(pod)
        ctx.out.write(f'"{pod.uuid}"\n')
    return 0
