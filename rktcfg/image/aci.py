"""The ACI archive format: compression by magic bytes, the image ID, and the archive layout.

An ACI is a tar with exactly two top-level names, ``manifest`` (a regular file, JSON) and
``rootfs`` (a directory), optionally compressed with gzip, bzip2 or xz (detected by magic
bytes, never by extension). Its ID is ``sha512-`` + the SHA-512 of the *uncompressed* tar.
"""

from __future__ import annotations

import bz2
import gzip
import hashlib
import io
import lzma
import tarfile
import zlib
from typing import IO, BinaryIO

from rktcfg.errors import ArchiveError, ImageError

CHUNK = 1 << 20
#: Refuse archives whose uncompressed tar is larger than this (a decompression bomb).
DEFAULT_MAX_TAR_BYTES = 8 << 30

_MAGIC = (
    (b"\x1f\x8b", "gzip"),
    (b"BZh", "bzip2"),
    (b"\xfd7zXZ\x00", "xz"),
)


def detect_compression(head: bytes) -> str:
    """``gzip``, ``bzip2``, ``xz`` or ``tar`` from the first 512 bytes; ImageError otherwise."""
    for magic, name in _MAGIC:
        if head.startswith(magic):
            return name
    if len(head) >= 262 and head[257:262] == b"ustar":
        return "tar"
    raise ImageError("not an image archive (neither tar nor gzip, bzip2 or xz compressed)")


def open_decompressed(raw: BinaryIO) -> io.BufferedIOBase | BinaryIO:
    """A reader of the uncompressed tar stream of an (optionally compressed) archive."""
    head = raw.read(512)
    raw.seek(-len(head), 1)
    kind = detect_compression(head)
    if kind == "gzip":
        return gzip.GzipFile(fileobj=raw, mode="rb")
    if kind == "bzip2":
        return bz2.BZ2File(raw, mode="rb")
    if kind == "xz":
        return lzma.LZMAFile(raw, mode="rb")
    return raw


DECOMPRESS_ERRORS = (OSError, EOFError, zlib.error, lzma.LZMAError, ValueError)


def copy_hashing(
    source: io.BufferedIOBase | BinaryIO,
    target: IO[bytes],
    *,
    max_bytes: int = DEFAULT_MAX_TAR_BYTES,
) -> tuple[str, int]:
    """Copy ``source`` to ``target``; return the image ID of what was copied and its size.

    SHA-512 runs at about the speed of the copy itself, and hashlib releases the GIL, so a
    second thread hashes each chunk while this one writes it: the import costs the slower of
    the two, not their sum (bench/image_import.py).
    """
    import queue
    import threading

    digest = hashlib.sha512()
    chunks: queue.Queue[bytes | None] = queue.Queue(maxsize=8)

    def hash_chunks() -> None:
        while (chunk := chunks.get()) is not None:
            digest.update(chunk)

    hasher = threading.Thread(target=hash_chunks, name="rktcfg-sha512", daemon=True)
    hasher.start()
    size = 0
    try:
        while True:
            try:
                chunk = source.read(CHUNK)
            except DECOMPRESS_ERRORS as exc:
                raise ArchiveError(f"truncated or corrupt archive: {exc}") from None
            if not chunk:
                break
            size += len(chunk)
            if size > max_bytes:
                raise ArchiveError(
                    f"uncompressed image is larger than the limit of {max_bytes} bytes"
                )
            chunks.put(chunk)
            target.write(chunk)
    finally:
        chunks.put(None)
        hasher.join()
    return "sha512-" + digest.hexdigest(), size


def hash_file(path: str) -> tuple[str, int]:
    """The image ID and size of an uncompressed tar on disk."""
    digest = hashlib.sha512()
    size = 0
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return "sha512-" + digest.hexdigest(), size


def normalise_member_name(name: str) -> str:
    """Member names as the layout rules see them: no ``./``, no leading or doubled slashes."""
    parts = [p for p in name.split("/") if p not in ("", ".")]
    return "/".join(parts)


def read_layout(tar_path: str, *, what: str) -> bytes:
    """Check an uncompressed ACI's layout and return its manifest bytes.

    Reads headers only (file data is skipped), so it costs little even for large images.
    """
    manifest: bytes | None = None
    seen: set[str] = set()
    has_rootfs = False
    try:
        with tarfile.open(tar_path, mode="r:") as tar:
            for member in tar:
                name = normalise_member_name(member.name)
                if name in seen:
                    raise ImageError(f"{what}: duplicate entry {name!r} in the archive")
                seen.add(name)
                if name == "manifest":
                    if not member.isreg():
                        raise ImageError(f"{what}: manifest is not a regular file")
                    if member.size > 1 << 20:
                        raise ImageError(f"{what}: manifest is larger than 1 MiB")
                    handle = tar.extractfile(member)
                    assert handle is not None
                    manifest = handle.read()
                elif name == "rootfs":
                    if not member.isdir():
                        raise ImageError(f"{what}: rootfs is not a directory")
                    has_rootfs = True
                elif name.startswith("rootfs/"):
                    has_rootfs = True
                else:
                    raise ImageError(
                        f"{what}: not an ACI: top-level entry {name!r} "
                        "(only manifest and rootfs/ are allowed)"
                    )
    except tarfile.TarError as exc:
        raise ArchiveError(f"{what}: truncated or corrupt archive: {exc}") from None
    if manifest is None:
        raise ImageError(f"{what}: not an ACI: the archive has no manifest")
    if not has_rootfs:
        raise ImageError(f"{what}: not an ACI: the archive has no rootfs/")
    return manifest
