"""Arguments shared by ``run`` and ``prepare``: rkt's per-image syntax and pod flags.

``rktcfg run [POD FLAGS] IMAGE [--exec PATH] [-- ARGS...] [--- IMAGE ...]``: flags before the
first image are the pod's; ``--exec`` after an image applies to that image; arguments after
``--`` are appended to its command; ``---`` starts the next image.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse

    from rktcfg.cli.context import Context
    from rktcfg.pods import ImageArg, PodOptions


def configure_pod_flags(parser: argparse.ArgumentParser) -> None:
    import argparse as _argparse

    parser.add_argument("--name", help="a name for the pod (commands accept it like a UUID)")
    parser.add_argument(
        "--stage1", default=None, metavar="FLAVOR", help="fly (default from stage1.d)"
    )
    parser.add_argument("--set-env", action="append", default=[], metavar="K=V")
    parser.add_argument(
        "--volume",
        action="append",
        default=[],
        metavar="NAME,kind=host,source=PATH[,readOnly=true][,recursive=true]",
    )
    parser.add_argument("--mount", action="append", default=[], metavar="volume=NAME,target=PATH")
    parser.add_argument("--restart", choices=("never", "on-failure", "always"), default="never")
    parser.add_argument(
        "--grace", default="10s", metavar="DURATION", help="SIGTERM to SIGKILL (default 10s)"
    )
    parser.add_argument("--insecure-options", default="none", metavar="OPTS")
    parser.add_argument(
        "--log-max-size", default="10Mi", metavar="SIZE", help="rotate app logs at (10Mi)"
    )
    parser.add_argument("--log-keep", type=int, default=3, metavar="N", help="log files kept (3)")
    parser.add_argument(
        "images", nargs=_argparse.REMAINDER, metavar="IMAGE [--exec PATH] [-- ARGS] [--- IMAGE ...]"
    )


def parse_images(words: list[str]) -> list[ImageArg]:
    from rktcfg.errors import UsageError
    from rktcfg.pods import ImageArg

    images: list[ImageArg] = []
    segment: list[str] = []
    segments: list[list[str]] = []
    for word in words:
        if word == "---":
            segments.append(segment)
            segment = []
        else:
            segment.append(word)
    segments.append(segment)
    for segment in segments:
        if not segment:
            raise UsageError("an image is missing (around ---)")
        ref, rest = segment[0], segment[1:]
        if ref.startswith("-"):
            raise UsageError(f"{ref}: pod flags go before the first image")
        exec_path: str | None = None
        args: list[str] = []
        while rest:
            word = rest.pop(0)
            if word == "--":
                args, rest = rest, []
            elif word == "--exec" or word.startswith("--exec="):
                if exec_path is not None:
                    raise UsageError(f"--exec specified multiple times for the image {ref}")
                if word == "--exec":
                    if not rest:
                        raise UsageError("--exec needs a PATH")
                    exec_path = rest.pop(0)
                else:
                    exec_path = word.split("=", 1)[1]
            else:
                raise UsageError(
                    f"{word!r} after image {ref}: only --exec PATH and -- ARGS go there"
                )
        images.append(ImageArg(ref=ref, exec=exec_path, args=tuple(args)))
    return images


def pod_options(args: argparse.Namespace, ctx: Context) -> PodOptions:
    from rktcfg.durations import parse_duration
    from rktcfg.errors import UsageError
    from rktcfg.image.fetch import FetchOptions
    from rktcfg.pods import MountArg, PodOptions, Volume

    def fields(text: str, flag: str) -> tuple[str, dict[str, str]]:
        head, *rest = text.split(",")
        values = {}
        for item in rest:
            key, sep, value = item.partition("=")
            if not sep:
                raise UsageError(f"{flag} {text!r}: expected key=value after the name")
            values[key] = value
        return head, values

    volumes = []
    for text in args.volume:
        name, values = fields(text, "--volume")
        if values.get("kind", "host") != "host" or "source" not in values:
            raise UsageError(f"--volume {text!r}: needs kind=host and source=PATH")
        volumes.append(
            Volume(
                name=name,
                source=values["source"],
                read_only=values.get("readOnly", "false") == "true",
                recursive=values.get("recursive", "false") == "true",
            )
        )
    mounts = []
    for text in args.mount:
        values = dict(item.partition("=")[::2] for item in text.split(","))
        if "volume" not in values or "target" not in values:
            raise UsageError(f"--mount {text!r}: expected volume=NAME,target=PATH")
        mounts.append(MountArg(volume=values["volume"], target=values["target"]))
    set_env = []
    for text in args.set_env:
        key, sep, value = text.partition("=")
        if not sep or not key:
            raise UsageError(f"--set-env {text!r}: expected K=V")
        set_env.append((key, value))
    try:
        grace = parse_duration(args.grace) / 1e9
    except ValueError as exc:
        raise UsageError(f"--grace: {exc}") from None
    from rktcfg.isolators.quantity import QuantityError, parse_memory_bytes
    from rktcfg.version import FLAVORS

    try:
        log_max = parse_memory_bytes(args.log_max_size)
    except QuantityError as exc:
        raise UsageError(f"--log-max-size: {exc} (got {args.log_max_size!r})") from None
    if args.log_keep < 1:
        raise UsageError("--log-keep must be at least 1")
    flavor = args.stage1 or ctx.effective().document["stage1"]["default-flavor"]
    if flavor not in FLAVORS:
        raise UsageError(f"--stage1 {flavor}: unknown flavor (choose from {', '.join(FLAVORS)})")
    insecure = frozenset(o.strip() for o in args.insecure_options.split(",") if o.strip())
    return PodOptions(
        flavor=flavor,
        name=args.name,
        set_env=tuple(set_env),
        volumes=tuple(volumes),
        mounts=tuple(mounts),
        restart=args.restart,
        grace_seconds=grace,
        fetch=FetchOptions(policy="new", insecure=insecure - {"none"}),
        log_max_bytes=log_max,
        log_keep=args.log_keep,
    )
