"""Pods of the default flavor, as root: namespaces, capabilities, cgroups, the metadata service,
user namespaces, volumes and enter, through the real ``rktcfg`` command."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from imagehelpers import manifest
from podhelpers import BUSYBOX, busybox_rootfs, mounts_below, rktcfg

from rktcfg.image.build import build_aci
from rktcfg.image.imports import import_aci_file
from rktcfg.store.images import ImageStore

#: appc's default 14 capabilities as /proc/PID/status shows them.
DEFAULT_CAPS = 0x00000000A80425FB
MEMORY_100MI = 100 * 1024 * 1024
URL = re.compile(r"http://127\.0\.0\.1:(\d+)/([A-Za-z0-9._~-]{22,})")
CGROUP_ROOT = "/sys/fs/cgroup"


# --- images and the data directory -------------------------------------------------------------


def image(name: str, isolators: list[dict[str, Any]]) -> dict[str, Any]:
    doc = manifest(name=f"example.com/{name}")
    doc["app"] = {
        "exec": ["/bin/sh", "-c", "echo hello"],
        "user": "0",
        "group": "0",
        "isolators": isolators,
    }
    if name == "ports":
        doc["app"]["ports"] = [{"name": "web", "protocol": "tcp", "port": 8080}]
    return doc


IMAGES = {
    # the limits the command line overrides
    "busybox": [
        {"name": "resource/memory", "value": {"limit": "100Mi"}},
        {"name": "resource/cpu", "value": {"limit": "2"}},
    ],
    "other": [],
    "nnp": [{"name": "os/linux/no-new-privileges", "value": True}],
    "unknown": [{"name": "example.com/unknown", "value": {"anything": 1}}],
    "pids": [{"name": "rktcfg/pids", "value": 16}],
    "ports": [],  # declares the port "web" (8080/tcp)
}


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A data directory holding the images (imported once for the module)."""
    if not BUSYBOX.exists():
        pytest.fail("/bin/busybox is missing: the Makefile installs busybox-static")
    work = tmp_path_factory.mktemp("default-images")
    rootfs = busybox_rootfs(work / "rootfs")
    data = str(work / "data")
    with ImageStore(data) as images:
        for name, isolators in IMAGES.items():
            aci = work / f"{name}.aci"
            build_aci(str(rootfs), str(aci), image(name, isolators))
            import_aci_file(images, str(aci))
    return data


def cgroup_dirs(plan: dict[str, Any] | None) -> list[str]:
    if not plan:
        return []
    dirs = list(plan["pod"].values()) + list(plan["init"].values())
    for app in plan["apps"].values():
        dirs += list(app.values())
    return dirs


@pytest.fixture
def data(store: str) -> Iterator[str]:
    """The module's data directory; afterwards every pod is stopped and collected by ``rktcfg
    gc``, and none of their cgroups, mounts or user namespace leases is left."""
    from rktcfg.pods import Pods
    from rktcfg.store.pods import PodState

    yield store
    pods = Pods(store)  # in-process: observing is not what is tested here, gc is
    plans = []
    for pod in pods.all():
        with contextlib.suppress(FileNotFoundError, ValueError):
            plans.append(pod.read_json("cgroups.json"))
        if pod.state() is PodState.RUNNING:
            pods.stop(pod, force=True)
    for pod in pods.all():
        pods.wait(pod, 10)
    gc = rktcfg(store, "gc", "--grace-period", "0", "--expire-prepared", "0", check=False)
    left = [d for plan in plans for d in cgroup_dirs(plan) if os.path.exists(d)]
    mounted = mounts_below(store)
    if mounted:  # never leave mounts below a temporary directory pytest will delete
        from rktcfg.stage1 import linux

        linux.unmount_below(store)
    userns = Path(store) / "userns"
    leases = (
        sorted(n for n in os.listdir(userns) if not n.startswith(".")) if userns.is_dir() else []
    )
    listed = [pod.uuid for pod in pods.all()]
    assert (left, mounted, leases, listed) == ([], [], [], []), (gc.stdout, gc.stderr)


# --- helpers ----------------------------------------------------------------------------------


def run(data: str, *args: str) -> subprocess.CompletedProcess[str]:
    """``rktcfg run --stage1 default ARGS``, attached."""
    return rktcfg(data, "run", "--stage1", "default", *args, check=False)


def sh(
    data: str,
    script: str,
    *pod_flags: str,
    app: str = "busybox",
    app_flags: tuple[str, ...] = (),
) -> subprocess.CompletedProcess[str]:
    """Run ``/bin/sh -c SCRIPT`` as the one app of an attached default pod."""
    return run(
        data, *pod_flags, f"example.com/{app}", *app_flags, "--exec", "/bin/sh", "--", "-c", script
    )


def detach(data: str, *args: str) -> str:
    """Start a detached default pod; its UUID."""
    result = rktcfg(data, "run", "--stage1", "default", "-d", *args)
    return result.stdout.strip()


def status(data: str, ref: str) -> dict[str, Any]:
    found: dict[str, Any] = json.loads(rktcfg(data, "status", ref, "-o", "json").stdout)
    return found


def uuids(data: str) -> set[str]:
    from rktcfg.pods import Pods

    return {pod.uuid for pod in Pods(data).all()}


def pod_dir(data: str, uuid: str) -> Path:
    return Path(data) / "pods" / "run" / uuid


def wait_for(check: Callable[[], object], timeout: float, step: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(step)
    return bool(check())


def read(path: str) -> str:
    with open(path, encoding="ascii") as handle:
        return handle.read().strip()


def fields(text: str) -> dict[str, str]:
    """``Key:\\tvalue`` lines (/proc/PID/status) as a dict."""
    out = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            out[key.strip()] = value.strip()
    return out


def mount_options(mountinfo: str, point: str) -> list[list[str]]:
    """The per-mount options of every mount at ``point`` in a mountinfo text."""
    return [
        line.split()[5].split(",")
        for line in mountinfo.splitlines()
        if line.split()[4:5] == [point]
    ]


# --- 1. PID and UTS namespaces -----------------------------------------------------------------


def test_pid_1_is_the_pods_init_and_the_host_is_invisible(data: str) -> None:
    before = uuids(data)
    script = "cat /proc/1/comm; hostname; echo ---; ps -o pid,comm"
    result = sh(data, script)
    assert result.returncode == 0, result.stderr
    (uuid,) = uuids(data) - before
    comm, hostname, marker, header, *processes = result.stdout.splitlines()
    assert (comm, hostname, marker) == ("rktcfg-init", f"rktcfg-{uuid}", "---")
    assert header.split() == ["PID", "COMMAND"]
    pids = {int(line.split()[0]) for line in processes}
    names = {line.split()[1] for line in processes}
    assert 1 in pids and len(pids) <= 5, processes  # init, sh, ps: nothing of the host
    assert os.getpid() not in pids and os.getppid() not in pids
    assert not names & {"pytest", "python", "python3", "systemd", "sshd"}, names
    assert status(data, uuid)["hostname"] == f"rktcfg-{uuid}"

    result = sh(data, "hostname; grep web /etc/hosts", "--name", "web")
    assert result.returncode == 0 and result.stdout.splitlines()[0] == "web", result.stderr
    assert "127.0.1.1\tweb" in result.stdout
    result = sh(data, "hostname", "--name", "named", "--hostname", "box.example.com")
    assert result.returncode == 0 and result.stdout == "box.example.com\n", result.stderr
    assert status(data, "named")["hostname"] == "box.example.com"


def test_host_devices_and_the_host_root_are_out_of_reach(data: str) -> None:
    # Even with CAP_MKNOD and CAP_SYS_PTRACE: the devices cgroup denies /dev/kmsg (1:11), and
    # PID 1's root is an empty directory, not the host's.
    script = (
        "mknod /tmp/kmsg c 1 11 && echo pwned > /tmp/kmsg; echo kmsg=$?; "
        "echo ok > /dev/null && echo null=ok; "
        "mknod /tmp/null c 1 3 && echo no > /tmp/null 2>/dev/null || echo rootfs=nodev; "
        "echo root=$(ls -A /proc/1/root | wc -l)"
    )
    result = sh(data, script, app_flags=("--caps-retain", "CAP_MKNOD,CAP_SYS_PTRACE"))
    assert result.returncode == 0, result.stderr
    assert "kmsg=1" in result.stdout and "null=ok" in result.stdout, result.stdout
    assert "rootfs=nodev" in result.stdout, result.stdout  # nodes on the rootfs do not work
    assert "root=0" in result.stdout, result.stdout


def test_pid_1_reaps_orphans_and_forwards_signals(data: str) -> None:
    # The shell starts orphans (their parent subshell exits at once: PID 1 adopts them),
    # and traps SIGTERM; the test signals the pod's PID 1 from the host.
    script = (
        "trap 'echo got-term; exit 0' TERM; (sleep 0.2 &); (sleep 300 &); sleep 1; "
        "echo zombies=$(grep -l 'State:.*Z' /proc/[0-9]*/status 2>/dev/null | wc -l); "
        "while :; do sleep 0.1; done"
    )
    uuid = detach(data, "example.com/busybox", "--exec", "/bin/sh", "--", "-c", script)
    log = pod_dir(data, uuid) / "apps" / "busybox" / "stdout.log"
    assert wait_for(lambda: "zombies=" in log.read_text(), 10), log.read_text()
    assert "zombies=0" in log.read_text()  # the orphaned sleep 0.2 was reaped by PID 1
    init_pid = status(data, uuid)["init_pid"]
    with open(f"/proc/{init_pid}/comm", encoding="ascii") as handle:
        assert handle.read().strip() == "rktcfg-init"
    os.kill(init_pid, signal.SIGTERM)
    assert wait_for(lambda: status(data, uuid)["state"] == "exited", 10)
    assert "got-term" in log.read_text()
    assert status(data, uuid)["apps"][0]["exit_code"] == 0


# --- 2. capabilities and no_new_privs --------------------------------------------------------


def caps_of(data: str, *app_flags: str, app: str = "busybox") -> dict[str, str]:
    result = sh(data, "cat /proc/self/status", app=app, app_flags=app_flags)
    assert result.returncode == 0, result.stderr
    return fields(result.stdout)


def test_capabilities_bounding_set_and_no_new_privileges(data: str) -> None:
    script = (
        "mount -t tmpfs x /mnt; echo mount=$?; grep -c ' /mnt ' /proc/self/mountinfo; "
        "cat /proc/self/status"
    )
    result = sh(data, script)
    code, mounted, *lines = result.stdout.splitlines()
    assert code != "mount=0" and mounted == "0", (result.stdout, result.stderr)
    assert "ermission denied" in result.stderr or "not permitted" in result.stderr
    status_fields = fields("\n".join(lines))
    for field in ("CapBnd", "CapPrm", "CapEff"):
        assert int(status_fields[field], 16) == DEFAULT_CAPS, (field, status_fields[field])
    assert status_fields["NoNewPrivs"] == "0"
    assert caps_of(data, app="nnp")["NoNewPrivs"] == "1"
    assert int(caps_of(data, "--caps-retain", "CAP_NET_BIND_SERVICE")["CapBnd"], 16) == 0x400
    assert int(caps_of(data, "--caps-remove", "CAP_CHOWN")["CapBnd"], 16) == DEFAULT_CAPS & ~1
    both = run(
        data,
        "example.com/busybox",
        "--caps-retain",
        "CAP_NET_BIND_SERVICE",
        "--caps-remove",
        "CAP_CHOWN",
        "--exec",
        "/bin/true",
    )
    assert both.returncode == 2 and "--caps-retain" in both.stderr, both.stderr


# --- 3. file descriptors -----------------------------------------------------------------------


def test_only_stdio_is_open_in_the_app(data: str) -> None:
    result = sh(data, "ls /proc/$$/fd; true")  # not the last command: sh would exec ls
    assert result.returncode == 0, result.stderr
    assert sorted(result.stdout.split()) == ["0", "1", "2"]


# --- 4. /proc, /sys and /dev -------------------------------------------------------------------


def test_proc_sys_and_dev_are_locked_down(data: str) -> None:
    masked = [p for p in ("/proc/kcore", "/proc/keys") if os.path.exists(p)]
    assert masked, "neither /proc/kcore nor /proc/keys exists on this host"
    devices = "null zero full random urandom tty console ptmx pts shm"
    script = (
        "echo hijacked > /proc/sys/kernel/hostname && echo PROC-SYS-WRITTEN; hostname; "
        "echo 1 > /sys/kernel/profiling && echo SYS-WRITTEN; "
        "cat /sys/fs/cgroup/memory/memory.limit_in_bytes; "
        f"for d in {devices}; do stat -L -c '%n|%F|%t:%T' /dev/$d; done; "
        f"for f in {' '.join(masked)}; do stat -L -c '%n|%F|%t:%T' $f; done; "
        "echo ---; cat /proc/self/mountinfo"
    )
    result = sh(data, script, "--hostname", "locked")
    assert result.returncode == 0, result.stderr
    head, _, mountinfo = result.stdout.partition("---\n")
    lines = head.splitlines()
    assert "PROC-SYS-WRITTEN" not in lines and "SYS-WRITTEN" not in lines
    assert lines[0] == "locked"
    assert lines[1] == str(MEMORY_100MI)  # /sys/fs/cgroup shows the app's own cgroups
    stats = {line.split("|")[0]: line.split("|")[1:] for line in lines[2:]}
    char = "character special file"
    expected = {
        "/dev/null": [char, "1:3"],
        "/dev/zero": [char, "1:5"],
        "/dev/full": [char, "1:7"],
        "/dev/random": [char, "1:8"],
        "/dev/urandom": [char, "1:9"],
        "/dev/tty": [char, "5:0"],
        "/dev/ptmx": [char, "5:2"],
        "/dev/pts": ["directory", "0:0"],
        "/dev/shm": ["directory", "0:0"],
    }
    for name, want in expected.items():
        assert stats.get(name) == want, (name, stats.get(name))
    assert stats["/dev/console"][0] == char
    for path in masked:  # /dev/null bound over them
        assert stats.get(path) == [char, "1:3"], (path, stats.get(path))
    assert ["ro"] in [opts[:1] for opts in mount_options(mountinfo, "/proc/sys")]
    sys_options = mount_options(mountinfo, "/sys")
    assert sys_options and all("ro" in opts for opts in sys_options), sys_options
    cgroup_options = mount_options(mountinfo, "/sys/fs/cgroup/memory")
    assert cgroup_options and all("ro" in opts for opts in cgroup_options)
    assert mount_options(mountinfo, "/proc") and mount_options(mountinfo, "/dev/pts")


# --- 5. the environment ------------------------------------------------------------------------


def test_environment_is_exactly_the_apps(data: str) -> None:
    result = sh(data, "env", "--set-env", "GREETING=hi there")
    assert result.returncode == 0, result.stderr
    env = dict(line.split("=", 1) for line in result.stdout.splitlines())
    url = env.pop("AC_METADATA_URL")
    assert URL.fullmatch(url), url
    assert env == {
        "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "AC_APP_NAME": "busybox",
        "container": "rktcfg",
        "HOME": "/root",
        "USER": "root",
        "LOGNAME": "root",
        "SHELL": "/bin/sh",
        "PWD": "/",
        "SHLVL": "1",
        "GREETING": "hi there",
    }


# --- 6. cgroup limits --------------------------------------------------------------------------


def own_cgroup(hierarchy: str) -> str:
    key = "" if hierarchy == "unified" else hierarchy
    with open("/proc/self/cgroup", encoding="ascii") as handle:
        for line in handle:
            _, controllers, path = line.rstrip("\n").split(":", 2)
            if key in (controllers.split(",") if controllers else [""]):
                return path
    raise AssertionError(f"no {hierarchy} line in /proc/self/cgroup")


def limits_of(plan: dict[str, Any], app: str) -> dict[str, Any]:
    dirs = plan["apps"][app]
    memsw = os.path.join(dirs["memory"], "memory.memsw.limit_in_bytes")
    return {
        "memory": int(read(os.path.join(dirs["memory"], "memory.limit_in_bytes"))),
        "memsw": int(read(memsw)) if os.path.exists(memsw) else None,
        "quota": int(read(os.path.join(dirs["cpu"], "cpu.cfs_quota_us"))),
        "period": int(read(os.path.join(dirs["cpu"], "cpu.cfs_period_us"))),
    }


def test_cgroup_limits_from_the_image_and_the_command_line(data: str) -> None:
    sleep = ("--exec", "/bin/sleep", "--", "30")
    uuid = detach(data, "example.com/busybox", *sleep)
    found = status(data, uuid)
    plan = found["cgroups"]
    assert found["state"] == "running" and plan["version"] in ("v1", "hybrid")
    for hierarchy, directory in plan["pod"].items():  # below our own cgroup, named for the pod
        mount = os.path.join(CGROUP_ROOT, hierarchy.removeprefix("name="))
        parent = os.path.normpath(mount + "/" + own_cgroup(hierarchy))
        assert directory == os.path.join(parent, f"rktcfg-{uuid}"), (hierarchy, directory)
        assert os.path.isdir(directory)
    app_pid = found["apps"][0]["pid"]
    for directory in plan["apps"]["busybox"].values():
        assert str(app_pid) in read(os.path.join(directory, "cgroup.procs")).split()
    assert str(found["init_pid"]) in read(plan["init"]["memory"] + "/cgroup.procs").split()
    memsw = os.path.exists(plan["apps"]["busybox"]["memory"] + "/memory.memsw.limit_in_bytes")
    image_limits = {
        "memory": MEMORY_100MI,
        "memsw": MEMORY_100MI if memsw else None,
        "quota": 200_000,
        "period": 100_000,
    }
    assert limits_of(plan, "busybox") == image_limits

    uuid = detach(data, "example.com/busybox", "--memory", "42Mi", "--cpu", "900m", *sleep)
    cli_limits = {
        "memory": 44040192,
        "memsw": 44040192 if memsw else None,
        "quota": 90_000,
        "period": 100_000,
    }
    assert limits_of(status(data, uuid)["cgroups"], "busybox") == cli_limits

    uuid = detach(
        data,
        "example.com/busybox",
        "--memory",
        "64Mi",
        *sleep,
        "---",
        "example.com/other",
        "--memory",
        "32Mi",
        *sleep,
    )
    plan = status(data, uuid)["cgroups"]
    assert sorted(plan["apps"]) == ["busybox", "other"]
    first, second = limits_of(plan, "busybox"), limits_of(plan, "other")
    assert (first["memory"], second["memory"]) == (64 << 20, 32 << 20)
    if memsw:
        assert (first["memsw"], second["memsw"]) == (64 << 20, 32 << 20)
    assert first["quota"] == 200_000  # the image's cpu limit stays
    assert second["quota"] == -1  # the other image has none


# --- 7. the OOM killer -------------------------------------------------------------------------


def test_memory_hog_is_oom_killed(data: str) -> None:
    hog = ("--exec", "/bin/dd", "--", "if=/dev/zero", "of=/dev/null", "bs=64M", "count=1")
    result = run(data, "--name", "fits", "example.com/busybox", *hog)  # 64M < the image's 100Mi
    assert result.returncode == 0, result.stderr
    assert status(data, "fits")["apps"][0]["reason"] is None
    result = run(data, "--name", "hog", "example.com/busybox", "--memory", "16Mi", *hog)
    assert result.returncode == 137, (result.stdout, result.stderr)
    app = status(data, "hog")["apps"][0]
    assert (app["exit_code"], app["reason"]) == (137, "oom-killed")


# --- 8. the cpu limit --------------------------------------------------------------------------


def test_cpu_limit_throttles_a_busy_loop(data: str) -> None:
    uuid = detach(
        data,
        "example.com/busybox",
        "--cpu",
        "250m",
        "--exec",
        "/bin/sh",
        "--",
        "-c",
        "while :; do :; done",
    )
    plan = status(data, uuid)["cgroups"]
    usage = os.path.join(plan["apps"]["busybox"]["cpuacct"], "cpuacct.usage")
    assert read(os.path.join(plan["apps"]["busybox"]["cpu"], "cpu.cfs_quota_us")) == "25000"
    start_ns, start_usage = time.monotonic_ns(), int(read(usage))
    time.sleep(3)
    used = (int(read(usage)) - start_usage) / (time.monotonic_ns() - start_ns)
    assert 0.1 <= used <= 0.30, f"{used:.0%} of one core"


# --- 9. the pids limit -------------------------------------------------------------------------


def test_fork_bomb_stops_at_the_pids_limit(data: str) -> None:
    script = "for i in $(seq 40); do sleep 3 & done; wait"
    uuid = detach(data, "example.com/pids", "--exec", "/bin/sh", "--", "-c", script)
    pids_dir = status(data, uuid)["cgroups"]["apps"]["pids"]["pids"]
    assert read(os.path.join(pids_dir, "pids.max")) == "16"
    seen: list[int] = []
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:
        seen.append(int(read(os.path.join(pids_dir, "pids.current"))))
        time.sleep(0.02)
    events = fields(read(os.path.join(pids_dir, "pids.events")).replace(" ", ":"))
    rktcfg(data, "stop", "--force", uuid)
    rktcfg(data, "status", uuid, "--wait=10s")
    logs = rktcfg(data, "logs", uuid).stdout
    assert max(seen) <= 16 and max(seen) >= 10, seen  # it did try, and it was stopped at 16
    assert int(events["max"]) > 0 or "fork" in logs, (events, logs)


# --- 10. the metadata service ------------------------------------------------------------------


def test_metadata_service_answers_the_pod(data: str) -> None:
    before = uuids(data)
    script = (
        "u=$AC_METADATA_URL/acMetadata/v1; read t0 rest < /proc/uptime; "
        "wget -q -O- $u/pod/uuid; echo; wget -q -O- $u/apps/busybox/image/id; echo; "
        "wget -q -O- ${AC_METADATA_URL}x/acMetadata/v1/pod/uuid; echo wrong-token=$?; "
        "wget -q -O- ${AC_METADATA_URL%/*}/acMetadata/v1/pod/uuid; echo no-token=$?; "
        "read t1 rest < /proc/uptime; echo $t0 $t1; wget -q -O- $u/pod/manifest"
    )
    result = sh(data, script)
    assert result.returncode == 0, result.stderr
    (uuid,) = uuids(data) - before
    pod_uuid, image_id, wrong, missing, times, *manifest_lines = result.stdout.splitlines()
    assert pod_uuid == uuid
    assert image_id == status(data, uuid)["apps"][0]["image_id"]
    assert wrong == "wrong-token=1" and missing == "no-token=1"
    t0, t1 = (float(t) for t in times.split())
    assert t1 - t0 < 2.0, f"four requests took {t1 - t0:.2f} s"
    pod_manifest = json.loads("\n".join(manifest_lines))
    assert pod_manifest["acKind"] == "PodManifest"
    assert [a["name"] for a in pod_manifest["apps"]] == ["busybox"]


def _in_netns_of(pid: int, work: Callable[[], Any]) -> Any:
    """Run ``work()`` in a child that joined the network namespace of ``pid``; its result."""
    read_end, write_end = os.pipe()
    child = os.fork()
    if child == 0:
        try:
            from rktcfg.stage1 import linux

            with open(f"/proc/{pid}/ns/net", "rb") as handle:
                linux.setns(handle.fileno(), linux.CLONE_NEWNET)
            os.write(write_end, json.dumps(work()).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    text = b""
    while chunk := os.read(read_end, 65536):
        text += chunk
    os.close(read_end)
    os.waitpid(child, 0)
    return json.loads(text)


def test_metadata_service_every_endpoint_type_and_speed(data: str) -> None:
    import http.client
    import urllib.parse

    uuid = detach(data, "example.com/busybox", "--exec", "/bin/sleep", "--", "60")
    found = status(data, uuid)
    env = read(f"/proc/{found['apps'][0]['pid']}/environ").split("\0")
    url = next(e.split("=", 1)[1] for e in env if e.startswith("AC_METADATA_URL="))
    parsed = urllib.parse.urlsplit(url)
    base = parsed.path + "/acMetadata/v1"

    def ask() -> list[Any]:
        answers = []
        form = {"Content-Type": "application/x-www-form-urlencoded"}
        requests = [
            ("GET", "/pod/annotations", None),
            ("GET", "/pod/manifest", None),
            ("GET", "/pod/uuid", None),
            ("GET", "/apps/busybox/annotations", None),
            ("GET", "/apps/busybox/image/manifest", None),
            ("GET", "/apps/busybox/image/id", None),
            ("POST", "/pod/hmac/sign", "content=hello"),
        ]
        for method, path, body in requests:
            connection = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=5)
            start = time.perf_counter()
            connection.request(method, base + path, body=body, headers=form if body else {})
            response = connection.getresponse()
            payload = response.read().decode()
            answers.append(
                [
                    path,
                    response.status,
                    response.getheader("Content-Type"),
                    payload,
                    time.perf_counter() - start,
                ]
            )
            connection.close()
        signature = answers[-1][3]
        for content, expected in (("hello", 200), ("tampered", 403)):
            body = urllib.parse.urlencode(
                {"content": content, "uuid": uuid, "signature": signature}
            )
            connection = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=5)
            connection.request("POST", base + "/pod/hmac/verify", body=body, headers=form)
            answers.append(["verify " + content, connection.getresponse().status, expected])
            connection.close()
        return answers

    answers = _in_netns_of(found["init_pid"], ask)  # from inside the pod's network
    plain = "text/plain; charset=us-ascii"
    types = {a[0]: a[2] for a in answers[:7]}
    assert types == {
        "/pod/annotations": "application/json",
        "/pod/manifest": "application/json",
        "/pod/uuid": plain,
        "/apps/busybox/annotations": "application/json",
        "/apps/busybox/image/manifest": "application/json",
        "/apps/busybox/image/id": plain,
        "/pod/hmac/sign": plain,
    }
    assert all(a[1] == 200 for a in answers[:7]), answers
    body = {a[0]: a[3] for a in answers[:7]}
    assert (
        body["/pod/uuid"] == uuid and body["/apps/busybox/image/id"] == found["apps"][0]["image_id"]
    )
    assert json.loads(body["/apps/busybox/image/manifest"])["name"] == "example.com/busybox"
    assert all(a[4] < 0.1 for a in answers[:7]), [(a[0], a[4]) for a in answers[:7]]
    assert [a[1:] for a in answers[7:]] == [[200, 200], [403, 403]]
    rktcfg(data, "stop", "--force", uuid)


# --- 11. user namespaces -----------------------------------------------------------------------


def test_private_users_map_root_to_a_leased_range(data: str) -> None:
    script = "cat /proc/self/uid_map; touch /v/in-volume /in-rootfs; sleep 300"
    uuid = detach(
        data,
        "--private-users",
        "--volume",
        "v,kind=empty",
        "--mount",
        "volume=v,target=/v",
        "example.com/busybox",
        "--exec",
        "/bin/sh",
        "--",
        "-c",
        script,
    )
    pod = pod_dir(data, uuid)
    volume_file = pod / "volumes" / "v" / "in-volume"
    assert wait_for(volume_file.exists, 10), rktcfg(data, "logs", uuid).stdout
    base = status(data, uuid)["private_users"]["uid"]
    assert base >= 65536
    uid_map = rktcfg(data, "logs", uuid).stdout.split()
    assert uid_map[:3] == ["0", str(base), "65536"], uid_map
    assert (volume_file.stat().st_uid, volume_file.stat().st_gid) == (base, base)
    rootfs_file = pod / "apps" / "busybox" / "rootfs" / "in-rootfs"
    assert wait_for(rootfs_file.exists, 5)
    assert rootfs_file.stat().st_uid == base
    assert (pod / "apps" / "busybox" / "rootfs" / "bin" / "busybox").stat().st_uid == base

    other = detach(
        data, "--private-users", "example.com/busybox", "--exec", "/bin/sleep", "--", "300"
    )
    other_base = status(data, other)["private_users"]["uid"]
    assert other_base >= 65536 and abs(other_base - base) >= 65536
    leases = {
        name: read(os.path.join(data, "userns", name))
        for name in os.listdir(Path(data) / "userns")
        if not name.startswith(".")  # the directory's lock
    }
    assert leases == {str(base): uuid, str(other_base): other}
    rktcfg(data, "stop", "--force", uuid, other)
    rktcfg(data, "status", uuid, "--wait=10s")
    rktcfg(data, "status", other, "--wait=10s")
    rktcfg(data, "gc", "--grace-period", "0")
    assert [n for n in os.listdir(Path(data) / "userns") if n != ".lock"] == []  # released


# --- 12. enter ---------------------------------------------------------------------------------


def test_enter_runs_a_command_in_the_app(data: str) -> None:
    sleep = ("--exec", "/bin/sleep", "--", "300")
    uuid = detach(data, "example.com/busybox", *sleep)
    script = "cat /proc/1/comm; hostname; echo $AC_APP_NAME; ls /proc/$$/fd; true"
    result = rktcfg(data, "enter", uuid, "--", "/bin/sh", "-c", script, check=False)
    assert result.returncode == 0, result.stderr
    comm, hostname, app, *fds = result.stdout.split()
    assert (comm, hostname, app) == ("rktcfg-init", f"rktcfg-{uuid}", "busybox")
    assert fds == ["0", "1", "2"]
    result = rktcfg(data, "enter", uuid, "--", "/bin/sh", "-c", "exit 7", check=False)
    assert result.returncode == 7, result.stderr

    pair = detach(data, "example.com/busybox", *sleep, "---", "example.com/other", *sleep)
    result = rktcfg(data, "enter", pair, "--", "/bin/true", check=False)
    assert result.returncode == 2 and "give --app" in result.stderr, result.stderr
    script = "echo $AC_APP_NAME; cat /sys/fs/cgroup/memory/memory.limit_in_bytes; exit 3"
    result = rktcfg(
        data, "enter", pair, "--app", "other", "--", "/bin/sh", "-c", script, check=False
    )
    assert result.returncode == 3, result.stderr
    name, limit = result.stdout.split()
    assert name == "other" and int(limit) > MEMORY_100MI  # the other app's cgroup: no limit


# --- 13. isolators nobody enforces -------------------------------------------------------------


def test_unknown_isolator_warns_or_refuses(data: str) -> None:
    result = run(data, "example.com/unknown")
    assert result.returncode == 0 and result.stdout == "hello\n", result.stderr
    assert "warning" in result.stderr and "example.com/unknown" in result.stderr
    result = run(data, "--strict-isolators", "example.com/unknown")
    assert result.returncode == 2 and "example.com/unknown" in result.stderr, result.stderr
    assert "hello" not in result.stdout
    rktcfg(data, "gc", "--grace-period", "0", "--expire-prepared", "0")
    assert uuids(data) == set()  # neither the refused pod nor any part of it is left


# --- 14. read-only rootfs and volumes ----------------------------------------------------------


def test_read_only_rootfs_and_volumes(data: str, tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "in").write_text("from the host\n")
    script = (
        "touch /x && echo ROOT-WRITTEN; cat /srv/in; echo from the pod > /srv/out && echo wrote; "
        "echo > /dev/null && echo dev-ok"
    )
    result = sh(
        data,
        script,
        "--volume",
        f"site,kind=host,source={shared}",
        "--mount",
        "volume=site,target=/srv",
        app_flags=("--read-only-rootfs",),
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["from the host", "wrote", "dev-ok"]
    assert "Read-only file system" in result.stderr
    assert (shared / "out").read_text() == "from the pod\n"

    result = sh(
        data,
        "cat /srv/in; echo no > /srv/out2",
        "--volume",
        f"site,kind=host,source={shared},readOnly=true",
        "--mount",
        "volume=site,target=/srv",
    )
    assert result.returncode != 0 and result.stdout == "from the host\n"
    assert not (shared / "out2").exists()

    writer = "echo shared-data > /shared/f"
    reader = (
        "i=0; while [ ! -e /shared/f ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done; "
        "cat /shared/f"
    )
    result = run(
        data,
        "--name",
        "sharing",
        "--volume",
        "sh,kind=empty",
        "--mount",
        "volume=sh,target=/shared",
        "example.com/busybox",
        "--exec",
        "/bin/sh",
        "--",
        "-c",
        writer,
        "---",
        "example.com/other",
        "--exec",
        "/bin/sh",
        "--",
        "-c",
        reader,
    )
    assert result.returncode == 0, result.stderr
    uuid = status(data, "sharing")["uuid"]
    assert (pod_dir(data, uuid) / "volumes" / "sh" / "f").read_text() == "shared-data\n"
    assert (
        (pod_dir(data, uuid) / "apps" / "other" / "stdout.log")
        .read_text()
        .endswith("shared-data\n")
    )


# --- 15. networking (more in test_pods_net.py) -----------------------------------------------


def test_net_host_and_net_none(data: str) -> None:
    host_ns = os.stat("/proc/self/ns/net").st_ino
    result = sh(data, "stat -L -c %i /proc/self/ns/net", "--net", "host")
    assert result.returncode == 0 and result.stdout.strip() == str(host_ns), result.stderr
    script = "stat -L -c %i /proc/self/ns/net; cat /proc/net/dev; echo ---; ip link"
    result = sh(data, script, "--net", "none")
    assert result.returncode == 0, result.stderr
    inode, *dev_lines = result.stdout.split("---\n")[0].splitlines()
    assert inode != str(host_ns)
    interfaces = [line.split(":")[0].strip() for line in dev_lines[2:]]
    assert interfaces == ["lo"]
    links = [
        line for line in result.stdout.split("---\n")[1].splitlines() if not line.startswith(" ")
    ]
    assert len(links) == 1 and links[0].split()[1] == "lo:", links
    flags = links[0].split()[2].strip("<>").split(",")
    assert "UP" in flags, links


def test_a_published_port_serves_the_host_loopback_and_is_refused_twice(data: str) -> None:
    import socket
    import urllib.request

    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        host_port = probe.getsockname()[1]
    script = "mkdir -p /w && echo published > /w/index.html && httpd -f -p 8080 -h /w"
    uuid = detach(
        data,
        "--port",
        f"web:{host_port}",
        "example.com/ports",
        "--exec",
        "/bin/sh",
        "--",
        "-c",
        script,
    )
    deadline = time.monotonic() + 10
    while True:
        try:
            url = f"http://127.0.0.1:{host_port}/"
            with urllib.request.urlopen(url, timeout=2) as answer:  # the host's own loopback
                assert answer.read() == b"published\n"
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    again = rktcfg(data, "run", "--port", f"web:{host_port}", "example.com/ports", check=False)
    assert again.returncode == 2 and f"host port {host_port}/tcp" in again.stderr, again.stderr
    unknown = rktcfg(data, "run", "--port", "nope:1", "example.com/ports", check=False)
    assert unknown.returncode == 2 and "ports: web" in unknown.stderr, unknown.stderr
    rktcfg(data, "stop", "--force", uuid)


def test_dns_search_and_hosts_entries_reach_the_pods_files(data: str) -> None:
    flags = (
        "--net",
        "none",
        "--dns",
        "192.0.2.53",
        "--dns",
        "192.0.2.54",
        "--dns-search",
        "example.com",
        "--hosts-entry",
        "10.1.2.3=db.example.com",
    )
    result = sh(data, "cat /etc/resolv.conf; echo ---; cat /etc/hosts", *flags)
    assert result.returncode == 0, result.stderr
    resolv, hosts = result.stdout.split("---\n")
    assert resolv == "nameserver 192.0.2.53\nnameserver 192.0.2.54\nsearch example.com\n"
    assert "10.1.2.3\tdb.example.com" in hosts and "localhost" in hosts
    result = sh(data, "test -e /etc/resolv.conf; echo $?", "--net", "none", "--dns", "none")
    assert result.stdout.strip() == "1", result.stdout
    bad = rktcfg(data, "run", "--dns", "nope", "example.com/busybox", check=False)
    assert bad.returncode == 2 and "--dns 'nope'" in bad.stderr


# --- 16. a killed supervisor -------------------------------------------------------------------


def test_killed_supervisor_leaves_nothing_after_gc(data: str) -> None:
    uuid = detach(data, "example.com/busybox", "--exec", "/bin/sleep", "--", "317")
    found = status(data, uuid)
    dirs = cgroup_dirs(found["cgroups"])
    assert dirs and all(os.path.isdir(d) for d in dirs)

    def sleeping() -> bytes:
        return subprocess.run(["pgrep", "-f", "^/bin/sleep 317$"], capture_output=True).stdout

    assert sleeping()
    os.kill(found["pid"], signal.SIGKILL)
    rktcfg(data, "status", uuid, "--wait=10s")
    assert status(data, uuid)["state"] == "exited"
    assert wait_for(lambda: sleeping() == b"", 5), sleeping()

    def gone(pid: int) -> bool:  # or a zombie: dead, waiting for the host's PID 1 to reap it
        try:
            with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
                return handle.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
        except FileNotFoundError:
            return True

    assert wait_for(lambda: gone(found["init_pid"]), 5)
    result = rktcfg(data, "gc", "--grace-period", "0")
    assert f"garbage collected pod {uuid}" in result.stdout
    assert [d for d in dirs if os.path.exists(d)] == []


# --- 17. without overlayfs ---------------------------------------------------------------------


def test_no_overlay_copies_the_rootfs(data: str) -> None:
    script = "awk '$5 == \"/\"' /proc/self/mountinfo; echo hi > /made && cat /made"
    result = sh(data, script, "--name", "layered")
    assert result.returncode == 0, result.stderr
    assert " - overlay " in result.stdout.splitlines()[0]  # the default: an overlay
    result = sh(data, script, "--name", "copied", "--no-overlay")
    assert result.returncode == 0, result.stderr
    root_line, made = result.stdout.splitlines()
    assert "overlay" not in root_line and made == "hi"
    rootfs = pod_dir(data, status(data, "copied")["uuid"]) / "apps" / "busybox" / "rootfs"
    assert (rootfs / "made").read_text() == "hi\n"  # written into the pod's own copy
    assert (rootfs / "bin" / "busybox").is_file() and not (rootfs / "bin" / "busybox").is_symlink()
