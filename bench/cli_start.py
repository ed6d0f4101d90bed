"""Start-up cost of the rktcfg command, as ratios to a bare interpreter start, one run.

Baseline: ``.venv/bin/python -c pass`` (the real interpreter; ``python3`` on PATH may be a
pyenv shim that adds ~40 ms). Median of N runs each, in the same process, interleaved so that
machine noise hits every command alike. Targets (issue 2):

  rktcfg --version            <= 1.5 x baseline
  rktcfg config (warm cache)  <= 3.0 x baseline

``rktcfg config`` with the cache off is shown for comparison. Exit status 1 if a target is
missed. Usage: .venv/bin/python bench/cli_start.py [--runs N]
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

VENV_BIN = Path(sys.executable).parent


def timed(cmd: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, check=True)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": tmp,
            "XDG_CACHE_HOME": os.path.join(tmp, "cache"),
            "XDG_CONFIG_HOME": os.path.join(tmp, "config"),
            "RKTCFG_SYSTEM_CONFIG": os.path.join(tmp, "etc"),
        }
        cold_env = {**env, "RKTCFG_NO_CACHE": "1"}
        rktcfg = str(VENV_BIN / "rktcfg")
        commands = {
            "python -c pass": ([sys.executable, "-c", "pass"], env),
            "rktcfg --version": ([rktcfg, "--version"], env),
            "rktcfg config": ([rktcfg, "config"], env),
            "rktcfg config (no cache)": ([rktcfg, "config"], cold_env),
        }
        for cmd, cmd_env in commands.values():  # warm the page cache and the config cache
            timed(cmd, cmd_env)
        samples: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(args.runs):
            for name, (cmd, cmd_env) in commands.items():
                samples[name].append(timed(cmd, cmd_env))
    medians = {name: statistics.median(values) for name, values in samples.items()}
    base = medians["python -c pass"]
    targets = {"rktcfg --version": 1.5, "rktcfg config": 3.0}
    failed = False
    print(f"{'command':<28} {'median ms':>10} {'ratio':>7}  target")
    for name, median in medians.items():
        ratio = median / base
        target = targets.get(name)
        verdict = ""
        if target is not None:
            ok = ratio <= target
            failed |= not ok
            verdict = f"<= {target}  {'ok' if ok else 'MISSED'}"
        print(f"{name:<28} {median * 1000:>10.1f} {ratio:>7.2f}  {verdict}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
