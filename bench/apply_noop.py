"""apply with nothing to do: 100 pod files already applied, ``rktcfg apply DIR`` again,
against ``python -c pass``, in one run (median of N); target: the whole apply <= 0.5 s.

Also how planning grows with the number of pods: loading N pod files and computing the plan
against an observed store in which all N are applied and up to date (``simulate``), for N =
10, 100, 1000 (this part is in-process and pure, so it needs no real pods), and the time per
pod, which should stay flat (linear growth). Needs root (it runs 100 real pods, which exit
at once). Usage: .venv/bin/python bench/apply_noop.py [--runs N] [--pods N]
"""

from __future__ import annotations

import argparse
import compileall
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

RKTCFG = str(Path(sys.executable).parent / "rktcfg")
POD = """apiVersion: rktcfg/v1
kind: Pod
metadata: {{name: pod-{n}}}
spec:
  apps:
    - name: main
      image: example.com/busybox:1.35
      exec: [/bin/true]
      isolators: {{memory: 16Mi}}
"""


def _write_pods(directory: Path, count: int) -> None:
    directory.mkdir(parents=True)
    for n in range(count):
        (directory / f"pod-{n:04d}.yaml").write_text(POD.format(n=n))


def _scaling(work: Path) -> list[tuple[int, float, float]]:
    """(pods, load seconds, plan seconds) with every pod applied and up to date."""
    from rktcfg.plan.planner import compute_plan, simulate
    from rktcfg.spec import load

    out = []
    for count in (10, 100, 1000):
        directory = work / f"scale-{count}"
        _write_pods(directory, count)
        images = {"example.com/busybox:1.35": "sha512-" + "a" * 128}
        start = time.perf_counter()
        loaded = load([str(directory)])
        loaded_at = time.perf_counter()
        empty = {"pods": [], "images": images, "files": {}}
        first = compute_plan(loaded.pods, empty, apply_set=str(directory), prune=False, now=0)
        observed = simulate(empty, first, loaded.pods, now=0)
        timings = []
        for _ in range(3):
            begin = time.perf_counter()
            plan = compute_plan(loaded.pods, observed, apply_set=str(directory), prune=True, now=0)
            timings.append(time.perf_counter() - begin)
        assert not plan.changed(), "a simulated apply must leave nothing to do"
        out.append((count, loaded_at - start, min(timings)))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--pods", type=int, default=100)
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("apply_noop: needs root (it runs real pods)")
        return 1
    compileall.compile_dir(str(ROOT / "rktcfg"), quiet=1)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        env = {**os.environ, "XDG_CACHE_HOME": str(work / "cache")}
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        data = str(work / "data")
        base = [RKTCFG, "--dir", data]
        aci = work / "busybox.aci"
        subprocess.run(
            [str(ROOT / "examples/images/busybox/build"), str(aci), RKTCFG],
            check=True,
            capture_output=True,
        )
        subprocess.run([*base, "fetch", str(aci)], env=env, check=True, capture_output=True)
        pods = work / "pods"
        _write_pods(pods, args.pods)
        start = time.perf_counter()
        subprocess.run([*base, "apply", str(pods)], env=env, check=True, capture_output=True)
        print(f"first apply of {args.pods} pods: {time.perf_counter() - start:.1f} s")
        commands = {
            "python -c pass": [sys.executable, "-c", "pass"],
            f"rktcfg apply ({args.pods} pods, no changes)": [*base, "apply", str(pods)],
        }
        samples: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(args.runs):
            for name, cmd in commands.items():
                begin = time.perf_counter()
                result = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True)
                samples[name].append(time.perf_counter() - begin)
                if "apply" in name:
                    assert result.stdout.strip() == "no changes", result.stdout
        baseline = statistics.median(samples["python -c pass"])
        for name, values in samples.items():
            value = statistics.median(values)
            print(f"{name:40s} {value * 1000:8.1f} ms   {value / baseline:5.1f}x python")
        apply_s = statistics.median(samples[f"rktcfg apply ({args.pods} pods, no changes)"])
        verdict = "ok" if apply_s <= 0.5 else "MISSED"
        print(f"no-op apply: {apply_s:.3f} s (target <= 0.5 s: {verdict})")
        subprocess.run([*base, "delete", str(pods)], env=env, check=True, capture_output=True)
        subprocess.run(
            [*base, "gc", "--grace-period", "0"], env=env, check=True, capture_output=True
        )
        print("planning, all pods up to date (load the files; compute the plan):")
        for count, load_s, plan_s in _scaling(work):
            per = (load_s + plan_s) / count * 1e6
            print(
                f"  {count:5d} pods: load {load_s * 1000:7.1f} ms, plan {plan_s * 1000:7.1f} ms"
                f"   {per:6.0f} us per pod"
            )
    return 0 if verdict == "ok" else 1


if __name__ == "__main__":
    sys.exit(main())
