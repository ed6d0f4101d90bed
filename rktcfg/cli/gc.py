"""``rktcfg gc``: collect exited and abandoned pods."""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse

    from rktcfg.cli.context import Context


def configure(parser: argparse.ArgumentParser) -> None:
    from rktcfg.cli.output import add_output_option

    parser.description = (
        "Mark exited pods, collect aborted prepares, expire old prepared pods, and delete "
        "marked pods once the grace period has passed (unmounting everything below them)."
    )
    parser.add_argument("--grace-period", default="30m", metavar="DURATION")
    parser.add_argument("--expire-prepared", default="24h", metavar="DURATION")
    parser.add_argument("--mark-only", action="store_true", help="mark, but delete nothing")
    add_output_option(parser)


def run(args: argparse.Namespace, ctx: Context) -> int:
    from rktcfg.cli.output import emit
    from rktcfg.durations import parse_duration
    from rktcfg.errors import UsageError
    from rktcfg.pods import Pods

    try:
        grace = parse_duration(args.grace_period)
        expire = parse_duration(args.expire_prepared)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    done = Pods(ctx.data_dir()).gc(
        grace_ns=grace, expire_prepared_ns=expire, mark_only=args.mark_only
    )

    def text() -> str:
        lines = [f"moving pod {u} to garbage" for u in done["marked"] + done["garbage"]]
        lines += [f"garbage collected pod {u}" for u in done["deleted"]]
        lines += [f"pod {u} not removed: still within the grace period" for u in done["kept"]]
        return "".join(line + "\n" for line in lines)

    emit(ctx, done, text)
    for failure in done["failed"]:
        ctx.err.write(f"rktcfg: error: cannot collect pod {failure}\n")
    return 1 if done["failed"] else 0
