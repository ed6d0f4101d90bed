"""``rktcfg apply --watch DIR``: reconcile on every file change and every interval, like
kubelet static pods, until SIGTERM or SIGINT."""

from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse

    from rktcfg.cli.context import Context


def signature(paths: list[str], recursive: bool) -> tuple[tuple[str, int, int], ...]:
    """(path, mtime_ns, size) of every file below ``paths``: any edit, addition or removal
    changes it (a poll of mtimes, cheaper than inotify and good enough here)."""
    found = []
    for path in paths:
        if os.path.isdir(path):
            for top, dirs, files in os.walk(path):
                if not recursive and top != path:
                    dirs[:] = []
                    continue
                dirs.sort()
                for name in sorted(files):
                    full = os.path.join(top, name)
                    try:
                        st = os.stat(full)
                    except OSError:
                        continue
                    found.append((full, st.st_mtime_ns, st.st_size))
        else:
            try:
                st = os.stat(path)
                found.append((path, st.st_mtime_ns, st.st_size))
            except OSError:
                found.append((path, -1, -1))
    return tuple(found)


def watch(args: argparse.Namespace, ctx: Context) -> int:
    import signal
    import time

    from rktcfg.apply import apply_lock
    from rktcfg.cli.apply import apply_once
    from rktcfg.cli.applyargs import plan
    from rktcfg.durations import parse_duration
    from rktcfg.errors import RktcfgError, UsageError

    try:
        interval = parse_duration(args.interval) / 1e9
    except ValueError as exc:
        raise UsageError(f"--interval: {exc}") from None
    if not args.paths:
        raise UsageError("--watch needs a directory or pod files")
    stopping = []

    def stop(*_: object) -> None:
        stopping.append(True)

    previous = {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGINT)}

    def log(line: str) -> None:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        ctx.out.write(f"{stamp} {line}\n")
        ctx.out.flush()

    last: tuple[tuple[str, int, int], ...] | None = None
    due = 0.0
    watched = [*args.paths, *args.vars_file]
    hosts: list[str] = []  # the read-only host volumes the pods mount: their content counts
    observed = None  # the last turn's observation: unchanged image files are not hashed again
    log(f"watching {', '.join(args.paths)} (every {args.interval}, and on file changes)")
    try:
        while not stopping:
            now = time.monotonic()
            files = signature(watched, args.recursive)  # before planning: an edit made
            current = files + signature(hosts, True)  # while applying is seen next turn
            if current != last or now >= due:
                why = (
                    "start"
                    if last is None
                    else ("files changed" if current != last else "interval")
                )
                try:
                    with apply_lock(ctx.data_dir()):
                        planned = plan(args, ctx, previous=observed)
                        observed = planned.observed
                        hosts = sorted({f for p in planned.loaded.pods for f in p.host_files})
                        if planned.plan.changed():
                            log(f"reconciling ({why})")
                            _, result = apply_once(planned, args, ctx, log)
                            log(f"applied: {result['summary']}")
                        elif why != "interval":
                            log("no changes")
                except RktcfgError as exc:
                    log(f"error: {exc.message}")
                last = files + signature(hosts, True)
                due = time.monotonic() + interval
            for _ in range(10):  # look at the files every second, wake at once on SIGTERM
                if stopping:
                    break
                time.sleep(0.1)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    log("stopped")
    return 0
