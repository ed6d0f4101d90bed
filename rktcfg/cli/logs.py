"""``rktcfg logs UUID``: the apps' stdout and stderr."""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse

    from rktcfg.cli.context import Context


def configure(parser: argparse.ArgumentParser) -> None:
    parser.description = "Print a pod's app output (kept in the pod directory, rotated by size)."
    parser.add_argument("pod", metavar="UUID")
    parser.add_argument("--app", metavar="NAME", help="only this app")
    parser.add_argument("-f", "--follow", action="store_true", help="keep printing new output")
    parser.add_argument("--tail", type=int, metavar="N", help="only the last N lines")
    parser.add_argument("--since", metavar="DURATION", help="only output newer than this")


def run(args: argparse.Namespace, ctx: Context) -> int:
    import os
    import sys
    import time

    from rktcfg.durations import parse_duration
    from rktcfg.errors import NotFoundError, UsageError
    from rktcfg.pods import Pods
    from rktcfg.stage1.logs import follow, read_lines
    from rktcfg.store.pods import PodState

    pods = Pods(ctx.data_dir())
    pod = pods.get(args.pod)
    names = [app["name"] for app in pod.read_json("stage1.json")["apps"]]
    if args.app is not None:
        if args.app not in names:
            raise NotFoundError(
                f"pod {pod.uuid} has no app {args.app!r} (apps: {', '.join(names)})"
            )
        names = [args.app]
    since = None
    if args.since:
        try:
            since = time.time_ns() - parse_duration(args.since)
        except ValueError as exc:
            raise UsageError(f"--since: {exc}") from None
    dirs = {name: pod.file(os.path.join("apps", name)) for name in names}
    if args.follow:
        lines = follow(
            dirs, since_ns=since, tail=args.tail, stop=lambda: pod.state() is not PodState.RUNNING
        )
    else:
        collected = []
        for name, directory in dirs.items():
            collected.extend(read_lines(directory, name, since_ns=since))
        collected.sort(key=lambda line: line.time_ns)
        lines = iter(collected[-args.tail :] if args.tail else collected)
    out = getattr(sys.stdout, "buffer", None)
    for line in lines:
        if out is not None and ctx.out is sys.stdout:
            out.write(line.as_written())
            out.flush()
        else:
            ctx.out.write(line.as_written().decode("utf-8", "replace"))
    return 0
