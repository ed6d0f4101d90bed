"""Arguments shared by ``run`` and ``prepare``: rkt's per-image syntax and pod flags.

``rktcfg run [POD FLAGS] IMAGE [APP FLAGS] [-- ARGS... ---] [IMAGE ...]``: flags before the
first image are the pod's; app flags after an image apply to that image (``--exec``,
``--cpu``, ``--memory``, ``--caps-retain``, ...); arguments after ``--`` are appended to its
command, up to ``---``; any other word starts the next image, as in rkt.
"""

from __future__ import annotations

#: Flags that apply to the image before them, with a value.
APP_VALUE_FLAGS = (
    "--exec",
    "--cpu",
    "--memory",
    "--caps-retain",
    "--caps-remove",
    "--cpu-shares",
    "--oom-score-adj",
)
APP_SWITCHES = ("--read-only-rootfs",)
APP_FLAGS_HELP = """app flags (after an image, for that image):
  --exec PATH            run PATH instead of the image's exec
  --cpu Q                cpu limit and request, in cores: 500m, 2 (default flavor)
  --memory Q             memory limit and request: 128M, 42Mi, 1Gi (at least 4096 bytes)
  --caps-retain CAPS     keep only these capabilities (comma-separated: CAP_NET_ADMIN,...)
  --caps-remove CAPS     drop these from the default set of 14
  --cpu-shares N         os/linux/cpu-shares (2..262144)
  --oom-score-adj N      os/linux/oom-score-adj (-1000..1000)
  --read-only-rootfs     mount the app's root filesystem read-only
  -- ARGS...             appended to the app's command"""


TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    from typing import Any

    from rktcfg.cli.context import Context
    from rktcfg.pods import ImageArg, PodOptions


#: The pod flags that may be given more than once: (flag, metavar, help).
REPEATABLE_POD_FLAGS = (
    (
        "--dns",
        "IP|host|none",
        "a nameserver for the pod's resolv.conf (host: the host's file; none: no file)",
    ),
    ("--dns-search", "DOMAIN", "a search domain for the pod's resolv.conf"),
    ("--hosts-entry", "IP=NAME", "an /etc/hosts line (replaces the image's hosts file)"),
    ("--port", "NAME:[HOSTIP:]HOSTPORT", "publish the app port NAME on the host (127.0.0.1 too)"),
)


def configure_pod_flags(parser: argparse.ArgumentParser) -> None:
    import argparse as _argparse

    parser.add_argument("--name", help="a name for the pod (commands accept it like a UUID)")
    parser.epilog = APP_FLAGS_HELP
    parser.add_argument(
        "--stage1",
        default=None,
        metavar="FLAVOR",
        help="default (namespaces, cgroups) or fly (a chroot); default from stage1.d",
    )
    parser.add_argument(
        "--hostname", metavar="NAME", help="the pod's hostname (default: its name, or rktcfg-UUID)"
    )
    parser.add_argument(
        "--net",
        default="default",
        metavar="NET[:IP=ADDR],...",
        help="networks of net.d (default: default), or host, or none (loopback only)",
    )
    for flag, metavar, text in REPEATABLE_POD_FLAGS:
        parser.add_argument(flag, action="append", default=[], metavar=metavar, help=text)
    parser.add_argument(
        "--private-users",
        action="store_true",
        help="a user namespace: the pod's root is an unprivileged host uid range",
    )
    parser.add_argument(
        "--no-overlay", action="store_true", help="copy the image tree instead of overlayfs"
    )
    parser.add_argument(
        "--strict-isolators",
        action="store_true",
        help="refuse isolators rktcfg cannot enforce (default: warn and list them)",
    )
    for flag in APP_VALUE_FLAGS:  # here only to say that they follow an image
        parser.add_argument(
            flag, dest="misplaced_" + flag[2:].replace("-", "_"), help=_argparse.SUPPRESS
        )
    parser.add_argument(
        "--read-only-rootfs", dest="misplaced_ro", action="store_true", help=_argparse.SUPPRESS
    )
    parser.add_argument("--set-env", action="append", default=[], metavar="K=V")
    parser.add_argument(
        "--volume",
        action="append",
        default=[],
        metavar="NAME,kind=host|empty,...",
        help="kind=host,source=PATH[,readOnly=true][,recursive=BOOL] or "
        "kind=empty[,mode=0755,uid=N,gid=N]",
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
    """rkt's syntax: each word that is not an app flag starts the next image (``run img1
    --memory=128M img2 --cpu=250m``); ``-- ARGS`` takes every word up to ``---``, which
    ends them (and may also separate images)."""
    from rktcfg.errors import UsageError

    images: list[ImageArg] = []
    ref: str | None = None
    values: dict[str, str] = {}
    switches: set[str] = set()
    args: list[str] = []

    def finish() -> None:
        nonlocal ref, values, switches, args
        if ref is not None:
            images.append(_image_arg(ref, values, switches, tuple(args)))
        ref, values, switches, args = None, {}, set(), []

    rest = list(words)
    expect_image = False
    while rest:
        word = rest.pop(0)
        flag, eq, value = word.partition("=")
        if word == "---":
            if ref is None:
                raise UsageError("an image is missing (around ---)")
            finish()
            expect_image = True
            continue
        if ref is None:
            if flag in APP_VALUE_FLAGS or word in APP_SWITCHES:
                raise UsageError(f"{flag} must follow an image (it applies to the image before it)")
            if word.startswith("-"):
                raise UsageError(f"{word}: pod flags go before the first image")
            ref, expect_image = word, False
        elif word == "--":
            while rest and rest[0] != "---":
                args.append(rest.pop(0))
        elif flag in APP_VALUE_FLAGS:
            if flag in values:
                raise UsageError(f"{flag} specified multiple times for the image {ref}")
            if not eq:
                if not rest:
                    raise UsageError(f"{flag} needs a value")
                value = rest.pop(0)
            values[flag] = value
        elif word in APP_SWITCHES:
            switches.add(word)
        elif word.startswith("-"):
            raise UsageError(
                f"{word!r} after image {ref}: only app flags and -- ARGS go there (see --help)"
            )
        else:
            finish()
            ref = word
    if expect_image:
        raise UsageError("an image is missing (around ---)")
    finish()
    return images


def _image_arg(
    ref: str, values: dict[str, str], switches: set[str], args: tuple[str, ...]
) -> ImageArg:
    from rktcfg.errors import UsageError
    from rktcfg.isolators.resolve import cli_isolators
    from rktcfg.pods import ImageArg

    try:
        isolators = cli_isolators(
            cpu=values.get("--cpu"),
            memory=values.get("--memory"),
            caps_retain=values.get("--caps-retain"),
            caps_remove=values.get("--caps-remove"),
            cpu_shares=values.get("--cpu-shares"),
            oom_score_adj=values.get("--oom-score-adj"),
        )
    except ValueError as exc:
        raise UsageError(f"image {ref}: {exc}") from None
    return ImageArg(
        ref=ref,
        exec=values.get("--exec"),
        args=args,
        cli_isolators=tuple(isolators),
        read_only_rootfs="--read-only-rootfs" in switches,
    )


def config_options(config: Any) -> dict[str, Any]:
    """The PodOptions the configuration decides (``run`` and ``apply`` alike): net.d's
    networks as the pod library takes them, paths.d's cgroup parent and isolators.d's
    defaults."""
    defaults = config.isolators
    return {
        "networks": {
            name: {
                "type": net.type,
                "subnet": net.subnet,
                "gateway": net.gateway,
                "ip_masq": net.ip_masq,
                "default_route": net.default_route,
            }
            for name, net in config.networks.items()
        },
        "cgroup_parent": config.paths.cgroup_parent,
        "isolator_defaults": {
            "cpu_millis": defaults.cpu_millis,
            "memory_bytes": defaults.memory_bytes,
            "pids": defaults.pids,
        },
    }


def pod_options(args: argparse.Namespace, ctx: Context) -> PodOptions:
    import os

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

    for flag in (*APP_VALUE_FLAGS, *APP_SWITCHES):
        key = "misplaced_ro" if flag in APP_SWITCHES else "misplaced_" + flag[2:].replace("-", "_")
        if getattr(args, key, None):
            raise UsageError(f"{flag} must follow an image (it applies to the image before it)")

    def boolean(text: str, values: dict[str, str], key: str) -> bool | None:
        if key not in values:
            return None
        if values[key] not in ("true", "false"):
            raise UsageError(f"--volume {text!r}: {key} must be true or false")
        return values[key] == "true"

    known = {"kind", "source", "readOnly", "recursive", "mode", "uid", "gid"}
    volumes = []
    for text in args.volume:
        name, values = fields(text, "--volume")
        unknown = sorted(set(values) - known)
        if unknown:
            raise UsageError(f"--volume {text!r}: unknown key {unknown[0]!r}")
        kind = values.get("kind", "host")
        recursive = boolean(text, values, "recursive")
        read_only = bool(boolean(text, values, "readOnly"))
        if kind == "host" and "source" in values:
            volumes.append(
                Volume(
                    name=name,
                    source=os.path.abspath(values["source"]),
                    read_only=read_only,
                    recursive=recursive,
                )
            )
        elif kind == "empty":
            try:
                mode = int(values.get("mode", "0755"), 8)
                uid, gid = int(values.get("uid", "0")), int(values.get("gid", "0"))
            except ValueError:
                raise UsageError(f"--volume {text!r}: mode is octal, uid and gid numbers") from None
            volumes.append(
                Volume(
                    name=name,
                    kind="empty",
                    read_only=read_only,
                    mode=mode,
                    uid=uid,
                    gid=gid,
                )
            )
        else:
            raise UsageError(f"--volume {text!r}: needs kind=host with source=PATH, or kind=empty")
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
    config = ctx.config()  # built once (not cached): the flavor and config_options read it
    flavor = args.stage1 or config.stage1.default_flavor
    if flavor not in FLAVORS:
        raise UsageError(f"--stage1 {flavor}: unknown flavor (choose from {', '.join(FLAVORS)})")
    insecure = frozenset(o.strip() for o in args.insecure_options.split(",") if o.strip())
    published = []
    for text in args.port:
        name, _, rest = text.partition(":")
        host_ip, _, host_port = rest.rpartition(":")
        if not name or not host_port.isdigit() or not 0 < int(host_port) < 65536:
            raise UsageError(f"--port {text!r}: expected NAME:[HOSTIP:]HOSTPORT, like http:8080")
        published.append((name, host_ip, int(host_port)))
    import ipaddress

    for server in args.dns:
        if server not in ("host", "none"):
            try:
                ipaddress.ip_address(server)
            except ValueError:
                raise UsageError(
                    f"--dns {server!r}: expected an IP address, host or none"
                ) from None
    if ("host" in args.dns or "none" in args.dns) and len(args.dns) > 1:
        raise UsageError("--dns host and --dns none stand alone")
    entries = []
    for text in args.hosts_entry:
        address, sep, host = text.partition("=")
        try:
            ipaddress.ip_address(address)
        except ValueError:
            raise UsageError(f"--hosts-entry {text!r}: expected IP=NAME") from None
        if not sep or not host or any(c.isspace() for c in host):
            raise UsageError(f"--hosts-entry {text!r}: expected IP=NAME")
        entries.append((address, host))
    for domain in args.dns_search:
        if not domain or any(c.isspace() for c in domain):
            raise UsageError(f"--dns-search {domain!r}: expected a domain")
    return PodOptions(
        **config_options(config),
        dns=tuple(args.dns),
        dns_search=tuple(args.dns_search),
        hosts_entries=tuple(entries),
        published=tuple(published),
        hostname=args.hostname,
        net=args.net,
        private_users=args.private_users,
        no_overlay=args.no_overlay,
        strict_isolators=args.strict_isolators,
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
