"""``rktcfg image list`` with 500 images, as a ratio to ``.venv/bin/python -c pass``.

Imports 500 small real ACIs into a temporary store, then times both commands (median of N,
interleaved). Target (issue 3): <= 4x. Usage: .venv/bin/python bench/image_list.py [--runs N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rktcfg.image.build import build_aci
from rktcfg.image.imports import import_aci_file
from rktcfg.image.manifest import host_os_arch
from rktcfg.store.images import ImageStore

VENV_BIN = Path(sys.executable).parent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--images", type=int, default=500)
    args = parser.parse_args()
    os_, arch = host_os_arch()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        rootfs = work / "rootfs"
        rootfs.mkdir()
        data = work / "data"
        with ImageStore(str(data)) as store:
            for i in range(args.images):
                (rootfs / "id").write_text(str(i))
                manifest = {
                    "acKind": "ImageManifest",
                    "acVersion": "0.8.11",
                    "name": f"example.com/app{i % 50}",
                    "labels": [
                        {"name": "version", "value": f"1.{i}"},
                        {"name": "os", "value": os_},
                        {"name": "arch", "value": arch},
                    ],
                }
                out = work / "img.aci"
                build_aci(str(rootfs), str(out), manifest)
                import_aci_file(store, str(out))
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": tmp,
            "XDG_CACHE_HOME": os.path.join(tmp, "cache"),
            "RKTCFG_SYSTEM_CONFIG": os.path.join(tmp, "etc"),
            "RKTCFG_DIR": str(data),
        }
        commands = {
            "python -c pass": [sys.executable, "-c", "pass"],
            "rktcfg image list": [str(VENV_BIN / "rktcfg"), "image", "list"],
        }
        for cmd in commands.values():
            subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, check=True)
        samples: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(args.runs):
            for name, cmd in commands.items():
                start = time.perf_counter()
                subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, check=True)
                samples[name].append(time.perf_counter() - start)
    base = statistics.median(samples["python -c pass"])
    listing = statistics.median(samples["rktcfg image list"])
    ratio = listing / base
    print(f"python -c pass:     {base * 1000:7.1f} ms")
    print(f"rktcfg image list:  {listing * 1000:7.1f} ms ({args.images} images)")
    ok = ratio <= 4
    print(f"ratio = {ratio:.2f}  (target <= 4: {'ok' if ok else 'MISSED'})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
