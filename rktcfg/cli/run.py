"""``rktcfg run``: prepare a pod from images and run it, attached or detached."""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse

    from rktcfg.cli.context import Context

DESCRIPTION = """\
Run a pod. Pod flags come before the first image; after an image, --exec PATH replaces its
command and arguments after -- are appended; --- starts the next image:

  rktcfg run --stage1 fly example.com/busybox --exec /bin/echo -- hello

Without --detach, rktcfg stays attached: it streams the apps' output, forwards SIGINT and
SIGTERM to the pod, and exits with the pod's exit status. With --detach it prints the pod's
UUID once the apps have started."""


def configure(parser: argparse.ArgumentParser) -> None:
    from rktcfg.cli.podargs import configure_pod_flags

    parser.description = DESCRIPTION
    parser.add_argument("-d", "--detach", action="store_true", help="print the UUID and return")
    parser.add_argument(
        "--interactive", action="store_true", help="give the app this terminal's stdin"
    )
    configure_pod_flags(parser)


def run(args: argparse.Namespace, ctx: Context) -> int:
    import dataclasses

    from rktcfg.cli.podargs import parse_images, pod_options
    from rktcfg.errors import UsageError
    from rktcfg.pods import Pods

    images = parse_images(args.images)
    options = pod_options(args, ctx)
    if args.interactive:
        if args.detach or len(images) != 1:
            raise UsageError("--interactive needs one image and an attached run (no --detach)")
        options = dataclasses.replace(options, interactive=True)
    pods = Pods(ctx.data_dir())
    try:
        pod = pods.run(images, options)
    finally:
        ctx.warn_all(pods.warnings)
    if args.detach:
        ctx.out.write(pod.uuid + "\n")
        return 0
    return attach(pods, pod.uuid, ctx)


def attach(pods: object, uuid: str, ctx: Context) -> int:
    """Stream the pod's output until it exits; forward SIGINT/SIGTERM; its exit status."""
    import contextlib
    import os
    import signal
    import sys
    import threading

    from rktcfg.pods import Pods
    from rktcfg.stage1.logs import follow
    from rktcfg.store.pods import PodState, wait_lock_free

    assert isinstance(pods, Pods)
    pod = pods.get(uuid)

    def forward(*_: object) -> None:
        pods.stop(pods.get(uuid))

    previous = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        app_dirs = {
            app["name"]: pod.file(os.path.join("apps", app["name"]))
            for app in pod.read_json("stage1.json")["apps"]
        }
        out = getattr(sys.stdout, "buffer", None)
        err = getattr(sys.stderr, "buffer", None)
        exited = threading.Event()

        def watch() -> None:  # wakes the follow loop the moment the supervisor exits
            with contextlib.suppress(OSError):
                wait_lock_free(pod.path)
            exited.set()

        threading.Thread(target=watch, daemon=True).start()
        stop = lambda: pod.state() is not PodState.RUNNING  # noqa: E731
        for line in follow(app_dirs, stop=stop, wake=exited):
            target = out if line.stream == "stdout" else err
            if target is None:
                text = line.as_written().decode("utf-8", "replace")
                (ctx.out if line.stream == "stdout" else ctx.err).write(text)
            else:
                target.write(line.as_written())
                target.flush()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    pods.wait(pod, None)
    code = pods.exit_code(pod)
    return 1 if code is None else code
