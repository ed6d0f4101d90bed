"""Safe tar extraction: a corpus of hostile archives, and what a well-formed one turns into.

Every hostile archive is built here, in memory, and extracted into ``tmp_path/"dest"``. The
archives aim at ``tmp_path/"sentinel"`` (by absolute path and by ``..``) and at the host's
/etc; after each case the sentinel tree, the rest of ``tmp_path`` and /etc/passwd and
/etc/shadow must be exactly as before (content, inode, link count, ctime).

The /etc cases write a copy of the host's own /etc/passwd as their payload, so even a broken
extractor could not change what that file says -- the inode and ctime checks would still
catch it. Everything here also runs as non-root: where root matters the test passes
``privileged=False``; what needs root lives in tests/privileged/test_tarsafe_root.py.
"""

from __future__ import annotations

import bz2
import dataclasses
import errno
import gzip
import hashlib
import io
import lzma
import os
import shutil
import stat
import subprocess
import tarfile
import tempfile
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rktcfg.errors import ArchiveError
from rktcfg.image.tarsafe import (
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_MEMBERS,
    ExtractLimits,
    ExtractReport,
    extract,
    resolve_in_root,
)

Entry = tuple[tarfile.TarInfo, bytes | None]

MTIME = 1_600_000_000
HOST_PASSWD = "/etc/passwd"
HOST_SHADOW = "/etc/shadow"


def _host_passwd() -> bytes:
    try:
        return Path(HOST_PASSWD).read_bytes()
    except OSError:
        return b"root:x:0:0:root:/root:/bin/sh\n"


PASSWD = _host_passwd()


# -- building archives ---------------------------------------------------------------------


def _info(name: str, kind: bytes, *, mode: int, mtime: float = MTIME) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = mode
    info.mtime = mtime
    return info


def file_(name: str, data: bytes = b"", *, mode: int = 0o644, mtime: float = MTIME) -> Entry:
    info = _info(name, tarfile.REGTYPE, mode=mode, mtime=mtime)
    info.size = len(data)
    return info, data


def dir_(name: str, *, mode: int = 0o755, mtime: float = MTIME) -> Entry:
    return _info(name, tarfile.DIRTYPE, mode=mode, mtime=mtime), None


def symlink(name: str, target: str, *, mtime: float = MTIME) -> Entry:
    info = _info(name, tarfile.SYMTYPE, mode=0o777, mtime=mtime)
    info.linkname = target
    return info, None


def hardlink(name: str, target: str) -> Entry:
    info = _info(name, tarfile.LNKTYPE, mode=0o644)
    info.linkname = target
    return info, None


def special(name: str, kind: bytes, major: int = 0, minor: int = 0, mode: int = 0o644) -> Entry:
    info = _info(name, kind, mode=mode)
    info.devmajor, info.devminor = major, minor
    return info, None


def archive(*entries: Entry, compression: str = "", fmt: int = tarfile.PAX_FORMAT) -> bytes:
    buf = io.BytesIO()
    mode = f"w:{compression}" if compression else "w"
    with tarfile.open(fileobj=buf, mode=mode, format=fmt) as tar:  # type: ignore[call-overload]
        for info, data in entries:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def run(data: bytes, dest: Path, *, mode: str = "r:*", **kwargs: object) -> ExtractReport:
    with tarfile.open(fileobj=io.BytesIO(data), mode=mode) as tar:  # type: ignore[call-overload]
        return extract(tar, str(dest), **kwargs)  # type: ignore[arg-type]


class Zeros:
    """A file of `size` zero bytes that never exists in memory at once."""

    def __init__(self, size: int) -> None:
        self.left = size

    def read(self, n: int = -1) -> bytes:
        n = self.left if n < 0 else min(n, self.left)
        self.left -= n
        return bytes(n)


class ForwardOnly:
    """A pipe-like reader: read() only, no seek or tell."""

    def __init__(self, data: bytes) -> None:
        self._buf = io.BytesIO(data)

    def read(self, n: int = -1) -> bytes:
        return self._buf.read(n)


# -- the world a hostile archive aims at ---------------------------------------------------


@dataclasses.dataclass(frozen=True)
class World:
    tmp: Path
    dest: Path
    sentinel: Path


@pytest.fixture
def world(tmp_path: Path) -> World:
    sentinel = tmp_path / "sentinel"
    (sentinel / "sub").mkdir(parents=True)
    (sentinel / "file1").write_bytes(b"sentinel one\n")
    (sentinel / "passwd").write_bytes(b"not the real one\n")
    (sentinel / "sub" / "file2").write_bytes(b"sentinel two\n")
    (sentinel / "link-rel").symlink_to("file1")
    (sentinel / "link-abs").symlink_to(sentinel / "sub")
    dest = tmp_path / "dest"
    dest.mkdir()
    return World(tmp_path, dest, sentinel)


def _stat_key(path: str | bytes) -> tuple[int, ...]:
    st_ = os.lstat(path)
    return (st_.st_mode, st_.st_ino, st_.st_nlink, st_.st_uid, st_.st_size, st_.st_mtime_ns)


def _content(path: str | bytes) -> str:
    try:
        return hashlib.sha256(Path(os.fsdecode(path)).read_bytes()).hexdigest()
    except PermissionError:
        return "unreadable"


def snapshot(w: World) -> dict[str, object]:
    """Everything outside dest that a hostile archive might touch."""
    seen: dict[str, object] = {}
    for top, dirs, files in os.walk(os.fsencode(w.sentinel)):
        for name in sorted(dirs + files):
            path = os.path.join(top, name)
            key: list[object] = [_stat_key(path), os.lstat(path).st_ctime_ns]
            if os.path.islink(path):
                key.append(os.readlink(path))
            elif os.path.isfile(path):
                key.append(_content(path))
            seen[os.fsdecode(path)] = key
    seen["tmp listing"] = sorted(p for p in os.listdir(w.tmp) if p != "dest")
    seen["etc listing"] = sorted(os.listdir("/etc"))
    for host in (HOST_PASSWD, HOST_SHADOW):
        if os.path.lexists(host):
            seen[host] = (_stat_key(host), os.lstat(host).st_ctime_ns, _content(host))
    return seen


def _unlink_host_links(w: World) -> list[str]:
    """Remove (and name) anything in dest that is a hard link to a file outside it."""
    outside = {HOST_PASSWD, HOST_SHADOW}
    outside.update(str(p) for p in w.sentinel.rglob("*") if p.is_file() and not p.is_symlink())
    inodes = set()
    for path in outside:
        if os.path.exists(path):
            inodes.add((os.stat(path).st_dev, os.stat(path).st_ino))
    leaked = []
    for top, _, files in os.walk(w.dest):
        for name in files:
            path = os.path.join(top, name)
            st_ = os.lstat(path)
            if (st_.st_dev, st_.st_ino) in inodes:
                os.unlink(path)
                leaked.append(path)
    return leaked


@pytest.fixture
def untouched(world: World) -> Iterator[World]:
    """The world, checked on the way out: nothing outside dest may have changed."""
    before = snapshot(world)
    yield world
    # A broken extractor could leave links to host files behind in pytest's kept tmp dirs.
    assert _unlink_host_links(world) == []
    assert snapshot(world) == before


def in_dest(w: World, path: str | Path) -> Path:
    """Where an absolute host path lands when it is taken as a path inside dest."""
    return w.dest / str(path).lstrip("/")


# -- the hostile corpus --------------------------------------------------------------------


def _traversal(w: World) -> list[Entry]:
    return [
        file_("../sentinel/evil", b"x"),
        file_("../../../../../../../../../../etc/passwd", PASSWD),
        file_("a/../../../sentinel/file1", b"overwritten?"),
    ]


def _traversal_ok(w: World) -> None:
    assert (w.dest / "sentinel" / "evil").read_bytes() == b"x"
    assert (w.dest / "etc" / "passwd").read_bytes() == PASSWD
    assert (w.dest / "sentinel" / "file1").read_bytes() == b"overwritten?"


def _absolute(w: World) -> list[Entry]:
    return [
        file_("/etc/passwd", PASSWD),
        file_(str(w.sentinel / "file1"), b"abs"),
        dir_(str(w.sentinel / "newdir")),
    ]


def _absolute_ok(w: World) -> None:
    assert (w.dest / "etc" / "passwd").read_bytes() == PASSWD
    assert in_dest(w, w.sentinel / "file1").read_bytes() == b"abs"
    assert in_dest(w, w.sentinel / "newdir").is_dir()


def _through_etc(w: World) -> list[Entry]:
    return [symlink("a", "/etc"), file_("a/passwd", PASSWD)]


def _through_etc_ok(w: World) -> None:
    assert os.readlink(w.dest / "a") == "/etc"  # stored exactly as given
    assert (w.dest / "etc" / "passwd").read_bytes() == PASSWD
    assert not (w.dest / "etc" / "passwd").is_symlink()


def _through_sentinel(w: World) -> list[Entry]:
    return [
        symlink("s", str(w.sentinel)),
        file_("s/file1", b"through"),
        symlink("r", "../../sentinel"),
        file_("r/evil", b"rel"),
        symlink("sub", str(w.sentinel / "link-abs")),
        file_("sub/file2", b"two hops"),
    ]


def _through_sentinel_ok(w: World) -> None:
    assert in_dest(w, w.sentinel / "file1").read_bytes() == b"through"
    assert (w.dest / "sentinel" / "evil").read_bytes() == b"rel"
    # sub -> <sentinel>/link-abs does not exist inside dest: created as plain directories
    assert in_dest(w, w.sentinel / "link-abs" / "file2").read_bytes() == b"two hops"


def _chain(w: World) -> list[Entry]:
    return [
        symlink("a", "b"),
        symlink("b", "c"),
        symlink("c", "/.."),
        file_("a/x", b"x"),
        symlink("d", "e/f"),
        dir_("e"),
        symlink("e/f", "../../../../.."),
        file_("d/sentinel/file1", b"y"),
    ]


def _chain_ok(w: World) -> None:
    assert (w.dest / "x").read_bytes() == b"x"
    assert (w.dest / "sentinel" / "file1").read_bytes() == b"y"


def _loop(w: World) -> list[Entry]:
    return [symlink("a", "b"), symlink("b", "a"), file_("a/x", b"x")]


def _self_loop(w: World) -> list[Entry]:
    return [symlink("l", "./l"), dir_("l/d")]


def _hardlink_shadow(w: World) -> list[Entry]:
    return [hardlink("h", HOST_SHADOW)]


def _hardlink_shadow_dotdot(w: World) -> list[Entry]:
    return [hardlink("h", "../../../../../../../../../etc/shadow")]


def _hardlink_via_symlink(w: World) -> list[Entry]:
    return [symlink("l", "/etc"), hardlink("h", "l/shadow")]


def _hardlink_via_symlink_inside(w: World) -> list[Entry]:
    return [file_("etc/shadow", b"inside"), symlink("l", "/etc"), hardlink("h", "l/shadow")]


def _hardlink_via_symlink_inside_ok(w: World) -> None:
    assert os.stat(w.dest / "h").st_ino == os.stat(w.dest / "etc" / "shadow").st_ino
    assert os.stat(w.dest / "h").st_nlink == 2


def _hardlink_sentinel(w: World) -> list[Entry]:
    return [hardlink("h", str(w.sentinel / "file1"))]


def _hardlink_missing(w: World) -> list[Entry]:
    return [file_("present", b"p"), hardlink("h", "absent")]


def _dir_then_symlink(w: World) -> list[Entry]:
    return [
        dir_("d"),
        file_("d/x", b"x"),
        symlink("d", str(w.sentinel)),
        file_("d/file1", b"replaced?"),
        dir_("e"),
        symlink("e", "/etc"),
        file_("e/passwd", PASSWD),
    ]


def _dir_then_symlink_ok(w: World) -> None:
    assert os.readlink(w.dest / "d") == str(w.sentinel)
    assert in_dest(w, w.sentinel / "file1").read_bytes() == b"replaced?"
    assert not in_dest(w, w.sentinel / "x").exists()
    assert os.readlink(w.dest / "e") == "/etc"
    assert (w.dest / "etc" / "passwd").read_bytes() == PASSWD


def _file_over_symlink(w: World) -> list[Entry]:
    return [
        symlink("p", str(w.sentinel / "passwd")),
        file_("p", b"new file"),
        symlink("q", str(w.sentinel / "sub")),
        dir_("q"),
        symlink("r", str(w.sentinel / "file1")),
        hardlink("r", "p"),
    ]


def _file_over_symlink_ok(w: World) -> None:
    assert not (w.dest / "p").is_symlink()
    assert (w.dest / "p").read_bytes() == b"new file"
    assert (w.dest / "q").is_dir() and not (w.dest / "q").is_symlink()
    assert os.stat(w.dest / "r").st_ino == os.stat(w.dest / "p").st_ino


def _file_as_parent(w: World) -> list[Entry]:
    return [file_("f", b"a file"), file_("f/x", b"x")]


def _hardlink_outside_prefix(w: World) -> list[Entry]:
    return [dir_("rootfs"), file_("manifest", b"{}"), hardlink("rootfs/h", "manifest")]


def _device_unprivileged(w: World) -> list[Entry]:
    return [
        special("dev/null", tarfile.CHRTYPE, 1, 3),
        special("dev/loop0", tarfile.BLKTYPE, 7, 0),
        special("run/fifo", tarfile.FIFOTYPE, mode=0o620),
    ]


def _device_unprivileged_ok(w: World) -> None:
    assert not os.path.lexists(w.dest / "dev" / "null")
    assert not os.path.lexists(w.dest / "dev" / "loop0")
    fifo = os.lstat(w.dest / "run" / "fifo")
    assert stat.S_ISFIFO(fifo.st_mode) and stat.S_IMODE(fifo.st_mode) == 0o620


Case = tuple[Callable[[World], list[Entry]], Callable[[World], None] | str, dict[str, object]]

HOSTILE: dict[str, Case] = {
    "dotdot traversal": (_traversal, _traversal_ok, {}),
    "absolute names": (_absolute, _absolute_ok, {}),
    "symlink to /etc then write through": (_through_etc, _through_etc_ok, {}),
    "symlink to sentinel then write through": (_through_sentinel, _through_sentinel_ok, {}),
    "symlink chains clamp at root": (_chain, _chain_ok, {}),
    "symlink loop": (_loop, "too many levels of symbolic links", {}),
    "symlink to itself": (_self_loop, "too many levels of symbolic links", {}),
    "hard link to /etc/shadow": (_hardlink_shadow, "does not exist", {}),
    "hard link to ../../etc/shadow": (_hardlink_shadow_dotdot, "does not exist", {}),
    "hard link to sentinel": (_hardlink_sentinel, "does not exist", {}),
    "hard link through symlinked dir": (_hardlink_via_symlink, "does not exist", {}),
    "hard link through symlinked dir, target inside": (
        _hardlink_via_symlink_inside,
        _hardlink_via_symlink_inside_ok,
        {},
    ),
    "hard link to a target never extracted": (_hardlink_missing, "does not exist", {}),
    "hard link outside the prefix": (
        _hardlink_outside_prefix,
        "outside the extracted tree",
        {"prefix": "rootfs"},
    ),
    "directory replaced by symlink": (_dir_then_symlink, _dir_then_symlink_ok, {}),
    "file, dir and link replace a symlink": (_file_over_symlink, _file_over_symlink_ok, {}),
    "regular file as a parent directory": (_file_as_parent, "f is not a directory", {}),
    "device node unprivileged": (
        _device_unprivileged,
        _device_unprivileged_ok,
        {"privileged": False},
    ),
}


@pytest.mark.parametrize("case", list(HOSTILE), ids=list(HOSTILE))
def test_hostile_archive_stays_inside(case: str, untouched: World) -> None:
    build, outcome, kwargs = HOSTILE[case]
    data = archive(*build(untouched))
    if isinstance(outcome, str):
        with pytest.raises(ArchiveError, match=outcome) as caught:
            run(data, untouched.dest, **kwargs)
        assert "\n" not in str(caught.value)
    else:
        run(data, untouched.dest, **kwargs)
        outcome(untouched)


def test_device_node_unprivileged_is_a_warning(world: World) -> None:
    report = run(archive(*_device_unprivileged(world)), world.dest, privileged=False)
    assert report.warnings == [
        "skipped device node dev/null: needs root",
        "skipped device node dev/loop0: needs root",
    ]
    assert report.others == 1  # the fifo


def test_error_names_the_member(world: World) -> None:
    with pytest.raises(ArchiveError) as caught:
        run(archive(*_hardlink_missing(world)), world.dest)
    assert str(caught.value) == "h: hard link target absent does not exist"


def test_unsupported_member_type_is_skipped_with_warning(world: World) -> None:
    odd = _info("volume", b"V", mode=0o644)  # a GNU volume header
    report = run(archive((odd, None), file_("after", b"a")), world.dest)
    assert report.warnings == ["skipped volume: unsupported member type b'V'"]
    assert not os.path.lexists(world.dest / "volume")
    assert (world.dest / "after").read_bytes() == b"a"


# -- duplicates and replacement ------------------------------------------------------------


@pytest.mark.parametrize(
    ("entries", "check"),
    [
        pytest.param(
            [file_("x", b"one"), file_("x", b"two")],
            lambda d: (d / "x").read_bytes() == b"two",
            id="file twice",
        ),
        pytest.param(
            [dir_("x"), file_("x/inner", b"i"), file_("x", b"file now")],
            lambda d: (d / "x").read_bytes() == b"file now",
            id="dir then file",
        ),
        pytest.param(
            [file_("x", b"file"), dir_("x"), file_("x/inner", b"i")],
            lambda d: (d / "x" / "inner").read_bytes() == b"i",
            id="file then dir",
        ),
        pytest.param(
            [dir_("x", mode=0o700), file_("x/keep", b"k"), dir_("x", mode=0o751)],
            lambda d: (
                (d / "x" / "keep").exists() and stat.S_IMODE(os.stat(d / "x").st_mode) == 0o751
            ),
            id="dir twice keeps content, later mode wins",
        ),
        pytest.param(
            [symlink("l", "one"), file_("l/f", b"f"), symlink("l", "two"), file_("l/g", b"g")],
            lambda d: os.listdir(d / "one") == ["f"] and os.listdir(d / "two") == ["g"],
            id="symlinked dir replaced by another symlink",
        ),
        pytest.param(
            [symlink("x", "one"), symlink("x", "two")],
            lambda d: os.readlink(d / "x") == "two",
            id="symlink twice",
        ),
        pytest.param(
            [file_("t", b"t"), symlink("x", "t"), hardlink("x", "t")],
            lambda d: not (d / "x").is_symlink() and os.stat(d / "x").st_nlink == 2,
            id="symlink then hard link",
        ),
        pytest.param(
            [file_("t", b"t"), hardlink("t", "t")],
            lambda d: (d / "t").read_bytes() == b"t" and os.stat(d / "t").st_nlink == 1,
            id="hard link to itself",
        ),
    ],
)
def test_duplicate_names_later_wins(
    entries: list[Entry], check: Callable[[Path], bool], untouched: World
) -> None:
    run(archive(*entries), untouched.dest)
    assert check(untouched.dest)


# -- limits --------------------------------------------------------------------------------


def _bomb(size: int) -> bytes:
    """A gzip tar whose one member holds `size` zero bytes: a few KB of compressed data."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        info = tarfile.TarInfo("bomb")
        info.size = size
        tar.addfile(info, Zeros(size))  # type: ignore[arg-type]
    return buf.getvalue()


@pytest.mark.parametrize("mode", ["r:gz", "r|gz"])
def test_gzip_bomb_is_refused_before_writing(mode: str, world: World) -> None:
    data = _bomb(64 * 1024 * 1024)
    assert len(data) < 256 * 1024
    # Opening reads the first header. In "r|gz" mode tarfile inflates one 10 KiB record at a
    # time -- up to ~10 MiB of zeros, a constant whatever the bomb's size; extract() itself
    # must not read the member's data at all.
    with tarfile.open(fileobj=io.BytesIO(data), mode=mode) as tar:  # type: ignore[call-overload]
        tracemalloc.start()
        try:
            with pytest.raises(ArchiveError, match=r"more than 1048576 bytes .*at bomb"):
                extract(tar, str(world.dest), limits=ExtractLimits(max_bytes=1024 * 1024))
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert peak < 1024 * 1024
    assert not os.path.lexists(world.dest / "bomb")


def test_header_claiming_a_huge_size_is_refused(world: World) -> None:
    info = tarfile.TarInfo("liar")
    info.size = 2**40
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
        tar.addfile(info)  # the header only: no terabyte follows
    with pytest.raises(ArchiveError, match="more than 8589934592 bytes"):
        run(buf.getvalue(), world.dest)
    assert not os.path.lexists(world.dest / "liar")


def test_byte_limit_counts_the_total(world: World) -> None:
    chunk = b"z" * (600 * 1024)
    data = archive(file_("one", chunk), file_("two", chunk), compression="gz")
    with pytest.raises(ArchiveError, match="at two"):
        run(data, world.dest, limits=ExtractLimits(max_bytes=1024 * 1024))
    assert (world.dest / "one").read_bytes() == chunk
    assert not os.path.lexists(world.dest / "two")
    report = run(data, world.dest, limits=ExtractLimits(max_bytes=1200 * 1024))
    assert report.bytes == 2 * len(chunk)


def test_too_many_members(world: World) -> None:
    data = archive(*(file_(f"f{i:02}", b"x") for i in range(11)))
    with pytest.raises(ArchiveError, match=r"more than 10 members \(at f10\)"):
        run(data, world.dest, limits=ExtractLimits(max_members=10))
    assert sorted(os.listdir(world.dest)) == [f"f{i:02}" for i in range(10)]
    fresh = world.tmp / "fresh"
    fresh.mkdir()
    report = run(data, fresh, limits=ExtractLimits(max_members=11))
    assert report.files == 11


def test_default_limits() -> None:
    assert DEFAULT_MAX_BYTES == 8 * 1024**3
    assert DEFAULT_MAX_MEMBERS == 1_000_000
    assert ExtractLimits() == ExtractLimits(max_bytes=DEFAULT_MAX_BYTES, max_members=1_000_000)


# -- truncated and corrupt archives --------------------------------------------------------


def _plain() -> tuple[bytes, list[tarfile.TarInfo]]:
    rand = hashlib.sha256(b"seed").digest() * 320  # 10 KiB that does not compress to nothing
    data = archive(file_("a", rand), file_("b", rand[::-1]), file_("c", b"tail"))
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return data, tar.getmembers()


def _cut_plain(where: str) -> bytes:
    data, (_, b, c) = _plain()
    if where == "mid data":
        return data[: b.offset_data + 5000]
    if where == "mid header":
        return data[: b.offset + 100]
    if where == "no end marker":
        return data[: c.offset_data + 512]
    if where == "garbage header":
        return data[: b.offset] + b"\x01" * 512 + data[b.offset + 512 :]
    raise AssertionError(where)


def run_file(data: bytes, dest: Path, *, mode: str = "r:*", **kwargs: object) -> ExtractReport:
    """Like run(), from a real file: plain tars then take the copy_file_range path."""
    path = dest.parent / "archive.tar"
    path.write_bytes(data)
    with tarfile.open(path, mode=mode) as tar:  # type: ignore[call-overload]
        return extract(tar, str(dest), **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("source", [run, run_file], ids=["memory", "file"])
@pytest.mark.parametrize("mode", ["r:", "r|"])
@pytest.mark.parametrize("where", ["mid data", "mid header", "no end marker", "garbage header"])
def test_truncated_tar(
    where: str, mode: str, source: Callable[..., ExtractReport], world: World
) -> None:
    with pytest.raises(ArchiveError, match=r"^truncated or corrupt archive: "):
        source(_cut_plain(where), world.dest, mode=mode)


@pytest.mark.parametrize("mode", ["r:", "r|"])
def test_plain_file_archive_content(mode: str, world: World) -> None:
    data, _ = _plain()
    run_file(data, world.dest, mode=mode)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        for member in tar:
            src = tar.extractfile(member)
            assert src is not None
            assert (world.dest / member.name).read_bytes() == src.read()


def test_copy_falls_back_when_the_kernel_will_not(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []

    def refuse(*args: object) -> int:
        calls.append(1)
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(os, "copy_file_range", refuse)
    data, _ = _plain()
    report = run_file(data, world.dest, mode="r:")
    assert calls == [1]  # tried once, then plain reads for the rest of the archive
    assert (world.dest / "a").read_bytes() == hashlib.sha256(b"seed").digest() * 320
    assert report.bytes == 2 * 10240 + 4


@pytest.mark.skipif(shutil.which("tar") is None, reason="needs GNU tar to write sparse members")
@pytest.mark.parametrize("fmt", ["gnu", "posix"])
@pytest.mark.parametrize("mode", ["r:", "r|"])
def test_sparse_members(fmt: str, mode: str, world: World) -> None:
    tree = world.tmp / "tree"
    tree.mkdir()
    with open(tree / "sparse", "wb") as f:
        f.truncate(4 * 1024 * 1024)
        f.seek(1024 * 1024)
        f.write(b"middle")
        f.seek(4 * 1024 * 1024 - 3)
        f.write(b"end")
    (tree / "after").write_bytes(b"after")
    path = world.tmp / "sparse.tar"
    subprocess.run(
        [
            "tar",
            "--sparse",
            f"--format={fmt}",
            "-cf",
            str(path),
            "-C",
            str(tree),
            "sparse",
            "after",
        ],
        check=True,
    )
    with tarfile.open(path, mode=mode) as tar:  # type: ignore[call-overload]
        extract(tar, str(world.dest))
    assert (world.dest / "sparse").read_bytes() == (tree / "sparse").read_bytes()
    assert (world.dest / "after").read_bytes() == b"after"


_COMPRESS: dict[str, Callable[[bytes], bytes]] = {
    "gz": gzip.compress,
    "bz2": lambda data: bz2.compress(data, 1),  # 100 kB blocks: the first decodes on its own
    "xz": lzma.compress,
}


def _big_plain() -> bytes:
    """Some 400 kB that compress poorly, so that cutting the compressed form loses members."""
    block = hashlib.sha256(b"seed").digest()
    noise = b"".join(
        hashlib.sha256(block + bytes([i, j])).digest() for i in range(50) for j in range(256)
    )
    return archive(file_("head", b"h"), file_("noise", noise), file_("c", b"tail"))


@pytest.mark.parametrize("stream", [False, True], ids=["file", "stream"])
@pytest.mark.parametrize("compression", ["gz", "bz2", "xz"])
@pytest.mark.parametrize("cut", [0.5, 20, 4, 1], ids=["half", "20 bytes", "4 bytes", "1 byte"])
def test_truncated_compressed(cut: float, compression: str, stream: bool, world: World) -> None:
    data = _COMPRESS[compression](_big_plain())
    keep = int(len(data) * cut) if cut < 1 else len(data) - int(cut)
    mode = f"r{'|' if stream else ':'}{compression}"
    with pytest.raises(ArchiveError, match=r"^truncated or corrupt archive: "):
        run(data[:keep], world.dest, mode=mode)


@pytest.mark.parametrize("mode", ["r:gz", "r|gz"])
def test_complete_compressed_archive_passes_the_end_checks(mode: str, world: World) -> None:
    report = run(gzip.compress(_plain()[0]), world.dest, mode=mode)
    assert report.files == 3
    assert (world.dest / "c").read_bytes() == b"tail"


# -- names, modes, times -------------------------------------------------------------------

NON_UTF8 = "caf\udce9"  # the bytes b"caf\xe9", as tarfile decodes them (surrogateescape)


@pytest.mark.parametrize(
    "fmt",
    [tarfile.PAX_FORMAT, tarfile.USTAR_FORMAT, tarfile.GNU_FORMAT],
    ids=["pax", "ustar", "gnu"],
)
def test_non_utf8_names_keep_their_bytes(fmt: int, world: World) -> None:
    data = archive(
        dir_(NON_UTF8),
        file_(NON_UTF8 + "/" + NON_UTF8, b"bytes"),
        symlink("link", NON_UTF8),
        hardlink("hard", NON_UTF8 + "/" + NON_UTF8),
        fmt=fmt,
    )
    assert b"caf\xe9" in data
    run(data, world.dest)
    dest = os.fsencode(world.dest)
    assert sorted(os.listdir(dest)) == [b"caf\xe9", b"hard", b"link"]
    assert os.listdir(os.path.join(dest, b"caf\xe9")) == [b"caf\xe9"]
    assert os.readlink(os.path.join(dest, b"link")) == b"caf\xe9"
    with open(os.path.join(dest, b"hard"), "rb") as f:
        assert f.read() == b"bytes"


def test_non_utf8_name_in_an_error_is_printable(world: World) -> None:
    with pytest.raises(ArchiveError) as caught:
        run(archive(hardlink(NON_UTF8, "nowhere")), world.dest)
    assert str(caught.value).startswith("caf\\xe9: hard link target")
    str(caught.value).encode("utf-8")  # would raise on a lone surrogate


@pytest.fixture
def hostile_umask() -> Iterator[None]:
    old = os.umask(0o077)
    try:
        yield
    finally:
        os.umask(old)


@pytest.mark.usefixtures("hostile_umask")
def test_modes_kept_setuid_setgid_sticky(world: World) -> None:
    data = archive(
        file_("bin/su", b"#!", mode=0o4755),
        file_("bin/wall", b"#!", mode=0o2755),
        file_("etc/plain", b"p", mode=0o644),
        file_("etc/secret", b"s", mode=0o400),
        dir_("tmp", mode=0o1777),
        dir_("locked", mode=0o500),
        file_("locked/inside", b"i"),
        special("run/ctl", tarfile.FIFOTYPE, mode=0o4666),
    )
    run(data, world.dest, privileged=False)

    def mode(rel: str) -> int:
        return stat.S_IMODE(os.lstat(world.dest / rel).st_mode)

    assert mode("bin/su") == 0o4755
    assert mode("bin/wall") & 0o777 == 0o755
    if os.getgid() == os.stat(world.dest / "bin/wall").st_gid or os.geteuid() == 0:
        assert mode("bin/wall") == 0o2755
    assert mode("etc/plain") == 0o644
    assert mode("etc/secret") == 0o400
    assert mode("tmp") == 0o1777
    assert mode("locked") == 0o500
    assert (world.dest / "locked" / "inside").read_bytes() == b"i"
    assert mode("run/ctl") == 0o4666
    assert mode("bin") == 0o755  # created on the way, umask notwithstanding
    os.chmod(world.dest / "locked", 0o700)  # so pytest can clean up as non-root


def test_mtimes_restored_including_directories(world: World) -> None:
    precise = file_("precise", b"ns")
    precise[0].pax_headers = {"mtime": "1500000000.123456789", "atime": "1400000000.5"}
    data = archive(
        dir_(".", mtime=1_000_000_000),
        dir_("d", mtime=1_100_000_000),
        dir_("d/e", mtime=1_200_000_000),
        file_("d/e/y", b"y", mtime=1_300_000_000),
        symlink("d/l", "e/y", mtime=1_400_000_000),
        file_("d/later", b"l", mtime=1_500_000_000),
        precise,
        file_("implicit/child", b"c", mtime=1_600_000_000),
    )
    run(data, world.dest)

    def mtime(rel: str) -> int:
        return os.lstat(world.dest / rel).st_mtime_ns

    assert mtime(".") == 1_000_000_000 * 10**9
    assert mtime("d") == 1_100_000_000 * 10**9
    assert mtime("d/e") == 1_200_000_000 * 10**9
    assert mtime("d/e/y") == 1_300_000_000 * 10**9
    assert mtime("d/l") == 1_400_000_000 * 10**9
    assert mtime("d/later") == 1_500_000_000 * 10**9
    assert mtime("precise") == 1_500_000_000_123_456_789
    assert os.lstat(world.dest / "precise").st_atime_ns == 1_400_000_000_500_000_000
    assert mtime("implicit/child") == 1_600_000_000 * 10**9


# -- streaming, prefix, on_other -----------------------------------------------------------


def test_streaming_single_forward_pass(world: World) -> None:
    data = archive(
        dir_("etc"),
        file_("etc/hostname", b"box\n"),
        file_("usr/bin/busybox", b"\x7fELF" + b"b" * 3_000_000, mode=0o755),
        hardlink("bin/sh", "usr/bin/busybox"),
        symlink("sbin", "bin"),
        file_("sbin/init", b"init"),
        compression="gz",
    )
    with tarfile.open(fileobj=ForwardOnly(data), mode="r|gz") as tar:  # type: ignore[call-overload]
        report = extract(tar, str(world.dest))
    assert (world.dest / "etc" / "hostname").read_bytes() == b"box\n"
    assert (
        os.stat(world.dest / "bin" / "sh").st_ino == os.stat(world.dest / "usr/bin/busybox").st_ino
    )
    assert (world.dest / "bin" / "init").read_bytes() == b"init"
    assert dataclasses.astuple(report)[:6] == (3, 1, 1, 1, 0, 4 + 3_000_004 + 4)


def test_prefix_and_on_other_in_one_streaming_pass(world: World) -> None:
    manifest = b'{"acKind": "ImageManifest"}'
    data = archive(
        file_("manifest", manifest),
        dir_("rootfs", mode=0o750, mtime=1_234_567_890),
        file_("rootfs/bin/busybox", b"bb", mode=0o755),
        hardlink("rootfs/bin/sh", "rootfs/bin/busybox"),
        file_("./rootfs/etc/a", b"a"),
        file_("/rootfs//etc//b", b"b"),
        file_("rootfsX/not-me", b"x"),
        file_("other/x", b"other"),
    )
    seen: list[tuple[str, bytes | None]] = []

    def on_other(member: tarfile.TarInfo, fileobj: IO[bytes] | None) -> None:
        seen.append((member.name, fileobj.read() if fileobj is not None else None))

    with tarfile.open(fileobj=ForwardOnly(data), mode="r|") as tar:  # type: ignore[call-overload]
        report = extract(tar, str(world.dest), prefix="rootfs", on_other=on_other)
    assert seen == [("manifest", manifest), ("rootfsX/not-me", b"x"), ("other/x", b"other")]
    assert sorted(os.listdir(world.dest)) == ["bin", "etc"]
    assert os.stat(world.dest / "bin/sh").st_ino == os.stat(world.dest / "bin/busybox").st_ino
    assert (world.dest / "etc" / "a").read_bytes() == b"a"
    assert (world.dest / "etc" / "b").read_bytes() == b"b"
    st_ = os.stat(world.dest)
    assert stat.S_IMODE(st_.st_mode) == 0o750
    assert st_.st_mtime_ns == 1_234_567_890 * 10**9
    assert (report.files, report.hardlinks) == (3, 1)


def test_prefix_member_that_is_not_a_directory(world: World) -> None:
    with pytest.raises(ArchiveError, match="rootfs: a file cannot replace a directory"):
        run(archive(file_("rootfs", b"oops")), world.dest, prefix="rootfs/")


def test_keep_filter(untouched: World) -> None:
    asked: list[str] = []

    def keep(path: str) -> bool:
        asked.append(path)
        return path in {"/etc/passwd", "/bin"}

    data = archive(
        dir_("etc"),
        file_("etc/passwd", PASSWD),
        file_("etc/shadow", b"secret"),
        dir_("usr/bin"),
        file_("usr/bin/tool", b"t"),
        symlink("bin", "usr/bin"),
        file_("x/../../etc/group", b"g"),
    )
    run(data, untouched.dest, keep=keep)
    assert asked == ["/etc/passwd", "/etc/shadow", "/usr/bin/tool", "/bin", "/etc/group"]
    assert (untouched.dest / "etc" / "passwd").read_bytes() == PASSWD
    assert not os.path.lexists(untouched.dest / "etc" / "shadow")
    assert not os.path.lexists(untouched.dest / "etc" / "group")
    assert (untouched.dest / "usr" / "bin").is_dir()
    assert not os.path.lexists(untouched.dest / "usr" / "bin" / "tool")
    assert os.readlink(untouched.dest / "bin") == "usr/bin"


# -- OCI layers ----------------------------------------------------------------------------


def _lower(w: World) -> bytes:
    return archive(
        file_("a/x", b"x"),
        file_("a/y", b"y"),
        dir_("a/sub"),
        file_("a/sub/deep", b"d"),
        file_("a/kept-sub/old", b"old"),
        file_("b/z", b"z"),
        file_("c", b"c"),
        file_("keep", b"k"),
        symlink("ln", str(w.sentinel)),
        symlink("rel", "../sentinel"),
        dir_("real/d"),
        symlink("via", "real"),
    )


def test_oci_whiteouts(untouched: World) -> None:
    w = untouched
    run(_lower(w), w.dest, whiteouts=True)
    upper = archive(
        file_(".wh.c"),
        file_("a/new", b"new"),
        file_("a/kept-sub/fresh", b"fresh"),
        file_("a/.wh..wh..opq"),
        file_("a/after", b"after"),
        file_("b/.wh.z"),
        file_(".wh.ghost"),
        file_(".wh.ln"),
        file_("rel/.wh.file1"),
        file_("n", b"same layer"),
        file_(".wh.n"),
        file_(".wh..wh.plnk"),
        file_("via/d/f", b"through the lower symlink"),
        file_(".wh.via"),
        file_("via/d/g", b"a directory now"),
    )
    run(upper, w.dest, whiteouts=True)
    assert not os.path.lexists(w.dest / "c")
    assert sorted(os.listdir(w.dest / "a")) == ["after", "kept-sub", "new"]
    assert os.listdir(w.dest / "a" / "kept-sub") == ["fresh"]
    assert os.listdir(w.dest / "b") == []
    assert not os.path.lexists(w.dest / "ln")  # the symlink went, not what it points to
    assert (w.dest / "keep").read_bytes() == b"k"
    assert (w.dest / "n").read_bytes() == b"same layer"  # whiteouts hide lower layers only
    assert os.listdir(w.dest / "real" / "d") == ["f"]
    assert not (w.dest / "via").is_symlink()
    assert os.listdir(w.dest / "via" / "d") == ["g"]
    names = [name for _, dirs, files in os.walk(w.dest) for name in dirs + files]
    assert not [name for name in names if name.startswith(".wh.")]


def test_whiteouts_are_plain_files_outside_oci_mode(world: World) -> None:
    run(archive(file_("c", b"c"), file_(".wh.c"), file_("d/.wh..wh..opq")), world.dest)
    assert sorted(os.listdir(world.dest)) == [".wh.c", "c", "d"]
    assert os.listdir(world.dest / "d") == [".wh..wh..opq"]


def test_whiteout_of_dotdot_is_refused(world: World) -> None:
    with pytest.raises(ArchiveError, match=r"whiteout of '\.\.'"):
        run(archive(file_("a/.wh..."), file_("x")), world.dest, whiteouts=True)
    assert world.dest.is_dir()


# -- resolve_in_root -----------------------------------------------------------------------


def test_resolve_in_root(world: World) -> None:
    root = world.dest
    (root / "etc").mkdir()
    (root / "abs").symlink_to("/etc")
    (root / "up").symlink_to("../../../..")
    (root / "etc" / "self").symlink_to("../etc")
    (root / "loop").symlink_to("loop")
    r = str(root)
    assert resolve_in_root(r, "/abs/passwd") == f"{r}/etc/passwd"
    assert resolve_in_root(r, "../../../abs") == f"{r}/etc"
    assert resolve_in_root(r, "abs", follow_final=False) == f"{r}/abs"
    assert resolve_in_root(r, "abs/", follow_final=False) == f"{r}/etc"
    assert resolve_in_root(r, "up/etc/self/self/x") == f"{r}/etc/x"
    assert resolve_in_root(r, str(world.sentinel)) == r + str(world.sentinel)
    assert resolve_in_root(r, "missing/../etc") == f"{r}/etc"
    assert resolve_in_root(r, "/") == r
    with pytest.raises(ArchiveError, match="too many levels of symbolic links"):
        resolve_in_root(r, "loop/x")


def test_dest_must_be_a_directory(world: World) -> None:
    with pytest.raises(ArchiveError, match="not a directory"):
        run(archive(file_("x")), world.sentinel / "file1")
    with pytest.raises(ArchiveError, match="No such file"):
        run(archive(file_("x")), world.tmp / "nowhere")


# -- arbitrary archives --------------------------------------------------------------------

_NAMES = st.lists(
    st.sampled_from(["a", "b", "..", "", ".", "sentinel", "file1", "sub", "link-abs"]),
    min_size=1,
    max_size=4,
)


def _member(kind: str, parts: list[str], target: str, absolute: bool) -> Entry:
    name = ("/" if absolute else "") + "/".join(parts)
    if kind == "file":
        return file_(name, b"payload")
    if kind == "dir":
        return dir_(name)
    if kind == "symlink":
        return symlink(name, target)
    return hardlink(name, target)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    members=st.lists(
        st.tuples(
            st.sampled_from(["file", "dir", "symlink", "hardlink"]),
            _NAMES,
            st.sampled_from(["SENTINEL", "../sentinel", "/", "..", "a", "b/a", "SENTINEL/sub"]),
            st.booleans(),
        ),
        max_size=8,
    )
)
def test_arbitrary_archives_never_escape(
    members: list[tuple[str, list[str], str, bool]], world: World
) -> None:
    before = snapshot(world)
    entries = [
        _member(kind, parts, target.replace("SENTINEL", str(world.sentinel)), absolute)
        for kind, parts, target, absolute in members
    ]
    with tempfile.TemporaryDirectory(dir=world.dest) as scratch:
        try:
            run(archive(*entries), Path(scratch))
        except ArchiveError as exc:
            assert "\n" not in str(exc)
    assert snapshot(world) == before
