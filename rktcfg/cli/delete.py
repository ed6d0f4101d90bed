"""``rktcfg delete PATH|NAME...``: stop and remove the pods that files (or names) define."""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse

    from rktcfg.cli.context import Context
    from rktcfg.store.pods import Pod

DESCRIPTION = """\
Stop and remove pods: those a pod file or directory made (apply records each pod's file),
or the pods named. Pods are stopped with SIGTERM (SIGKILL after their grace period) first.

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
    from rktcfg.names import ANNOTATION_SOURCE

    names = [p for p in args.paths if not os.path.exists(p)]
    files = [p for p in args.paths if os.path.exists(p)]
    #: pod name -> the file that must have made it (pods named on the command line: any)
    sources: dict[str, str | None] = dict.fromkeys(names)
    if files:
        args.paths = files
        sources.update({pod.name: pod.source for pod in load(args, ctx).pods})
    pods = Pods(ctx.data_dir())
    run = Executor(pods, desired=(), apply_set="", default_flavor="", base_options=PodOptions())
    deleted, failed = [], []
    with apply_lock(ctx.data_dir()):
        by_name: dict[str | None, list[Pod]] = {}
        for pod in pods.all():  # once: each pod's name file is read once, not once per name
            by_name.setdefault(pod.name(), []).append(pod)
        for name, source in sources.items():
            found = by_name.get(name, [])
            if source is not None:  # from a file: only the pods that file made
                mine = [p for p in found if pods.annotations(p).get(ANNOTATION_SOURCE) == source]
                if found and not mine:
                    failed.append({"pod": name, "error": "not made from this file"})
                    ctx.err.write(
                        f"rktcfg: error: {name}: the pod of that name was not made from "
                        f"{source}; delete it by name to remove it anyway\n"
                    )
                    continue
                found = mine
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
