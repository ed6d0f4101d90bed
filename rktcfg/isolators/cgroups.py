"""cgroup v1 and v2 drivers behind one interface, chosen by what the host mounts.

Observe, plan, act:

- :func:`detect` reads the host's layout once: ``v2`` (cgroup2 at the root, statfs magic
  ``0x63677270``), ``v1`` (one cgroup mount per hierarchy below the root), or ``hybrid`` (v1
  plus a cgroup2 mount at ``<root>/unified``, controller-less or nearly so).
- :func:`plan` turns a layout, a pod's cgroup name and its app names into plain JSON-able
  data: the absolute directory of the pod, of its init process (``_init``) and of each app in
  every hierarchy used. The pod's directory goes below ``parent`` (such as
  ``/machine.slice``) or, without one, below the invoking process's own cgroup in each
  hierarchy (:func:`own_cgroups`).
- :func:`driver_for` gives the :class:`V1Driver` or :class:`V2Driver` that creates those
  directories, writes the limit files, names the ``cgroup.procs`` files a process joins by
  writing its pid, reads OOM kills and removes the directories, deepest first.

Nothing is created above the pod's directory, no existing cgroup's limits are written (on
v2 the parent's ``cgroup.subtree_control`` may gain ``+cpu +memory +pids``, when it can), and
no process is moved but by itself.

Standard library only (imported by the pod supervisor's children, which run ``python -I``);
errors are :class:`CgroupError` (an ``OSError``), whose message names the file and the
value.
"""

from __future__ import annotations

import errno
import os
import time

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing costs the supervisor time
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from typing import Any

#: ``statfs(2)`` ``f_type`` of a cgroup2 file system.
CGROUP2_MAGIC = 0x63677270
#: The v1 hierarchies a pod's cgroups are made in, those the host mounts.
V1_HIERARCHIES: tuple[str, ...] = (
    "cpu",
    "cpuacct",
    "memory",
    "pids",
    "devices",
    "name=systemd",
)
#: The devices an app may create or open (v1 devices.allow lines): the appc /dev nodes
#: (null zero full random urandom tty console ptmx) and the pod's own ptys. Everything else,
#: the host's disks and /dev/kmsg among them, is denied even to root with CAP_MKNOD.
ALLOWED_DEVICES: tuple[str, ...] = (
    "c 1:3 rwm",
    "c 1:5 rwm",
    "c 1:7 rwm",
    "c 1:8 rwm",
    "c 1:9 rwm",
    "c 5:0 rwm",
    "c 5:1 rwm",
    "c 5:2 rwm",
    "c 136:* rwm",
)
#: The v2 controllers a pod enables for its apps, those the parent offers.
V2_CONTROLLERS: tuple[str, ...] = ("cpu", "memory", "pids")
#: The plan's key for the cgroup2 hierarchy (v2, or the unified mount of a hybrid host).
UNIFIED = "unified"
#: The leaf of the pod's init process (cgroup v2 allows no processes in inner cgroups).
INIT = "_init"
CFS_PERIOD_US = 100_000
MIN_CFS_QUOTA_US = 1_000

# Super options of a cgroup v1 mount that are not controllers.
_V1_OPTIONS = frozenset(
    {"rw", "ro", "noprefix", "clone_children", "xattr", "cpuset_v2_mode", "favordynmods", "none"}
)


class CgroupError(OSError):
    """A cgroup operation failed; the message names the file and the value. An ``OSError``,
    so callers catching those catch it; ``errno`` is the failed call's, or None."""

    def __init__(self, message: str, *, path: str | None = None, errno: int | None = None):
        super().__init__(message)
        self.path = path
        self.errno = errno


# Observe -------------------------------------------------------------------------------------


class Layout:
    """The host's cgroup file systems, as :func:`detect` found them. Immutable.

    (A hand-written value class: dataclasses and typing would double the import time of
    this module, which the pod supervisor's children import.)
    """

    __slots__ = ("roots", "unified", "v1", "v2_controllers", "version")

    #: ``v2``, ``v1`` or ``hybrid``.
    version: str
    #: v1 hierarchy (a controller, or ``name=systemd``) -> mount point. A co-mounted
    #: ``cpu,cpuacct`` hierarchy appears under both names with the same path.
    v1: Mapping[str, str]
    #: The cgroup2 mount point, or None.
    unified: str | None
    #: The controllers in the cgroup2 root's ``cgroup.controllers``.
    v2_controllers: tuple[str, ...]
    #: Hierarchy (v1 name, or ``unified``) -> the cgroup its mount shows, when not ``/``.
    roots: Mapping[str, str]

    def __init__(
        self,
        *,
        version: str,
        v1: Mapping[str, str] | None = None,
        unified: str | None = None,
        v2_controllers: Sequence[str] = (),
        roots: Mapping[str, str] | None = None,
    ) -> None:
        if version not in ("v1", "v2", "hybrid"):
            raise ValueError(f"version: must be v1, v2 or hybrid (got {version!r})")
        for name, value in (
            ("version", version),
            ("v1", dict(v1 or {})),
            ("unified", unified),
            ("v2_controllers", tuple(v2_controllers)),
            ("roots", dict(roots or {})),
        ):
            object.__setattr__(self, name, value)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"Layout is immutable (cannot set {name})")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Layout) and self.as_dict() == other.as_dict()

    def __hash__(self) -> int:
        return hash(repr(self))

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in self.as_dict().items())
        return f"Layout({fields})"

    def as_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "v1": dict(self.v1),
            "unified": self.unified,
            "v2_controllers": list(self.v2_controllers),
            "roots": dict(self.roots),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Layout:
        return cls(
            version=data.get("version"),  # type: ignore[arg-type]  # checked by __init__
            v1={str(k): str(v) for k, v in (data.get("v1") or {}).items()},
            unified=data.get("unified"),
            v2_controllers=tuple(data.get("v2_controllers") or ()),
            roots={str(k): str(v) for k, v in (data.get("roots") or {}).items()},
        )


class _Mount:
    """One line of mountinfo, the parts :func:`detect` needs."""

    __slots__ = ("fstype", "mount_point", "root", "super_options")

    def __init__(self, root: str, mount_point: str, fstype: str, super_options: str) -> None:
        self.root = root
        self.mount_point = mount_point
        self.fstype = fstype
        self.super_options = tuple(super_options.split(","))


def _unescape(text: str) -> str:
    """mountinfo's octal escapes (``\\040`` is a space)."""
    if "\\" not in text:
        return text
    out, i = [], 0
    while i < len(text):
        digits = text[i + 1 : i + 4]
        if text[i] == "\\" and len(digits) == 3 and all(c in "01234567" for c in digits):
            out.append(chr(int(digits, 8)))
            i += 4
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def _parse_mountinfo(text: str) -> list[_Mount]:
    mounts = []
    for line in text.splitlines():
        fields = line.split()
        if "-" not in fields[6:]:
            continue
        sep = fields.index("-", 6)
        if len(fields) < sep + 4:
            continue
        mounts.append(
            _Mount(_unescape(fields[3]), _unescape(fields[4]), fields[sep + 1], fields[sep + 3])
        )
    return mounts


def _statfs_type(path: str) -> int | None:
    """``f_type`` of the file system holding ``path`` (ctypes ``statfs``), or None."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        buf = ctypes.create_string_buffer(256)  # struct statfs is 120 bytes on x86_64
        if libc.statfs(os.fsencode(path), buf) != 0:
            return None
        # f_type is the first member (a long) on every Linux architecture.
        return ctypes.c_long.from_buffer(buf).value & 0xFFFFFFFF
    except (OSError, AttributeError):
        return None


def _read_words(path: str) -> tuple[str, ...]:
    try:
        with open(path, encoding="ascii") as handle:
            return tuple(handle.read().split())
    except OSError:
        return ()


def detect(root: str = "/sys/fs/cgroup", mountinfo: str = "/proc/self/mountinfo") -> Layout:
    """The cgroup layout below ``root``, from ``mountinfo`` (statfs when ``root`` is not in it)."""
    root = os.path.normpath(root)
    try:
        with open(mountinfo, encoding="utf-8", errors="surrogateescape") as handle:
            mounts = _parse_mountinfo(handle.read())
    except OSError as exc:
        raise CgroupError(f"cannot read {mountinfo}: {exc.strerror}", path=mountinfo) from None
    at_root = [m for m in mounts if os.path.normpath(m.mount_point) == root]
    # The last mount on a point hides the others; statfs when root is not a mount point.
    is_v2 = at_root[-1].fstype == "cgroup2" if at_root else _statfs_type(root) == CGROUP2_MAGIC
    if is_v2:
        return Layout(
            version="v2",
            unified=root,
            v2_controllers=_read_words(os.path.join(root, "cgroup.controllers")),
            roots=_nonroot({UNIFIED: at_root[-1].root if at_root else "/"}),
        )
    v1: dict[str, str] = {}
    roots: dict[str, str] = {}
    unified: str | None = None
    prefix = root.rstrip("/") + "/"
    for mount in mounts:
        point = os.path.normpath(mount.mount_point)
        if not point.startswith(prefix):
            continue
        if mount.fstype == "cgroup2":
            if unified is None or point == os.path.join(root, UNIFIED):
                unified = point
                roots[UNIFIED] = mount.root
        elif mount.fstype == "cgroup":
            for option in mount.super_options:
                if option in _V1_OPTIONS or option.startswith("release_agent="):
                    continue
                if option not in v1:
                    v1[option] = point
                    roots[option] = mount.root
    if not v1 and unified is None:
        raise CgroupError(f"no cgroup file system is mounted at or below {root}", path=root)
    return Layout(
        version="hybrid" if unified is not None else "v1",
        v1=v1,
        unified=unified,
        v2_controllers=(
            _read_words(os.path.join(unified, "cgroup.controllers")) if unified else ()
        ),
        roots=_nonroot(roots),
    )


def _nonroot(roots: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in roots.items() if v != "/"}


def own_cgroups(path: str = "/proc/self/cgroup") -> dict[str, str]:
    """This process's cgroup per hierarchy: ``{"cpu": "/", "name=systemd": "/", "": "/"}``
    (``""`` is the cgroup2 hierarchy)."""
    try:
        with open(path, encoding="utf-8", errors="surrogateescape") as handle:
            text = handle.read()
    except OSError as exc:
        raise CgroupError(f"cannot read {path}: {exc.strerror}", path=path) from None
    own: dict[str, str] = {}
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, cgroup = parts
        for name in controllers.split(",") if controllers else [""]:
            own[name] = cgroup
    return own


# Plan ----------------------------------------------------------------------------------------


def _check_name(what: str, name: str) -> None:
    ok = (
        isinstance(name, str)
        and bool(name)
        and name[0] not in "-_"
        and all(c.isascii() and (c.isalnum() or c in "-_") for c in name)
    )
    if not ok:
        raise ValueError(
            f"{what}: must be letters, digits, '-' and '_', starting with a letter or digit "
            f"(got {name!r})"
        )


def _relative(cgroup: str, what: str) -> str:
    """``cgroup`` as a relative path without ``..``: ``/machine.slice`` -> ``machine.slice``."""
    parts = [p for p in cgroup.split("/") if p and p != "."]
    if ".." in parts:
        raise ValueError(f"{what}: must be a cgroup path without '..' (got {cgroup!r})")
    return "/".join(parts)


def plan(
    layout: Layout,
    pod_cgroup_name: str,
    app_names: Sequence[str],
    parent: str | None = None,
    own: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The directories of a pod's cgroups in every hierarchy used, as JSON-able data::

        {"version": "v1", "pod": {hierarchy: dir}, "init": {hierarchy: dir},
         "apps": {app: {hierarchy: dir}}}

    v1 uses cpu, cpuacct, memory, pids and name=systemd (those mounted), a hybrid host also
    its cgroup2 mount (``unified``), v2 only ``unified``. The pod's directory is
    ``<mount>/<parent or own cgroup>/<pod_cgroup_name>``; ``init`` is ``<pod>/_init``, each app
    ``<pod>/<app>``. ``own`` defaults to :func:`own_cgroups`.
    """
    _check_name("pod cgroup name", pod_cgroup_name)
    for app in app_names:
        _check_name("app name", app)
        if app == INIT:
            raise ValueError(f"app name: {INIT} is the pod's init cgroup (got {app!r})")
    if len(set(app_names)) != len(app_names):
        raise ValueError(f"app names: must be distinct (got {list(app_names)!r})")
    hierarchies: list[tuple[str, str, str]] = []  # (plan key, mount point, /proc key)
    if layout.version in ("v1", "hybrid"):
        hierarchies += [(h, layout.v1[h], h) for h in V1_HIERARCHIES if h in layout.v1]
    if layout.version in ("v2", "hybrid") and layout.unified is not None:
        hierarchies.append((UNIFIED, layout.unified, ""))
    if not hierarchies:
        raise ValueError(f"layout: no hierarchy to make cgroups in (got {layout.as_dict()!r})")
    base_parent = None if parent is None else _relative(parent, "cgroup parent")
    if own is None:
        own = own_cgroups() if parent is None else {}
    pod: dict[str, str] = {}
    for key, mount, own_key in hierarchies:
        if base_parent is not None:
            base = base_parent
        else:
            cgroup = own.get(own_key, "/")
            mount_root = layout.roots.get(key, "/")
            if mount_root != "/" and (cgroup + "/").startswith(mount_root.rstrip("/") + "/"):
                cgroup = cgroup[len(mount_root.rstrip("/")) :]  # the mount shows a subtree
            base = _relative(cgroup, f"own cgroup in {key}")
        pod[key] = os.path.join(mount, base, pod_cgroup_name)
    return {
        "version": layout.version,
        "pod": pod,
        "init": {key: os.path.join(d, INIT) for key, d in pod.items()},
        "apps": {app: {key: os.path.join(d, app) for key, d in pod.items()} for app in app_names},
    }


# Act -----------------------------------------------------------------------------------------


def _write(path: str, value: str) -> None:
    """Write ``value`` to a cgroup file that must exist (cgroup file systems create none)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_TRUNC | os.O_CLOEXEC)
        try:
            os.write(fd, value.encode("ascii"))
        finally:
            os.close(fd)
    except OSError as exc:
        raise CgroupError(
            f'cannot write "{value}" to {path}: {exc.strerror}', path=path, errno=exc.errno
        ) from None


def _read_counter(path: str, key: str) -> int | None:
    """The value of ``key N`` in a flat-keyed file like memory.events, or None."""
    try:
        with open(path, encoding="ascii") as handle:
            for line in handle:
                parts = line.split()
                if len(parts) == 2 and parts[0] == key:
                    return int(parts[1])
    except (OSError, ValueError):
        return None
    return None


def _mkdir(path: str) -> None:
    try:
        os.mkdir(path, 0o755)
    except FileExistsError:
        pass
    except OSError as exc:
        raise CgroupError(
            f"cannot create cgroup {path}: {exc.strerror}", path=path, errno=exc.errno
        ) from None


def _unique(dirs: Mapping[str, str]) -> list[str]:
    """The distinct directories of a {hierarchy: dir} map, in order (co-mounted ones once)."""
    return list(dict.fromkeys(dirs.values()))


def join(files: Sequence[str], pid: int | None = None) -> None:
    """Move ``pid`` (default: this process) into a cgroup by writing it to ``files``, as
    :meth:`Driver.join_files` gives them. Meant for a process joining its own cgroups."""
    text = str(os.getpid() if pid is None else pid)
    for path in files:
        _write(path, text)


class Driver:
    """A pod's cgroups as a :func:`plan` laid them out; see :func:`driver_for`."""

    version = ""

    def __init__(self, plan: Mapping[str, Any]) -> None:
        self.plan = plan

    def _app(self, app: str) -> Mapping[str, str]:
        try:
            dirs: Mapping[str, str] = self.plan["apps"][app]
        except KeyError:
            raise ValueError(f"app: not one of the pod's apps (got {app!r})") from None
        return dirs

    def _check_parents(self) -> None:
        for directory in _unique(self.plan["pod"]):
            parent = os.path.dirname(directory)
            if not os.path.isdir(parent):
                raise CgroupError(
                    f"cgroup parent {parent} does not exist (rktcfg creates cgroups only "
                    "below an existing one)",
                    path=parent,
                )

    def _make_children(self) -> None:
        for directory in _unique(self.plan["init"]):
            _mkdir(directory)
        for app in self.plan["apps"]:
            for directory in _unique(self.plan["apps"][app]):
                _mkdir(directory)

    def create(self) -> list[str]:
        """Make the pod's, init's and apps' directories; return warnings. After a failure,
        :meth:`remove` takes away what was made."""
        raise NotImplementedError

    def apply(self, app: str, limits: Mapping[str, int | None]) -> list[str]:
        """Write ``limits`` (``Limits.as_dict()``) for ``app``; return warnings for limits
        whose controller is not available."""
        raise NotImplementedError

    def oom_kills(self, app: str) -> int:
        """How many of the app's processes the OOM killer killed."""
        raise NotImplementedError

    def restrict_devices(self, app: str | None) -> list[str]:
        """cgroup v2 restricts devices with a BPF program, which rktcfg does not load yet."""
        return ["cgroup v2: device access is not restricted (no BPF device filter yet)"]

    def join_files(self, app: str | None) -> list[str]:
        """The ``cgroup.procs`` files a process of ``app`` (None: the pod's init) writes its
        pid to, one per distinct directory."""
        dirs = self.plan["init"] if app is None else self._app(app)
        return [os.path.join(d, "cgroup.procs") for d in _unique(dirs)]

    def remove(self, timeout: float = 5.0) -> list[str]:
        """Remove every directory at or below the pod's, deepest first, retrying those still
        busy (processes exiting) for up to ``timeout`` seconds; missing ones count as
        removed. Returns what could not be removed, each with the reason."""
        found: list[str] = []
        for top in _unique(self.plan["pod"]):
            for directory, _, _ in os.walk(top, topdown=False):
                found.append(directory)
        pending = sorted(dict.fromkeys(found), key=lambda d: d.count("/"), reverse=True)
        deadline = time.monotonic() + timeout
        reasons: dict[str, str] = {}
        while pending:
            still: list[str] = []
            for directory in pending:
                try:
                    os.rmdir(directory)
                except FileNotFoundError:
                    pass
                except OSError as exc:
                    still.append(directory)
                    reasons[directory] = exc.strerror or str(exc)
                    if exc.errno not in (errno.EBUSY, errno.ENOTEMPTY, errno.EAGAIN):
                        deadline = 0.0  # not something waiting cures
            pending = still
            if not pending or time.monotonic() >= deadline:
                break
            time.sleep(0.05)
        return [f"{d}: {reasons[d]}" for d in pending]


def _unavailable(isolator: str, controller: str) -> str:
    return f"{isolator} isolator set but the {controller} controller is not available, skipping"


def _shares(limits: Mapping[str, int | None]) -> tuple[str, int] | None:
    """(isolator, cpu.shares) from os/linux/cpu-shares, else from the cpu request."""
    shares = limits.get("cpu_shares")
    if shares is not None:
        return "os/linux/cpu-shares", shares
    request = limits.get("cpu_request_millis")
    if request is not None:
        return "resource/cpu", max(2, request * 1024 // 1000)
    return None


def _quota(millis: int) -> int:
    return max(MIN_CFS_QUOTA_US, millis * CFS_PERIOD_US // 1000)


class V1Driver(Driver):
    """cgroup v1: a directory per hierarchy; on a hybrid host also one in the cgroup2 mount,
    which carries no limits."""

    version = "v1"

    def create(self) -> list[str]:
        self._check_parents()
        for directory in _unique(self.plan["pod"]):
            _mkdir(directory)
        self._make_children()
        return []

    def apply(self, app: str, limits: Mapping[str, int | None]) -> list[str]:
        dirs = self._app(app)
        warnings: list[str] = []
        cpu, memory, pids = dirs.get("cpu"), dirs.get("memory"), dirs.get("pids")
        cpu_limit = limits.get("cpu_limit_millis")
        if cpu_limit is not None:
            if cpu is None:
                warnings.append(_unavailable("resource/cpu", "cpu"))
            else:
                _write(os.path.join(cpu, "cpu.cfs_period_us"), str(CFS_PERIOD_US))
                _write(os.path.join(cpu, "cpu.cfs_quota_us"), str(_quota(cpu_limit)))
        shares = _shares(limits)
        if shares is not None:
            if cpu is None:
                warnings.append(_unavailable(shares[0], "cpu"))
            else:
                _write(os.path.join(cpu, "cpu.shares"), str(shares[1]))
        memory_limit = limits.get("memory_limit_bytes")
        if memory_limit is not None:
            if memory is None:
                warnings.append(_unavailable("resource/memory", "memory"))
            else:
                _write_memory_v1(memory, memory_limit)
        pids_max = limits.get("pids")
        if pids_max is not None:
            if pids is None:
                warnings.append(_unavailable("rktcfg/pids", "pids"))
            else:
                _write(os.path.join(pids, "pids.max"), str(pids_max))
        return list(dict.fromkeys(warnings))  # a cpu limit and request warn once

    def restrict_devices(self, app: str | None) -> list[str]:
        """Deny every device but :data:`ALLOWED_DEVICES` to an app (None: the init leaf)."""
        dirs = self._app(app) if app is not None else self.plan["init"]
        directory = dirs.get("devices")
        if directory is None:
            return ["the devices controller is not mounted: device access is not restricted"]
        _write(os.path.join(directory, "devices.deny"), "a")
        for rule in ALLOWED_DEVICES:
            _write(os.path.join(directory, "devices.allow"), rule)
        return []

    def oom_kills(self, app: str) -> int:
        memory = self._app(app).get("memory")
        if memory is None:
            return 0
        kills = _read_counter(os.path.join(memory, "memory.oom_control"), "oom_kill")
        if kills is not None:
            return kills
        try:
            with open(os.path.join(memory, "memory.failcnt"), encoding="ascii") as handle:
                return 1 if int(handle.read().strip() or 0) > 0 else 0
        except (OSError, ValueError):
            return 0


def _write_memory_v1(directory: str, limit: int) -> None:
    """memory.limit_in_bytes, then memory.memsw.limit_in_bytes (memory plus swap) when the
    kernel has it. memsw may not be below the memory limit, so when raising a limit above
    the current memsw the kernel wants memsw first."""
    memory = os.path.join(directory, "memory.limit_in_bytes")
    memsw = os.path.join(directory, "memory.memsw.limit_in_bytes")
    has_memsw = os.path.exists(memsw)
    try:
        _write(memory, str(limit))
    except CgroupError as exc:
        if not has_memsw or exc.errno != errno.EINVAL:
            raise
        _write(memsw, str(limit))
        _write(memory, str(limit))
        return
    if has_memsw:
        _write(memsw, str(limit))


class V2Driver(Driver):
    """cgroup v2: one tree; the pod enables cpu, memory and pids for its children."""

    version = "v2"

    def create(self) -> list[str]:
        self._check_parents()
        warnings: list[str] = []
        pod = self.plan["pod"][UNIFIED]
        parent = os.path.dirname(pod)
        offered = _read_words(os.path.join(parent, "cgroup.controllers"))
        wanted = [c for c in V2_CONTROLLERS if c in offered]
        enabled = set(_read_words(os.path.join(parent, "cgroup.subtree_control")))
        missing = [c for c in wanted if c not in enabled]
        if missing:
            failed = _enable(parent, missing)
            if failed:
                wanted = [c for c in wanted if c not in failed]
                warnings.append(_not_enabled(parent, failed))
        _mkdir(pod)
        if wanted:
            failed = _enable(pod, wanted)
            if failed:
                warnings.append(_not_enabled(pod, failed))
        self._make_children()
        return warnings

    def _controllers(self, directory: str) -> tuple[str, ...]:
        return _read_words(os.path.join(directory, "cgroup.controllers"))

    def apply(self, app: str, limits: Mapping[str, int | None]) -> list[str]:
        directory = self._app(app)[UNIFIED]
        controllers = self._controllers(directory)
        warnings: list[str] = []

        def usable(isolator: str, controller: str) -> bool:
            if controller in controllers:
                return True
            warnings.append(_unavailable(isolator, controller))
            return False

        cpu_limit = limits.get("cpu_limit_millis")
        if cpu_limit is not None and usable("resource/cpu", "cpu"):
            _write(os.path.join(directory, "cpu.max"), f"{_quota(cpu_limit)} {CFS_PERIOD_US}")
        shares = _shares(limits)
        if shares is not None and usable(shares[0], "cpu"):
            weight = 1 + ((shares[1] - 2) * 9999) // 262142
            _write(os.path.join(directory, "cpu.weight"), str(weight))
        memory_limit = limits.get("memory_limit_bytes")
        if memory_limit is not None and usable("resource/memory", "memory"):
            _write(os.path.join(directory, "memory.max"), str(memory_limit))
            swap = os.path.join(directory, "memory.swap.max")
            if os.path.exists(swap):
                _write(swap, "0")
        pids_max = limits.get("pids")
        if pids_max is not None and usable("rktcfg/pids", "pids"):
            _write(os.path.join(directory, "pids.max"), str(pids_max))
        return list(dict.fromkeys(warnings))

    def oom_kills(self, app: str) -> int:
        events = os.path.join(self._app(app)[UNIFIED], "memory.events")
        return _read_counter(events, "oom_kill") or 0


def _enable(directory: str, controllers: Sequence[str]) -> dict[str, str]:
    """Enable ``controllers`` in ``directory``'s cgroup.subtree_control, all in one write,
    else one by one; return those that failed, each with the reason (strerror)."""
    control = os.path.join(directory, "cgroup.subtree_control")
    try:
        _write(control, " ".join(f"+{c}" for c in controllers))
        return {}
    except CgroupError:
        pass
    failed: dict[str, str] = {}
    for controller in controllers:
        try:
            _write(control, f"+{controller}")
        except CgroupError as exc:
            failed[controller] = os.strerror(exc.errno) if exc.errno else str(exc)
    return failed


def _not_enabled(directory: str, failed: Mapping[str, str]) -> str:
    plus = " ".join(f"+{c}" for c in failed)
    reasons = ", ".join(dict.fromkeys(failed.values()))
    return (
        f"cannot enable {plus} in {directory}/cgroup.subtree_control ({reasons}); "
        "those controllers' limits will not be enforced"
    )


def driver_for(plan: Mapping[str, Any]) -> Driver:
    """The driver for a :func:`plan` (as read back from a pod's ``cgroups.json``)."""
    version = plan.get("version")
    if version == "v2":
        return V2Driver(plan)
    if version in ("v1", "hybrid"):
        return V1Driver(plan)
    raise ValueError(f"cgroups plan: version must be v1, v2 or hybrid (got {version!r})")
