"""The kernel calls stage1 needs that Python 3.11 lacks, and the pod mount teardown gc uses.

This is the only module in rktcfg that uses ctypes. libc is opened on first use (never on
import) with ``use_errno=True``; every wrapper raises :class:`~rktcfg.errors.RuntimeFailure`
with a one-line message naming the call, the path and the errno text, chained to the
``OSError`` (``exc.__cause__.errno``) for callers that need the number.

Wrappers: :func:`mount`, :func:`umount`, :func:`unshare`, :func:`setns`, :func:`pivot_root`
(``syscall(SYS_pivot_root)``; glibc has no wrapper) and :func:`bind_mount`.

Mount table: :func:`mountinfo` parses ``/proc/self/mountinfo``; :func:`mounts_below` selects the
mounts at or under a directory; :func:`unmount_below` removes them the way rkt's
``ChrootPrivateUnmount`` does (rkt PR #1828 -> #1856 -> #3486): mark them private top-down so
nothing propagates back to the host, unmount deepest first, detach lazily on EBUSY, skip what
is already gone, and re-read the table until nothing is left.
"""

from __future__ import annotations

import ctypes
import errno
import os

from rktcfg.errors import RuntimeFailure

# mount(2) flags (<linux/mount.h>).
MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_REMOUNT = 32
MS_NOATIME = 1024
MS_NODIRATIME = 2048
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18
MS_SLAVE = 1 << 19
MS_SHARED = 1 << 20

# umount2(2) flags.
MNT_FORCE = 1
MNT_DETACH = 2
UMOUNT_NOFOLLOW = 8

# clone(2) / unshare(2) / setns(2) namespace flags (<linux/sched.h>).
CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

_CLONE_NAMES = (
    (CLONE_NEWNS, "CLONE_NEWNS"),
    (CLONE_NEWCGROUP, "CLONE_NEWCGROUP"),
    (CLONE_NEWUTS, "CLONE_NEWUTS"),
    (CLONE_NEWIPC, "CLONE_NEWIPC"),
    (CLONE_NEWUSER, "CLONE_NEWUSER"),
    (CLONE_NEWPID, "CLONE_NEWPID"),
    (CLONE_NEWNET, "CLONE_NEWNET"),
)

# SYS_pivot_root by machine: x86_64 and the asm-generic table (aarch64, riscv64, loongarch64)
# are what rktcfg supports; the others are listed because they are known and cost nothing.
_SYS_PIVOT_ROOT = {
    "x86_64": 155,
    "amd64": 155,
    "aarch64": 41,
    "arm64": 41,
    "riscv64": 41,
    "loongarch64": 41,
    "i386": 217,
    "i686": 217,
    "s390x": 217,
    "ppc64le": 203,
    "ppc64": 203,
    "armv7l": 218,
}

# A mount that is not there (any more): EINVAL (not a mount point), ENOENT (path gone).
_GONE = (errno.EINVAL, errno.ENOENT)
# Passes of unmount_below: one normally; more when a mount hid another one.
_MAX_PASSES = 5

_libc: ctypes.CDLL | None = None


def _lib() -> ctypes.CDLL:
    """libc, opened and typed on first use."""
    global _libc
    if _libc is None:
        lib = ctypes.CDLL(None, use_errno=True)
        c_str, c_int, c_ulong = ctypes.c_char_p, ctypes.c_int, ctypes.c_ulong
        lib.mount.argtypes = [c_str, c_str, c_str, c_ulong, c_str]
        lib.mount.restype = c_int
        lib.umount2.argtypes = [c_str, c_int]
        lib.umount2.restype = c_int
        lib.unshare.argtypes = [c_int]
        lib.unshare.restype = c_int
        lib.setns.argtypes = [c_int, c_int]
        lib.setns.restype = c_int
        lib.syscall.argtypes = [ctypes.c_long, c_str, c_str]  # only used for pivot_root
        lib.syscall.restype = ctypes.c_long
        lib.prctl.argtypes = [c_int, c_ulong, c_ulong, c_ulong, c_ulong]
        lib.prctl.restype = c_int
        lib.capset.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
        lib.capset.restype = c_int
        _libc = lib
    return _libc


def load() -> None:
    """Open libc and read what later calls need (before a chroot or a mount namespace
    takes /proc/sys and Python's codecs out of reach)."""
    _lib()
    last_cap()


def _encode(path: str | None) -> bytes | None:
    return None if path is None else os.fsencode(path)


def _failure(what: str, err: int, path: str | None = None) -> RuntimeFailure:
    """``<what>: <strerror> (<ENAME>)``, with the OSError as its cause."""
    text = os.strerror(err)
    exc = RuntimeFailure(f"{what}: {text} ({errno.errorcode.get(err, str(err))})")
    exc.__cause__ = OSError(err, text, path) if path is not None else OSError(err, text)
    return exc


def errno_of(exc: BaseException) -> int | None:
    """The errno behind a failure raised by this module, or None."""
    cause = exc.__cause__ if isinstance(exc, RuntimeFailure) else exc
    return cause.errno if isinstance(cause, OSError) else None


def _describe_mount(source: str | None, target: str, fstype: str | None, flags: int) -> str:
    if flags & MS_REMOUNT:
        return f"remount {target}"
    if flags & (MS_PRIVATE | MS_SLAVE | MS_SHARED):
        kind = "private" if flags & MS_PRIVATE else "slave" if flags & MS_SLAVE else "shared"
        return f"make {target} {'r' if flags & MS_REC else ''}{kind}"
    if flags & MS_BIND:
        return f"bind mount {source} on {target}"
    return f"mount {fstype} ({source}) on {target}"


def mount(
    source: str | None, target: str, fstype: str | None, flags: int = 0, data: str | None = None
) -> None:
    """mount(2). ``data`` is the comma-separated option string (``"mode=755,size=64m"``)."""
    rc: int = _lib().mount(_encode(source), _encode(target), _encode(fstype), flags, _encode(data))
    if rc != 0:
        raise _failure(_describe_mount(source, target, fstype, flags), ctypes.get_errno(), target)


def umount(target: str, flags: int = 0) -> None:
    """umount2(2); ``flags`` from MNT_FORCE, MNT_DETACH, UMOUNT_NOFOLLOW."""
    rc: int = _lib().umount2(_encode(target), flags)
    if rc != 0:
        lazy = " (lazy)" if flags & MNT_DETACH else ""
        raise _failure(f"unmount {target}{lazy}", ctypes.get_errno(), target)


def _clone_names(flags: int) -> str:
    names = [name for bit, name in _CLONE_NAMES if flags & bit]
    rest = flags & ~sum(bit for bit, _ in _CLONE_NAMES)
    if rest:
        names.append(hex(rest))
    return "|".join(names) or "0"


def unshare(flags: int) -> None:
    """unshare(2) the namespaces in ``flags`` (CLONE_NEW*)."""
    rc: int = _lib().unshare(flags)
    if rc != 0:
        raise _failure(f"unshare({_clone_names(flags)})", ctypes.get_errno())


PR_SET_PDEATHSIG = 1


def set_parent_death_signal(signum: int) -> None:
    """prctl(PR_SET_PDEATHSIG): the calling process gets ``signum`` when its parent dies.
    Cleared by setuid/setgid, so call it after taking the app's identity."""
    _prctl(PR_SET_PDEATHSIG, signum, "prctl(PR_SET_PDEATHSIG)")


PR_CAPBSET_DROP = 24
PR_SET_NO_NEW_PRIVS = 38
PR_SET_NAME = 15
_CAP_VERSION_3 = 0x20080522


def _prctl(option: int, arg: int, what: str) -> None:
    rc: int = _lib().prctl(option, arg, 0, 0, 0)
    if rc != 0:
        raise _failure(what, ctypes.get_errno())


_last_cap: int | None = None


def last_cap() -> int:
    """The highest capability number this kernel knows (read once)."""
    global _last_cap
    if _last_cap is None:
        try:
            with open("/proc/sys/kernel/cap_last_cap", "rb") as handle:
                _last_cap = int(handle.read().strip())
        except (OSError, ValueError):
            _last_cap = 40
    return _last_cap


def drop_bounding_set(keep_mask: int) -> None:
    """Drop every capability not in ``keep_mask`` from the bounding set (PR_CAPBSET_DROP)."""
    for cap in range(last_cap() + 1):
        if not keep_mask & (1 << cap):
            _prctl(PR_CAPBSET_DROP, cap, f"prctl(PR_CAPBSET_DROP, {cap})")


def set_capabilities(effective: int, permitted: int, inheritable: int) -> None:
    """capset(2) for the calling thread, 64-bit masks (_LINUX_CAPABILITY_VERSION_3)."""
    header = (ctypes.c_uint32 * 2)(_CAP_VERSION_3, 0)
    data = (ctypes.c_uint32 * 6)(
        effective & 0xFFFFFFFF,
        permitted & 0xFFFFFFFF,
        inheritable & 0xFFFFFFFF,
        effective >> 32,
        permitted >> 32,
        inheritable >> 32,
    )
    if _lib().capset(header, data) != 0:
        raise _failure("capset", ctypes.get_errno())


PR_SET_KEEPCAPS = 8


def keep_capabilities() -> None:
    """Keep the permitted set across a setuid away from 0 (PR_SET_KEEPCAPS)."""
    _prctl(PR_SET_KEEPCAPS, 1, "prctl(PR_SET_KEEPCAPS)")


def set_no_new_privileges() -> None:
    _prctl(PR_SET_NO_NEW_PRIVS, 1, "prctl(PR_SET_NO_NEW_PRIVS)")


def set_process_name(name: str) -> None:
    """The calling thread's comm (what ps shows without arguments), at most 15 bytes."""
    buf = ctypes.create_string_buffer(name.encode()[:15])
    _prctl(PR_SET_NAME, ctypes.addressof(buf), "prctl(PR_SET_NAME)")


def loopback_up() -> None:
    """Bring ``lo`` up in the calling process's network namespace (SIOCSIFFLAGS)."""
    import fcntl
    import socket
    import struct

    siocgifflags, siocsifflags, iff_up = 0x8913, 0x8914, 0x1
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = struct.pack("16sH", b"lo", 0)
        flags = struct.unpack("16sH", fcntl.ioctl(sock, siocgifflags, request))[1]
        fcntl.ioctl(sock, siocsifflags, struct.pack("16sH", b"lo", flags | iff_up))


def setns(fd: int, nstype: int = 0) -> None:
    """setns(2) into the namespace open as ``fd`` (``/proc/<pid>/ns/<kind>``); ``nstype`` 0
    accepts any kind, a CLONE_NEW* flag insists on that one."""
    rc: int = _lib().setns(fd, nstype)
    if rc != 0:
        what = f"setns(fd {fd}, {_clone_names(nstype)})" if nstype else f"setns(fd {fd})"
        raise _failure(what, ctypes.get_errno())


def pivot_root(new_root: str, put_old: str) -> None:
    """pivot_root(2): make ``new_root`` (a mount point) the root and move the old root to
    ``put_old`` (under ``new_root``). The caller then chdirs to "/" and unmounts put_old."""
    machine = os.uname().machine.lower()
    number = _SYS_PIVOT_ROOT.get(machine)
    if number is None:
        raise RuntimeFailure(f"pivot_root {new_root}: no syscall number known for {machine}")
    rc: int = _lib().syscall(number, _encode(new_root), _encode(put_old))
    if rc != 0:
        raise _failure(f"pivot_root {new_root} (old root to {put_old})", ctypes.get_errno())


def _kept_flags(path: str) -> int:
    """The per-mount flags a bind remount must repeat so that it does not clear them (clearing
    a locked nosuid/nodev/noexec fails with EPERM in a user namespace)."""
    try:
        have = os.statvfs(path).f_flag
    except OSError:
        return 0
    kept = (
        (os.ST_NOSUID, MS_NOSUID),
        (os.ST_NODEV, MS_NODEV),
        (os.ST_NOEXEC, MS_NOEXEC),
        (os.ST_NOATIME, MS_NOATIME),
        (os.ST_NODIRATIME, MS_NODIRATIME),
    )
    return sum(ms for st, ms in kept if have & st)


def bind_mount(
    source: str, target: str, *, recursive: bool = True, read_only: bool = False
) -> None:
    """Bind ``source`` on ``target`` (both exist; directory on directory or file on file).

    ``recursive`` also binds the mounts below ``source`` (MS_REC). ``read_only`` remounts the
    bind (and, when recursive, every mount it brought along) with MS_REMOUNT|MS_BIND|MS_RDONLY,
    since the kernel ignores MS_RDONLY on the bind itself. If making it read-only fails, the
    bind is detached again before the error is raised: a writable mount is never left where a
    read-only one was asked for.
    """
    mount(source, target, None, MS_BIND | (MS_REC if recursive else 0))
    if not read_only:
        return
    try:
        for info in _subtree(mountinfo(), os.path.realpath(target)):
            point = info.mount_point
            mount(None, point, None, MS_REMOUNT | MS_BIND | MS_RDONLY | _kept_flags(point))
    except RuntimeFailure:
        try:  # noqa: SIM105 - the first error is the one to report
            umount(target, MNT_DETACH)
        except RuntimeFailure:
            pass
        raise


def _subtree(table: list[MountInfo], point: str) -> list[MountInfo]:
    """The most recent mount on ``point`` and its descendants, parents first."""
    tops = [info for info in table if info.mount_point == point]
    if not tops:
        raise RuntimeFailure(f"bind mount on {point}: not in the mount table after mounting")
    wanted = {tops[-1].mount_id}
    found = [tops[-1]]
    changed = True
    while changed:
        changed = False
        for info in table:
            if info.parent_id in wanted and info.mount_id not in wanted:
                wanted.add(info.mount_id)
                found.append(info)
                changed = True
    return found


def overlay_supported() -> bool:
    """Whether the kernel has overlayfs registered (``overlay`` in /proc/filesystems)."""
    try:
        with open("/proc/filesystems", encoding="ascii", errors="replace") as handle:
            return any(line.split()[-1:] == ["overlay"] for line in handle)
    except OSError:
        return False


class MountInfo:
    """One line of /proc/<pid>/mountinfo (proc(5)), paths unescaped.

    ``propagation`` holds the optional fields (``shared:12``, ``master:3``,
    ``propagate_from:2``, ``unbindable``); empty means private. ``options`` are the per-mount
    options (``rw``, ``nosuid``, ...), not the superblock ones. A frozen value (a plain class,
    not a dataclass: the supervisor imports this module, and dataclasses costs it 2 MB).
    """

    mount_id: int
    parent_id: int
    mount_point: str
    root: str
    fstype: str
    source: str
    propagation: tuple[str, ...]
    options: tuple[str, ...]

    __slots__ = (
        "fstype",
        "mount_id",
        "mount_point",
        "options",
        "parent_id",
        "propagation",
        "root",
        "source",
    )

    def __init__(
        self,
        *,
        mount_id: int,
        parent_id: int,
        mount_point: str,
        root: str,
        fstype: str,
        source: str,
        propagation: tuple[str, ...] = (),
        options: tuple[str, ...] = (),
    ) -> None:
        for name, value in (
            ("mount_id", mount_id),
            ("parent_id", parent_id),
            ("mount_point", mount_point),
            ("root", root),
            ("fstype", fstype),
            ("source", source),
            ("propagation", tuple(propagation)),
            ("options", tuple(options)),
        ):
            object.__setattr__(self, name, value)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"MountInfo is frozen: cannot set {name}")

    def _key(self) -> tuple[object, ...]:
        return tuple(getattr(self, name) for name in self.__slots__)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, MountInfo) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.__slots__)
        return f"MountInfo({fields})"

    @property
    def shared(self) -> bool:
        """Whether events on this mount reach (or come from) other mounts."""
        return any(tag.startswith(("shared:", "master:")) for tag in self.propagation)


def _unescape(field: str) -> str:
    r"""Undo the kernel's octal escapes (``\040`` space, ``\011`` tab, ``\012`` newline,
    ``\134`` backslash); the bytes are decoded like any other path (os.fsdecode)."""
    if "\\" not in field:
        return field
    raw = os.fsencode(field)
    out = bytearray()
    i = 0
    while i < len(raw):
        chunk = raw[i + 1 : i + 4]
        if raw[i] == 0x5C and len(chunk) == 3 and all(0x30 <= c <= 0x37 for c in chunk):
            out.append(int(chunk, 8) & 0xFF)
            i += 4
        else:
            out.append(raw[i])
            i += 1
    return os.fsdecode(bytes(out))


def _parse_line(line: str) -> MountInfo | None:
    # 36 35 98:0 /mnt1 /mnt/parent rw,noatime master:1 - ext3 /dev/root rw,errors=continue
    fields = line.split(" ")
    try:
        dash = fields.index("-", 6)
    except ValueError:
        return None
    if len(fields) < dash + 3 or not fields[0].isdigit() or not fields[1].isdigit():
        return None
    return MountInfo(
        mount_id=int(fields[0]),
        parent_id=int(fields[1]),
        root=_unescape(fields[3]),
        mount_point=_unescape(fields[4]),
        options=tuple(fields[5].split(",")),
        propagation=tuple(fields[6:dash]),
        fstype=_unescape(fields[dash + 1]),
        source=_unescape(fields[dash + 2]),
    )


def mountinfo(path: str = "/proc/self/mountinfo") -> list[MountInfo]:
    """The mount table of this process's mount namespace, in the kernel's order (parents
    before children, older before newer), as seen from this process's root."""
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError as exc:
        raise RuntimeFailure(f"read {path}: {exc.strerror}") from exc
    table = []
    for number, raw in enumerate(data.split(b"\n"), 1):
        if not raw:
            continue
        info = _parse_line(os.fsdecode(raw))
        if info is None:
            raise RuntimeFailure(f"{path}:{number}: not a mountinfo line (got {raw[:80]!r})")
        table.append(info)
    return table


def _is_at_or_below(point: str, prefix: str) -> bool:
    """Component-wise: /a/b/c is below /a/b, /a/bc is not."""
    if prefix == "/":
        return point.startswith("/")
    return point == prefix or point.startswith(prefix + "/")


def _below(table: list[MountInfo], prefix: str) -> list[MountInfo]:
    return [info for info in table if _is_at_or_below(info.mount_point, prefix)]


def mounts_below(prefix: str) -> list[MountInfo]:
    """The mounts whose mount point is ``prefix`` (resolved with realpath) or under it, in
    mountinfo order."""
    return _below(mountinfo(), os.path.realpath(prefix))


def _depths(mounts: list[MountInfo]) -> dict[int, int]:
    """How many of ``mounts`` are ancestors of each one (by parent id, not by path)."""
    by_id = {info.mount_id: info for info in mounts}
    depths: dict[int, int] = {}
    for info in mounts:
        chain: list[int] = []
        current: MountInfo | None = info
        while current is not None and current.mount_id not in depths:
            if current.mount_id in chain:  # a loop cannot happen; do not hang if it does
                break
            chain.append(current.mount_id)
            current = by_id.get(current.parent_id)
        base = (
            depths[current.mount_id] + 1
            if current is not None and current.mount_id in depths
            else 0
        )
        for offset, mount_id in enumerate(reversed(chain)):
            depths[mount_id] = base + offset
    return depths


def unmount_order(mounts: list[MountInfo]) -> list[MountInfo]:
    """``mounts`` (in mountinfo order) ordered for unmounting: every mount before its
    ancestors, and of mounts at the same depth the most recent first (so of several stacked on
    one point the top one goes first, and a mount that hides an older one goes before it)."""
    depths = _depths(mounts)
    indexed = list(enumerate(mounts))
    indexed.sort(key=lambda pair: (-depths[pair[1].mount_id], -pair[0]))
    return [info for _, info in indexed]


def _top_down(mounts: list[MountInfo]) -> list[MountInfo]:
    depths = _depths(mounts)
    indexed = list(enumerate(mounts))
    indexed.sort(key=lambda pair: (depths[pair[1].mount_id], pair[0]))
    return [info for _, info in indexed]


def _resolves_to_itself(point: str) -> bool:
    """False when a component of ``point`` became a symlink after mountinfo was read: the
    call would act on whatever the link points to, possibly outside the prefix."""
    return os.path.realpath(point) == point


def _make_private(point: str) -> None:
    if not _resolves_to_itself(point):
        return
    try:
        mount(None, point, None, MS_PRIVATE | MS_REC)
    except RuntimeFailure as exc:
        if errno_of(exc) not in _GONE:
            raise


def _unmount_one(info: MountInfo, deferrable: bool) -> bool:
    """Unmount ``info``; True if done, False if it was gone (or deferred to the next pass)."""
    point = info.mount_point
    if not _resolves_to_itself(point):
        return False
    try:
        umount(point, UMOUNT_NOFOLLOW)
        return True
    except RuntimeFailure as exc:
        code = errno_of(exc)
        if code in _GONE:
            return False
        if code != errno.EBUSY:
            raise
        if deferrable:  # busy with children a later pass can reach: not a reason to detach
            return False
    try:
        umount(point, MNT_DETACH | UMOUNT_NOFOLLOW)
        return True
    except RuntimeFailure as exc:
        if errno_of(exc) in _GONE:
            return False
        raise


def unmount_below(prefix: str) -> list[str]:
    """Unmount everything mounted at or below ``prefix``; return the mount points unmounted,
    in order (a point appears twice if two mounts were stacked on it).

    Each pass reads mountinfo, makes every mount below the prefix private (MS_PRIVATE|MS_REC,
    parents first) so no unmount propagates to a peer outside, then unmounts deepest first,
    falling back to a lazy MNT_DETACH on EBUSY. A mount that is already gone (EINVAL, ENOENT)
    is skipped. A mount still busy because a child could not be reached yet (it was hidden by
    another mount) is left to the next pass rather than detached. Passes repeat until nothing
    is left below the prefix. Idempotent: with nothing mounted it does nothing and returns [].
    Mounts outside the prefix are never touched, also not the one the prefix lives on.

    Raises RuntimeFailure if a kernel call fails in another way, or if mounts are still there
    after the last pass (deleting the directory then could reach into a mounted file system).
    """
    root = os.path.realpath(prefix)
    if root == "/":
        raise ValueError("unmount_below: refusing to unmount everything (prefix is /)")
    done: list[str] = []
    failure: RuntimeFailure | None = None
    previous: list[MountInfo] | None = None
    for _ in range(_MAX_PASSES):
        below = _below(mountinfo(), root)
        if not below or below == previous:
            break
        previous = below
        for info in _top_down(below):
            _make_private(info.mount_point)
        skipped: set[int] = set()
        for info in unmount_order(below):
            has_skipped_child = any(
                other.parent_id == info.mount_id and other.mount_id in skipped for other in below
            )
            try:
                if _unmount_one(info, deferrable=has_skipped_child):
                    done.append(info.mount_point)
                    continue
            except RuntimeFailure as exc:
                failure = failure or exc
            skipped.add(info.mount_id)
    left = _below(mountinfo(), root)
    if left:
        why = f": {failure}" if failure is not None else ""
        raise RuntimeFailure(
            f"unmount below {root}: {len(left)} mount(s) left, first {left[0].mount_point}{why}"
        ) from failure
    return done
