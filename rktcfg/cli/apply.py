"""``rktcfg apply PATH...``: make the pods on this machine match the pod files."""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse

    from rktcfg.cli.applyargs import Planned
    from rktcfg.cli.context import Context

DESCRIPTION = """\
Make this machine's pods match the pod files: create the missing ones, replace the changed
ones (the new pod starts after the old one stopped), start prepared ones, and with --prune
remove the pods of this apply set whose file is gone. Pods made by hand or by another
apply set are never touched. A second apply of the same files says "no changes".

  rktcfg apply pods/ --wait=60s         # and wait until the apps run (and are healthy)
  rktcfg apply plan.json                # a saved plan, if nothing changed since
  rktcfg apply --watch pods/ --interval 10s --prune   # keep reconciling until SIGTERM

exit status: 0, or 1 if any pod failed (the others are still applied)."""


def configure(parser: argparse.ArgumentParser) -> None:
    from rktcfg.cli.applyargs import configure_sources
    from rktcfg.cli.output import add_output_option

    parser.description = DESCRIPTION
    add_output_option(parser)
    configure_sources(parser)
    parser.add_argument("--dry-run", action="store_true", help="print the plan, change nothing")
    parser.add_argument(
        "--wait",
        nargs="?",
        const="5m",
        default=None,
        metavar="TIMEOUT",
        help="wait until the apps run, or are healthy (default 5m)",
    )
    parser.add_argument("--watch", action="store_true", help="keep reconciling until SIGTERM")
    parser.add_argument(
        "--interval",
        default="10s",
        metavar="DURATION",
        help="--watch: reconcile at least this often",
    )
    parser.add_argument(
        "--insecure-options", default="none", metavar="OPTS", help="as for fetch (image,http)"
    )


def executor(planned: Planned, args: argparse.Namespace, ctx: Context, log: object) -> object:
    from rktcfg.apply import Executor
    from rktcfg.cli.podargs import config_options
    from rktcfg.image.fetch import FetchOptions
    from rktcfg.pods import PodOptions, Pods

    config = ctx.config()
    insecure = frozenset(o.strip() for o in args.insecure_options.split(",") if o.strip())
    base = PodOptions(
        **config_options(config),
        fetch=FetchOptions(policy="new", insecure=insecure - {"none"}),
    )
    return Executor(
        Pods(ctx.data_dir()),
        desired=planned.loaded.pods,
        apply_set=planned.apply_set,
        default_flavor=config.stage1.default_flavor,
        base_options=base,
        log=log,  # type: ignore[arg-type]
        files=planned.observed.get("files"),
        image_files=planned.observed.get("image_files"),
    )


def apply_once(
    planned: Planned, args: argparse.Namespace, ctx: Context, log: object
) -> tuple[int, dict[str, object]]:
    """Execute a plan; report failures on stderr; (1 if any pod failed else 0, the result)."""
    from rktcfg.apply import Executor
    from rktcfg.durations import parse_duration
    from rktcfg.errors import UsageError

    run = executor(planned, args, ctx, log)
    assert isinstance(run, Executor)
    report = run.execute(planned.plan)
    for outcome in report.failed:
        ctx.err.write(f"rktcfg: error: {outcome.kind} {outcome.pod}: {outcome.message}\n")
    late: list[str] = []
    if args.wait is not None and run.started:
        try:
            timeout = parse_duration(args.wait) / 1e9
        except ValueError as exc:
            raise UsageError(f"--wait: {exc}") from None
        late, broken = run.wait(timeout)
        for uuid in late:
            ctx.err.write(f"rktcfg: error: pod {uuid} is not ready after {args.wait}\n")
        for line in broken:
            ctx.err.write(f"rktcfg: error: {line}\n")
        late = late + broken
    result: dict[str, object] = {
        "plan": planned.plan.as_dict(),
        "outcomes": [
            {"pod": o.pod, "action": o.kind, "ok": o.ok, "message": o.message, "uuid": o.uuid}
            for o in report.outcomes
        ],
        "not_ready": late,
        "summary": report.summary(),
    }
    return (1 if report.failed or late else 0), result


def _is_duration(text: str) -> bool:
    from rktcfg.durations import parse_duration

    try:
        parse_duration(text)
    except ValueError:
        return False
    return True


def run(args: argparse.Namespace, ctx: Context) -> int:
    from rktcfg.apply import apply_lock
    from rktcfg.cli.applyargs import load_saved, plan, read_saved_plan
    from rktcfg.cli.output import emit
    from rktcfg.plan.diff import render_text

    if args.watch:
        from rktcfg.cli.watch import watch

        return watch(args, ctx)

    def log(line: str) -> None:
        if args.output == "text":
            ctx.out.write(line + "\n")
            ctx.out.flush()

    if args.wait is not None and not _is_duration(args.wait):
        args.paths.insert(0, args.wait)  # `--wait pods/`: a path, not a timeout
        args.wait = "5m"

    with apply_lock(ctx.data_dir()):
        saved = read_saved_plan(args.paths[0]) if len(args.paths) == 1 else None
        planned = plan(args, ctx) if saved is None else load_saved(args.paths[0], saved, ctx)
        if not planned.plan.changed():
            conflicts = [a for a in planned.plan.actions if a.kind == "conflict"]
            notable = [  # stopped by hand, failed: reported, not acted on
                f"= {a.pod}: {a.reason}\n"
                for a in planned.plan.actions
                if a.kind == "unchanged" and a.reason not in ("up to date", "exited (completed)")
            ]
            emit(ctx, planned.plan.as_dict(), lambda: "".join(notable) + "no changes\n")
            for action in conflicts:
                ctx.err.write(f"rktcfg: error: {action.pod}: {action.reason}\n")
            return 1 if conflicts else 0
        color = args.output == "text" and ctx.out.isatty()
        if args.dry_run:
            emit(ctx, planned.plan.as_dict(), lambda: render_text(planned.plan, color=color))
            return 0
        if args.output == "text":
            ctx.out.write(render_text(planned.plan, color=color))
        code, result = apply_once(planned, args, ctx, log)
        emit(ctx, result, lambda: f"applied: {result['summary']}\n")
        return code
