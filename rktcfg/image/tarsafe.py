"""Extract untrusted tar archives (ACI images, OCI layers) into a directory, safely.

Threat model: the archive is hostile. Its member names may be absolute or climb with ``..``;
it may plant a symlink (``a -> /etc``, ``a -> ../../..``) and then write through it, hard-link
host files (``/etc/shadow``), loop symlinks, hold a decompression bomb, stop half way, or
carry names that are not UTF-8. Whatever it holds, nothing outside the destination is ever
created, written, chmod-ed, chown-ed or linked, and every refusal is an
:class:`~rktcfg.errors.ArchiveError` naming the member.

How: every member name is resolved inside the destination as if it were ``/`` (the approach
of rkt's chroot extraction, done without a chroot so it works unprivileged). ``..`` and
absolute names clamp at the root; symlinks that already exist are followed *within* the
root, up to 40 hops; the final component is never followed (an existing symlink there is
replaced, and files are opened ``O_CREAT|O_EXCL|O_NOFOLLOW``). Hard-link targets are
resolved the same way and must already exist inside the root. Symlinks are stored exactly as
given -- an absolute ``/etc`` target is normal in a root filesystem and is only ever followed
within the root by this module.

Python's own ``TarFile.extract``/``extractall`` and its extraction filters are not used: the
filters strip setuid bits and refuse absolute symlinks, both of which real root filesystems
contain. Members are read in one forward pass, so a ``tarfile.open(mode="r|*")`` stream works.

Not defended against: other processes changing the destination while extraction runs (the
destination is expected to be private to the caller), and a huge pax or GNU long-name header
as the very *first* member (``tarfile.open`` reads it before this module sees the archive;
later ones are capped at 16 MiB).
"""

from __future__ import annotations

import errno
import io
import os
import shutil
import stat
import tarfile
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import IO, Self

from rktcfg import rootpath
from rktcfg.errors import ArchiveError, RuntimeFailure

__all__ = [
    "DEFAULT_MAX_BYTES",
    "DEFAULT_MAX_MEMBERS",
    "ExtractLimits",
    "ExtractReport",
    "extract",
    "in_root_path",
    "resolve_in_root",
]

DEFAULT_MAX_BYTES = 8 * 1024**3
DEFAULT_MAX_MEMBERS = 1_000_000

_CHUNK = 1024 * 1024  # file data is copied in pieces of this size
_MAX_HEADER_BYTES = 16 * 1024 * 1024  # a pax / GNU long-name header is read into memory whole
_MAX_TRAILER_BYTES = 16 * 1024 * 1024  # read after the end marker to check the compression
_CAPABILITY_XATTR = "security.capability"
_CAPABILITY_PAX = "SCHILY.xattr." + _CAPABILITY_XATTR
_WHITEOUT = ".wh."
_OPAQUE = ".wh..wh..opq"
_META_TYPES = frozenset(
    {
        tarfile.XHDTYPE,
        tarfile.XGLTYPE,
        tarfile.SOLARIS_XHDTYPE,
        tarfile.GNUTYPE_LONGNAME,
        tarfile.GNUTYPE_LONGLINK,
    }
)
# errno values that say the host, not the archive, is at fault.
_HOST_ERRNOS = frozenset(
    {errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EROFS, errno.EMFILE, errno.ENFILE, errno.ENOMEM}
)


def _read_errors() -> tuple[type[BaseException], ...]:
    """What reading a broken archive raises: tarfile, gzip (EOFError, OSError), bz2, lzma."""
    found: list[type[BaseException]] = [
        tarfile.TarError,
        EOFError,
        OSError,
        zlib.error,
        UnicodeError,
    ]
    try:
        import lzma
    except ImportError:  # pragma: no cover - Python built without lzma
        pass
    else:
        found.append(lzma.LZMAError)
    return tuple(found)


_READ_ERRORS = _read_errors()


@dataclass(frozen=True, slots=True, kw_only=True)
class ExtractLimits:
    """Refuse an archive whose file data or member count is larger than this."""

    max_bytes: int = DEFAULT_MAX_BYTES
    max_members: int = DEFAULT_MAX_MEMBERS


_DEFAULT_LIMITS = ExtractLimits()


@dataclass(slots=True, kw_only=True)
class ExtractReport:
    """What :func:`extract` created, and what it skipped (``warnings``, one line each)."""

    files: int = 0
    dirs: int = 0
    symlinks: int = 0
    hardlinks: int = 0
    others: int = 0  # fifos and device nodes
    bytes: int = 0  # file data written
    warnings: list[str] = field(default_factory=list)


def _show(name: str) -> str:
    """A member name fit for a one-line message: undecodable bytes shown as ``\\xe9``."""
    text = name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return text.replace("\n", "\\n")


def _split(name: str) -> list[str]:
    """Components of a member name: leading ``./`` and ``/`` dropped, ``//`` collapsed."""
    return [part for part in name.split("/") if part and part != "."]


def _child(directory: str, name: str) -> str:
    return directory.rstrip("/") + "/" + name


def resolve_in_root(root: str, path: str, *, follow_final: bool = True) -> str:
    """:func:`rktcfg.rootpath.resolve_in_root`, failing with an :class:`ArchiveError`."""
    return _resolve(root, path, follow_final=follow_final, what=path)


def _resolve(root: str, path: str, *, follow_final: bool, what: str) -> str:
    return rootpath.resolve(
        root, path, follow_final=follow_final, what=_show(what), error=ArchiveError
    )


def _to_ns(text: str | None) -> int | None:
    """A pax time ("1700000000.123456789", "-1.5") in nanoseconds, exactly."""
    if not text:
        return None
    sign = 1
    if text.startswith("-"):
        sign, text = -1, text[1:]
    whole, _, frac = text.partition(".")
    try:
        return sign * (int(whole or "0") * 1_000_000_000 + int((frac + "000000000")[:9]))
    except ValueError:
        return None


def _times(member: tarfile.TarInfo) -> tuple[int, int]:
    """(atime, mtime) of a member in nanoseconds; atime is the mtime unless pax says else."""
    mtime = _to_ns(member.pax_headers.get("mtime"))
    if mtime is None:
        value = member.mtime
        mtime = value * 1_000_000_000 if isinstance(value, int) else int(value * 1e9)
    atime = _to_ns(member.pax_headers.get("atime"))
    return (mtime if atime is None else atime, mtime)


@dataclass(slots=True)
class _DirAttrs:
    mode: int
    uid: int
    gid: int
    times: tuple[int, int]


class _HeaderWatch:
    """Remembers how the last tar header read went, to tell a clean end from a truncated one.

    ``tarfile`` treats a short, missing or garbled header after the first member as the end
    of the archive, silently; the end marker (a zero block) is the only proof of a clean end.
    """

    def __init__(self) -> None:
        self.last: str | None = None

    def tarinfo_class(self) -> type[tarfile.TarInfo]:
        watch = self

        class _WatchedTarInfo(tarfile.TarInfo):
            @classmethod
            def frombuf(cls, buf: bytes | bytearray, encoding: str, errors: str) -> Self:
                try:
                    info = super().frombuf(buf, encoding, errors)
                except tarfile.HeaderError as exc:
                    watch.last = type(exc).__name__
                    raise
                watch.last = None
                if info.type in _META_TYPES and info.size > _MAX_HEADER_BYTES:
                    raise ArchiveError(
                        f"{_show(info.name)}: extended header of {info.size} bytes "
                        f"is larger than {_MAX_HEADER_BYTES}"
                    )
                return info

        return _WatchedTarInfo


_END_PROBLEMS = {
    "EmptyHeaderError": "no end-of-archive marker",
    "TruncatedHeaderError": "truncated header",
    "InvalidHeaderError": "invalid header (bad checksum)",
}


class _Extractor:
    def __init__(
        self,
        root: str,
        *,
        prefix: Sequence[str],
        whiteouts: bool,
        keep: Callable[[str], bool] | None,
        on_other: Callable[[tarfile.TarInfo, IO[bytes] | None], None] | None,
        limits: ExtractLimits,
        privileged: bool,
    ) -> None:
        self.root = root
        self.base = root.rstrip("/")
        self.prefix = tuple(prefix)
        self.whiteouts = whiteouts
        self.keep = keep
        self.on_other = on_other
        self.limits = limits
        self.privileged = privileged
        self.report = ExtractReport()
        self.members = 0
        self.data = 0  # bytes of member data read from the archive, skipped members included
        # member directory components -> (in-root components, host path) of a real directory
        self.dirs: dict[tuple[str, ...], tuple[tuple[str, ...], str]] = {}
        self.pending: dict[str, _DirAttrs] = {}  # directory attributes, applied at the end
        # OCI whiteouts: paths this layer created (whole subtree is this layer's) and
        # existing directories this layer put something into or under.
        self.created: set[str] = set()
        self.touched: set[str] = set()
        self.name = ""  # the member being extracted, for messages
        self.source_fd: int | None = None  # the archive's fd, when it is a plain tar file

    # -- the pass over the archive --------------------------------------------------------

    def run(self, tar: tarfile.TarFile) -> None:
        watch = _HeaderWatch()
        watched = tar.tarinfo is tarfile.TarInfo
        if watched:
            tar.tarinfo = watch.tarinfo_class()
        self.source_fd = _plain_file_fd(tar)
        last = ""
        try:
            while True:
                try:
                    member = tar.next()
                except _READ_ERRORS as exc:
                    raise self._corrupt(exc, after=last) from exc
                if member is None:
                    break
                # The TarFile would keep every TarInfo: a million members, a million objects.
                kept = getattr(tar, "members", None)
                if isinstance(kept, list):
                    kept.clear()
                last = member.name
                self._admit(member)
                try:
                    self._member(tar, member)
                except OSError as exc:
                    raise self._os_error(exc) from exc
            if watched and not tar.ignore_zeros and watch.last in _END_PROBLEMS:
                raise ArchiveError(
                    f"truncated or corrupt archive: {_END_PROBLEMS[watch.last]} after {_show(last)}"
                )
            self._check_compression(tar, last)
        finally:
            if watched:
                tar.tarinfo = tarfile.TarInfo
        self.name = ""
        try:
            self._apply_dir_attrs()
        except OSError as exc:
            raise self._os_error(exc) from exc

    def _admit(self, member: tarfile.TarInfo) -> None:
        """Count the member against the limits before anything of it is read or written."""
        self.members += 1
        if self.members > self.limits.max_members:
            raise ArchiveError(
                f"archive has more than {self.limits.max_members} members (at {_show(member.name)})"
            )
        if member.isreg() or member.type not in tarfile.SUPPORTED_TYPES:
            self.data += member.size
            if self.data > self.limits.max_bytes:
                raise ArchiveError(
                    f"archive holds more than {self.limits.max_bytes} bytes of file data "
                    f"(at {_show(member.name)}, {member.size} bytes)"
                )

    def _corrupt(self, exc: BaseException, *, after: str) -> ArchiveError:
        where = f" after {_show(after)}" if after else ""
        detail = str(exc) or type(exc).__name__
        return ArchiveError(f"truncated or corrupt archive: {detail}{where}")

    def _os_error(self, exc: OSError) -> ArchiveError | RuntimeFailure:
        what = f"cannot extract {_show(self.name)}" if self.name else "cannot finish extraction"
        reason = exc.strerror or str(exc)
        if exc.errno in _HOST_ERRNOS:
            return RuntimeFailure(f"{what}: {reason}")
        return ArchiveError(f"{what}: {reason}")

    def _check_compression(self, tar: tarfile.TarFile, last: str) -> None:
        """Read past the end marker so the decompressor sees (or misses) its own end."""
        fileobj = tar.fileobj
        comptype = getattr(fileobj, "comptype", None)  # tarfile's stream reader ("r|gz")
        compressed = type(fileobj).__module__ in ("gzip", "bz2", "lzma") or comptype in (
            "gz",
            "bz2",
            "xz",
        )
        if not compressed:
            return
        drained = 0
        while drained <= _MAX_TRAILER_BYTES:
            try:
                chunk = fileobj.read(_CHUNK)
            except _READ_ERRORS as exc:
                raise self._corrupt(exc, after=last) from exc
            if not chunk:
                break
            drained += len(chunk)
        else:
            return  # a lot of trailing data: the members were complete, leave it unchecked
        decompressor = getattr(fileobj, "cmp", None)
        if comptype is None or decompressor is None:
            return  # gzip/bz2/lzma file objects check their own end and checksum
        if getattr(decompressor, "eof", True) is False:
            raise ArchiveError(
                f"truncated or corrupt archive: compressed data ends early after {_show(last)}"
            )
        if comptype == "gz":
            trailer = getattr(decompressor, "unused_data", b"")
            size = getattr(fileobj, "pos", None)
            if len(trailer) < 8 or (
                isinstance(size, int) and int.from_bytes(trailer[4:8], "little") != size % 2**32
            ):
                raise ArchiveError(
                    f"truncated or corrupt archive: gzip trailer missing or wrong after "
                    f"{_show(last)}"
                )

    # -- one member -----------------------------------------------------------------------

    def _member(self, tar: tarfile.TarFile, member: tarfile.TarInfo) -> None:
        self.name = member.name
        parts = _split(member.name)
        if self.prefix:
            if tuple(parts[: len(self.prefix)]) != self.prefix:
                if self.on_other is not None:
                    self.on_other(member, self._open(tar, member) if member.isreg() else None)
                return
            parts = parts[len(self.prefix) :]
        if not parts or parts[-1] == "..":
            self._root_like(member, parts)
            return
        if self.whiteouts and parts[-1].startswith(_WHITEOUT):
            self._whiteout(parts)
            return
        if self.keep is not None and not member.isdir() and not self.keep(in_root_path(parts)):
            return
        if member.islnk():
            # Resolve the target before the parent: a link to a missing file fails clean.
            target = self._link_target(member)
            _, parent = self._dir(tuple(parts[:-1]))
            self._hardlink(target, _child(parent, parts[-1]))
            return
        _, parent = self._dir(tuple(parts[:-1]))
        path = _child(parent, parts[-1])
        if member.isdir():
            self._mkdir(member, tuple(parts), path)
        elif member.isreg():
            self._write(tar, member, path)
        elif member.issym():
            self._symlink(member, path)
        elif member.isfifo() or member.isdev():
            self._special(member, path)
        else:
            self.report.warnings.append(
                f"skipped {_show(member.name)}: unsupported member type {member.type!r}"
            )

    def _open(self, tar: tarfile.TarFile, member: tarfile.TarInfo) -> IO[bytes]:
        try:
            src = tar.extractfile(member)
        except _READ_ERRORS as exc:
            raise self._corrupt(exc, after=member.name) from exc
        if src is None:  # pragma: no cover - only regular members are opened
            raise ArchiveError(f"{_show(member.name)}: has no data to read")
        return src

    def _root_like(self, member: tarfile.TarInfo, parts: list[str]) -> None:
        """A member naming a directory already there: the root, or a name ending in ``..``."""
        if not member.isdir():
            raise ArchiveError(
                f"{_show(member.name)}: a {_kind(member)} cannot replace a directory"
                + (" (the destination)" if not parts else "")
            )
        _, path = self._dir(tuple(parts))
        self._remember_dir(member, path)
        self.report.dirs += 1

    # -- resolving directories ------------------------------------------------------------

    def _dir(self, parts: tuple[str, ...]) -> tuple[tuple[str, ...], str]:
        """Resolve the member directory `parts` inside the root, creating what is missing.

        Every component must be (or lead by symlink to) a directory. Results are cached per
        prefix of `parts`; the cache is dropped whenever a symlink or a directory goes away.
        """
        if not parts:
            return ((), self.root)
        hit = self.dirs.get(parts)
        if hit is not None:
            return hit
        start = len(parts) - 1
        while start > 0 and parts[:start] not in self.dirs:
            start -= 1
        resolved = list(self.dirs[parts[:start]][0]) if start > 0 else []
        hops = 0
        for index in range(start, len(parts)):
            todo = [parts[index]]
            while todo:
                part = todo.pop()
                if not part or part == ".":
                    continue
                if part == "..":
                    if resolved:
                        resolved.pop()
                    continue
                host = rootpath.join(self.base, [*resolved, part])
                try:
                    mode = os.lstat(host).st_mode
                except FileNotFoundError:
                    os.mkdir(host, 0o755)
                    os.chmod(host, 0o755)  # whatever the umask
                    self._created(host)
                    resolved.append(part)
                    continue
                if stat.S_ISDIR(mode):
                    resolved.append(part)
                elif stat.S_ISLNK(mode):
                    hops += 1
                    if hops > rootpath.MAX_LINK_HOPS:
                        raise ArchiveError(f"{_show(self.name)}: too many levels of symbolic links")
                    target = os.readlink(host)
                    if target.startswith("/"):
                        resolved.clear()
                    todo.extend(reversed(target.split("/")))
                else:
                    raise ArchiveError(
                        f"{_show(self.name)}: {_show(in_root_path([*resolved, part]))} "
                        "is not a directory"
                    )
            key = tuple(resolved)
            self.dirs[parts[: index + 1]] = (key, rootpath.join(self.base, key))
        return self.dirs[parts]

    def _tree_changed(self, removed: str | None = None) -> None:
        """A symlink or directory went away: cached resolutions may be wrong now."""
        self.dirs.clear()
        if removed is not None:
            inside = removed + "/"
            for path in [p for p in self.pending if p == removed or p.startswith(inside)]:
                del self.pending[path]

    def _make_room(self, path: str, *, keep_dir: bool = False) -> bool:
        """Remove what is at `path` (never following it). True if a directory was kept."""
        try:
            mode = os.lstat(path).st_mode
        except FileNotFoundError:
            return False
        if stat.S_ISDIR(mode):
            if keep_dir:
                return True
            shutil.rmtree(path)  # does not follow symlinks inside the tree
            self._tree_changed(path)
        else:
            os.unlink(path)
            if stat.S_ISLNK(mode):
                self._tree_changed()
        return False

    # -- creating entries -----------------------------------------------------------------

    def _mkdir(self, member: tarfile.TarInfo, parts: tuple[str, ...], path: str) -> None:
        try:
            os.mkdir(path, 0o700)  # the member's own mode is applied at the end
            self._created(path)
        except FileExistsError:
            if self._make_room(path, keep_dir=True):
                self._touch(path)
            else:
                os.mkdir(path, 0o700)
                self._created(path)
        parent = self.dirs.get(parts[:-1]) if parts[:-1] else ((), self.root)
        if parent is not None:  # else the cache was just dropped; resolve afresh next time
            self.dirs[parts] = ((*parent[0], parts[-1]), path)
        self._remember_dir(member, path)
        self.report.dirs += 1

    def _remember_dir(self, member: tarfile.TarInfo, path: str) -> None:
        self.pending[path] = _DirAttrs(
            mode=member.mode & 0o7777, uid=member.uid, gid=member.gid, times=_times(member)
        )

    def _write(self, tar: tarfile.TarFile, member: tarfile.TarInfo, path: str) -> None:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            fd = os.open(path, flags, 0o600)
        except FileExistsError:
            self._make_room(path)
            fd = os.open(path, flags, 0o600)
        self._created(path)
        try:
            if member.size:
                self._copy_data(tar, member, fd)
                self.report.bytes += member.size
            # chown clears setuid bits and file capabilities, so it comes first.
            if self.privileged:
                os.fchown(fd, member.uid, member.gid)
            os.fchmod(fd, member.mode & 0o7777)
            if self.privileged:
                self._capability(member, fd)
            os.utime(fd, ns=_times(member))
        finally:
            os.close(fd)
        self.report.files += 1

    def _copy_data(self, tar: tarfile.TarFile, member: tarfile.TarInfo, fd: int) -> None:
        """Copy a member's data to `fd`: in the kernel from a plain tar file, else 1 MiB reads."""
        done = 0
        read: Callable[[int], bytes]
        if self.source_fd is not None and not member.issparse():
            done = self._copy_in_kernel(self.source_fd, member, fd)
            if done == member.size:
                return
        if member.issparse():  # holes to fill in: tarfile's reader knows the map
            read = self._open(tar, member).read
        else:  # straight from the (decompressed) stream, past tarfile's buffered wrapper
            try:
                tar.fileobj.seek(member.offset_data + done)
            except _READ_ERRORS as exc:
                raise self._corrupt(exc, after=member.name) from exc
            read = tar.fileobj.read
        remaining = member.size - done
        while remaining:
            try:
                chunk = read(min(_CHUNK, remaining))
            except _READ_ERRORS as exc:
                raise self._corrupt(exc, after=member.name) from exc
            if not chunk:
                raise self._ends_early(member)
            remaining -= len(chunk)
            view = memoryview(chunk)
            while view:
                view = view[os.write(fd, view) :]

    def _copy_in_kernel(self, source: int, member: tarfile.TarInfo, fd: int) -> int:
        """copy_file_range from the archive file; how much was copied before giving up."""
        done = 0
        while done < member.size:
            try:
                copied = os.copy_file_range(
                    source, fd, member.size - done, member.offset_data + done
                )
            except OSError as exc:
                if exc.errno not in (errno.EXDEV, errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
                    raise
                self.source_fd = None  # not between these file systems: copy by hand
                return done
            if copied == 0:
                raise self._ends_early(member)
            done += copied
        return done

    def _ends_early(self, member: tarfile.TarInfo) -> ArchiveError:
        return ArchiveError(
            f"truncated or corrupt archive: data of {_show(member.name)} ends early"
        )

    def _capability(self, member: tarfile.TarInfo, fd: int) -> None:
        value = member.pax_headers.get(_CAPABILITY_PAX)
        if value is None:
            return
        blob = value.encode("utf-8", "surrogateescape")
        try:
            os.setxattr(fd, _CAPABILITY_XATTR, blob)
        except OSError as exc:
            if exc.errno not in (errno.EINVAL, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EPERM):
                raise
            self.report.warnings.append(
                f"dropped {_CAPABILITY_XATTR} of {_show(member.name)}: {exc.strerror}"
            )

    def _symlink(self, member: tarfile.TarInfo, path: str) -> None:
        try:
            os.symlink(member.linkname, path)
        except FileExistsError:
            self._make_room(path)
            os.symlink(member.linkname, path)
        self._created(path)
        if self.privileged:
            os.chown(path, member.uid, member.gid, follow_symlinks=False)
        os.utime(path, ns=_times(member), follow_symlinks=False)
        self.report.symlinks += 1

    def _link_target(self, member: tarfile.TarInfo) -> str:
        """The host path of a hard link's target: linkname resolved like a member name."""
        parts = _split(member.linkname)
        if self.prefix:
            if tuple(parts[: len(self.prefix)]) != self.prefix:
                raise ArchiveError(
                    f"{_show(member.name)}: hard link target {_show(member.linkname)} "
                    "is outside the extracted tree"
                )
            parts = parts[len(self.prefix) :]
        target = _resolve(self.root, "/".join(parts), follow_final=False, what=member.name)
        try:
            mode = os.lstat(target).st_mode
        except OSError:
            raise ArchiveError(
                f"{_show(member.name)}: hard link target {_show(member.linkname)} does not exist"
            ) from None
        if stat.S_ISDIR(mode):
            raise ArchiveError(
                f"{_show(member.name)}: hard link target {_show(member.linkname)} is a directory"
            )
        return target

    def _hardlink(self, target: str, path: str) -> None:
        if target != path:  # a link to itself is already in place
            try:
                os.link(target, path, follow_symlinks=False)
            except FileExistsError:
                self._make_room(path)
                os.link(target, path, follow_symlinks=False)
            self._created(path)
        self.report.hardlinks += 1

    def _special(self, member: tarfile.TarInfo, path: str) -> None:
        if not member.isfifo() and not self.privileged:
            self.report.warnings.append(f"skipped device node {_show(member.name)}: needs root")
            return
        if member.isfifo():
            self._make_room(path)
            os.mkfifo(path, 0o600)
        else:
            kind = stat.S_IFCHR if member.ischr() else stat.S_IFBLK
            self._make_room(path)
            os.mknod(path, kind | 0o600, os.makedev(member.devmajor, member.devminor))
        self._created(path)
        if self.privileged:
            os.chown(path, member.uid, member.gid, follow_symlinks=False)
        os.chmod(path, member.mode & 0o7777)
        os.utime(path, ns=_times(member), follow_symlinks=False)
        self.report.others += 1

    def _apply_dir_attrs(self) -> None:
        """Directory owners, modes and times, deepest first, once nothing is added to them."""
        for path in sorted(self.pending, key=lambda p: p.count("/"), reverse=True):
            attrs = self.pending[path]
            try:
                if not stat.S_ISDIR(os.lstat(path).st_mode):
                    continue
            except FileNotFoundError:
                continue
            if self.privileged:
                os.chown(path, attrs.uid, attrs.gid, follow_symlinks=False)
            os.chmod(path, attrs.mode)
            os.utime(path, ns=attrs.times, follow_symlinks=False)

    # -- OCI whiteouts --------------------------------------------------------------------

    def _created(self, path: str) -> None:
        if self.whiteouts:
            self.created.add(path)
            self._touch(path.rpartition("/")[0] or "/")

    def _touch(self, path: str) -> None:
        """Mark `path` and its ancestors as holding something of this layer."""
        if not self.whiteouts:
            return
        while path not in self.touched and path.startswith(self.base + "/"):
            self.touched.add(path)
            path = path.rpartition("/")[0] or "/"

    def _whiteout(self, parts: list[str]) -> None:
        base = parts[-1]
        if base == _OPAQUE:
            _, directory = self._dir(tuple(parts[:-1]))
            self._touch(directory)
            self._clear_lower(directory)
            return
        if base.startswith(_WHITEOUT + _WHITEOUT):
            return  # aufs bookkeeping (.wh..wh.plnk and the like): never part of the tree
        victim = base[len(_WHITEOUT) :]
        if victim in ("", "."):
            self.report.warnings.append(f"ignored whiteout {_show(self.name)}: names nothing")
            return
        if victim == "..":
            raise ArchiveError(f"{_show(self.name)}: whiteout of '..' is not allowed")
        parent = _resolve(self.root, "/".join(parts[:-1]), follow_final=True, what=self.name)
        path = _child(parent, victim)
        try:
            mode = os.lstat(path).st_mode
        except OSError:
            return  # nothing below to hide
        if path in self.created:
            return  # whiteouts hide lower layers only
        if path in self.touched and stat.S_ISDIR(mode):
            self._clear_lower(path)
            return
        self._make_room(path)

    def _clear_lower(self, directory: str) -> None:
        """Remove what lower layers left in `directory`, keeping what this layer made."""
        if directory in self.created:
            return
        todo = [directory]
        while todo:
            current = todo.pop()
            with os.scandir(current) as entries:
                children = [(entry.path, entry.is_dir(follow_symlinks=False)) for entry in entries]
            for path, is_dir in children:
                if path in self.created:
                    continue
                if is_dir and path in self.touched:
                    todo.append(path)
                    continue
                self._make_room(path)


def _plain_file_fd(tar: tarfile.TarFile) -> int | None:
    """The fd of an uncompressed tar read from a regular file (not a stream), else None."""
    fileobj = tar.fileobj
    if not isinstance(fileobj, io.BufferedReader | io.BufferedRandom | io.FileIO):
        return None  # tarfile's stream reader, gzip/bz2/lzma files, BytesIO, ...
    try:
        fd = fileobj.fileno()
        return fd if stat.S_ISREG(os.fstat(fd).st_mode) else None
    except (OSError, ValueError):
        return None


def in_root_path(parts: Iterable[str]) -> str:
    """The in-root absolute path of member components, ``..`` clamped: "/etc/passwd"."""
    stack: list[str] = []
    for part in parts:
        if part == "..":
            if stack:
                stack.pop()
        elif part and part != ".":
            stack.append(part)
    return "/" + "/".join(stack)


def _kind(member: tarfile.TarInfo) -> str:
    if member.isreg():
        return "file"
    if member.issym():
        return "symlink"
    if member.islnk():
        return "hard link"
    return "non-directory"


def extract(
    tar: tarfile.TarFile,
    dest: str,
    *,
    prefix: str = "",
    whiteouts: bool = False,
    keep: Callable[[str], bool] | None = None,
    on_other: Callable[[tarfile.TarInfo, IO[bytes] | None], None] | None = None,
    limits: ExtractLimits = _DEFAULT_LIMITS,
    privileged: bool | None = None,
) -> ExtractReport:
    """Extract every member of `tar` into the directory `dest`, treating dest as ``/``.

    dest must exist and be a directory. Raises ArchiveError (rktcfg.errors) on any refusal; on
    error the caller deletes dest (nothing is rolled back). A failure of the host (disk full,
    read-only file system) is a :class:`~rktcfg.errors.RuntimeFailure` instead.

    - `prefix`: only members under this top-level directory are extracted, relative to it
      (``rootfs`` for an ACI); the prefix member itself gives dest its mode and times. Other
      members go to `on_other` with their data (read it during the call; the archive is read
      once, forward) or are skipped.
    - `whiteouts`: apply an OCI layer -- ``.wh.<name>`` deletes a lower layer's `<name>`,
      ``.wh..wh..opq`` empties its directory of lower-layer entries; markers are not created.
    - `keep`: called with the in-root path ("/etc/passwd") of each non-directory member;
      False skips it (appc pathWhitelist). Directories are always extracted.
    - `privileged` (default: running as root): create device nodes, keep owners and the
      ``security.capability`` xattr. Without it device nodes are skipped with a warning (as
      is a capability the file system refuses).

    Names are normalised (leading ``./`` and ``/`` dropped, ``//`` collapsed) but ``..`` is
    not cleaned lexically: it is resolved inside dest, after the prefix is taken off
    (``rootfs/../../x`` becomes ``<dest>/x``). A hard link's name is read the same way and its
    target must already be inside dest -- so one whose target `keep` skipped is an error.
    Names round-trip to their original bytes when the TarFile uses its default encoding.

    The archive is consumed: its TarFile keeps no member list afterwards. Data is copied with
    ``copy_file_range`` from an uncompressed tar file, else read from the (decompressed)
    stream in 1 MiB pieces; a stream opened with ``mode="r|*"`` is read once, forward.
    """
    root = os.path.abspath(dest)
    try:
        if not stat.S_ISDIR(os.stat(root).st_mode):
            raise ArchiveError(f"{dest}: extraction target is not a directory")
    except OSError as exc:
        raise ArchiveError(f"{dest}: extraction target: {exc.strerror}") from exc
    extractor = _Extractor(
        root,
        prefix=_split(prefix),
        whiteouts=whiteouts,
        keep=keep,
        on_other=on_other,
        limits=limits,
        privileged=os.geteuid() == 0 if privileged is None else privileged,
    )
    extractor.run(tar)
    return extractor.report
