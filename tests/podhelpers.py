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
