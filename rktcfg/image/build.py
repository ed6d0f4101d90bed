"""Build an ACI from a root filesystem directory, deterministically (like ``actool build``).

The same directory and manifest give byte-identical archives, so the same image ID:
entries are sorted, owners are root (uid/gid 0, no names) unless ``keep_owner``, mtimes are
clamped to ``SOURCE_DATE_EPOCH`` when it is set, and the manifest entry's mtime is that epoch
(or else the newest mtime in the tree). Hard links are kept as links; setuid bits, devices,
fifos and ``security.capability`` xattrs are kept.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import tarfile
from io import BytesIO
from typing import Any

from rktcfg.errors import ImageError
from rktcfg.fsutil import AtomicFile
from rktcfg.image.manifest import image_manifest_to_json, parse_image_manifest

CAPABILITY_XATTR = "security.capability"


class _Entry:
    __slots__ = ("arcname", "path", "st")

    def __init__(self, arcname: str, path: str, st: os.stat_result) -> None:
        self.arcname = arcname
        self.path = path
        self.st = st


def _walk(rootfs: str) -> list[_Entry]:
    entries = [_Entry("rootfs", rootfs, os.lstat(rootfs))]
    for directory, dirs, files in os.walk(rootfs):
        dirs.sort()
        rel_dir = os.path.relpath(directory, rootfs)
        names = sorted([*dirs, *files])
        for name in names:
            path = os.path.join(directory, name)
            rel = name if rel_dir == "." else f"{rel_dir}/{name}"
            entries.append(_Entry(f"rootfs/{rel}", path, os.lstat(path)))
    entries.sort(key=lambda e: os.fsencode(e.arcname))
    return entries


def build_aci(
    rootfs: str,
    output: str,
    manifest: dict[str, Any],
    *,
    keep_owner: bool = False,
    source_date_epoch: int | None = None,
) -> str:
    """Write the ACI to ``output`` (atomically) and return its image ID.

    ``manifest`` is validated first; an invalid one raises ValidationError and writes nothing.
    """
    if not os.path.isdir(rootfs):
        raise ImageError(f"{rootfs}: not a directory")
    parsed = parse_image_manifest(manifest, source="manifest")
    manifest_bytes = (json.dumps(image_manifest_to_json(parsed), indent=4) + "\n").encode()
    entries = _walk(rootfs)

    def clamp(mtime: float) -> int:
        value = int(mtime)
        return min(value, source_date_epoch) if source_date_epoch is not None else value

    if source_date_epoch is not None:
        manifest_mtime = source_date_epoch
    else:
        manifest_mtime = max(clamp(e.st.st_mtime) for e in entries)
    digest = hashlib.sha512()
    with AtomicFile(output) as raw:
        hashing = _HashingWriter(raw, digest)
        with tarfile.open(fileobj=hashing, mode="w|", format=tarfile.PAX_FORMAT) as tar:  # type: ignore[call-overload]
            info = tarfile.TarInfo("manifest")
            info.size = len(manifest_bytes)
            info.mode = 0o644
            info.mtime = manifest_mtime
            tar.addfile(info, BytesIO(manifest_bytes))
            links: dict[tuple[int, int], str] = {}
            for entry in entries:
                _add(tar, entry, links, keep_owner, clamp)
    return "sha512-" + digest.hexdigest()


class _HashingWriter:
    """A write-only file that hashes what passes through (tarfile streams into it)."""

    def __init__(self, raw: Any, digest: Any) -> None:
        self.raw = raw
        self.digest = digest

    def write(self, data: bytes) -> int:
        self.digest.update(data)
        written: int = self.raw.write(data)
        return written

    def close(self) -> None:
        return None


def _add(
    tar: tarfile.TarFile,
    entry: _Entry,
    links: dict[tuple[int, int], str],
    keep_owner: bool,
    clamp: Any,
) -> None:
    st = entry.st
    info = tarfile.TarInfo(entry.arcname)
    info.mode = stat.S_IMODE(st.st_mode)
    info.mtime = clamp(st.st_mtime)
    if keep_owner:
        info.uid, info.gid = st.st_uid, st.st_gid
    info.uname = info.gname = ""
    mode = st.st_mode
    if not stat.S_ISDIR(mode) and st.st_nlink > 1:
        key = (st.st_dev, st.st_ino)
        if key in links:
            info.type = tarfile.LNKTYPE
            info.linkname = links[key]
            tar.addfile(info)
            return
        links[key] = entry.arcname
    try:
        capability = os.getxattr(entry.path, CAPABILITY_XATTR, follow_symlinks=False)
    except OSError:
        capability = None
    if capability is not None:
        info.pax_headers = {
            "SCHILY.xattr." + CAPABILITY_XATTR: capability.decode("latin-1"),
        }
    if stat.S_ISREG(mode):
        info.size = st.st_size
        with open(entry.path, "rb") as handle:
            tar.addfile(info, handle)
        return
    if stat.S_ISDIR(mode):
        info.type = tarfile.DIRTYPE
    elif stat.S_ISLNK(mode):
        info.type = tarfile.SYMTYPE
        info.linkname = os.readlink(entry.path)
    elif stat.S_ISFIFO(mode):
        info.type = tarfile.FIFOTYPE
    elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        info.type = tarfile.CHRTYPE if stat.S_ISCHR(mode) else tarfile.BLKTYPE
        info.devmajor, info.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
    else:
        return  # sockets cannot be archived
    tar.addfile(info)
