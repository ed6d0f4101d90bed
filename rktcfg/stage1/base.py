"""The stage1 flavor interface, and the app description the supervisor works from.

A flavor sets a pod up on the host (``setup``), starts one app process at a time
(``spawn``), and tears down whatever ``setup`` made (``teardown``, idempotent, also after the
supervisor was killed). Everything it sets up is recorded in the pod directory *before* it
is made, so gc can undo it from the record alone.

This module and the flavors are imported by the supervisor (``python -I -m
rktcfg.stage1.init``): the standard library only, plus ``rktcfg.stage1.linux``.
"""

from __future__ import annotations

import json
import os
import signal

#: The two lines every pod's /etc/hosts starts with (where rktcfg writes one).
LOCALHOST_LINES = "127.0.0.1\tlocalhost localhost.localdomain\n::1\tlocalhost ip6-localhost\n"

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, NoReturn, Protocol

    class Flavor(Protocol):
        name: str

        def check(self, apps: list[AppSpec]) -> None: ...

        def setup(self, pod_dir: str, apps: list[AppSpec]) -> None: ...

        def spawn(
            self, pod_dir: str, app: AppSpec, argv: list[str], stdio: tuple[int, int, int]
        ) -> int: ...

        def teardown(self, pod_dir: str) -> list[str]: ...


#: The file in the pod directory that the supervisor reads: apps, flavor, policies.
STAGE1_FILE = "stage1.json"
#: Mount points the flavor made (one absolute path a line), appended before each mount.
MOUNTS_FILE = "mounts"


class AppSpec:
    """One app, fully resolved at prepare time: rootfs, argv, identity, environment."""

    __slots__ = (
        "env",
        "exec",
        "gid",
        "groups",
        "name",
        "post_stop",
        "pre_start",
        "raw",
        "rootfs",
        "setup",
        "uid",
        "volumes",
        "working_directory",
    )

    def __init__(self, data: dict[str, Any], pod_dir: str) -> None:
        """``data`` from stage1.json; its paths are relative to the pod directory, which moves
        between phase directories (prepare/ to run/), so they are resolved against ``pod_dir``."""
        self.name: str = data["name"]
        self.rootfs: str = os.path.join(pod_dir, data["rootfs"])
        self.exec: list[str] = list(data["exec"])
        self.env: dict[str, str] = dict(data["env"])
        self.uid: int = int(data["uid"])
        self.gid: int = int(data["gid"])
        self.groups: list[int] = [int(g) for g in data.get("groups", [])]
        self.working_directory: str = data.get("working_directory") or "/"
        self.pre_start: list[str] = list(data.get("pre_start") or [])
        self.post_stop: list[str] = list(data.get("post_stop") or [])
        #: [{"source": host path, "target": path in the app, "read_only": bool}]
        self.volumes: list[dict[str, Any]] = list(data.get("volumes") or [])
        #: What the flavor planned at prepare time (fly: mounts and files, resolved in rootfs),
        #: with targets relative to the pod directory.
        self.setup: dict[str, Any] = _resolve_setup(dict(data.get("setup") or {}), pod_dir)
        #: The whole entry, for what only one flavor reads (default: isolation, rootfs mode).
        self.raw: dict[str, Any] = data

    def as_dict(self) -> dict[str, Any]:
        return {slot: getattr(self, slot) for slot in self.__slots__}


def _resolve_setup(setup: dict[str, Any], pod_dir: str) -> dict[str, Any]:
    mounts = [{**m, "target": os.path.join(pod_dir, m["target"])} for m in setup.get("mounts", [])]
    files = {os.path.join(pod_dir, path): text for path, text in setup.get("files", {}).items()}
    return {"mounts": mounts, "files": files}


def relative_setup(setup: dict[str, Any], pod_dir: str) -> dict[str, Any]:
    """A flavor's plan with its host paths made relative to the pod directory."""
    mounts = [
        {**m, "target": os.path.relpath(m["target"], pod_dir)} for m in setup.get("mounts", [])
    ]
    files = {os.path.relpath(p, pod_dir): text for p, text in setup.get("files", {}).items()}
    for path in [m["target"] for m in mounts] + list(files):
        if path.startswith(".."):
            raise ValueError(f"{path}: outside the pod directory")
    return {"mounts": mounts, "files": files}


def record_mount(pod_dir: str, target: str) -> None:
    """Append a mount point to the pod's record, durably, before the mount is made."""
    fd = os.open(os.path.join(pod_dir, MOUNTS_FILE), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
    try:
        os.write(fd, (target + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)


def recorded_mounts(pod_dir: str) -> list[str]:
    try:
        with open(os.path.join(pod_dir, MOUNTS_FILE), encoding="utf-8") as handle:
            return [line.strip() for line in handle if line.strip()]
    except FileNotFoundError:
        return []


#: The signals the supervisor handles; a child must not run the supervisor's handlers.
HANDLED_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD)


def fork() -> int:
    """os.fork, with the supervisor's signal handlers reset to the default in the child.

    The handled signals are blocked around the fork, so one that arrives meanwhile is not
    run by the supervisor's Python handler in the child (where it would be lost: a SIGTERM
    for an app that has not exec'd yet); the child gets it with the default action once it
    unblocks, the parent with its handler."""
    old = signal.pthread_sigmask(signal.SIG_BLOCK, HANDLED_SIGNALS)
    try:
        pid = os.fork()
    except BaseException:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)
        raise
    if pid == 0:
        signal.set_wakeup_fd(-1)
        for signum in HANDLED_SIGNALS:
            signal.signal(signum, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_SETMASK, old)
    return pid


def in_child(work: Any) -> None:
    """Run ``work()`` in a forked child and wait for it; raise RuntimeError with its message
    if it fails. The supervisor does its mounts this way, so the kernel-call code (ctypes)
    and its memory never stay in the long-lived supervisor."""
    read_end, write_end = os.pipe()
    pid = fork()
    if pid == 0:
        os.close(read_end)
        try:
            work()
        except BaseException as exc:
            text = str(exc) or repr(exc)
            os.write(write_end, text.encode()[:4000])
            os._exit(1)
        os._exit(0)
    os.close(write_end)
    message = b""
    while chunk := os.read(read_end, 4096):
        message += chunk
    os.close(read_end)
    _, status = os.waitpid(pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(message.decode(errors="replace") or "failed")


def read_stage1(pod_dir: str) -> dict[str, Any]:
    with open(os.path.join(pod_dir, STAGE1_FILE), encoding="utf-8") as handle:
        data: dict[str, Any] = json.load(handle)
    return data


def get_flavor(name: str) -> Flavor:
    if name == "fly":
        from rktcfg.stage1.fly import FlyFlavor

        return FlyFlavor()
    if name == "default":
        from rktcfg.stage1.default import DefaultFlavor

        return DefaultFlavor()
    if name == "fake":
        from rktcfg.stage1.fake import FakeFlavor

        return FakeFlavor()
    raise ValueError(f"stage1 flavor {name!r} is not available (available: fly, default)")


def spawn_process(
    app: AppSpec,
    argv: list[str],
    stdio: tuple[int, int, int],
    *,
    chroot: bool,
    keep_fds: tuple[int, ...] = (),
) -> int:
    """Fork, enter the app's rootfs (``chroot``) or run its binary from the host path, take
    its identity and directory, and exec ``argv``. Returns the child's pid. In the child, a
    failure to start prints one line on the app's stderr and exits 127 (not found) or 126."""
    pid = fork()
    if pid != 0:
        return pid
    try:  # the child: only async-signal-safe-ish work, then exec
        # Imported in the child (before the chroot hides the package): the supervisor itself
        # stays free of ctypes.
        from rktcfg.stage1 import linux

        linux.load()
        for target, fd in enumerate(stdio):
            os.dup2(fd, target)
        close_fds_except(keep_fds)
        os.umask(0o022)
        if chroot:
            os.chroot(app.rootfs)
            directory = app.working_directory
            program = argv[0]
        else:
            directory = os.path.join(app.rootfs, app.working_directory.lstrip("/"))
            program = os.path.join(app.rootfs, argv[0].lstrip("/"))
        if os.geteuid() == 0:
            os.setgroups(app.groups)
            os.setgid(app.gid)
            os.setuid(app.uid)
        # The app dies with its supervisor: a pod whose lock is free has no processes left.
        linux.set_parent_death_signal(signal.SIGKILL)
        if os.getppid() == 1:  # the supervisor died before the signal was armed
            os._exit(137)
        os.chdir(directory)
        os.execve(program, argv, app.env)
    except BaseException as exc:
        exec_failed(exc, argv[0])
    raise AssertionError("unreachable")


def exec_failed(exc: BaseException, program: str) -> NoReturn:
    """In a forked child that could not become ``program``: say why on stderr and exit 127
    (not in the image) or 126 (anything else), as a shell would."""
    if isinstance(exc, FileNotFoundError):
        os.write(2, f"rktcfg: {program}: not found in the image\n".encode())
        os._exit(127)
    os.write(2, f"rktcfg: cannot start {program}: {exc}\n".encode())
    os._exit(126)


def close_fds_except(keep: tuple[int, ...]) -> None:
    """Close every fd from 3 up except ``keep``: nothing of rktcfg leaks into an app."""
    low = 3
    for fd in sorted(keep):
        if fd >= low:
            os.closerange(low, fd)
            low = fd + 1
    os.closerange(low, 65536)
