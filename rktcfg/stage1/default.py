"""The default flavor: a pod in namespaces of its own, each app in its own rootfs and cgroup.

How a pod is put together (each step in the process named):

1. The launcher (``rktcfg.stage1.launch``, in the rktcfg process) unshares mount, UTS, IPC,
   PID and (unless ``net: host``) network namespaces, makes every mount a slave of the host's
   (so nothing the pod mounts propagates back), sets the hostname, brings ``lo`` up, and
   execs the supervisor. The supervisor itself stays in the host's PID namespace; its
   children land in the pod's.
2. The supervisor's first child is the pod's PID 1 (:func:`run_init`): it reaps orphans and
   forwards SIGTERM, SIGINT, SIGHUP, SIGUSR1 and SIGUSR2 to every process of the pod. When it
   dies (with the supervisor: it has a parent-death signal) the kernel kills the whole pod.
3. ``setup`` (a short-lived child, inside the pod) creates the pod's cgroups from
   ``cgroups.json`` (written by the library before the launch), writes each app's limits,
   moves PID 1 into ``_init``, and builds each app's rootfs in the pod's mount namespace:
   an overlay (lower: the rendered image tree; upper and work in the pod directory) or a bind
   of a private copy, then /proc (with /proc/sys, sysrq-trigger, irq and bus read-only, kcore
   and keys masked), a read-only /sys whose ``fs/cgroup`` shows only the app's own cgroups,
   read-only, a tmpfs /dev with the appc device nodes, devpts and /dev/shm, the volumes, and
   /etc/hosts and /etc/resolv.conf where the image has none. ``readOnlyRootFS`` remounts the
   root read-only last. Every target is resolved inside the app's rootfs.
4. ``spawn`` forks an app: it joins its cgroups, sets its OOM score, takes a mount
   namespace of its own and pivot_roots into its rootfs (the host root is detached, not just
   hidden), enters the pod's user namespace when ``--private-users`` asked for one (the
   supervisor writes the uid and gid maps), drops the bounding set to the app's
   capabilities, takes its uid, gid and groups, sets its effective, permitted and inheritable
   capabilities, ``no_new_privs`` if asked, closes every other fd, and execs.

Nothing is mounted in the host's mount namespace, so when the pod's last process is gone its
mounts are gone too; ``teardown`` (also gc's) removes the cgroups, deepest first.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import stat

from rktcfg.stage1.base import (
    LOCALHOST_LINES,
    AppSpec,
    close_fds_except,
    exec_failed,
    fork,
    read_stage1,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

CGROUPS_FILE = "cgroups.json"
INIT_PID_FILE = "init-pid"
#: The devices of a pod's /dev (appc OS spec): name -> (major, minor).
DEVICES = {
    "null": (1, 3),
    "zero": (1, 5),
    "full": (1, 7),
    "random": (1, 8),
    "urandom": (1, 9),
    "tty": (5, 0),
}
FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2)


def hosts_file(hostname: str) -> str:
    return LOCALHOST_LINES + f"127.0.1.1\t{hostname}\n"


# --- PID 1 -------------------------------------------------------------------------------------


INIT_ROOT = "init-root"


def run_init(root: str) -> None:
    """The pod's PID 1 (in a forked child of the supervisor; never returns). It chroots
    into ``root``, an empty directory, so that ``/proc/1/root`` shows an app nothing of the
    host even when it may ptrace."""
    try:
        from rktcfg.stage1 import linux

        linux.set_parent_death_signal(signal.SIGKILL)
        linux.set_process_name("rktcfg-init")
        devnull = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(devnull, fd)
        close_fds_except(())
        os.chroot(root)
        os.chdir("/")
        watched = {signal.SIGCHLD, *FORWARDED}
        signal.pthread_sigmask(signal.SIG_BLOCK, watched)
        while True:
            info = signal.sigwaitinfo(watched)
            if info.si_signo == signal.SIGCHLD:
                while True:
                    try:
                        pid, _ = os.waitpid(-1, os.WNOHANG)
                    except ChildProcessError:
                        break
                    if pid == 0:
                        break
            else:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(-1, info.si_signo)  # every process of the pod but PID 1
    finally:
        os._exit(1)


# --- cgroups -----------------------------------------------------------------------------------


def _cgroup_plan(pod_dir: str) -> dict[str, Any] | None:
    try:
        with open(os.path.join(pod_dir, CGROUPS_FILE), encoding="utf-8") as handle:
            plan: dict[str, Any] = json.load(handle)
            return plan
    except FileNotFoundError:
        return None


def remove_cgroups(pod_dir: str) -> list[str]:
    """Remove the pod's cgroups, deepest first; what could not be removed."""
    plan = _cgroup_plan(pod_dir)
    if plan is None:
        return []
    from rktcfg.isolators.cgroups import driver_for

    return driver_for(plan).remove()


# --- the rootfs --------------------------------------------------------------------------------


def _mount_point(path: str, *, directory: bool, owner: tuple[int, int] | None) -> None:
    if directory:
        os.makedirs(path, 0o755, exist_ok=True)
    elif not os.path.lexists(path):
        os.makedirs(os.path.dirname(path), 0o755, exist_ok=True)
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o644))
        if owner is not None:
            os.chown(path, *owner)


def _write_new(path: str, text: str, owner: tuple[int, int] | None) -> None:
    os.makedirs(os.path.dirname(path), 0o755, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    try:
        os.write(fd, text.encode())
        if owner is not None:
            os.fchown(fd, *owner)
    finally:
        os.close(fd)


def _replace(path: str, text: str, owner: tuple[int, int] | None) -> None:
    """Write a file of the app's rootfs anew (a symlink there is replaced, not followed)."""
    if os.path.lexists(path):
        os.unlink(path)
    _write_new(path, text, owner)


def _add_hostname(path: str, hostname: str) -> None:
    """Append ``127.0.1.1 HOSTNAME`` to the rootfs's hosts file when no line names the
    hostname (a regular file only: a symlink there is the image's business)."""
    try:
        if not stat.S_ISREG(os.lstat(path).st_mode):
            return
        with open(path, encoding="utf-8", errors="replace") as handle:
            text = handle.read()
    except OSError:
        return
    for line in text.splitlines():
        if hostname in line.split("#", 1)[0].split()[1:]:
            return
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(("" if not text or text.endswith("\n") else "\n") + f"127.0.1.1\t{hostname}\n")


#: Where systemd-resolved keeps the upstream servers when /etc/resolv.conf points at its stub
#: listener (127.0.0.53), which a pod with a network namespace of its own cannot reach.
RESOLVED_UPSTREAM = "/run/systemd/resolve/resolv.conf"


def host_resolv_conf(
    *, own_netns: bool, path: str = "/etc/resolv.conf", upstream: str = RESOLVED_UPSTREAM
) -> str:
    """The host's resolv.conf (``path``) for a pod; for one with its own network namespace,
    systemd-resolved's ``upstream`` file instead when the host's names only loopback
    servers."""
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except FileNotFoundError:
        return ""
    servers = [
        line.split()[1]
        for line in text.splitlines()
        if line.startswith("nameserver") and len(line.split()) > 1
    ]
    if own_netns and servers and all(s.startswith("127.") or s == "::1" for s in servers):
        try:
            with open(upstream, encoding="utf-8") as handle:
                return handle.read()
        except OSError:
            pass
    return text


def _resolv_conf(stage1: dict[str, Any]) -> str | None:
    """The pod's resolv.conf: --dns servers (``host``: the host's file, ``none``: no file) and
    --dns-search domains; None for no file."""
    dns = list(stage1.get("dns") or [])
    search = list(stage1.get("dns_search") or [])
    if dns == ["none"]:
        return None
    if not dns or dns == ["host"]:
        text = host_resolv_conf(own_netns=stage1.get("net") != "host")
    else:
        text = "".join(f"nameserver {ip}\n" for ip in dns)
    if search:
        text += f"search {' '.join(search)}\n"
    return text or None


def _setup_proc(rootfs: str) -> None:
    from rktcfg.rootpath import resolve_in_root
    from rktcfg.stage1 import linux

    proc = resolve_in_root(rootfs, "/proc")
    _mount_point(proc, directory=True, owner=None)
    linux.mount("proc", proc, "proc", linux.MS_NOSUID | linux.MS_NODEV | linux.MS_NOEXEC)
    for name in ("sys", "sysrq-trigger", "irq", "bus"):
        path = os.path.join(proc, name)
        if os.path.exists(path):
            linux.bind_mount(path, path, recursive=True, read_only=True)
    for name in ("kcore", "keys", "timer_list"):
        path = os.path.join(proc, name)
        if os.path.exists(path):
            linux.mount("/dev/null", path, None, linux.MS_BIND)


def _setup_sys(rootfs: str, cgroups: dict[str, str]) -> None:
    from rktcfg.rootpath import resolve_in_root
    from rktcfg.stage1 import linux

    sys_dir = resolve_in_root(rootfs, "/sys")
    _mount_point(sys_dir, directory=True, owner=None)
    flags = linux.MS_NOSUID | linux.MS_NODEV | linux.MS_NOEXEC
    linux.mount("sysfs", sys_dir, "sysfs", flags | linux.MS_RDONLY)
    cgroup_dir = os.path.join(sys_dir, "fs", "cgroup")
    if not cgroups or not os.path.isdir(cgroup_dir):
        return
    linux.mount("tmpfs", cgroup_dir, "tmpfs", flags, "mode=755")
    for hierarchy, path in sorted(cgroups.items()):
        target = os.path.join(cgroup_dir, hierarchy.removeprefix("name="))
        os.makedirs(target, 0o755, exist_ok=True)
        linux.bind_mount(path, target, recursive=False, read_only=True)
    linux.mount(None, cgroup_dir, None, linux.MS_REMOUNT | linux.MS_RDONLY | flags, "mode=755")


def _setup_dev(rootfs: str) -> None:
    from rktcfg.rootpath import resolve_in_root
    from rktcfg.stage1 import linux

    dev = resolve_in_root(rootfs, "/dev")
    _mount_point(dev, directory=True, owner=None)
    linux.mount("tmpfs", dev, "tmpfs", linux.MS_NOSUID | linux.MS_NOEXEC, "mode=755")
    old = os.umask(0)
    try:
        for name, (major, minor) in DEVICES.items():
            os.mknod(os.path.join(dev, name), 0o666 | 0o020000, os.makedev(major, minor))
    finally:
        os.umask(old)
    console = os.path.join(dev, "console")
    _mount_point(console, directory=False, owner=None)
    linux.mount("/dev/null", console, None, linux.MS_BIND)
    pts = os.path.join(dev, "pts")
    os.mkdir(pts, 0o755)
    linux.mount(
        "devpts",
        pts,
        "devpts",
        linux.MS_NOSUID | linux.MS_NOEXEC,
        "newinstance,ptmxmode=0666,mode=0620",
    )
    os.symlink("pts/ptmx", os.path.join(dev, "ptmx"))
    shm = os.path.join(dev, "shm")
    os.mkdir(shm, 0o1777)
    linux.mount("tmpfs", shm, "tmpfs", linux.MS_NOSUID | linux.MS_NODEV, "mode=1777")
    for name, target in (
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ):
        os.symlink(target, os.path.join(dev, name))


def setup_rootfs(
    pod_dir: str, app: AppSpec, stage1: dict[str, Any], resolv_conf: str | None
) -> None:
    """Build one app's root filesystem in the pod's mount namespace (see the module doc);
    ``resolv_conf``: the pod's :func:`_resolv_conf` (None: no file)."""
    from rktcfg.rootpath import resolve_in_root
    from rktcfg.stage1 import linux

    raw = app.raw
    rootfs = app.rootfs
    users = stage1.get("private_users")
    owner = (users["uid"], users["uid"]) if users else None
    if raw.get("rootfs_mode") == "overlay":
        overlay = os.path.join(os.path.dirname(rootfs), "overlay")
        upper, work = os.path.join(overlay, "upper"), os.path.join(overlay, "work")
        for path in (rootfs, upper, work):
            os.makedirs(path, 0o755, exist_ok=True)
        lower = raw["lower"]
        for path in (lower, upper, work):
            if any(c in path for c in ",:\\"):
                raise ValueError(f"{path}: overlayfs cannot take a path with , : or \\")
        options = f"lowerdir={lower},upperdir={upper},workdir={work}"
        linux.mount("overlay", rootfs, "overlay", linux.MS_NODEV, options)
    else:
        linux.mount(rootfs, rootfs, None, linux.MS_BIND | linux.MS_REC)
        linux.mount(None, rootfs, None, linux.MS_REMOUNT | linux.MS_BIND | linux.MS_NODEV)
    _setup_proc(rootfs)
    _setup_sys(rootfs, dict(raw.get("cgroups") or {}))
    _setup_dev(rootfs)
    for volume in app.volumes:
        source = volume["source"]
        if volume.get("kind") == "empty":
            source = os.path.join(pod_dir, "volumes", volume["name"])
        target = resolve_in_root(rootfs, volume["target"])
        _mount_point(target, directory=os.path.isdir(source), owner=owner)
        linux.bind_mount(
            source,
            target,
            recursive=bool(volume.get("recursive", True)),
            read_only=bool(volume.get("read_only")),
        )
    hostname = stage1.get("hostname") or "localhost"
    entries = "".join(f"{ip}\t{name}\n" for ip, name in stage1.get("hosts_entries") or ())
    hosts = resolve_in_root(rootfs, "/etc/hosts", follow_final=False)
    if entries or not os.path.lexists(hosts):  # --hosts-entry asks for ours
        _replace(hosts, hosts_file(hostname) + entries, owner)
    else:  # the image's own: kept, with the hostname added where it lacks it
        _add_hostname(hosts, hostname)
    resolv = resolve_in_root(rootfs, "/etc/resolv.conf", follow_final=False)
    asked = bool(stage1.get("dns") or stage1.get("dns_search"))
    if resolv_conf is not None and (asked or not os.path.lexists(resolv)):
        _replace(resolv, resolv_conf, owner)
    if raw.get("read_only_rootfs"):
        flags = linux.MS_REMOUNT | linux.MS_BIND | linux.MS_RDONLY
        linux.mount(None, rootfs, None, flags)


# --- an app's process --------------------------------------------------------------------------


def _write(path: str, text: str) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def capability_mask(app: AppSpec) -> int:
    from rktcfg.isolators.caps import mask

    return mask((app.raw.get("isolation") or {}).get("capabilities") or ())


def take_identity(app: AppSpec, caps: int) -> None:
    """Become the app: drop the bounding set to ``caps`` (:func:`capability_mask`, computed
    before the rootfs hides rktcfg's modules), take its groups, gid and uid (keeping the
    permitted set across the switch), then set its effective, permitted and inheritable
    capabilities, and no_new_privs if asked."""
    from rktcfg.stage1 import linux

    isolation = app.raw.get("isolation") or {}
    linux.drop_bounding_set(caps)
    linux.keep_capabilities()
    os.setgroups(app.groups)
    os.setresgid(app.gid, app.gid, app.gid)
    os.setresuid(app.uid, app.uid, app.uid)
    linux.set_capabilities(caps, caps, caps)
    if isolation.get("no_new_privileges"):
        linux.set_no_new_privileges()


def _exec_app(
    app: AppSpec,
    argv: list[str],
    stdio: tuple[int, int, int],
    userns: tuple[int, int] | None,
) -> None:
    """The app's side of ``spawn``, in the forked child; never returns."""
    try:
        from rktcfg.stage1 import linux

        linux.load()
        caps = capability_mask(app)
        raw = app.raw
        isolation = raw.get("isolation") or {}
        limits = isolation.get("limits") or {}
        for target, fd in enumerate(stdio):
            os.dup2(fd, target)
        close_fds_except(userns or ())
        os.umask(0o022)
        for procs in raw.get("cgroup_procs") or ():
            _write(procs, "0")  # 0: the writing process itself
        if limits.get("oom_score_adj") is not None:
            _write("/proc/self/oom_score_adj", str(limits["oom_score_adj"]))
        linux.unshare(linux.CLONE_NEWNS)
        os.chdir(app.rootfs)
        linux.pivot_root(".", ".")
        linux.umount(".", linux.MNT_DETACH)  # the old root, stacked under the new one
        os.chdir("/")
        if userns is not None:
            ready, go = userns
            linux.unshare(linux.CLONE_NEWUSER)
            os.write(ready, b"u")
            if os.read(go, 1) != b"g":
                raise RuntimeError("the supervisor did not map the user namespace")
            os.close(ready)
            os.close(go)
        take_identity(app, caps)
        # The supervisor is outside the pod's PID namespace (getppid() reads 0), so a death
        # before this point is covered by PID 1's own death signal, which kills the pod.
        linux.set_parent_death_signal(signal.SIGKILL)
        os.chdir(app.working_directory)
        os.execve(argv[0], argv, app.env)
    except BaseException as exc:
        exec_failed(exc, argv[0])


def _map_user_namespace(pid: int, users: dict[str, int]) -> None:
    line = f"0 {users['uid']} {users['count']}\n"
    with open(f"/proc/{pid}/uid_map", "w", encoding="ascii") as handle:
        handle.write(line)
    with open(f"/proc/{pid}/gid_map", "w", encoding="ascii") as handle:
        handle.write(line)


class DefaultFlavor:
    name = "default"
    #: teardown runs in the supervisor itself: after PID 1 is gone nothing can fork in the pod
    teardown_inline = True

    def __init__(self) -> None:
        self.init_pid: int | None = None
        self.users: dict[str, int] | None = None

    def check(self, apps: list[AppSpec]) -> None:
        if not apps:
            raise ValueError("a pod needs at least one app")

    def boot(self, pod_dir: str, apps: list[AppSpec]) -> int:
        """Fork the pod's PID 1; the first fork after the launcher's unshare(CLONE_NEWPID).
        Also fills in each app's cgroups from ``cgroups.json``."""
        self.users = read_stage1(pod_dir).get("private_users")
        plan = _cgroup_plan(pod_dir)
        if plan is not None:
            from rktcfg.isolators.cgroups import driver_for

            driver = driver_for(plan)
            for app in apps:
                app.raw["cgroup_procs"] = driver.join_files(app.name)
                app.raw["cgroups"] = dict(plan["apps"].get(app.name) or {})
        root = os.path.join(pod_dir, INIT_ROOT)
        os.makedirs(root, 0o500, exist_ok=True)
        pid = fork()
        if pid == 0:
            run_init(root)
        self.init_pid = pid
        with open(os.path.join(pod_dir, INIT_PID_FILE), "w", encoding="ascii") as handle:
            handle.write(f"{pid}\n")
        return pid

    def setup(self, pod_dir: str, apps: list[AppSpec]) -> None:
        stage1 = read_stage1(pod_dir)
        plan = _cgroup_plan(pod_dir)
        if plan is not None:
            from rktcfg.isolators.cgroups import driver_for

            driver = driver_for(plan)
            warnings = driver.create()
            for app in apps:
                limits = (app.raw.get("isolation") or {}).get("limits") or {}
                warnings += driver.apply(app.name, limits)
                warnings += driver.restrict_devices(app.name)
            warnings += driver.restrict_devices(None)
            for procs in driver.join_files(None):
                _write(procs, "1")  # the pod's PID 1, as this process's namespace numbers it
            if warnings and stage1.get("strict_isolators"):
                raise RuntimeError(
                    "--strict-isolators: limits cannot be enforced: " + "; ".join(warnings)
                )
            for warning in dict.fromkeys(warnings):
                os.write(2, f"rktcfg supervisor: warning: {warning}\n".encode())
        resolv_conf = _resolv_conf(stage1)  # the host's file is read once for the pod
        for app in apps:
            setup_rootfs(pod_dir, app, stage1, resolv_conf)

    def spawn(
        self, pod_dir: str, app: AppSpec, argv: list[str], stdio: tuple[int, int, int]
    ) -> int:
        users = self.users
        if users is None:
            pid = fork()
            if pid == 0:
                _exec_app(app, argv, stdio, None)
            return pid
        ready_r, ready_w = os.pipe()
        go_r, go_w = os.pipe()
        pid = fork()
        if pid == 0:
            os.close(ready_r)
            os.close(go_w)
            _exec_app(app, argv, stdio, (ready_w, go_r))
        os.close(ready_w)
        os.close(go_r)
        try:
            if os.read(ready_r, 1) == b"u":
                _map_user_namespace(pid, users)
                os.write(go_w, b"g")
        finally:
            os.close(ready_r)
            os.close(go_w)
        return pid

    def stop_init(self) -> None:
        """Kill the pod's PID 1 (the kernel then kills whatever is left) and reap it."""
        if self.init_pid is None:
            return
        try:
            os.kill(self.init_pid, signal.SIGKILL)
            os.waitpid(self.init_pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
        self.init_pid = None

    def teardown(self, pod_dir: str) -> list[str]:
        """In the supervisor: end the pod and remove its cgroups. Its mounts are in the
        supervisor's own mount namespace and vanish with it (gc unmounts anything the host
        still has below the pod directory)."""
        self.stop_init()
        left = remove_cgroups(pod_dir)
        if left:
            raise RuntimeError(f"cgroups still in use: {', '.join(left)}")
        return []


# --- enter -------------------------------------------------------------------------------------


def _environ(pid: int) -> dict[str, str]:
    with open(f"/proc/{pid}/environ", "rb") as handle:
        items = handle.read().split(b"\0")
    env = {}
    for item in items:
        key, sep, value = item.partition(b"=")
        if sep:
            env[os.fsdecode(key)] = os.fsdecode(value)
    return env


def enter(pod_dir: str, app: AppSpec, app_pid: int, argv: list[str]) -> int:
    """Run ``argv`` in a running app's namespaces, rootfs and cgroups, with its environment,
    identity and capabilities; stdio is the caller's. Returns the command's exit status.

    Runs in the rktcfg process: a child joins the pod's IPC, UTS, network and PID namespaces,
    then the app's mount namespace (whose root is the app's rootfs) and, last, the pod's user
    namespace; a grandchild (the first process that is inside the PID namespace) execs."""
    from rktcfg.stage1 import linux

    linux.load()
    caps = capability_mask(app)
    pod_uuid = os.path.basename(os.path.normpath(pod_dir))
    try:
        with open(f"/proc/{app_pid}/cgroup", encoding="utf-8") as handle:
            if f"/rktcfg-{pod_uuid}/" not in handle.read():
                raise RuntimeError(f"process {app_pid} is not the pod's (its pid was reused)")
        running = _environ(app_pid)
    except FileNotFoundError:
        raise RuntimeError(f"app {app.name} is not running") from None
    env = dict(app.env)  # the app's environment, not what its process made of it
    if "AC_METADATA_URL" in running:
        env["AC_METADATA_URL"] = running["AC_METADATA_URL"]
    kinds = ["ipc", "uts", "net", "pid", "mnt"]
    users = read_stage1(pod_dir).get("private_users")
    if users:
        kinds.append("user")
    mine = {kind: os.stat(f"/proc/self/ns/{kind}").st_ino for kind in kinds}
    fds = {kind: os.open(f"/proc/{app_pid}/ns/{kind}", os.O_RDONLY) for kind in kinds}
    plan = _cgroup_plan(pod_dir)
    procs: list[str] = []
    if plan is not None:
        from rktcfg.isolators.cgroups import driver_for

        procs = driver_for(plan).join_files(app.name)
    child = os.fork()
    if child == 0:
        try:
            for path in procs:
                _write(path, "0")
            for kind in kinds:
                if os.fstat(fds[kind]).st_ino != mine[kind]:
                    linux.setns(fds[kind])
                os.close(fds[kind])
            grandchild = os.fork()
            if grandchild == 0:
                os.umask(0o022)
                take_identity(app, caps)
                os.chdir(app.working_directory)
                close_fds_except(())
                program = argv[0]
                if "/" not in program:
                    for directory in env.get("PATH", "/usr/bin:/bin").split(":"):
                        if os.access(os.path.join(directory, program), os.X_OK):
                            program = os.path.join(directory, program)
                            break
                os.execve(program, argv, env)
            _, status = os.waitpid(grandchild, 0)
            os._exit(os.waitstatus_to_exitcode(status) & 0xFF)
        except FileNotFoundError:
            os.write(2, f"rktcfg: {argv[0]}: not found in the app\n".encode())
            os._exit(127)
        except BaseException as exc:
            os.write(2, f"rktcfg: cannot enter the pod: {exc}\n".encode())
            os._exit(126)
    for fd in fds.values():
        os.close(fd)
    _, status = os.waitpid(child, 0)
    return os.waitstatus_to_exitcode(status)
