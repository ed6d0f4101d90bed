"""``rktcfg delete PATH|NAME...``: stop and remove the pods that files (or names) define."""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse

    from rktcfg.cli.context import Context

DESCRIPTION = """\
Stop and remove pods: those a pod file or directory defines (by their names), or the pods
named. Pods are stopped with SIGTERM (SIGKILL after their grace period) first.

  rktcfg delete pods/web.yaml
  rktcfg delete web db"""


def configure(parser: argparse.ArgumentParser) -> None:
    from rktcfg.cli.applyargs import configure_sources
    from rktcfg.cli.output import add_output_option

    parser.description = DESCRIPTION
    add_output_option(parser)
    configure_sources(parser, prune=False)


def run(args: argparse.Namespace, ctx: Context) -> int:
    import os

    from rktcfg.apply import Executor, apply_lock
    from rktcfg.cli.applyargs import load
    from rktcfg.cli.output import emit
    from rktcfg.errors import RktcfgError, UsageError
    from rktcfg.pods import PodOptions, Pods

    if not args.paths:
        raise UsageError("give pod files, directories or pod names")
    names: list[str] = []
    files = [p for p in args.paths if os.path.exists(p)]
    names += [p for p in args.paths if not os.path.exists(p)]
    if files:
        args.paths = files
        names += [pod.name for pod in load(args, ctx).pods]
    pods = Pods(ctx.data_dir())
    run = Executor(pods, desired=(), apply_set="", default_flavor="", base_options=PodOptions())
    deleted, failed = [], []
    with apply_lock(ctx.data_dir()):
        for name in dict.fromkeys(names):
            found = [pod for pod in pods.all() if pod.name() == name]
            if not found:
                failed.append({"pod": name, "error": "no such pod"})
                ctx.err.write(f"rktcfg: error: {name}: no such pod\n")
                continue
            for pod in found:
                try:
                    run.remove(pod.uuid)
                except RktcfgError as exc:
                    failed.append({"pod": name, "error": exc.message})
                    ctx.err.write(f"rktcfg: error: {name}: {exc.message}\n")
                    continue
                deleted.append({"pod": name, "uuid": pod.uuid})
    emit(
        ctx,
        {"deleted": deleted, "failed": failed},
        lambda: "".join(f"deleted {d['pod']} ({d['uuid']})\n" for d in deleted),
    )
    return 1 if failed else 0
