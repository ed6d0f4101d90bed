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
