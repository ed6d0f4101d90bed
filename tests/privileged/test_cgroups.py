"""rktcfg.isolators.cgroups against this machine's real cgroups, as root.

Every pod cgroup here is uniquely named and made below this process's own cgroup in each
hierarchy; the ``pods`` fixture kills the processes a test started and removes the cgroups,
whatever the test did. The fake-tree tests are in tests/unit/test_cgroups_tree.py.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from conftest import require

from rktcfg.isolators import cgroups
from rktcfg.isolators.cgroups import Driver, Layout
from rktcfg.isolators.resolve import cli_isolators, resolve


class Pods:
    """Pod cgroups and processes made by one test, all undone at its end."""

    def __init__(self) -> None:
        self.drivers: list[Driver] = []
        self.processes: list[subprocess.Popen[bytes]] = []
        self.layout = cgroups.detect()

    def make(self, apps: Sequence[str], layout: Layout | None = None) -> Driver:
        name = f"rktcfg-test-{uuid.uuid4().hex}"
        driver = cgroups.driver_for(cgroups.plan(layout or self.layout, name, apps))
        self.drivers.append(driver)
        return driver

    def start(self, driver: Driver, app: str, argv: Sequence[str]) -> subprocess.Popen[bytes]:
        files = driver.join_files(app)
        process = subprocess.Popen(argv, preexec_fn=lambda: cgroups.join(files))
        self.processes.append(process)
        return process

    def cleanup(self) -> list[str]:
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGKILL)
            process.wait()
        left: list[str] = []
        for driver in self.drivers:
            left += driver.remove(timeout=5.0)
        return left


@pytest.fixture
def pods() -> Iterator[Pods]:
    made = Pods()
    try:
        yield made
    finally:
        left = made.cleanup()
        assert left == [], f"cgroups left behind: {left}"
        for driver in made.drivers:
            for directory in driver.plan["pod"].values():
                assert not os.path.exists(directory), directory


def proc_cgroups(pid: int) -> dict[str, str]:
    return cgroups.own_cgroups(f"/proc/{pid}/cgroup")


def expected_cgroup(own: dict[str, str], hierarchy: str, *parts: str) -> str:
    key = "" if hierarchy == cgroups.UNIFIED else hierarchy
    return os.path.normpath(os.path.join(own[key], *parts))


def knob(directory: str, name: str) -> str:
    return Path(directory, name).read_text().strip()


def test_this_machine_is_what_the_tests_expect() -> None:
    layout = cgroups.detect()
    require(layout.version in ("v1", "hybrid"), f"cgroup v1 controllers (got {layout.version})")
    assert {"cpu", "cpuacct", "memory", "pids", "name=systemd"} <= set(layout.v1)
    if layout.unified is not None:
        assert cgroups._statfs_type(layout.unified) == cgroups.CGROUP2_MAGIC
    assert cgroups._statfs_type("/sys/fs/cgroup") != cgroups.CGROUP2_MAGIC


def test_v1_limits_join_and_remove(pods: Pods) -> None:
    require(pods.layout.version in ("v1", "hybrid"), "cgroup v1 controllers")
    own = cgroups.own_cgroups()
    own_memory = os.path.join(pods.layout.v1["memory"], own["memory"].lstrip("/"))
    own_limit_before = knob(own_memory, "memory.limit_in_bytes")
    isolation = resolve(
        [[{"name": "rktcfg/pids", "value": 20}], cli_isolators("900m", "42Mi", None, None)],
        where=["pod file", "command line"],
    )
    driver = pods.make(["web", "db"])
    made = driver.plan
    assert driver.create() == []
    for directory in [*made["pod"].values(), *made["init"].values()]:
        assert os.path.isdir(directory)
    assert driver.apply("web", isolation.limits.as_dict()) == []

    web = made["apps"]["web"]
    assert knob(web["memory"], "memory.limit_in_bytes") == "44040192"
    if os.path.exists(os.path.join(web["memory"], "memory.memsw.limit_in_bytes")):
        assert knob(web["memory"], "memory.memsw.limit_in_bytes") == "44040192"
    assert knob(web["cpu"], "cpu.cfs_quota_us") == "90000"
    assert knob(web["cpu"], "cpu.cfs_period_us") == "100000"
    assert knob(web["cpu"], "cpu.shares") == "921"
    assert knob(web["pids"], "pids.max") == "20"
    assert knob(made["apps"]["db"]["pids"], "pids.max") == "max"  # another app: untouched

    process = pods.start(driver, "web", ["sleep", "30"])
    seen = proc_cgroups(process.pid)
    name = os.path.basename(made["pod"]["memory"])
    for hierarchy in web:
        key = "" if hierarchy == cgroups.UNIFIED else hierarchy
        assert seen[key] == expected_cgroup(own, hierarchy, name, "web")
        procs = Path(web[hierarchy], "cgroup.procs").read_text().split()
        assert str(process.pid) in procs
    assert proc_cgroups(os.getpid()) == own  # the test process itself did not move

    # busy while the process lives: nothing is killed, and remove says what is left
    left = driver.remove(timeout=0.3)
    assert any(entry.startswith(f"{web['memory']}: ") for entry in left)
    assert process.poll() is None
    process.kill()
    process.wait()
    assert driver.remove(timeout=5.0) == []
    for directory in made["pod"].values():
        assert not os.path.exists(directory)
    assert knob(own_memory, "memory.limit_in_bytes") == own_limit_before


def test_v1_raising_a_memory_limit_writes_memsw_first(pods: Pods) -> None:
    require(pods.layout.version in ("v1", "hybrid"), "cgroup v1 controllers")
    driver = pods.make(["web"])
    driver.create()
    memory = driver.plan["apps"]["web"]["memory"]
    require(
        os.path.exists(os.path.join(memory, "memory.memsw.limit_in_bytes")),
        "memory.memsw.* (swap accounting)",
    )
    driver.apply("web", {"memory_limit_bytes": 44040192})
    driver.apply("web", {"memory_limit_bytes": 100 * 2**20})
    assert knob(memory, "memory.limit_in_bytes") == str(100 * 2**20)
    assert knob(memory, "memory.memsw.limit_in_bytes") == str(100 * 2**20)
    driver.apply("web", {"memory_limit_bytes": 50 * 2**20})  # and lowering again
    assert knob(memory, "memory.limit_in_bytes") == str(50 * 2**20)
    assert knob(memory, "memory.memsw.limit_in_bytes") == str(50 * 2**20)


def test_v1_oom_kill_is_counted(pods: Pods) -> None:
    require(pods.layout.version in ("v1", "hybrid"), "cgroup v1 controllers")
    driver = pods.make(["hog"])
    driver.create()
    driver.apply("hog", {"memory_limit_bytes": 20 * 10**6})
    assert driver.oom_kills("hog") == 0
    hog = pods.start(driver, "hog", [sys.executable, "-I", "-S", "-c", "b = b'x' * (60 << 20)"])
    assert hog.wait(timeout=30) == -signal.SIGKILL
    assert driver.oom_kills("hog") >= 1


def test_v2_unified_create_join_remove(pods: Pods) -> None:
    require(pods.layout.unified is not None, "a cgroup2 mount")
    unified = pods.layout.unified
    assert unified is not None
    own = cgroups.own_cgroups()
    v2 = Layout(version="v2", unified=unified, v2_controllers=pods.layout.v2_controllers)
    driver = pods.make(["web"], v2)
    made = driver.plan
    assert list(made["pod"]) == [cgroups.UNIFIED]
    warnings = driver.create()
    pod = made["pod"][cgroups.UNIFIED]
    web = made["apps"]["web"][cgroups.UNIFIED]
    assert os.path.isdir(made["init"][cgroups.UNIFIED]) and os.path.isdir(web)
    offered = knob(web, "cgroup.controllers").split()
    limits = {"cpu_limit_millis": 900, "cpu_request_millis": 900, "memory_limit_bytes": 44040192}
    expected = [
        f"{isolator} isolator set but the {controller} controller is not available, skipping"
        for isolator, controller in (
            ("resource/cpu", "cpu"),
            ("resource/memory", "memory"),
            ("rktcfg/pids", "pids"),
        )
        if controller not in offered
    ]
    assert driver.apply("web", {**limits, "pids": 20}) == expected
    if pods.layout.version == "hybrid":
        # This machine: the cgroup2 mount offers no cpu, memory or pids (only hugetlb).
        assert warnings == []
        assert len(expected) == 3
        assert knob(pod, "cgroup.subtree_control") == ""

    process = pods.start(driver, "web", ["sleep", "30"])
    name = os.path.basename(pod)
    assert proc_cgroups(process.pid)[""] == expected_cgroup(own, cgroups.UNIFIED, name, "web")
    assert driver.oom_kills("web") == 0
    process.kill()
    process.wait()
    assert driver.remove(timeout=5.0) == []
    assert not os.path.exists(pod)
