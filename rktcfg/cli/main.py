"""The ``rktcfg`` command: global flags, lazy subcommands, errors and exit codes.

Start-up cost matters (``rktcfg --version`` must cost about one bare interpreter start), so
this module imports only ``sys`` and ``os`` at the top. ``--version`` alone is answered before
argparse is imported; for everything else only the module of the command that runs is
imported, and it imports its heavy libraries itself.
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    from collections.abc import Mapping, Sequence
    from typing import IO

#: command -> (module, one-line help). Each module has ``configure(parser)`` and ``run(args, ctx)``.
COMMANDS: dict[str, tuple[str, str]] = {
    "version": ("rktcfg.cli.version", "show the versions of rktcfg, the appc spec, API and stage1"),
    "config": ("rktcfg.cli.config", "show the effective configuration, or --check drop-ins"),
    "fetch": ("rktcfg.cli.fetch", "fetch images into the store"),
    "image": ("rktcfg.cli.image", "list, inspect, export, extract and remove stored images"),
    "run": ("rktcfg.cli.run", "run a pod from images"),
    "prepare": ("rktcfg.cli.prepare", "prepare a pod to run later"),
    "run-prepared": ("rktcfg.cli.run_prepared", "start a prepared pod"),
    "list": ("rktcfg.cli.list", "list pods"),
    "status": ("rktcfg.cli.status", "show a pod's status"),
    "stop": ("rktcfg.cli.stop", "stop pods"),
    "rm": ("rktcfg.cli.rm", "remove pods"),
    "cat-manifest": ("rktcfg.cli.cat_manifest", "print a pod's runtime manifest"),
    "logs": ("rktcfg.cli.logs", "print a pod's app output"),
    "enter": ("rktcfg.cli.enter", "run a command inside a running pod's app"),
    "gc": ("rktcfg.cli.gc", "collect exited pods"),
    "plan": ("rktcfg.cli.plan", "show what apply would change, pod by pod and field by field"),
    "apply": ("rktcfg.cli.apply", "make the pods match pod files (or a saved plan)"),
    "delete": ("rktcfg.cli.delete", "stop and remove the pods that files or names define"),
    "generate": ("rktcfg.cli.generate", "print a systemd unit that keeps a directory applied"),
    "export": ("rktcfg.cli.export", "print pod files as Kubernetes v1 Pods"),
}

#: Global flags that take a value (so the command name can be found without argparse).
VALUE_FLAGS = ("--dir", "--vendor-config", "--system-config", "--user-config")

DESCRIPTION = """\
rktcfg runs App Container (appc) and OCI images as pods, in namespaces and cgroups, from
checked-in pod definitions. Configuration layers: vendor (shipped), system (/etc/rktcfg),
user (~/.config/rktcfg), then environment and flags; see `rktcfg config --show-origin`."""

EPILOG = """\
environment:
  RKTCFG_DIR            data directory (below --dir, above config files)
  RKTCFG_SYSTEM_CONFIG  system config layer (default /etc/rktcfg)
  RKTCFG_USER_CONFIG    user config layer (default $XDG_CONFIG_HOME/rktcfg)
  RKTCFG_NO_CACHE       set to skip the cache of the validated configuration

exit status: 0 success, 1 runtime failure, 2 bad input (command line, files, names)"""


def _command_in(argv: Sequence[str]) -> str | None:
    """The subcommand named in argv, skipping global flags and their values."""
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg in VALUE_FLAGS:
            skip = True
        elif arg == "--":
            return None
        elif not arg.startswith("-"):
            return arg
    return None


def build_parser(command: str | None) -> argparse.ArgumentParser:
    """The parser. With a known ``command``, only that command's subparser is built (each
    one costs about a millisecond); without one, all are listed for help and error messages."""
    import argparse
    import importlib

    from rktcfg.errors import UsageError

    class Parser(argparse.ArgumentParser):
        def error(self, message: str) -> None:  # type: ignore[override]
            raise UsageError(f"{message} (see '{self.prog} --help')")

    class Formatter(argparse.RawDescriptionHelpFormatter):
        # argparse imports shutil (and bz2, lzma, fnmatch) just to learn the terminal width.
        def __init__(
            self,
            prog: str,
            indent_increment: int = 2,
            max_help_position: int = 24,
            width: int | None = None,
        ) -> None:
            if width is None:
                try:
                    width = int(os.environ.get("COLUMNS", "")) - 2
                except ValueError:
                    try:
                        width = os.get_terminal_size().columns - 2
                    except OSError:
                        width = 78
            super().__init__(prog, indent_increment, max_help_position, max(width, 40))

    # allow_abbrev=False: _command_in must see the same global flags argparse does.
    parser = Parser(
        prog="rktcfg",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=Formatter,
        allow_abbrev=False,
    )
    parser.add_argument("--version", action="store_true", help="show versions and exit")
    parser.add_argument("--dir", metavar="DIR", help="data directory (default from paths.d)")
    parser.add_argument("--vendor-config", metavar="DIR", help="vendor config layer")
    parser.add_argument("--system-config", metavar="DIR", help="system config layer")
    parser.add_argument("--user-config", metavar="DIR", help="user config layer")
    parser.add_argument("--debug", action="store_true", help="debug output and tracebacks")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    for name, (module, summary) in COMMANDS.items():
        if command is not None and name != command:
            continue
        command_parser = sub.add_parser(
            name, help=summary, description=summary, formatter_class=Formatter, allow_abbrev=False
        )
        if name == command:
            importlib.import_module(module).configure(command_parser)
    return parser


def main(argv: Sequence[str] | None = None, *, environ: Mapping[str, str] | None = None) -> int:
    """Run one rktcfg command; returns the exit status (never raises, never calls exit).

    Output goes to ``sys.stdout`` and ``sys.stderr`` as they are when called.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    out, err = sys.stdout, sys.stderr
    if args == ["--version"]:
        from rktcfg.cli.version import builtin_text

        out.write(builtin_text())
        return 0
    debug = "--debug" in args[: args.index("--")] if "--" in args else "--debug" in args
    try:
        return _dispatch(args, os.environ if environ is None else environ, out, err)
    except KeyboardInterrupt:
        err.write("rktcfg: interrupted\n")
        return 130
    except BrokenPipeError:
        return 1
    except Exception as exc:  # the one place errors become messages and exit codes
        from rktcfg.errors import RktcfgError

        if isinstance(exc, RktcfgError):
            err.write(f"rktcfg: error: {exc.message}\n")
            code = int(exc.exit_code)
        else:
            err.write(
                f"rktcfg: error: unexpected {type(exc).__name__}: {exc}\n"
                "rktcfg: this is a bug in rktcfg; please report it with the output of --debug\n"
            )
            code = 1
        if debug:
            import traceback

            traceback.print_exception(exc, file=err)
        return code


def _dispatch(args: list[str], environ: Mapping[str, str], out: IO[str], err: IO[str]) -> int:
    import importlib

    from rktcfg.cli.context import Context

    command = _command_in(args)
    parser = build_parser(command if command in COMMANDS else None)
    try:
        options = parser.parse_args(args)
    except SystemExit as exc:  # --help
        return exc.code if isinstance(exc.code, int) else 0
    if options.version:
        from rktcfg.cli.version import builtin_text

        out.write(builtin_text())
        return 0
    if options.command is None:
        parser.print_usage(err)
        err.write("rktcfg: error: a command is required (see 'rktcfg --help')\n")
        return 2
    ctx = Context(options, environ, out, err)
    module = importlib.import_module(COMMANDS[options.command][0])
    status: int = module.run(options, ctx)
    return status
