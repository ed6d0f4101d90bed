"""``rktcfg enter UUID [--app NAME] [CMD...]``: run a command inside a running pod's app."""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse

    from rktcfg.cli.context import Context

DESCRIPTION = """\
Run CMD (default /bin/sh) inside a running app: in the pod's namespaces, the app's root
filesystem and cgroups, with the app's environment, user and capabilities. Exits with
CMD's exit status. --app is needed when the pod has more than one app.

  rktcfg enter web -- ps
  rktcfg enter 5f1b --app db /bin/sh -c 'echo $AC_APP_NAME'"""


def configure(parser: argparse.ArgumentParser) -> None:
    import argparse as _argparse

    parser.description = DESCRIPTION
    parser.add_argument("pod", metavar="UUID", help="the pod (UUID, prefix or name)")
    parser.add_argument("--app", metavar="NAME", help="the app to enter")
    parser.add_argument("argv", nargs=_argparse.REMAINDER, metavar="CMD")


def run(args: argparse.Namespace, ctx: Context) -> int:
    from rktcfg.errors import UsageError
    from rktcfg.pods import Pods

    command = list(args.argv)
    app = args.app
    while command and command[0].startswith("--app"):  # --app after the UUID
        flag = command.pop(0)
        if flag == "--app":
            if not command:
                raise UsageError("--app needs a NAME")
            app = command.pop(0)
        elif flag.startswith("--app="):
            app = flag.partition("=")[2]
        else:
            raise UsageError(f"{flag}: unknown flag (CMD goes after --)")
    if command[:1] == ["--"]:
        command = command[1:]
    pods = Pods(ctx.data_dir())
    return pods.enter(pods.get(args.pod), app, command or ["/bin/sh"])
