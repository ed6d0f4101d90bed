"""``rktcfg generate systemd DIR``: a systemd unit that keeps DIR's pods applied."""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse

    from rktcfg.cli.context import Context

DESCRIPTION = """\
Print a systemd unit that runs `rktcfg apply --watch DIR --prune` (a Jinja2 template shipped
with rktcfg). The unit leaves the pods running when the watcher stops (KillMode=process) and
delegates cgroups to rktcfg (Delegate=yes).

  rktcfg generate systemd /srv/pods > /etc/systemd/system/rktcfg-pods.service"""


def configure(parser: argparse.ArgumentParser) -> None:
    parser.description = DESCRIPTION
    parser.add_argument("kind", choices=("systemd",), help="what to generate")
    parser.add_argument("directory", metavar="DIR", help="the directory of pod files")
    parser.add_argument("--interval", default="10s", metavar="DURATION")
    parser.add_argument("--name", default=None, metavar="UNIT", help="the unit's file name")
    parser.add_argument("--no-prune", action="store_true", help="leave pods of removed files")


def unit_name(directory: str) -> str:
    import re

    slug = re.sub(r"[^a-zA-Z0-9]+", "-", directory).strip("-").lower() or "root"
    return f"rktcfg-{slug}.service"


def _systemd_word(word: str) -> str:
    """One ExecStart= word: quoted where needed; % and $ doubled (systemd expands them)."""
    import shlex

    return shlex.quote(word).replace("%", "%%").replace("$", "$$")


def run(args: argparse.Namespace, ctx: Context) -> int:
    import os
    import sys

    import jinja2

    from rktcfg.durations import parse_duration
    from rktcfg.errors import UsageError

    try:
        parse_duration(args.interval)
    except ValueError as exc:
        raise UsageError(f"--interval: {exc}") from None
    directory = os.path.abspath(args.directory)
    if not os.path.isdir(directory):
        raise UsageError(f"{args.directory}: not a directory")
    rktcfg = os.path.join(os.path.dirname(os.path.abspath(sys.argv[0])), "rktcfg")
    if not os.path.exists(rktcfg):
        rktcfg = "rktcfg"
    argv = [rktcfg]
    data = ctx.data_dir()
    if data:
        argv += ["--dir", data]
    argv += ["apply", "--watch", directory, "--interval", args.interval]
    if not args.no_prune:
        argv.append("--prune")
    loader = jinja2.PackageLoader("rktcfg", "templates")
    env = jinja2.Environment(
        loader=loader, undefined=jinja2.StrictUndefined, keep_trailing_newline=True
    )
    text = env.get_template("systemd-watch.service.j2").render(
        unit=args.name or unit_name(directory),
        directory=directory,
        argv=[_systemd_word(a) for a in argv],
        environment=[],
    )
    ctx.out.write(text)
    return 0
