"""``rktcfg plan PATH...``: what ``apply`` would do, pod by pod and field by field."""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse

    from rktcfg.cli.context import Context

DESCRIPTION = """\
Compare pod files with the pods on this machine and print what `rktcfg apply` would do:
+ create, ~ replace (with the fields that changed), > start, - remove, = unchanged (with
why), ! conflict (a pod of that name that this apply set does not own). Nothing is changed.

  rktcfg plan pods/                     # a directory: every *.yaml *.yml *.json *.yaml.j2
  rktcfg plan pods/ --prune -o json     # also pods of the set whose file is gone
  rktcfg plan pods/ --out plan.json     # save it; `rktcfg apply plan.json` carries it out

exit status: 0, or 2 for bad input; with --detailed-exitcode: 0 nothing to do, 2 changes,
1 an error or a conflict."""


def configure(parser: argparse.ArgumentParser) -> None:
    from rktcfg.cli.applyargs import configure_sources
    from rktcfg.cli.output import add_output_option

    parser.description = DESCRIPTION
    add_output_option(parser)
    configure_sources(parser)
    parser.add_argument(
        "--detailed-exitcode", action="store_true", help="exit 2 when there are changes"
    )
    parser.add_argument("--out", metavar="FILE", help="save the plan for `rktcfg apply FILE`")


def run(args: argparse.Namespace, ctx: Context) -> int:
    from rktcfg.cli.applyargs import plan, save
    from rktcfg.cli.output import emit
    from rktcfg.errors import RktcfgError
    from rktcfg.plan.diff import render_text

    try:
        planned = plan(args, ctx)
    except RktcfgError as exc:
        if not args.detailed_exitcode:
            raise
        ctx.err.write(f"rktcfg: error: {exc.message}\n")
        return 1  # --detailed-exitcode: 2 means changes, so an error is 1, whatever it is
    if args.out:
        save(planned, args.out, args)
    color = args.output == "text" and ctx.out.isatty()
    emit(ctx, planned.plan.as_dict(), lambda: render_text(planned.plan, color=color))
    conflicts = [a for a in planned.plan.actions if a.kind == "conflict"]
    for action in conflicts:
        ctx.err.write(f"rktcfg: error: {action.pod}: {action.reason}\n")
    if args.detailed_exitcode and conflicts:
        return 1  # apply would fail on them
    if args.detailed_exitcode and planned.plan.changed():
        return 2
    return 0
