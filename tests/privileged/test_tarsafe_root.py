"""Safe tar extraction, the parts that need root: device nodes, owners, file capabilities.

The non-root behaviour (and the hostile-archive corpus) is in tests/unit/test_tarsafe.py.
"""

from __future__ import annotations

import errno
import io
import os
import stat
import tarfile
from pathlib import Path

import pytest

from rktcfg.image.tarsafe import ExtractReport, extract

# What `setcap cap_net_raw+ep` stores: VFS_CAP_REVISION_2, effective, permitted = CAP_NET_RAW.
CAP_NET_RAW = bytes.fromhex("0000000200200000000000000000000000000000")
UID, GID = 1234, 5678
MTIME = 1_600_000_000


def member(
    name: str,
    kind: bytes = tarfile.REGTYPE,
    *,
    data: bytes = b"",
    mode: int = 0o644,
    owner: tuple[int, int] = (UID, GID),
    linkname: str = "",
    dev: tuple[int, int] = (0, 0),
    pax: dict[str, str] | None = None,
) -> tuple[tarfile.TarInfo, bytes | None]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = mode
    info.uid, info.gid = owner
    info.mtime = MTIME
    info.linkname = linkname
    info.devmajor, info.devminor = dev
    if pax:
        info.pax_headers = pax
    if kind == tarfile.REGTYPE:
        info.size = len(data)
        return info, data
    return info, None


def run(
    dest: Path, *members: tuple[tarfile.TarInfo, bytes | None], **kwargs: object
) -> ExtractReport:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    buf.seek(0)
    with tarfile.open(fileobj=buf, mode="r|") as tar:
        return extract(tar, str(dest), **kwargs)  # type: ignore[arg-type]


@pytest.fixture
def dest(tmp_path: Path) -> Path:
    path = tmp_path / "dest"
    path.mkdir()
    return path


def capabilities_supported(directory: Path) -> bool:
    """Whether this file system takes a security.capability xattr at all."""
    probe = directory / "probe"
    probe.write_bytes(b"")
    try:
        os.setxattr(probe, "security.capability", CAP_NET_RAW)
    except OSError as exc:
        if exc.errno in (errno.EINVAL, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EPERM):
            return False
        raise
    finally:
        probe.unlink()
    return True


def test_device_nodes_created(dest: Path) -> None:
    report = run(
        dest,
        member("dev/null", tarfile.CHRTYPE, mode=0o666, owner=(0, 0), dev=(1, 3)),
        member("dev/loop0", tarfile.BLKTYPE, mode=0o660, owner=(0, 6), dev=(7, 0)),
    )
    null = os.lstat(dest / "dev" / "null")
    assert stat.S_ISCHR(null.st_mode)
    assert (os.major(null.st_rdev), os.minor(null.st_rdev)) == (1, 3)
    assert stat.S_IMODE(null.st_mode) == 0o666
    loop = os.lstat(dest / "dev" / "loop0")
    assert stat.S_ISBLK(loop.st_mode)
    assert (os.major(loop.st_rdev), os.minor(loop.st_rdev)) == (7, 0)
    assert (loop.st_gid, stat.S_IMODE(loop.st_mode)) == (6, 0o660)
    assert (report.others, report.warnings) == (2, [])
    with open(dest / "dev" / "null", "rb") as f:  # a working /dev/null
        assert f.read() == b""


def test_owners_kept(dest: Path) -> None:
    run(
        dest,
        member("srv", tarfile.DIRTYPE, mode=0o750),
        member("srv/data", data=b"d"),
        member("srv/link", tarfile.SYMTYPE, linkname="data", owner=(UID + 1, GID + 1)),
        member("srv/fifo", tarfile.FIFOTYPE, mode=0o600, owner=(UID + 2, GID + 2)),
        member("srv/hard", tarfile.LNKTYPE, linkname="srv/data", owner=(0, 0)),
    )

    def owner(rel: str) -> tuple[int, int]:
        st = os.lstat(dest / rel)
        return st.st_uid, st.st_gid

    assert owner("srv") == (UID, GID)
    assert owner("srv/data") == (UID, GID)
    assert owner("srv/link") == (UID + 1, GID + 1)  # lchown: the link, not its target
    assert owner("srv/fifo") == (UID + 2, GID + 2)
    assert owner("srv/hard") == (UID, GID)  # a hard link shares its target's inode
    assert stat.S_IMODE(os.lstat(dest / "srv").st_mode) == 0o750


def test_setuid_kept_with_owner_change(dest: Path) -> None:
    run(
        dest,
        member("bin/su", data=b"\x7fELF", mode=0o4755),
        member("bin/wall", data=b"\x7fELF", mode=0o2755),
        member("bin/both", data=b"\x7fELF", mode=0o6711),
    )
    for name, mode in (("su", 0o4755), ("wall", 0o2755), ("both", 0o6711)):
        st = os.lstat(dest / "bin" / name)
        assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (UID, GID, mode)


def test_capability_xattr_kept(dest: Path, tmp_path: Path) -> None:
    pax = {"SCHILY.xattr.security.capability": CAP_NET_RAW.decode("utf-8", "surrogateescape")}
    report = run(dest, member("bin/ping", data=b"\x7fELF", mode=0o755, pax=pax))
    ping = dest / "bin" / "ping"
    st = os.lstat(ping)
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (UID, GID, 0o755)
    if capabilities_supported(tmp_path):
        # set after chown (which would clear it) and kept
        assert os.getxattr(ping, "security.capability") == CAP_NET_RAW
        assert report.warnings == []
    else:
        assert len(report.warnings) == 1
        assert report.warnings[0].startswith("dropped security.capability of bin/ping: ")


def test_unprivileged_mode_as_root_changes_no_owner(dest: Path) -> None:
    pax = {"SCHILY.xattr.security.capability": CAP_NET_RAW.decode("utf-8", "surrogateescape")}
    report = run(
        dest,
        member("bin/ping", data=b"\x7fELF", mode=0o4755, pax=pax),
        member("dev/null", tarfile.CHRTYPE, mode=0o666, dev=(1, 3)),
        privileged=False,
    )
    st = os.lstat(dest / "bin" / "ping")
    assert (st.st_uid, st.st_gid) == (os.geteuid(), os.getegid())
    assert stat.S_IMODE(st.st_mode) == 0o4755
    assert "security.capability" not in os.listxattr(dest / "bin" / "ping")
    assert not os.path.lexists(dest / "dev" / "null")
    assert report.warnings == ["skipped device node dev/null: needs root"]
