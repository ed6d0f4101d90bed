"""Small images for tests: a root filesystem with the awkward cases, and a manifest."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from rktcfg.image.manifest import host_os_arch

HOST_OS, HOST_ARCH = host_os_arch()


def manifest(name: str = "example.com/hello", version: str = "1.0", **extra: Any) -> dict[str, Any]:
    labels = [
        {"name": "version", "value": version},
        {"name": "os", "value": HOST_OS},
        {"name": "arch", "value": HOST_ARCH},
    ]
    doc: dict[str, Any] = {
        "acKind": "ImageManifest",
        "acVersion": "0.8.11",
        "name": name,
        "labels": labels,
        "app": {"exec": ["/bin/hello"], "user": "0", "group": "0"},
    }
    doc.update(extra)
    return doc


def make_rootfs(root: Path, payload: bytes = b"hello\n") -> Path:
    (root / "bin").mkdir(parents=True)
    (root / "etc").mkdir()
    (root / "bin" / "hello").write_bytes(payload)
    (root / "bin" / "hello").chmod(0o4755)
    (root / "etc" / "motd").write_text("welcome\n")
    os.link(root / "etc" / "motd", root / "etc" / "motd.link")
    (root / "etc" / "localtime").symlink_to("/usr/share/zoneinfo/UTC")
    return root


def read_all(fd: int) -> bytes:
    """Everything readable from a pseudo-terminal's primary side until its other side closes."""
    drawn = b""
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # EIO once the secondary side is closed
            break
        if not chunk:
            break
        drawn += chunk
    os.close(fd)
    return drawn
