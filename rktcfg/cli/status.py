"""``rktcfg status UUID``: a pod's state, supervisor pid, times and each app's exit code."""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse

    from rktcfg.cli.context import Context


def configure(parser: argparse.ArgumentParser) -> None:
    from rktcfg.cli.output import add_output_option

    parser.description = "Show a pod's status; --wait waits until it has exited."
    parser.add_argument("pod", metavar="UUID", help="UUID, unique UUID prefix or pod name")
    parser.add_argument(
        "--wait",
        nargs="?",
        const="forever",
        default=None,
        metavar="DURATION",
        help="wait for the pod to exit (for at most DURATION)",
    )
    add_output_option(parser)


def run(args: argparse.Namespace, ctx: Context) -> int:
    from rktcfg.cli.output import emit
    from rktcfg.durations import parse_duration
    from rktcfg.errors import RuntimeFailure, UsageError
    from rktcfg.pods import Pods

    pods = Pods(ctx.data_dir())
    pod = pods.get(args.pod)
    if args.wait is not None:
        try:
            timeout = None if args.wait == "forever" else parse_duration(args.wait) / 1e9
        except ValueError as exc:
            raise UsageError(f"--wait: {exc}") from None
        if not pods.wait(pod, timeout):
            raise RuntimeFailure(f"pod {pod.uuid} is still running after {args.wait}")
    status = pods.status(pod)

    def text() -> str:
        lines = [f"state={status['state']}"]
        if status["created_at"]:
            lines.append(f"created={status['created_at']}")
        if status["started_at"]:
            lines.append(f"started={status['started_at']}")
        if status["pid"]:
            lines.append(f"pid={status['pid']}")
        lines.append(f"exited={'true' if status['state'] != 'running' else 'false'}")
        for app in status["apps"]:
            if app.get("exit_code") is not None:
                lines.append(f"app-{app['name']}={app['exit_code']}")
        return "\n".join(lines) + "\n"

    emit(ctx, status, text)
    return 0
