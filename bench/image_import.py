"""Import throughput: importing a ~200 MB ACI into the store vs ``tar -x`` of the same tar.

Both read the same uncompressed tar from the page cache and write to the same file system;
the import hashes it (SHA-512), writes the blob, checks the layout and manifest and commits
the record. Median of N runs each, interleaved. Target (issue 3): import >= 0.7x tar's
throughput. Usage: .venv/bin/python bench/image_import.py [--runs N] [--size-mb M]
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
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


def make_rootfs(root: Path, total_mb: int) -> None:
    rng = random.Random(42)
    written = 0
    index = 0
    while written < total_mb << 20:
        size = rng.choice([4 << 10, 64 << 10, 256 << 10, 1 << 20, 8 << 20])
        directory = root / f"d{index % 40:02d}"
        directory.mkdir(parents=True, exist_ok=True)
        (directory / f"f{index:05d}").write_bytes(rng.randbytes(size))
        written += size
        index += 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--size-mb", type=int, default=200)
    args = parser.parse_args()
    os_, arch = host_os_arch()
    manifest = {
        "acKind": "ImageManifest",
        "acVersion": "0.8.11",
        "name": "example.com/bench",
        "labels": [{"name": "os", "value": os_}, {"name": "arch", "value": arch}],
    }
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as tmp:
        work = Path(tmp)
        make_rootfs(work / "rootfs", args.size_mb)
        aci = work / "bench.aci"
        build_aci(str(work / "rootfs"), str(aci), manifest)
        size = aci.stat().st_size
        tar_times, import_times = [], []
        for run in range(args.runs):
            target = work / f"tar-{run}"
            target.mkdir()
            start = time.perf_counter()
            subprocess.run(["tar", "-xf", str(aci), "-C", str(target)], check=True)
            os.sync()
            tar_times.append(time.perf_counter() - start)
            shutil.rmtree(target)

            data = work / f"data-{run}"
            start = time.perf_counter()
            with ImageStore(str(data)) as store:
                import_aci_file(store, str(aci))
            os.sync()
            import_times.append(time.perf_counter() - start)
            shutil.rmtree(data)
    tar_t, imp_t = statistics.median(tar_times), statistics.median(import_times)
    mb = size / (1 << 20)
    ratio = tar_t / imp_t  # throughput of import relative to tar
    print(f"ACI size: {mb:.0f} MiB, {args.runs} runs each (median)")
    print(f"tar -x:          {tar_t:6.2f} s  {mb / tar_t:7.1f} MiB/s")
    print(f"rktcfg import:   {imp_t:6.2f} s  {mb / imp_t:7.1f} MiB/s")
    ok = ratio >= 0.7
    verdict = "ok" if ok else "MISSED"
    print(f"import throughput / tar throughput = {ratio:.2f}  (target >= 0.7: {verdict})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
