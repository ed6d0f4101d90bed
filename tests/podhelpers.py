"""What the pod tests share: the rktcfg CLI as a process, and the mounts below a path."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

BUSYBOX = Path("/bin/busybox")
RKTCFG = str(Path(sys.executable).parent / "rktcfg")


def rktcfg(
    data: str, *args: str, check: bool = True, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """``rktcfg --dir DATA ARGS...``; with ``check`` a non-zero exit fails the test."""
    result = subprocess.run(
        [RKTCFG, "--dir", data, *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and result.returncode != 0:
        raise AssertionError(f"rktcfg {' '.join(args)}: {result.returncode}\n{result.stderr}")
    return result


def busybox_rootfs(root: Path) -> Path:
    """A root filesystem with every busybox applet in /bin, and root and user 1000."""
    (root / "bin").mkdir(parents=True)
    for directory in ("etc", "mnt", "root", "srv"):
        (root / directory).mkdir()
    (root / "tmp").mkdir(mode=0o1777)
    (root / "bin" / "busybox").write_bytes(BUSYBOX.read_bytes())
    (root / "bin" / "busybox").chmod(0o755)
    applets = subprocess.run(
        [str(BUSYBOX), "--list"], capture_output=True, text=True, check=True
    ).stdout.split()
    for applet in applets:
        if applet != "busybox" and "/" not in applet:
            (root / "bin" / applet).symlink_to("busybox")
    (root / "etc" / "passwd").write_text(
        "root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000::/:/bin/sh\n"
    )
    (root / "etc" / "group").write_text("root:x:0:\nuser:x:1000:\n")
    return root


def mounts_below(path: str) -> list[str]:
    real = os.path.realpath(path)
    with open("/proc/self/mountinfo", encoding="utf-8") as handle:
        points = [line.split()[4] for line in handle]
    return [p for p in points if p == real or p.startswith(real + "/")]


def collect_everything(data: str) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    """After a test: force-stop what it left running, gc every pod, and unmount anything
    still below ``data`` (never leave host binds below a directory pytest will delete).
    Returns gc's result and the mounts that were left (a test's teardown asserts none)."""
    import json
    import time

    for pod in json.loads(rktcfg(data, "list", "-o", "json").stdout):
        if pod["state"] == "running":
            rktcfg(data, "stop", "--force", pod["uuid"], check=False)
    deadline = time.time() + 15
    while time.time() < deadline:
        states = [p["state"] for p in json.loads(rktcfg(data, "list", "-o", "json").stdout)]
        if "running" not in states:
            break
        time.sleep(0.1)
    gc = rktcfg(data, "gc", "--grace-period", "0", "--expire-prepared", "0", check=False)
    left = mounts_below(data)
    if left:
        from rktcfg.stage1 import linux

        linux.unmount_below(data)
    return gc, left
