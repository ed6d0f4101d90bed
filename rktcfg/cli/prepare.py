"""``rktcfg prepare``: prepare a pod (images fetched and rendered, apps set up) to run later."""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse

    from rktcfg.cli.context import Context


def configure(parser: argparse.ArgumentParser) -> None:
    from rktcfg.cli.podargs import configure_pod_flags

    parser.description = (
        "Prepare a pod and print its UUID; `rktcfg run-prepared UUID` starts it. "
        "Takes the same arguments as `rktcfg run`."
    )
    configure_pod_flags(parser)


def run(args: argparse.Namespace, ctx: Context) -> int:
    from rktcfg.cli.podargs import parse_images, pod_options
    from rktcfg.pods import Pods

    images, options = parse_images(args.images), pod_options(args, ctx)
    pods = Pods(ctx.data_dir())
    try:
        pod = pods.prepare(images, options)
    finally:
        ctx.warn_all(pods.warnings)
    ctx.out.write(pod.uuid + "\n")
    return 0
