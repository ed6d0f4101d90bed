"""Pod start: ``rktcfg run --stage1 fly`` of /bin/true vs ``chroot ROOTFS /bin/true``.

Both in one run, median of N, interleaved; also the supervisor's resident memory while a pod
runs (target <= 12 MB). Needs root (fly mounts and chroots). Usage:
.venv/bin/python bench/pod_start.py [--runs N]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rktcfg.image.build import build_aci
from rktcfg.image.manifest import host_os_arch

RKTCFG = str(Path(sys.executable).parent / "rktcfg")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("pod_start: needs root (the fly flavor mounts and chroots)")
        return 1
    os_, arch = host_os_arch()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        root = work / "rootfs"
        (root / "bin").mkdir(parents=True)
        (root / "bin" / "busybox").write_bytes(Path("/bin/busybox").read_bytes())
        (root / "bin" / "busybox").chmod(0o755)
        for applet in ("true", "sleep"):
            (root / "bin" / applet).symlink_to("busybox")
        manifest = {
            "acKind": "ImageManifest",
            "acVersion": "0.8.11",
            "name": "example.com/bench",
            "labels": [{"name": "os", "value": os_}, {"name": "arch", "value": arch}],
            "app": {"exec": ["/bin/true"], "user": "0", "group": "0"},
        }
        build_aci(str(root), str(work / "b.aci"), manifest)
        data = str(work / "data")
        env = {**os.environ, "XDG_CACHE_HOME": str(work / "cache")}
        base = [RKTCFG, "--dir", data]
        subprocess.run(
            [*base, "fetch", str(work / "b.aci")], env=env, check=True, stdout=subprocess.DEVNULL
        )
        commands = {
            "chroot ROOTFS /bin/true": ["chroot", str(root), "/bin/true"],
            "rktcfg run --stage1 fly": [*base, "run", "--stage1", "fly", "example.com/bench"],
        }
        samples: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(args.runs):
            for name, cmd in commands.items():
                start = time.perf_counter()
                subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL)
                samples[name].append(time.perf_counter() - start)
        uuid = subprocess.run(
            [
                *base,
                "run",
                "-d",
                "--stage1",
                "fly",
                "example.com/bench",
                "--exec",
                "/bin/sleep",
                "--",
                "30",
            ],
            env=env,
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
        status = json.loads(
            subprocess.run(
                [*base, "status", uuid, "-o", "json"],
                env=env,
                check=True,
                capture_output=True,
                text=True,
            ).stdout
        )
        with open(f"/proc/{status['pid']}/status", encoding="utf-8") as handle:
            rss_kb = next(int(line.split()[1]) for line in handle if line.startswith("VmRSS:"))
        subprocess.run(
            [*base, "stop", "--force", uuid], env=env, check=True, stdout=subprocess.DEVNULL
        )
        subprocess.run(
            [*base, "status", uuid, "--wait=10s"], env=env, check=True, stdout=subprocess.DEVNULL
        )
        subprocess.run(
            [*base, "gc", "--grace-period", "0"], env=env, check=True, stdout=subprocess.DEVNULL
        )
    chroot = statistics.median(samples["chroot ROOTFS /bin/true"])
    run = statistics.median(samples["rktcfg run --stage1 fly"])
    print(f"chroot ROOTFS /bin/true:   {chroot * 1000:8.1f} ms")
    print(f"rktcfg run --stage1 fly:   {run * 1000:8.1f} ms   ratio {run / chroot:.1f}x")
    ok = rss_kb <= 12 * 1024
    print(f"supervisor RSS: {rss_kb / 1024:.1f} MiB (target <= 12 MiB: {'ok' if ok else 'MISSED'})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
