"""Pods that really run: the fly flavor, the supervisor and the pod commands, as root."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from imagehelpers import manifest, read_all
from podhelpers import BUSYBOX, RKTCFG, collect_everything, mounts_below, rktcfg

from rktcfg.image.build import build_aci


def busybox_rootfs(root: Path) -> Path:
    (root / "bin").mkdir(parents=True)
    (root / "etc").mkdir()
    (root / "bin" / "busybox").write_bytes(BUSYBOX.read_bytes())
    (root / "bin" / "busybox").chmod(0o755)
    for applet in ("sh", "echo", "sleep", "cat", "true", "false", "ls", "id", "pwd", "env"):
        (root / "bin" / applet).symlink_to("busybox")
    (root / "etc" / "passwd").write_text(
        "root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000::/:/bin/sh\n"
    )
    (root / "etc" / "group").write_text("root:x:0:\nuser:x:1000:\n")
    return root


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    if not BUSYBOX.exists():
        pytest.fail("/bin/busybox is missing: the Makefile installs busybox-static")
    work = tmp_path_factory.mktemp("images")
    rootfs = busybox_rootfs(work / "rootfs")
    out: dict[str, Path] = {}
    doc = manifest(name="example.com/busybox")
    doc["app"] = {"exec": ["/bin/sh", "-c", "echo hello; echo oops >&2"], "user": "0", "group": "0"}
    out["busybox"] = work / "busybox.aci"
    build_aci(str(rootfs), str(out["busybox"]), doc)
    bare = manifest(name="example.com/bare")
    del bare["app"]
    out["bare"] = work / "bare.aci"
    build_aci(str(rootfs), str(out["bare"]), bare)
    empty = manifest(name="example.com/empty")
    empty["app"] = {"exec": [], "user": "0", "group": "0"}
    out["empty"] = work / "empty.aci"
    build_aci(str(rootfs), str(out["empty"]), empty)
    return out


@pytest.fixture
def data(tmp_path: Path, images: dict[str, Path]) -> Iterator[str]:
    directory = str(tmp_path / "data")
    for aci in images.values():
        rktcfg(directory, "fetch", str(aci))
    yield directory
    gc, left = collect_everything(directory)
    assert left == [], (gc.stdout, gc.stderr, rktcfg(directory, "list", "-o", "json").stdout)


def fly(data: str, *args: str, check: bool = False) -> subprocess.CompletedProcess[str]:
    return rktcfg(data, "run", "--stage1", "fly", *args, check=check)


@pytest.mark.parametrize("code", [0, 1, 42])
def test_exit_codes_reach_run_and_status(data: str, code: int) -> None:
    result = fly(
        data,
        "--name",
        f"exit-{code}",
        "example.com/busybox",
        "--exec",
        "/bin/sh",
        "--",
        "-c",
        f"exit {code}",
    )
    assert result.returncode == code, result.stderr
    status = json.loads(rktcfg(data, "status", f"exit-{code}", "-o", "json").stdout)
    assert status["state"] == "exited" and status["exit_code"] == code
    assert status["apps"][0]["exit_code"] == code
    text = rktcfg(data, "status", f"exit-{code}").stdout
    assert "state=exited" in text and f"app-busybox={code}" in text
    assert mounts_below(data) == []  # the supervisor tore its mounts down


def test_output_is_streamed_and_kept_in_logs(data: str) -> None:
    result = fly(data, "--name", "talk", "example.com/busybox")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "hello\n" and "oops" in result.stderr
    logs = rktcfg(data, "logs", "talk").stdout
    assert "hello" in logs and "oops" in logs
    assert rktcfg(data, "logs", "talk", "--tail", "1").stdout.count("\n") == 1


def test_exec_rules(data: str) -> None:
    result = fly(data, "example.com/bare")
    assert result.returncode == 2 and "has no app section: give --exec=BINARY" in result.stderr
    result = fly(data, "example.com/empty")
    assert result.returncode == 2
    assert 'image "example.com/empty:1.0" has an empty "exec" (try --exec=BINARY)' in result.stderr
    result = fly(data, "example.com/bare", "--exec", "echo", "--", "found", "in", "PATH")
    assert result.returncode == 0 and result.stdout == "found in PATH\n"
    result = fly(data, "example.com/bare", "--exec", "/bin/nope")
    assert result.returncode == 2 and "cannot find '/bin/nope'" in result.stderr
    result = fly(data, "example.com/busybox", "---", "example.com/bare", "--exec", "/bin/true")
    assert result.returncode == 2 and "exactly one app" in result.stderr


def test_the_app_runs_chrooted_as_its_user(data: str) -> None:
    script = "ls /; cat /etc/hosts; id -u; pwd; echo $AC_APP_NAME $container; echo PATH=$PATH"
    result = fly(data, "example.com/bare", "--exec", "/bin/sh", "--", "-c", script)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    root_listing = lines[: lines.index("127.0.0.1\tlocalhost localhost.localdomain")]
    assert set(root_listing) == {"bin", "dev", "etc", "proc", "sys", "tmp"}  # not the host's /
    assert "0" in lines and "/" in lines and "bare rktcfg" in lines
    assert "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" in lines
    user = fly(
        data,
        "--set-env",
        "GREETING=hi",
        "example.com/bare",
        "--exec",
        "/bin/sh",
        "--",
        "-c",
        "echo $GREETING; ls /dev/null /proc/self/status",
    )
    assert user.returncode == 0 and user.stdout.splitlines()[0] == "hi"


def test_detached_stop_graceful_and_forced(data: str) -> None:
    script = "trap 'echo got TERM; exit 7' TERM; echo up; while true; do sleep 0.1; done"
    uuid = fly(
        data, "-d", "example.com/bare", "--exec", "/bin/sh", "--", "-c", script, check=True
    ).stdout.strip()
    assert json.loads(rktcfg(data, "status", uuid, "-o", "json").stdout)["state"] == "running"
    rktcfg(data, "stop", uuid)
    rktcfg(data, "status", uuid, "--wait=20s")
    status = json.loads(rktcfg(data, "status", uuid, "-o", "json").stdout)
    assert status["state"] == "exited" and status["exit_code"] == 7
    assert "got TERM" in rktcfg(data, "logs", uuid).stdout
    rktcfg(data, "stop", uuid)  # idempotent

    stubborn = "trap '' TERM; while true; do sleep 0.1; done"
    uuid = fly(
        data,
        "-d",
        "--grace",
        "1s",
        "example.com/bare",
        "--exec",
        "/bin/sh",
        "--",
        "-c",
        stubborn,
        check=True,
    ).stdout.strip()
    start = time.monotonic()
    rktcfg(data, "stop", uuid)
    rktcfg(data, "status", uuid, "--wait=20s")
    assert time.monotonic() - start >= 0.9  # SIGKILL only after the grace period
    assert json.loads(rktcfg(data, "status", uuid, "-o", "json").stdout)["exit_code"] == 137

    uuid = fly(
        data, "-d", "example.com/bare", "--exec", "/bin/sh", "--", "-c", stubborn, check=True
    ).stdout.strip()
    rktcfg(data, "stop", "--force", uuid)
    rktcfg(data, "status", uuid, "--wait=20s")
    assert json.loads(rktcfg(data, "status", uuid, "-o", "json").stdout)["state"] == "exited"


def test_killed_supervisor_reads_as_exited_and_gc_cleans_up(data: str) -> None:
    uuid = fly(
        data, "-d", "example.com/bare", "--exec", "/bin/sleep", "--", "300", check=True
    ).stdout.strip()
    status = json.loads(rktcfg(data, "status", uuid, "-o", "json").stdout)
    assert mounts_below(data)  # /dev, /proc, /sys, /tmp of the app
    os.kill(status["pid"], signal.SIGKILL)
    rktcfg(data, "status", uuid, "--wait=10s")
    listed = json.loads(rktcfg(data, "list", "-o", "json").stdout)
    assert [p["state"] for p in listed if p["uuid"] == uuid] == ["exited"]
    time.sleep(0.3)  # the app got SIGKILL when its supervisor died
    assert subprocess.run(["pgrep", "-f", "/bin/sleep 300"], capture_output=True).stdout == b""
    result = rktcfg(data, "rm", uuid)
    assert uuid in result.stdout
    assert mounts_below(data) == []


def test_gc_after_hand_unmounts_and_lost_files(data: str) -> None:
    uuids = [
        fly(
            data, "-d", "example.com/bare", "--exec", "/bin/sleep", "--", "300", check=True
        ).stdout.strip()
        for _ in range(2)
    ]
    pids = [json.loads(rktcfg(data, "status", u, "-o", "json").stdout)["pid"] for u in uuids]
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    for uuid in uuids:
        rktcfg(data, "status", uuid, "--wait=10s")
    first = [m for m in mounts_below(data) if uuids[0] in m]
    subprocess.run(["umount", "-l", first[-1]], check=True)  # an admin unmounted one by hand
    pod_dir = Path(data) / "pods" / "run" / uuids[1]
    for name in ("stage1.json", "started", "pid"):
        (pod_dir / name).unlink()  # and files of the other pod went missing
    result = rktcfg(data, "gc", "--grace-period", "0")
    assert sorted(
        line.split()[-1]
        for line in result.stdout.splitlines()
        if line.startswith("garbage collected")
    ) == sorted(uuids)
    assert mounts_below(data) == []
    assert json.loads(rktcfg(data, "list", "-o", "json").stdout) == []


def test_gc_grace_period_and_mark_only(data: str) -> None:
    uuid = (
        fly(data, "--name", "old", "example.com/busybox").stdout
        and rktcfg(data, "status", "old", "-o", "json").stdout
    )
    pod = json.loads(uuid)["uuid"]
    result = rktcfg(data, "gc", "--mark-only")
    assert f"moving pod {pod} to garbage" in result.stdout
    result = rktcfg(data, "gc")  # 30 minutes of grace by default
    assert "still within the grace period" in result.stdout
    result = rktcfg(data, "gc", "--grace-period", "0")
    assert f"garbage collected pod {pod}" in result.stdout


def test_rm_refuses_a_running_pod(data: str) -> None:
    uuid = fly(
        data, "-d", "example.com/bare", "--exec", "/bin/sleep", "--", "300", check=True
    ).stdout.strip()
    result = rktcfg(data, "rm", uuid, check=False)
    assert result.returncode == 2 and "is running: stop it first" in result.stderr
    rktcfg(data, "stop", "--force", uuid)


def test_prepare_then_run_prepared(data: str) -> None:
    uuid = rktcfg(data, "prepare", "--stage1", "fly", "example.com/busybox").stdout.strip()
    assert json.loads(rktcfg(data, "status", uuid, "-o", "json").stdout)["state"] == "prepared"
    manifest_doc = json.loads(rktcfg(data, "cat-manifest", uuid).stdout)
    assert manifest_doc["acKind"] == "PodManifest" and manifest_doc["apps"][0]["name"] == "busybox"
    result = rktcfg(data, "run-prepared", uuid, check=False)
    assert result.returncode == 0 and result.stdout == "hello\n"
    result = rktcfg(data, "run-prepared", uuid, check=False)
    assert result.returncode == 2 and "not prepared" in result.stderr


def test_restart_on_failure_backs_off_and_counts(data: str) -> None:
    uuid = fly(
        data,
        "-d",
        "--restart",
        "on-failure",
        "example.com/bare",
        "--exec",
        "/bin/sh",
        "--",
        "-c",
        "echo crash; exit 3",
        check=True,
    ).stdout.strip()
    time.sleep(4.5)  # crashes at 0 s, restarts after 1 s, then 2 s: at least 2 restarts
    status = json.loads(rktcfg(data, "status", uuid, "-o", "json").stdout)
    restarts = status["apps"][0]["restarts"]
    assert status["state"] == "running" and 2 <= restarts <= 3
    rktcfg(data, "stop", uuid)
    rktcfg(data, "status", uuid, "--wait=20s")
    assert rktcfg(data, "logs", uuid).stdout.count("crash") == restarts + 1


def test_volumes_are_bound_and_read_only_holds(data: str, tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "in").write_text("from the host\n")
    result = fly(
        data,
        "--volume",
        f"site,kind=host,source={shared}",
        "--mount",
        "volume=site,target=/srv",
        "example.com/bare",
        "--exec",
        "/bin/sh",
        "--",
        "-c",
        "cat /srv/in; echo from the pod > /srv/out",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "from the host\n"
    assert (shared / "out").read_text() == "from the pod\n"
    result = fly(
        data,
        "--volume",
        f"site,kind=host,source={shared},readOnly=true",
        "--mount",
        "volume=site,target=/srv",
        "example.com/bare",
        "--exec",
        "/bin/sh",
        "--",
        "-c",
        "echo no > /srv/out2",
    )
    assert result.returncode != 0 and not (shared / "out2").exists()
    result = fly(
        data, "--mount", "volume=nope,target=/x", "example.com/bare", "--exec", "/bin/true"
    )
    assert result.returncode == 2 and "no such --volume" in result.stderr
    assert mounts_below(data) == []


def test_event_handlers_run_around_the_app(
    data: str, images: dict[str, Path], tmp_path: Path
) -> None:
    rootfs = busybox_rootfs(tmp_path / "rootfs")
    doc = manifest(name="example.com/hooks")
    doc["app"] = {
        "exec": ["/bin/echo", "app"],
        "user": "0",
        "group": "0",
        "eventHandlers": [
            {"name": "pre-start", "exec": ["/bin/echo", "before"]},
            {"name": "post-stop", "exec": ["/bin/echo", "after"]},
        ],
    }
    build_aci(str(rootfs), str(tmp_path / "hooks.aci"), doc)
    rktcfg(data, "fetch", str(tmp_path / "hooks.aci"))
    result = fly(data, "--name", "hooks", "example.com/hooks")
    assert result.returncode == 0, result.stderr
    assert rktcfg(data, "logs", "hooks").stdout.split() == ["before", "app", "after"]


def test_attached_run_forwards_sigterm(data: str) -> None:
    script = "trap 'echo bye; exit 5' TERM; echo ready; while true; do sleep 0.1; done"
    proc = subprocess.Popen(
        [
            RKTCFG,
            "--dir",
            data,
            "run",
            "--stage1",
            "fly",
            "example.com/bare",
            "--exec",
            "/bin/sh",
            "--",
            "-c",
            script,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 5 and "bye" in out


def test_log_rotation_is_configurable(data: str) -> None:
    result = fly(
        data,
        "--name",
        "chatty",
        "--log-max-size",
        "4Ki",
        "--log-keep",
        "2",
        "example.com/bare",
        "--exec",
        "/bin/sh",
        "--",
        "-c",
        "i=0; while [ $i -lt 400 ]; do echo line-$i; i=$((i+1)); done",
    )
    assert result.returncode == 0
    status = json.loads(rktcfg(data, "status", "chatty", "-o", "json").stdout)
    app_dir = Path(data) / "pods" / "run" / status["uuid"] / "apps" / "bare"
    logs = sorted(p.name for p in app_dir.glob("stdout.log*"))
    assert logs == ["stdout.log", "stdout.log.1"]
    assert all(p.stat().st_size <= 4096 for p in app_dir.glob("stdout.log*"))
    kept = rktcfg(data, "logs", "chatty").stdout.split()
    assert kept[-1] == "line-399" and "line-0" not in kept  # the oldest rotated away
    assert fly(data, "--log-keep", "0", "example.com/bare", "--exec", "/bin/true").returncode == 2


def test_list_draws_a_table_on_a_terminal(data: str) -> None:
    import pty

    fly(data, "--name", "shown", "example.com/busybox")
    primary, secondary = pty.openpty()
    subprocess.run([RKTCFG, "--dir", data, "list"], stdout=secondary, check=True, timeout=30)
    os.close(secondary)
    drawn = read_all(primary)
    assert b"UUID" in drawn and b"shown" in drawn and b"exited" in drawn
    plain = rktcfg(data, "list").stdout
    assert plain.split("\n")[0].split() == [
        "UUID",
        "NAME",
        "SET",
        "APP",
        "IMAGE",
        "STATE",
        "CREATED",
        "STARTED",
        "NETWORKS",
    ]


def test_interactive_gives_the_app_our_stdin(data: str) -> None:
    result = subprocess.run(
        [
            RKTCFG,
            "--dir",
            data,
            "run",
            "--interactive",
            "--stage1",
            "fly",
            "example.com/bare",
            "--exec",
            "/bin/cat",
        ],
        input="typed in\n",
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "typed in\n"
    assert (
        fly(data, "-d", "--interactive", "example.com/bare", "--exec", "/bin/cat").returncode == 2
    )
