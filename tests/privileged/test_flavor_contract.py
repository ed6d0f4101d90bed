"""One contract, every flavor: what the supervisor and the pod library may rely on.

The fake flavor (no root, no chroot) and fly run the same cases, so the fake used by
planner and executor tests cannot drift from the real flavors.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from imagehelpers import manifest

from rktcfg.image.build import build_aci
from rktcfg.image.imports import import_aci_file
from rktcfg.pods import ImageArg, PodOptions, Pods
from rktcfg.stage1 import linux
from rktcfg.store.images import ImageStore
from rktcfg.store.pods import PodState

FLAVORS = ["fake", "fly", "default"]


@pytest.fixture
def pods(tmp_path: Path) -> Pods:
    root = tmp_path / "rootfs"
    (root / "bin").mkdir(parents=True)
    (root / "etc").mkdir()
    (root / "bin" / "busybox").write_bytes(Path("/bin/busybox").read_bytes())
    (root / "bin" / "busybox").chmod(0o755)
    for applet in ("sh", "sleep", "echo"):
        (root / "bin" / applet).symlink_to("busybox")
    doc = manifest(name="example.com/contract")
    doc["app"] = {
        "exec": ["/bin/sh", "-c", "echo out; echo err >&2; exit 3"],
        "user": "0",
        "group": "0",
    }
    build_aci(str(root), str(tmp_path / "c.aci"), doc)
    data = str(tmp_path / "data")
    with ImageStore(data) as store:
        import_aci_file(store, str(tmp_path / "c.aci"))
    return Pods(data)


def _wait(pods: Pods, uuid: str) -> None:
    assert pods.wait(pods.get(uuid), 20)


@pytest.mark.parametrize("flavor", FLAVORS)
def test_exit_status_and_output(pods: Pods, flavor: str) -> None:
    pod = pods.run([ImageArg(ref="example.com/contract")], PodOptions(flavor=flavor))
    _wait(pods, pod.uuid)
    status = pods.status(pods.get(pod.uuid))
    assert status["state"] == PodState.EXITED.value and status["exit_code"] == 3
    assert status["apps"][0]["exit_code"] == 3 and status["apps"][0]["restarts"] == 0
    from rktcfg.stage1.logs import read_lines

    app_dir = pods.get(pod.uuid).file("apps/contract")
    lines = [(line.stream, line.data) for line in read_lines(app_dir, "contract")]
    assert ("stdout", b"out") in lines and ("stderr", b"err") in lines


@pytest.mark.parametrize("flavor", FLAVORS)
def test_stop_and_teardown(pods: Pods, flavor: str) -> None:
    image = ImageArg(ref="example.com/contract", exec="/bin/sleep", args=("60",))
    pod = pods.run([image], PodOptions(flavor=flavor, grace_seconds=5))
    assert pods.get(pod.uuid).state() is PodState.RUNNING
    assert pods.stop(pods.get(pod.uuid))
    _wait(pods, pod.uuid)
    assert pods.exit_code(pods.get(pod.uuid)) == 128 + 15  # SIGTERM
    assert linux.mounts_below(pods.get(pod.uuid).path) == []  # torn down on exit
    assert not pods.stop(pods.get(pod.uuid))  # idempotent
    pods.remove(pods.get(pod.uuid))
    assert pods.all() == []


@pytest.mark.parametrize("flavor", FLAVORS)
def test_restart_always_until_stopped(pods: Pods, flavor: str) -> None:
    image = ImageArg(ref="example.com/contract", exec="/bin/echo", args=("again",))
    pod = pods.run([image], PodOptions(flavor=flavor, restart="always"))
    deadline = time.monotonic() + 10  # exits at once; restarted after 1 s
    while time.monotonic() < deadline:
        status = pods.status(pods.get(pod.uuid))
        if status["apps"][0]["restarts"] >= 1:
            break
        time.sleep(0.1)
    assert status["state"] == "running" and status["apps"][0]["restarts"] >= 1
    pods.stop(pods.get(pod.uuid))
    _wait(pods, pod.uuid)
    assert pods.exit_code(pods.get(pod.uuid)) == 0
    assert os.path.exists(pods.get(pod.uuid).file("exit-code"))


@pytest.mark.parametrize("flavor", FLAVORS)
def test_health_checks_mark_healthy_or_kill_and_restart(pods: Pods, flavor: str) -> None:
    def check(code: int) -> dict[str, object]:
        argv = ["/bin/sh", "-c", f"exit {code}"]
        return {"exec": argv, "interval_s": 0.2, "timeout_s": 1.0, "retries": 2}

    healthy = ImageArg(
        ref="example.com/contract", exec="/bin/sleep", args=("60",), health_check=check(0)
    )
    pod = pods.run([healthy], PodOptions(flavor=flavor, grace_seconds=2))

    def app_status() -> dict[str, object]:
        return pods.status(pods.get(pod.uuid))["apps"][0]  # type: ignore[no-any-return]

    deadline = time.monotonic() + 10
    while app_status()["health"] != "healthy" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert app_status()["health"] == "healthy" and app_status()["restarts"] == 0
    pods.stop(pods.get(pod.uuid))
    _wait(pods, pod.uuid)

    failing = ImageArg(
        ref="example.com/contract",
        exec="/bin/sleep",
        args=("60",),
        health_check=check(1),
    )
    pod = pods.run([failing], PodOptions(flavor=flavor, restart="on-failure", grace_seconds=2))
    deadline = time.monotonic() + 15
    while app_status()["restarts"] == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    status = app_status()
    assert status["restarts"] >= 1, status  # killed after 2 failed checks, then restarted
    assert status["reason"] == "unhealthy", status  # why it last exited (it runs again)
    pods.stop(pods.get(pod.uuid))
    _wait(pods, pod.uuid)
