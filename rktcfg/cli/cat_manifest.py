"""``rktcfg cat-manifest UUID``: a pod's appc runtime manifest."""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse

    from rktcfg.cli.context import Context


def configure(parser: argparse.ArgumentParser) -> None:
    parser.description = "Print a pod's runtime manifest (appc PodManifest)."
    parser.add_argument("pod", metavar="UUID")


def run(args: argparse.Namespace, ctx: Context) -> int:
    import json

    from rktcfg.pods import Pods

    pod = Pods(ctx.data_dir()).get(args.pod)
    ctx.out.write(json.dumps(pod.read_json("pod"), indent=4) + "\n")
    return 0
