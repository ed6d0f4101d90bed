"""The pod library: prepare, run, stop, remove, collect and inspect pods.

One API for the CLI, the planner's executor and the API service. The CLI parses and
prints; everything that decides or changes anything is here, on top of the pod store
(``rktcfg.store.pods``), the image store and the stage1 flavors.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from typing import Any

from rktcfg.errors import InputError, NotFoundError, RuntimeFailure
from rktcfg.image.manifest import ImageManifest, parse_image_manifest
from rktcfg.store.images import ImageStore
from rktcfg.store.pods import LockedPod, Pod, PodState, PodStore

APP_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
FLAVORS_AVAILABLE = ("fly", "default")
NETS = ("none", "host")


def parse_net(text: str, known: dict[str, dict[str, Any]]) -> list[dict[str, Any]] | str:
    """``--net``: "host" or "none", or the networks to join, each a net.d entry plus the
    requested address (``name[:IP=addr]``); unknown names are an error listing the known."""
    if text in NETS:
        return text
    out: list[dict[str, Any]] = []
    for item in text.split(","):
        name, _, args = item.strip().partition(":")
        if name in NETS:
            raise InputError(f"--net {text}: {name} cannot be combined with other networks")
        if name not in known:
            names = ", ".join(sorted([*known, *NETS]))
            raise InputError(f"--net {text}: unknown network {name!r} (known: {names})")
        if any(n["name"] == name for n in out):
            raise InputError(f"--net {text}: network {name} named twice")
        requested = None
        for arg in filter(None, args.split(";")):
            key, sep, value = arg.partition("=")
            if key != "IP" or not sep:
                raise InputError(f"--net {text}: expected {name}:IP=ADDRESS (got {arg!r})")
            requested = value
        out.append({"name": name, **known[name], "ip": requested})
    return out


#: The size of a pod's user namespace (--private-users): ids 0..65535 of the pod.
USERNS_SIZE = 65536
#: Where ids of an image that the pod's range cannot hold end up (nobody/nogroup).
USERNS_OVERFLOW = 65534
#: Flavors the library accepts: the available ones, and the test flavor (never the CLI's).
LIBRARY_FLAVORS = (*FLAVORS_AVAILABLE, "fake")
RESTART_POLICIES = ("never", "on-failure", "always")
DEFAULT_CGROUPS_FILE = "cgroups.json"
#: RFC 1123 host names, at most 64 characters (the kernel's HOST_NAME_MAX).
_HOSTNAME = re.compile(
    r"(?=.{1,64}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*"
)
#: In a pod directory: a person stopped this pod (``rktcfg stop``), apply must not restart it.
STOPPED_BY_USER = "stopped-by-user"


@dataclass(frozen=True, slots=True, kw_only=True)
class Volume:
    name: str
    source: str = ""  # host volumes only
    kind: str = "host"  # host | empty
    read_only: bool = False
    recursive: bool | None = None  # None: the flavor's default (fly: no, default: yes)
    mode: int = 0o755  # empty volumes
    uid: int = 0
    gid: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class MountArg:
    volume: str
    target: str
    read_only: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class ImageArg:
    """One image of a pod, as given on the command line: ``IMAGE [--exec PATH] [-- ARGS]``."""

    ref: str
    exec: str | None = None
    args: tuple[str, ...] = ()
    #: appc isolator dicts from the command line (--cpu, --memory, --caps-*): the top layer
    cli_isolators: tuple[dict[str, Any], ...] = ()
    #: appc isolator dicts from a pod file: above the image's, below the command line's
    pod_isolators: tuple[dict[str, Any], ...] = ()
    read_only_rootfs: bool = False
    # from a pod file (each None or empty: the image's own)
    name: str | None = None
    env: tuple[tuple[str, str], ...] = ()
    user: str | None = None
    group: str | None = None
    supplementary_groups: tuple[str, ...] = ()
    working_directory: str | None = None
    mounts: tuple[MountArg, ...] = ()
    #: {"exec": [...], "interval_s": float, "timeout_s": float, "retries": int}
    health_check: dict[str, Any] | None = None
    annotations: tuple[tuple[str, str], ...] = ()
    ports: tuple[dict[str, Any], ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class PodOptions:
    flavor: str = "fly"
    name: str | None = None
    set_env: tuple[tuple[str, str], ...] = ()
    volumes: tuple[Volume, ...] = ()
    mounts: tuple[MountArg, ...] = ()
    restart: str = "never"
    grace_seconds: float = 10.0
    log_max_bytes: int = 10 << 20
    log_keep: int = 3
    fetch: Any = None  # FetchOptions for images not in the store
    interactive: bool = False  # the app's stdin is the caller's (run only)
    #: the pod this one replaces (apply): it may carry the same name until it is removed
    replaces: str | None = None
    #: pod annotations (apply's ownership records), and the pod file's spec (spec.json)
    annotations: tuple[tuple[str, str], ...] = ()
    spec: dict[str, Any] | None = None
    # the default flavor
    hostname: str | None = None
    #: "host", "none" (loopback only), or networks of net.d, comma-separated, each with an
    #: optional ":IP=addr" (``default``, ``default,backend:IP=10.1.0.9``)
    net: str = "none"
    #: net.d: name -> {"type", "subnet", "gateway", "ip_masq", "default_route"}
    networks: dict[str, dict[str, Any]] = field(default_factory=dict)
    private_users: bool = False
    #: --port NAME:[HOSTIP:]HOSTPORT: (port name, host IP or "", host port)
    published: tuple[tuple[str, str, int], ...] = ()
    #: nameservers for the pod's /etc/resolv.conf (when the image has none); () = the host's
    dns: tuple[str, ...] = ()  # or ("host",), ("none",)
    dns_search: tuple[str, ...] = ()
    #: --hosts-entry IP=NAME: extra /etc/hosts lines
    hosts_entries: tuple[tuple[str, str], ...] = ()
    no_overlay: bool = False
    strict_isolators: bool = False
    cgroup_parent: str | None = None
    #: isolators.d: cpu_millis, memory_bytes, pids (None: unlimited)
    isolator_defaults: dict[str, int | None] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)


# --- resolving what the app runs as -----------------------------------------------------------


def _lookup_id(rootfs: str, value: str, database: str, what: str, image: str) -> int:
    """appc user/group resolution: a name in the image's /etc/passwd or /etc/group, else a
    number, else (a path) the owner of that file in the image."""
    from rktcfg.image.tarsafe import resolve_in_root

    path = resolve_in_root(rootfs, f"/etc/{database}")
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            for line in handle:
                parts = line.rstrip("\n").split(":")
                if len(parts) >= 3 and parts[0] == value and parts[2].isdigit():
                    return int(parts[2])
    except OSError:
        pass
    if value.isdigit():
        return int(value)
    if value.startswith("/"):
        try:
            st = os.stat(resolve_in_root(rootfs, value))
        except OSError:
            raise InputError(
                f"image {image!r}: {what} {value!r}: no such file in the image"
            ) from None
        return st.st_uid if what == "user" else st.st_gid
    raise InputError(f"image {image!r}: {what} {value!r} is not in the image's /etc/{database}")


def _find_exec(rootfs: str, argv0: str, workdir: str, path: str, image: str) -> str:
    """The absolute path inside the rootfs that ``argv0`` names (appc/rkt --exec rules)."""
    from rktcfg.image.tarsafe import resolve_in_root

    def exists(candidate: str) -> bool:
        host = resolve_in_root(rootfs, candidate)
        return os.path.isfile(host) and os.access(host, os.X_OK)

    if argv0.startswith("/"):
        candidates = [argv0]
    elif "/" in argv0:
        candidates = [os.path.normpath(os.path.join(workdir, argv0))]
    else:
        candidates = [os.path.join(d, argv0) for d in path.split(":") if d.startswith("/")]
    for candidate in candidates:
        if exists(candidate):
            return candidate
    raise InputError(f"image {image!r}: cannot find {argv0!r} in the image (try --exec=BINARY)")


def _app_name(manifest: ImageManifest, taken: set[str]) -> str:
    base = re.sub(r"[^a-z0-9]+", "-", manifest.name.rsplit("/", 1)[-1].lower()).strip("-") or "app"
    name, n = base, 2
    while name in taken:
        name, n = f"{base}-{n}", n + 1
    taken.add(name)
    return name


#: What a root app of the default flavor gets unless its image sets it (appc leaves it open).
ROOT_ENV = {"HOME": "/root", "USER": "root", "LOGNAME": "root", "SHELL": "/bin/sh"}


def _publish(apps: list[dict[str, Any]], opts: PodOptions) -> None:
    """``--port NAME:[HOSTIP:]HOSTPORT``: give the app port of that name its host port."""
    if opts.published and (opts.flavor != "default" or opts.net in NETS):
        raise InputError("--port needs the default flavor and a network (not --net host|none)")
    for name, host_ip, host_port in opts.published:
        found = [p for app in apps for p in app["ports"] if p["name"] == name]
        if not found:
            known = sorted({p["name"] for app in apps for p in app["ports"]})
            raise InputError(
                f"--port {name}: no app has a port of that name "
                f"(ports: {', '.join(known) or 'none'})"
            )
        for port in found:
            port["hostPort"] = host_port
            port["hostIP"] = host_ip or None


#: What ``status`` shows of each network of a pod's record (``networks.json``)...
NETWORK_FIELDS = (
    "name",
    "type",
    "ifname",
    "ip",
    "prefix",
    "subnet",
    "gateway",
    "mac",
    "host_ifname",
    "bridge",
    "ip_masq",
    "default_route",
)
#: ...and of each published port.
PORT_FIELDS = ("name", "protocol", "port", "host_port", "host_ip", "network")


def _read_int(path: str) -> int | None:
    try:
        with open(path, encoding="utf-8") as handle:
            return int(handle.read().strip())
    except (FileNotFoundError, ValueError):
        return None


def _overlay_usable() -> bool:
    from rktcfg.stage1.linux import overlay_supported

    return overlay_supported()


def _copy_tree(tree: str, rootfs: str) -> None:
    copied = subprocess.run(
        ["cp", "-a", "--", tree, rootfs], capture_output=True, text=True, check=False
    )
    if copied.returncode != 0:
        raise RuntimeFailure(f"cannot copy the image tree: {copied.stderr.strip()}")


def _shift_ownership(rootfs: str, base: int) -> None:
    """Add ``base`` to the owner and group of everything in ``rootfs`` (a private copy), for a
    pod whose root is host uid ``base``. chown clears setuid and setgid bits: they are put back."""

    def inside(ident: int) -> int:  # ids the pod's range cannot hold become "nobody"
        return base + (ident if ident < USERNS_SIZE else USERNS_OVERFLOW)

    def shift(path: str) -> None:
        st = os.lstat(path)
        os.lchown(path, inside(st.st_uid), inside(st.st_gid))
        if not os.path.islink(path) and st.st_mode & 0o6000:
            os.chmod(path, st.st_mode & 0o7777)

    shift(rootfs)
    for top, dirs, files in os.walk(rootfs):
        for entry in dirs + files:
            shift(os.path.join(top, entry))


def _app_volumes(
    app: Any,
    opts: PodOptions,
    volumes: dict[str, Volume],
    *,
    default: bool,
    extra: tuple[MountArg, ...] = (),
) -> list[dict[str, Any]]:
    """The volumes one app mounts: --mount pairs (the pod's, then the app's own) first, then
    the image's mount points that a volume of the same name satisfies."""

    def entry(volume: Volume, target: str, read_only: bool) -> dict[str, Any]:
        recursive = volume.recursive if volume.recursive is not None else default
        return {
            "name": volume.name,
            "kind": volume.kind,
            "source": volume.source,
            "target": target,
            "read_only": read_only,
            "recursive": recursive,
        }

    mounts = (*opts.mounts, *extra)
    for mount in extra:
        if mount.volume not in volumes:
            raise InputError(f"mount of volume {mount.volume!r}: no such volume")
    out = [
        entry(volumes[m.volume], m.target, volumes[m.volume].read_only or m.read_only)
        for m in mounts
    ]
    for mp in app.mount_points if app else ():
        if mp.name in volumes and not any(m.volume == mp.name for m in mounts):
            volume = volumes[mp.name]
            out.append(entry(volume, mp.path, volume.read_only or mp.read_only))
    return out


def _volume_json(volume: Volume) -> dict[str, Any]:
    if volume.kind == "empty":
        return {
            "name": volume.name,
            "kind": "empty",
            "readOnly": volume.read_only,
            "mode": f"{volume.mode:04o}",
            "uid": volume.uid,
            "gid": volume.gid,
        }
    return {
        "name": volume.name,
        "kind": "host",
        "source": volume.source,
        "readOnly": volume.read_only,
        "recursive": volume.recursive,
    }


# --- user namespace ranges ---------------------------------------------------------------------

USERNS_DIR = "userns"
#: Host uid ranges for pods start here (the first 65536 ids are the host's own users).
USERNS_FIRST = 1
USERNS_LAST = 32767


def take_user_range(data_dir: str, pod_uuid: str) -> int:
    """Lease a host uid range of :data:`USERNS_SIZE` ids for a pod: one lease file per range
    holding its pod's UUID, put in place with link(2) so that it appears whole, under the
    directory's lock (two prepares never get one range), reclaimed when its pod is gone.
    Returns the range's first uid."""
    directory = os.path.join(data_dir, USERNS_DIR)
    os.makedirs(directory, 0o700, exist_ok=True)
    lock = os.open(os.path.join(directory, ".lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)  # reclaiming is a read-then-replace: one at a time
        return _take_user_range(directory, os.path.join(data_dir, "pods"), pod_uuid)
    finally:
        os.close(lock)


def _take_user_range(directory: str, pods_root: str, pod_uuid: str) -> int:
    tmp = os.path.join(directory, f".{pod_uuid}.tmp")
    with open(tmp, "w", encoding="ascii") as handle:
        handle.write(pod_uuid + "\n")
    try:
        for slot in range(USERNS_FIRST, USERNS_LAST + 1):
            base = slot * USERNS_SIZE
            lease = os.path.join(directory, str(base))
            try:
                os.link(tmp, lease)
                return base
            except FileExistsError:
                pass
            if _lease_is_stale(lease, pods_root):  # under the lock: no one else reclaims
                os.unlink(lease)
                os.link(tmp, lease)
                return base
        raise RuntimeFailure("no free user namespace range left for --private-users")
    finally:
        os.unlink(tmp)


def _lease_is_stale(lease: str, pods_root: str) -> bool:
    try:
        with open(lease, encoding="ascii") as handle:
            owner = handle.read().strip()
    except FileNotFoundError:
        return False
    return not owner or not any(
        os.path.isdir(os.path.join(pods_root, phase, owner))
        for phase in ("embryo", "prepare", "prepared", "run", "exited-garbage")
    )


def release_user_range(data_dir: str, pod_uuid: str) -> None:
    directory = os.path.join(data_dir, USERNS_DIR)
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return
    for name in names:
        path = os.path.join(directory, name)
        try:
            with open(path, encoding="ascii") as handle:
                if handle.read().strip() == pod_uuid:
                    os.unlink(path)
        except FileNotFoundError:
            continue


# --- preparing ---------------------------------------------------------------------------------


class Pods:
    """Pods of one data directory."""

    def __init__(self, data_dir: str) -> None:
        self.data_dir = data_dir
        self.store = PodStore(data_dir)
        #: what the last prepare wants the user told (ignored isolators, ...)
        self.warnings: list[str] = []

    def images(self) -> ImageStore:
        return ImageStore(self.data_dir)

    def _prepare(self, images: list[ImageArg], opts: PodOptions) -> LockedPod:
        if not images:
            raise InputError("a pod needs at least one image")
        if opts.flavor not in LIBRARY_FLAVORS:
            raise InputError(
                f"--stage1 {opts.flavor}: not available yet (available: "
                f"{', '.join(FLAVORS_AVAILABLE)})"
            )
        if opts.restart not in RESTART_POLICIES:
            raise InputError(f"--restart must be one of {', '.join(RESTART_POLICIES)}")
        if opts.flavor == "fly" and len(images) != 1:
            raise InputError(f"the fly flavor runs exactly one app per pod (got {len(images)})")
        if opts.flavor == "default":
            parse_net(opts.net, opts.networks)  # unknown networks: an error, nothing made
        if opts.flavor != "default":
            for flag, value in (
                ("--private-users", opts.private_users),
                ("--hostname", opts.hostname),
                ("--net=host", opts.net == "host"),
            ):
                if value:
                    raise InputError(f"{flag}: the {opts.flavor} flavor has no namespaces")
            if any(i.cli_isolators for i in images):
                self.warnings.append(
                    f"the {opts.flavor} flavor enforces no isolators: --cpu, --memory and "
                    "--caps-* are ignored"
                )
        if opts.name is not None and any(  # pods on their way out no longer hold a name
            p.name() == opts.name and p.uuid != opts.replaces
            for p in self.store.pods(("embryo", "prepare", "prepared", "run"))
        ):
            raise InputError(f"a pod named {opts.name!r} exists already")
        if opts.hostname is not None and not _HOSTNAME.fullmatch(opts.hostname):
            raise InputError(
                f"--hostname {opts.hostname!r}: must be a host name (letters, digits, dashes "
                "and dots, at most 64 characters)"
            )
        volumes = {v.name: v for v in opts.volumes}
        for volume in volumes.values():
            if volume.kind == "host" and not (
                os.path.isabs(volume.source) and os.path.exists(volume.source)
            ):
                raise InputError(
                    f"volume {volume.name}: source {volume.source!r} must be an absolute path "
                    "that exists"
                )
        for mount in opts.mounts:
            if mount.volume not in volumes:
                raise InputError(f"--mount volume={mount.volume}: no such --volume")
        resolved = self._resolve_images(images, opts)
        pod = self.store.create(name=opts.name)
        try:
            self._write_pod(pod, images, resolved, opts, volumes)
        except BaseException:
            release_user_range(self.data_dir, pod.uuid)
            pod.release()  # an aborted prepare; gc collects it
            raise
        return pod

    def _resolve_images(
        self, images: list[ImageArg], opts: PodOptions
    ) -> list[tuple[str, ImageManifest, str, dict[str, Any]]]:
        from rktcfg.image.fetch import FetchOptions, fetch_and_render
        from rktcfg.store.trees import TreeStore

        out = []
        with self.images() as store:
            trees = TreeStore(self.data_dir, store)
            for image in images:
                fetch_opts = opts.fetch or FetchOptions(policy="new")
                record = fetch_and_render(store, image.ref, fetch_opts).record
                rootfs = trees.render(record.id)
                store.touch(record.id)
                manifest = record.manifest()
                out.append((record.id, parse_image_manifest(manifest), rootfs, manifest))
        return out

    def _write_pod(
        self,
        pod: LockedPod,
        images: list[ImageArg],
        resolved: list[tuple[str, ImageManifest, str, dict[str, Any]]],
        opts: PodOptions,
        volumes: dict[str, Volume],
    ) -> None:
        from rktcfg.stage1 import fly
        from rktcfg.stage1.base import relative_setup

        default = opts.flavor == "default"
        users = None
        if default and opts.private_users:
            base = take_user_range(self.data_dir, pod.uuid)
            users = {"uid": base, "count": USERNS_SIZE}
        overlay = default and not opts.no_overlay and users is None and _overlay_usable()
        for volume in volumes.values():
            if volume.kind == "empty":
                path = pod.file(os.path.join("volumes", volume.name))
                os.makedirs(path)
                os.chmod(path, volume.mode)
                shift = users["uid"] if users else 0
                os.chown(path, volume.uid + shift, volume.gid + shift)
        taken: set[str] = set()
        apps: list[dict[str, Any]] = []
        runtime_apps: list[dict[str, Any]] = []
        for image, (image_id, manifest, tree, raw_manifest) in zip(images, resolved, strict=True):
            if image.name is not None:
                if image.name in taken:
                    raise InputError(f"two apps are named {image.name!r}")
                name = image.name
                taken.add(name)
            else:
                name = _app_name(manifest, taken)
            app = manifest.app
            label = manifest.name_version
            if app is None and image.exec is None:
                raise InputError(f"image {label!r} has no app section: give --exec=BINARY")
            argv = [image.exec] if image.exec is not None else list(app.exec if app else ())
            argv += list(image.args)
            if not argv:
                raise InputError(f'image "{label}" has an empty "exec" (try --exec=BINARY)')
            app_dir = pod.file(os.path.join("apps", name))
            rootfs = os.path.join(app_dir, "rootfs")
            os.makedirs(app_dir, 0o750)
            with open(os.path.join(app_dir, "manifest"), "w", encoding="utf-8") as handle:
                json.dump(raw_manifest, handle)
            if overlay:
                os.mkdir(rootfs, 0o755)  # the overlay's mount point; the tree is its lower
                source_root = tree
            else:
                _copy_tree(tree, rootfs)
                if users is not None:
                    _shift_ownership(rootfs, users["uid"])
                source_root = rootfs
            env = {"PATH": APP_PATH}
            image_env = {v.name for v in app.environment} if app else set()
            for variable in app.environment if app else ():
                env[variable.name] = variable.value
            env.update({"AC_APP_NAME": name, "container": "rktcfg"})
            env.update(dict(image.env))
            env.update(dict(opts.set_env))
            given = image_env | {k for k, _ in image.env} | {k for k, _ in opts.set_env}
            workdir = image.working_directory or (app.working_directory if app else None) or "/"
            path = env.get("PATH", APP_PATH)
            argv[0] = _find_exec(source_root, argv[0], workdir, path, label)
            user = image.user or (app.user if app else "0")
            group = image.group or (app.group if app else "0")
            uid = _lookup_id(source_root, user, "passwd", "user", label)
            gid = _lookup_id(source_root, group, "group", "group", label)
            groups = list(app.supplementary_gids) if app else []
            groups += [
                _lookup_id(source_root, g, "group", "group", label)
                for g in image.supplementary_groups
            ]
            if default and uid == 0:
                for key, value in ROOT_ENV.items():
                    if key not in given:
                        env[key] = value
            health = None
            if image.health_check is not None:
                check_argv = list(image.health_check["exec"])
                check_argv[0] = _find_exec(source_root, check_argv[0], workdir, path, label)
                health = {**image.health_check, "exec": check_argv}
            app_volumes = _app_volumes(app, opts, volumes, default=default, extra=image.mounts)
            handlers = {h.name: list(h.exec) for h in (app.event_handlers if app else ())}
            spec: dict[str, Any] = {
                "name": name,
                "image_id": image_id,
                "image_name": label,
                "rootfs": os.path.relpath(rootfs, pod.path),
                "exec": argv,
                "env": env,
                "uid": uid,
                "gid": gid,
                "groups": groups,
                "health_check": health,
                "working_directory": workdir,
                "pre_start": handlers.get("pre-start"),
                "post_stop": handlers.get("post-stop"),
                "volumes": app_volumes,
            }
            published = [p["name"] for p in image.ports if p.get("hostPort")]
            if published and opts.net == "none":
                self.warnings.append(
                    f"app {name}: port(s) {', '.join(published)} have a hostPort, but the pod "
                    "has no network to publish them on (--net none)"
                )
            activated = [p.name for p in (app.ports if app else ()) if p.socket_activated]
            if activated:
                message = (
                    f"image {label}: port(s) {', '.join(activated)} are socket-activated, but "
                    "rktcfg passes no listening sockets yet (LISTEN_FDS): the app must listen "
                    "itself"
                )
                if opts.strict_isolators:
                    raise InputError(message)
                self.warnings.append(message)
            if default:
                isolation = self._isolation(image, manifest, opts)
                spec.update(
                    {
                        "rootfs_mode": "overlay" if overlay else "copy",
                        "lower": tree if overlay else None,
                        "read_only_rootfs": image.read_only_rootfs,
                        "isolation": isolation.as_dict(),
                    }
                )
            else:
                spec["setup"] = relative_setup(fly.plan(rootfs, app_volumes), pod.path)
            apps.append(spec)
            runtime_apps.append(
                {
                    "name": name,
                    "image": {"id": image_id, "name": manifest.name},
                    "app": {
                        "exec": argv,
                        "user": str(uid),
                        "group": str(gid),
                        "workingDirectory": workdir,
                        "environment": [{"name": k, "value": v} for k, v in env.items()],
                        "isolators": list(image.pod_isolators) + list(image.cli_isolators),
                    },
                    "readOnlyRootFS": image.read_only_rootfs,
                    "annotations": [{"name": k, "value": v} for k, v in image.annotations],
                    "ports": list(image.ports)
                    or [
                        {"name": p.name, "port": p.port, "protocol": p.protocol}
                        for p in (app.ports if app else ())
                    ],
                }
            )
        _publish(runtime_apps, opts)
        pod.write_json(
            "pod",
            {
                "acVersion": "0.8.11",
                "acKind": "PodManifest",
                "apps": runtime_apps,
                "volumes": [_volume_json(v) for v in volumes.values()],
                "annotations": [{"name": k, "value": v} for k, v in opts.annotations],
            },
        )
        if opts.spec is not None:
            pod.write_json("spec.json", opts.spec)
        stage1: dict[str, Any] = {
            "flavor": opts.flavor,
            "restart": opts.restart,
            "grace_seconds": opts.grace_seconds,
            "logs": {"max_bytes": opts.log_max_bytes, "keep": opts.log_keep},
            "interactive": opts.interactive,
            "apps": apps,
        }
        if default:
            from rktcfg.stage1.metadata import new_token

            fd = os.open(pod.file("mds-token"), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w", encoding="ascii") as handle:
                handle.write(new_token() + "\n")
            stage1.update(
                {
                    "hostname": opts.hostname
                    or (opts.name[:63].rstrip("-") if opts.name else f"rktcfg-{pod.uuid}"),
                    "net": parse_net(opts.net, opts.networks),
                    "private_users": users,
                    "cgroup_parent": opts.cgroup_parent,
                    "strict_isolators": opts.strict_isolators,
                    "dns": list(opts.dns),
                    "dns_search": list(opts.dns_search),
                    "hosts_entries": [list(e) for e in opts.hosts_entries],
                    "metadata": True,
                    "data_dir": os.path.abspath(self.data_dir),
                }
            )
        pod.write_json("stage1.json", stage1)

    def _isolation(self, image: ImageArg, manifest: ImageManifest, opts: PodOptions) -> Any:
        from rktcfg.isolators.resolve import resolve

        label = manifest.name_version
        image_layer = (
            [{"name": i.name, "value": i.value} for i in manifest.app.isolators]
            if (manifest.app)
            else []
        )
        try:
            isolation = resolve(
                [image_layer, list(image.pod_isolators), list(image.cli_isolators)],
                defaults=opts.isolator_defaults,
                strict=opts.strict_isolators,
                where=[f"image {label}", "pod file", "command line"],
            )
        except ValueError as exc:
            raise InputError(str(exc)) from None
        if isolation.ignored:
            self.warnings.append(
                f"image {label}: isolators not enforced: {', '.join(isolation.ignored)} "
                "(--strict-isolators makes this an error)"
            )
        return isolation

    def prepare(self, images: list[ImageArg], opts: PodOptions) -> Pod:
        pod = self._prepare(images, opts)
        pod.to_prepared()
        pod.release()
        return self.store.get(pod.uuid)

    def run(self, images: list[ImageArg], opts: PodOptions) -> Pod:
        """Prepare and start a pod; returns once its apps started (or raises why not)."""
        pod = self._prepare(images, opts)
        pod.to_run()
        return self._start(pod, stdin_fd=0 if opts.interactive else None)

    def run_prepared(self, ref: str) -> Pod:
        return self._start(self.store.run_prepared(self.store.get(ref)))

    def _start(self, pod: LockedPod, *, stdin_fd: int | None = None) -> Pod:
        from rktcfg.stage1.launch import launch_supervisor, wait_started

        try:
            namespaces, hostname = self._isolate(pod)
            netns = pod.file("netns") if os.path.exists(pod.file("netns")) else None
            launch_supervisor(
                pod.path,
                pod.fd,
                stdin_fd=stdin_fd,
                namespaces=namespaces,
                hostname=hostname,
                netns=netns,
            )
        finally:
            pod.release()  # the supervisor holds the lock now
        found = self.store.get(pod.uuid)
        error = wait_started(found.path, lambda: found.state() is not PodState.RUNNING)
        if error is not None:
            raise RuntimeFailure(f"pod {pod.uuid}: {error}")
        return found

    def _isolate(self, pod: LockedPod) -> tuple[int, str | None]:
        """For a default-flavor pod about to start: write its cgroup plan (``cgroups.json``,
        below cgroup-parent or this process's own cgroups) and say which namespaces the
        supervisor starts in."""
        stage1 = pod.read_json("stage1.json")
        if stage1["flavor"] != "default":
            return 0, None
        from rktcfg.isolators import cgroups
        from rktcfg.stage1 import linux

        try:
            layout = cgroups.detect()
            plan = cgroups.plan(
                layout,
                f"rktcfg-{pod.uuid}",
                [app["name"] for app in stage1["apps"]],
                parent=stage1.get("cgroup_parent"),
            )
        except (OSError, ValueError) as exc:
            raise RuntimeFailure(f"pod {pod.uuid}: cannot plan its cgroups: {exc}") from None
        pod.write_json(DEFAULT_CGROUPS_FILE, plan)
        namespaces = (
            linux.CLONE_NEWNS | linux.CLONE_NEWUTS | linux.CLONE_NEWIPC | linux.CLONE_NEWPID
        )
        net = stage1.get("net")
        if isinstance(net, list):  # real networks: a netns file the supervisor joins
            self._networks(pod, net, private_users=bool(stage1.get("private_users")))
        elif net != "host":
            namespaces |= linux.CLONE_NEWNET
        return namespaces, stage1.get("hostname")

    def _networks(
        self, pod: LockedPod, networks: list[dict[str, Any]], *, private_users: bool = False
    ) -> None:
        from rktcfg.net import podnet

        # root of a --private-users pod is not root in the user namespace that owns the
        # network namespace: without this it could not bind ports below 1024
        sysctls = {"net.ipv4.ip_unprivileged_port_start": "0"} if private_users else None
        netns = podnet.create_netns(pod.path, sysctls=sysctls)
        ports = [
            {
                "name": port["name"],
                "protocol": port.get("protocol") or "tcp",
                "port": port["port"],
                "host_port": port["hostPort"],
                "host_ip": port.get("hostIP") or "",
            }
            for app in pod.read_json("pod")["apps"]
            for port in app.get("ports") or ()
            if port.get("hostPort")
        ]
        requested = {n["name"]: n["ip"] for n in networks if n.get("ip")}
        self._reclaim_from_exited(pod.uuid, requested, ports)
        record = podnet.setup(
            pod.path,
            netns,
            [{k: v for k, v in n.items() if k != "ip"} for n in networks],
            data_dir=self.data_dir,
            pod_uuid=pod.uuid,
            requested=requested,
            ports=ports,
        )
        self.warnings.extend(record.get("warnings") or ())

    def _reclaim_from_exited(
        self,
        uuid: str,
        requested: dict[str, str],
        ports: list[dict[str, Any]],
    ) -> None:
        """Tear down the networks of exited pods that hold a host port or requested address
        this pod needs: a dead pod's network is garbage gc would remove anyway, and a replace
        (or run after stop, or after a supervisor's kill -9) must not wait for gc. A holder
        that is still running, or busy, keeps what it holds (setup then names it)."""
        from rktcfg.net import ipam
        from rktcfg.net.podnet import teardown as teardown_networks

        wanted = {ipam.port_holder(self.data_dir, p["protocol"], p["host_port"]) for p in ports}
        wanted |= {ipam.address_holder(self.data_dir, n, ip) for n, ip in requested.items()}
        for holder in sorted(h for h in wanted if h and h != uuid):
            other = self.store.by_uuid(holder)
            try:
                if other is None or other.state() not in (
                    PodState.EXITED,
                    PodState.EXITED_GARBAGE,
                ):
                    continue
            except InputError:
                continue  # gone meanwhile, or never there: setup reclaims its lease itself
            locked = self.store.lock(other)
            if locked is None:
                continue
            with locked:
                # marked as gc would: held in run/ it would read as running meanwhile
                # (and `stop` would signal the dead supervisor's pid)
                if locked.phase == "run":
                    locked.to_exited_garbage()
                left = teardown_networks(locked.path, data_dir=self.data_dir)
            if left:
                raise RuntimeFailure(f"pod {holder} (exited): networks left: {'; '.join(left)}")

    # --- inspecting --------------------------------------------------------------------------

    def get(self, ref: str) -> Pod:
        return self.store.get(ref)

    def all(self) -> list[Pod]:
        return self.store.pods()

    def exit_code(self, pod: Pod) -> int | None:
        return _read_int(pod.file("exit-code"))

    def statuses(self) -> list[dict[str, Any]]:
        """The status of every pod, leaving out pods deleted while they are read."""
        found = []
        for pod in self.all():
            try:
                found.append(self.status(pod))
            except NotFoundError:
                continue
        return found

    def status(self, pod: Pod) -> dict[str, Any]:
        state = pod.state()
        apps = []
        try:
            stage1 = pod.read_json("stage1.json")
        except FileNotFoundError:
            stage1 = {"apps": []}
        for spec in stage1["apps"]:
            try:
                with open(pod.file(f"apps/{spec['name']}/status.json"), encoding="utf-8") as h:
                    app_status = json.load(h)
            except (FileNotFoundError, ValueError):
                app_status = {"name": spec["name"], "state": "created", "exit_code": None}
            app_status["image"] = spec.get("image_name")
            app_status["image_id"] = spec.get("image_id")
            if "isolation" in spec:
                isolation = spec["isolation"]
                app_status["limits"] = isolation.get("limits")
                app_status["capabilities"] = isolation.get("capabilities")
                app_status["isolators_ignored"] = isolation.get("ignored", [])
            if state is not PodState.RUNNING and app_status.get("state") == "running":
                app_status["state"] = "unknown"  # the supervisor died with it running
            apps.append(app_status)
        pid = _read_int(pod.file("pid"))
        cgroups = None
        with contextlib.suppress(FileNotFoundError, ValueError):
            cgroups = pod.read_json(DEFAULT_CGROUPS_FILE)
        networks: list[dict[str, Any]] = []
        published: list[dict[str, Any]] = []
        network_state = None
        with contextlib.suppress(FileNotFoundError, ValueError):
            record = pod.read_json("networks.json")
            network_state = record.get("state")
            networks = [{k: n.get(k) for k in NETWORK_FIELDS} for n in record.get("networks") or ()]
            published = [{k: p.get(k) for k in PORT_FIELDS} for p in record.get("ports") or ()]
        extra: dict[str, Any] = {}
        if stage1.get("flavor") == "default":
            extra = {
                "hostname": stage1.get("hostname"),
                "net": stage1.get("net"),
                "init_pid": _read_int(pod.file("init-pid")),
                "private_users": stage1.get("private_users"),
                "cgroups": cgroups,
            }
        from rktcfg.names import ANNOTATION_SET

        return {
            "uuid": pod.uuid,
            "name": pod.name(),
            "apply_set": self.annotations(pod).get(ANNOTATION_SET),
            "state": state.value,
            "flavor": stage1.get("flavor"),
            "created_at": pod.created(),
            "started_at": pod.started(),
            "pid": pid,
            "exit_code": self.exit_code(pod),
            "apps": apps,
            "networks": networks,
            "network_state": network_state,
            "published_ports": published,
            **extra,
        }

    def annotations(self, pod: Pod) -> dict[str, str]:
        """The pod manifest's annotations (apply's ownership records among them)."""
        try:
            manifest = pod.read_json("pod")
        except (FileNotFoundError, ValueError):
            return {}
        return {a["name"]: a["value"] for a in manifest.get("annotations") or ()}

    def mark_stopped_by_user(self, pod: Pod) -> None:
        """Record that a person stopped the pod (apply reports it instead of restarting it)."""
        with (
            contextlib.suppress(FileNotFoundError),
            open(pod.file(STOPPED_BY_USER), "w", encoding="utf-8") as handle,
        ):
            handle.write(f"{time.time_ns()}\n")

    def enter(self, pod: Pod, app_name: str | None, argv: list[str]) -> int:
        """Run ``argv`` inside a running default-flavor app (see
        :func:`rktcfg.stage1.default.enter`); its exit status."""
        from rktcfg.stage1.base import AppSpec
        from rktcfg.stage1.default import enter

        if pod.state() is not PodState.RUNNING:
            raise InputError(f"pod {pod.uuid} is not running")
        stage1 = pod.read_json("stage1.json")
        if stage1["flavor"] != "default":
            raise InputError(f"pod {pod.uuid}: enter needs the default flavor")
        names = [app["name"] for app in stage1["apps"]]
        if app_name is None:
            if len(names) != 1:
                raise InputError(
                    f"pod {pod.uuid} has several apps: give --app ({', '.join(names)})"
                )
            app_name = names[0]
        if app_name not in names:
            raise InputError(f"pod {pod.uuid} has no app {app_name!r} (it has {', '.join(names)})")
        data = stage1["apps"][names.index(app_name)]
        try:
            status = pod.read_json(f"apps/{app_name}/status.json")
        except (FileNotFoundError, ValueError):
            status = {}
        if status.get("state") != "running" or not status.get("pid"):
            raise InputError(f"pod {pod.uuid}: app {app_name} is not running")
        try:
            return enter(pod.path, AppSpec(data, pod.path), int(status["pid"]), argv)
        except RuntimeError as exc:
            raise RuntimeFailure(f"pod {pod.uuid}: {exc}") from None

    def wait(self, pod: Pod, timeout: float | None) -> bool:
        """Wait until the pod is no longer running (or preparing); False on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while pod.state() in (PodState.RUNNING, PodState.PREPARING):
            if deadline is not None and time.monotonic() >= deadline:
                return False
            time.sleep(0.05)
        return True

    # --- stopping and removing -------------------------------------------------------------------

    def stop(self, pod: Pod, *, force: bool = False) -> bool:
        """Ask a running pod to stop (SIGTERM to its supervisor; --force: SIGKILL to its
        whole process group). False when it was not running (stop is idempotent)."""
        if pod.state() is not PodState.RUNNING:
            return False
        try:
            with open(pod.file("pid"), encoding="utf-8") as handle:
                pid = int(handle.read().strip())
        except (FileNotFoundError, ValueError):
            raise RuntimeFailure(f"pod {pod.uuid} is running but has no supervisor pid") from None
        try:
            group = os.getpgid(pid)
            if force and group != os.getpgid(0):
                # the supervisor and its apps share a process group of their own (setsid)
                os.killpg(group, signal.SIGKILL)
            elif force:
                os.kill(pid, signal.SIGKILL)
            else:
                os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            return False
        return True

    def remove(self, pod: Pod) -> None:
        state = pod.state()
        if state is PodState.RUNNING:
            raise InputError(f"pod {pod.uuid} is running: stop it first")
        if state is PodState.PREPARING or state is PodState.EMBRYO:
            raise InputError(f"pod {pod.uuid} is being prepared")
        if state is PodState.DELETING:
            raise InputError(f"pod {pod.uuid} is being deleted")
        locked = self.store.lock(pod)
        if locked is None:
            raise InputError(f"pod {pod.uuid} is busy (another command holds it)")
        if locked.phase == "run":
            locked.to_exited_garbage()
        elif locked.phase in ("prepare", "prepared"):
            locked.to_garbage()
        self._delete(locked)

    def _delete(self, locked: LockedPod) -> None:
        """Tear down what the pod set up, then delete it. Each step is idempotent; the pod
        manifest goes last, so an interrupted delete can be retried by gc."""
        from rktcfg.stage1 import linux
        from rktcfg.stage1.default import remove_cgroups

        if os.path.exists(locked.file("networks.json")):  # only then pay for the import
            from rktcfg.net.podnet import teardown as teardown_networks

            left = teardown_networks(locked.path, data_dir=self.data_dir)
            if left:
                locked.release()
                raise RuntimeFailure(f"pod {locked.uuid}: networks left: {'; '.join(left)}")
        for attempt in range(20):
            try:
                linux.unmount_below(locked.path)
                left = remove_cgroups(locked.path)
                if left:
                    raise RuntimeFailure(f"cgroups still in use: {', '.join(left)}")
                break
            except RuntimeFailure:
                # processes killed a moment ago may still hold the mounts while they exit
                if attempt == 19:
                    locked.release()
                    raise
                time.sleep(0.1)
        for name in os.listdir(locked.path):
            if name != "pod":
                path = os.path.join(locked.path, name)
                if os.path.isdir(path) and not os.path.islink(path):
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    os.unlink(path)
        release_user_range(self.data_dir, locked.uuid)
        self.store.delete(locked)

    def gc(
        self, *, grace_ns: int, expire_prepared_ns: int, mark_only: bool = False
    ) -> dict[str, list[str]]:
        """rkt's gc: mark exited pods, collect aborted prepares, expire old prepared pods, and
        delete marked pods whose grace period has passed."""
        done: dict[str, list[str]] = {
            "marked": [],
            "garbage": [],
            "deleted": [],
            "kept": [],
            "failed": [],
        }
        now = time.time_ns()
        for pod in self.store.pods(("run", "prepare", "prepared")):
            try:
                state = pod.state()
            except NotFoundError:  # deleted meanwhile (another gc, rm or apply)
                continue
            expired = state is PodState.PREPARED and now - pod.marked() >= expire_prepared_ns
            if state not in (PodState.EXITED, PodState.ABORTED_PREPARE) and not expired:
                continue
            locked = self.store.lock(pod)
            if locked is None:
                continue
            with locked:
                if locked.phase == "run":
                    locked.to_exited_garbage()
                    done["marked"].append(pod.uuid)
                else:
                    locked.to_garbage()
                    done["garbage"].append(pod.uuid)
        if mark_only:
            return done
        for pod in self.store.pods(("exited-garbage", "garbage")):
            # the time now, not at the start: a pod marked above has a later ctime than that
            if pod.phase == "exited-garbage" and time.time_ns() - pod.marked() < grace_ns:
                done["kept"].append(pod.uuid)
                continue
            locked = self.store.lock(pod)
            if locked is None:
                continue
            try:
                self._delete(locked)
            except RuntimeFailure as exc:  # the next gc retries; the others go on
                done["failed"].append(f"{pod.uuid}: {exc.message}")
                continue
            done["deleted"].append(pod.uuid)
        return done

    def in_use_images(self) -> set[str]:
        """Image IDs that prepared, running or exited pods use (image gc must keep them)."""
        used: set[str] = set()
        for pod in self.store.pods(("prepare", "prepared", "run", "exited-garbage")):
            try:
                for app in pod.read_json("stage1.json")["apps"]:
                    used.add(app["image_id"])
            except (FileNotFoundError, ValueError, KeyError):
                continue
        return used
