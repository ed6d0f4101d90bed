"""rktcfg.isolators.cgroups against a fake cgroup tree: plain directories and files.

A small fake kernel (:class:`FakeKernel`, at the mkdir/rmdir seam) gives each directory made
below a fake mount the files the kernel would: a v2 child gets the controllers its parent
enabled in ``cgroup.subtree_control`` and only their knobs, a v1 child its hierarchy's knobs.
Its rmdir is a cgroup file system's: a cgroup with child cgroups or processes is busy, one
with only knob files goes away. Real cgroups are in
tests/privileged/test_cgroups.py.
"""

from __future__ import annotations

import errno
import json
import os
import threading
import time
from collections.abc import Mapping
from pathlib import Path

import pytest

from rktcfg.isolators import cgroups
from rktcfg.isolators.cgroups import CgroupError, Layout, V1Driver, V2Driver, detect, plan
from rktcfg.isolators.resolve import Limits

MEMORY_MAX_V1 = "9223372036854771712\n"
V1_KNOBS: Mapping[str, Mapping[str, str]] = {
    "cpu": {"cpu.cfs_period_us": "100000\n", "cpu.cfs_quota_us": "-1\n", "cpu.shares": "1024\n"},
    "cpuacct": {"cpuacct.usage": "0\n"},
    "memory": {
        "memory.limit_in_bytes": MEMORY_MAX_V1,
        "memory.memsw.limit_in_bytes": MEMORY_MAX_V1,
        "memory.oom_control": "oom_kill_disable 0\nunder_oom 0\noom_kill 0\n",
        "memory.failcnt": "0\n",
    },
    "pids": {"pids.max": "max\n"},
    "systemd": {},
}
V2_KNOBS: Mapping[str, Mapping[str, str]] = {
    "cpu": {"cpu.max": "max 100000\n", "cpu.weight": "100\n"},
    "memory": {
        "memory.max": "max\n",
        "memory.swap.max": "max\n",
        "memory.events": "low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\noom_group_kill 0\n",
    },
    "pids": {"pids.max": "max\n"},
    "io": {"io.max": ""},
}
OWN_MEMORY = "/process_api/371401d07a"
LIMITS = Limits(
    cpu_limit_millis=900,
    cpu_request_millis=900,
    memory_limit_bytes=44040192,
    memory_request_bytes=44040192,
    pids=20,
).as_dict()


def read(path: str | Path) -> str:
    return Path(path).read_text()


def files_of(directory: str | Path) -> dict[str, str]:
    return {p.name: p.read_text() for p in sorted(Path(directory).iterdir()) if p.is_file()}


def enabled(directory: Path) -> set[str]:
    """What ``cgroup.subtree_control`` enables: as the kernel shows it ("cpu memory") or as
    the driver wrote it to the plain file ("+cpu +memory")."""
    control = directory / "cgroup.subtree_control"
    if not control.is_file():
        return set()
    return {word.lstrip("+") for word in control.read_text().split() if not word.startswith("-")}


class FakeKernel:
    """mkdir(2) and rmdir(2) as on cgroup file systems, for directories below the fake
    mounts; anything else goes to the real calls."""

    def __init__(self) -> None:
        self.mounts: dict[Path, tuple[str, str, bool]] = {}  # mount -> (v1|v2, hierarchy, memsw)
        self.real_mkdir = os.mkdir
        self.real_rmdir = os.rmdir

    def mount_v1(self, path: Path, hierarchy: str, *, memsw: bool = True) -> None:
        path.mkdir(parents=True)
        self.mounts[path] = ("v1", hierarchy, memsw)
        self._populate(path)

    def mount_v2(self, path: Path, controllers: str, subtree_control: str = "") -> None:
        path.mkdir(parents=True)
        (path / "cgroup.controllers").write_text(controllers + "\n")
        (path / "cgroup.subtree_control").write_text(subtree_control)
        (path / "cgroup.procs").write_text("")
        self.mounts[path] = ("v2", "", False)

    def _mount_of(self, path: Path) -> tuple[str, str, bool] | None:
        for mount, kind in self.mounts.items():
            if path == mount or mount in path.parents:
                return kind
        return None

    def _populate(self, here: Path) -> None:
        kind = self._mount_of(here)
        if kind is None:
            return
        version, hierarchy, memsw = kind
        if version == "v1":
            for name, text in {"cgroup.procs": "", "tasks": "", **V1_KNOBS[hierarchy]}.items():
                if memsw or not name.startswith("memory.memsw"):
                    (here / name).write_text(text)
            return
        # v2: the controllers the parent offers and enables, and only their knobs
        offered = set(read(here.parent / "cgroup.controllers").split()) & enabled(here.parent)
        ordered = [c for c in V2_KNOBS if c in offered]
        (here / "cgroup.controllers").write_text(" ".join(ordered) + "\n")
        (here / "cgroup.subtree_control").write_text("")
        (here / "cgroup.procs").write_text("")
        (here / "cgroup.type").write_text("domain\n")
        for controller in ordered:
            for name, text in V2_KNOBS[controller].items():
                (here / name).write_text(text)

    def mkdir(self, path: str | os.PathLike[str], mode: int = 0o777, **kwargs: object) -> None:
        self.real_mkdir(path, mode, **kwargs)  # type: ignore[arg-type]
        self._populate(Path(path))

    def rmdir(self, path: str | os.PathLike[str], **kwargs: object) -> None:
        """Busy with child cgroups or processes; else the directory goes with its knobs."""
        here = Path(path)
        if self._mount_of(here) is None:
            self.real_rmdir(path, **kwargs)  # type: ignore[arg-type]
            return
        if not here.exists():
            raise FileNotFoundError(errno.ENOENT, "No such file or directory", str(path))
        procs = here / "cgroup.procs"
        if any(p.is_dir() for p in here.iterdir()) or (procs.exists() and read(procs).strip()):
            raise OSError(errno.EBUSY, "Device or resource busy", str(path))
        for child in here.iterdir():
            child.unlink()
        self.real_rmdir(path)


@pytest.fixture
def kernel(monkeypatch: pytest.MonkeyPatch) -> FakeKernel:
    fake = FakeKernel()
    monkeypatch.setattr(cgroups.os, "mkdir", fake.mkdir)
    monkeypatch.setattr(cgroups.os, "rmdir", fake.rmdir)
    return fake


# Trees ---------------------------------------------------------------------------------------


@pytest.fixture
def v2_tree(tmp_path: Path, kernel: FakeKernel) -> tuple[Path, Layout]:
    """A cgroup2 root offering and enabling cpu, io, memory and pids, with the invoking
    process in /user.slice (nothing enabled there yet)."""
    root = tmp_path / "cgroup"
    kernel.mount_v2(root, "cpu io memory pids", "cpu io memory pids\n")
    (root / "user.slice").mkdir()
    layout = Layout(version="v2", unified=str(root), v2_controllers=("cpu", "io", "memory", "pids"))
    return root, layout


def v1_hierarchies(root: Path, kernel: FakeKernel, *, memsw: bool = True) -> Layout:
    """v1 hierarchies like this machine's: the process in / everywhere but memory."""
    for hierarchy in ("cpu", "cpuacct", "memory", "pids", "systemd"):
        kernel.mount_v1(root / hierarchy, hierarchy, memsw=memsw)
    (root / "memory" / OWN_MEMORY.strip("/")).mkdir(parents=True)
    return Layout(
        version="v1",
        v1={
            "cpu": str(root / "cpu"),
            "cpuacct": str(root / "cpuacct"),
            "memory": str(root / "memory"),
            "pids": str(root / "pids"),
            "name=systemd": str(root / "systemd"),
        },
    )


@pytest.fixture
def v1_tree(tmp_path: Path, kernel: FakeKernel) -> tuple[Path, Layout]:
    root = tmp_path / "cgroup"
    return root, v1_hierarchies(root, kernel)


def own_v1() -> dict[str, str]:
    return {"cpu": "/", "cpuacct": "/", "memory": OWN_MEMORY, "pids": "/", "name=systemd": "/"}


# detect --------------------------------------------------------------------------------------


def mountinfo(tmp_path: Path, *lines: str) -> str:
    path = tmp_path / "mountinfo"
    path.write_text("".join(f"{i + 30} 23 0:{i + 28} {line}\n" for i, line in enumerate(lines)))
    return str(path)


def v1_lines(root: Path, *, comount: bool = False) -> list[str]:
    cpu = (
        [f"/ {root}/cpu,cpuacct rw,nosuid - cgroup cgroup rw,cpu,cpuacct"]
        if comount
        else [
            f"/ {root}/cpu rw,relatime - cgroup cgroup rw,cpu",
            f"/ {root}/cpuacct rw,relatime - cgroup cgroup rw,cpuacct",
        ]
    )
    return [
        f"/ {root} rw,relatime - tmpfs tmpfs rw,mode=755",
        *cpu,
        f"/ {root}/cpuset rw,relatime - cgroup cgroup rw,cpuset,clone_children",
        f"/ {root}/memory rw,relatime - cgroup cgroup rw,memory",
        f"/ {root}/pids rw,relatime shared:5 - cgroup cgroup rw,pids",
        f"/ {root}/systemd rw,relatime - cgroup cgroup "
        "rw,xattr,release_agent=/lib/systemd/systemd-cgroups-agent,name=systemd",
        # the same hierarchy bind-mounted into a pod's rootfs is not the host's mount
        f"/ /var/lib/rktcfg/pods/run/x/rootfs{root}/memory ro - cgroup cgroup rw,memory",
    ]


def test_detect_v1(tmp_path: Path) -> None:
    root = tmp_path / "cg"
    layout = detect(str(root), mountinfo(tmp_path, *v1_lines(root)))
    assert layout == Layout(
        version="v1",
        v1={
            "cpu": f"{root}/cpu",
            "cpuacct": f"{root}/cpuacct",
            "cpuset": f"{root}/cpuset",
            "memory": f"{root}/memory",
            "pids": f"{root}/pids",
            "name=systemd": f"{root}/systemd",
        },
    )


def test_detect_comounted_cpu_cpuacct(tmp_path: Path) -> None:
    root = tmp_path / "cg"
    layout = detect(str(root), mountinfo(tmp_path, *v1_lines(root, comount=True)))
    assert layout.version == "v1"
    assert layout.v1["cpu"] == layout.v1["cpuacct"] == f"{root}/cpu,cpuacct"
    made = plan(layout, "rktcfg-p", ["web"], own={})
    assert made["apps"]["web"]["cpu"] == made["apps"]["web"]["cpuacct"]
    driver = cgroups.driver_for(made)
    joins = driver.join_files("web")
    assert joins.count(f"{root}/cpu,cpuacct/rktcfg-p/web/cgroup.procs") == 1
    assert len(joins) == 4  # cpu,cpuacct memory pids systemd


def test_detect_hybrid(tmp_path: Path) -> None:
    root = tmp_path / "cg"
    (root / "unified").mkdir(parents=True)
    (root / "unified" / "cgroup.controllers").write_text("hugetlb\n")
    lines = [*v1_lines(root), f"/ {root}/unified rw,nosuid,relatime - cgroup2 cgroup2 rw"]
    layout = detect(str(root), mountinfo(tmp_path, *lines))
    assert layout.version == "hybrid"
    assert layout.unified == f"{root}/unified"
    assert layout.v2_controllers == ("hugetlb",)
    assert layout.v1["memory"] == f"{root}/memory"
    assert Layout.from_dict(json.loads(json.dumps(layout.as_dict()))) == layout


def test_detect_v2(tmp_path: Path) -> None:
    root = tmp_path / "cg"
    root.mkdir()
    (root / "cgroup.controllers").write_text("cpuset cpu io memory hugetlb pids rdma misc\n")
    lines = [
        f"/ {root} rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 "
        "rw,nsdelegate,memory_recursiveprot"
    ]
    layout = detect(str(root), mountinfo(tmp_path, *lines))
    assert layout == Layout(
        version="v2",
        unified=str(root),
        v2_controllers=("cpuset", "cpu", "io", "memory", "hugetlb", "pids", "rdma", "misc"),
    )


def test_detect_the_last_mount_on_the_root_wins(tmp_path: Path) -> None:
    root = tmp_path / "cg"
    lines = [f"/ {root} rw - cgroup2 cgroup2 rw", *v1_lines(root)]  # tmpfs over cgroup2
    assert detect(str(root), mountinfo(tmp_path, *lines)).version == "v1"


def test_detect_escaped_mount_points_and_subtree_roots(tmp_path: Path) -> None:
    root = tmp_path / "my cg"
    escaped = str(root).replace(" ", "\\040")
    lines = [
        f"/ {escaped} rw - tmpfs tmpfs rw",
        f"/docker/abc {escaped}/memory rw - cgroup cgroup rw,memory",
        f"/ {escaped}/pids rw - cgroup cgroup rw,pids",
    ]
    layout = detect(str(root), mountinfo(tmp_path, *lines))
    assert layout.v1 == {"memory": f"{root}/memory", "pids": f"{root}/pids"}
    assert layout.roots == {"memory": "/docker/abc"}
    # /proc/self/cgroup shows the full path; the mount shows only /docker/abc and below
    made = plan(layout, "rktcfg-p", [], own={"memory": "/docker/abc", "pids": "/docker/abc"})
    assert made["pod"] == {
        "memory": f"{root}/memory/rktcfg-p",
        "pids": f"{root}/pids/docker/abc/rktcfg-p",
    }


def test_detect_nothing_mounted(tmp_path: Path) -> None:
    root = tmp_path / "cg"
    root.mkdir()
    path = mountinfo(tmp_path, f"/ {root} rw - tmpfs tmpfs rw")
    with pytest.raises(CgroupError, match="no cgroup file system is mounted"):
        detect(str(root), path)
    with pytest.raises(CgroupError, match="cannot read"):
        detect(str(root), str(tmp_path / "missing"))


def test_statfs_of_a_non_cgroup_root(tmp_path: Path) -> None:
    assert cgroups._statfs_type(str(tmp_path)) not in (None, cgroups.CGROUP2_MAGIC)
    assert cgroups._statfs_type(str(tmp_path / "missing")) is None


def test_own_cgroups(tmp_path: Path) -> None:
    path = tmp_path / "cgroup"
    path.write_text(
        "9:name=systemd:/\n8:pids:/\n4:memory:/process_api/3714\n2:cpu,cpuacct:/a/b\n0::/\n"
    )
    assert cgroups.own_cgroups(str(path)) == {
        "name=systemd": "/",
        "pids": "/",
        "memory": "/process_api/3714",
        "cpu": "/a/b",
        "cpuacct": "/a/b",
        "": "/",
    }


# plan ----------------------------------------------------------------------------------------


def test_plan_v1_below_own_cgroups(v1_tree: tuple[Path, Layout]) -> None:
    root, layout = v1_tree
    made = plan(layout, "rktcfg-1234", ["web", "db"], own=own_v1())
    assert made["version"] == "v1"
    assert made["pod"] == {
        "cpu": f"{root}/cpu/rktcfg-1234",
        "cpuacct": f"{root}/cpuacct/rktcfg-1234",
        "memory": f"{root}/memory{OWN_MEMORY}/rktcfg-1234",
        "pids": f"{root}/pids/rktcfg-1234",
        "name=systemd": f"{root}/systemd/rktcfg-1234",
    }
    assert made["init"]["memory"] == f"{root}/memory{OWN_MEMORY}/rktcfg-1234/_init"
    assert made["apps"]["db"]["pids"] == f"{root}/pids/rktcfg-1234/db"
    assert list(made["apps"]) == ["web", "db"]
    assert json.loads(json.dumps(made)) == made


def test_plan_parent_is_used_in_every_hierarchy(v1_tree: tuple[Path, Layout]) -> None:
    root, layout = v1_tree
    made = plan(layout, "rktcfg-1", ["web"], parent="/machine.slice", own=own_v1())
    assert set(made["pod"].values()) == {
        f"{root}/{h}/machine.slice/rktcfg-1"
        for h in ("cpu", "cpuacct", "memory", "pids", "systemd")
    }


def test_plan_v2_and_hybrid(tmp_path: Path) -> None:
    v2 = Layout(version="v2", unified="/sys/fs/cgroup")
    made = plan(v2, "rktcfg-1", ["web"], own={"": "/user.slice/session-2.scope", "memory": "/x"})
    assert made == {
        "version": "v2",
        "pod": {"unified": "/sys/fs/cgroup/user.slice/session-2.scope/rktcfg-1"},
        "init": {"unified": "/sys/fs/cgroup/user.slice/session-2.scope/rktcfg-1/_init"},
        "apps": {"web": {"unified": "/sys/fs/cgroup/user.slice/session-2.scope/rktcfg-1/web"}},
    }
    hybrid = Layout(
        version="hybrid",
        v1={"memory": "/c/memory", "devices": "/c/devices", "name=systemd": "/c/systemd"},
        unified="/c/unified",
    )
    made = plan(hybrid, "rktcfg-1", [], own={"memory": "/m", "name=systemd": "/", "": "/u"})
    assert made["pod"] == {
        "memory": "/c/memory/m/rktcfg-1",
        "devices": "/c/devices/rktcfg-1",  # the device allow-list
        "name=systemd": "/c/systemd/rktcfg-1",
        "unified": "/c/unified/u/rktcfg-1",
    }


@pytest.mark.parametrize(
    ("pod", "apps", "parent", "message"),
    [
        ("rktcfg-1", ["_init"], None, "app name"),
        ("rktcfg-1", ["a/b"], None, "app name"),
        ("rktcfg-1", ["cpu.shares"], None, "app name"),
        ("rktcfg-1", ["web", "web"], None, "must be distinct"),
        ("../x", [], None, "pod cgroup name"),
        ("", [], None, "pod cgroup name"),
        ("rktcfg-1", [], "/a/../../etc", "without '..'"),
    ],
)
def test_plan_refuses_names_that_escape_or_collide(
    pod: str, apps: list[str], parent: str | None, message: str
) -> None:
    layout = Layout(version="v2", unified="/sys/fs/cgroup")
    with pytest.raises(ValueError, match=message):
        plan(layout, pod, apps, parent=parent, own={"": "/"})


# v2 driver -----------------------------------------------------------------------------------


def test_v2_create_enables_controllers_in_parent_and_pod(v2_tree: tuple[Path, Layout]) -> None:
    root, layout = v2_tree
    made = plan(layout, "rktcfg-1", ["web", "db"], own={"": "/user.slice"})
    driver = cgroups.driver_for(made)
    assert isinstance(driver, V2Driver)
    assert driver.create() == []
    parent, pod = root / "user.slice", root / "user.slice" / "rktcfg-1"
    assert read(parent / "cgroup.subtree_control") == "+cpu +memory +pids"  # io left alone
    assert read(pod / "cgroup.subtree_control") == "+cpu +memory +pids"
    assert sorted(p.name for p in pod.iterdir() if p.is_dir()) == ["_init", "db", "web"]
    assert read(pod / "web" / "cgroup.controllers") == "cpu memory pids\n"
    assert read(root / "cgroup.subtree_control") == "cpu io memory pids\n"  # untouched


def test_v2_create_leaves_an_enabled_parent_alone(v2_tree: tuple[Path, Layout]) -> None:
    root, layout = v2_tree
    (root / "user.slice" / "cgroup.subtree_control").write_text("cpu memory pids\n")
    driver = cgroups.driver_for(plan(layout, "rktcfg-1", ["web"], own={"": "/user.slice"}))
    assert driver.create() == []
    assert read(root / "user.slice" / "cgroup.subtree_control") == "cpu memory pids\n"
    assert read(root / "user.slice" / "rktcfg-1" / "cgroup.subtree_control") == (
        "+cpu +memory +pids"
    )


def test_v2_create_uses_only_what_the_parent_offers(v2_tree: tuple[Path, Layout]) -> None:
    root, layout = v2_tree
    (root / "user.slice" / "cgroup.controllers").write_text("memory io\n")
    (root / "user.slice" / "cgroup.subtree_control").write_text("memory\n")
    driver = cgroups.driver_for(plan(layout, "rktcfg-1", ["web"], own={"": "/user.slice"}))
    assert driver.create() == []
    assert read(root / "user.slice" / "cgroup.subtree_control") == "memory\n"
    assert read(root / "user.slice" / "rktcfg-1" / "cgroup.subtree_control") == "+memory"
    assert driver.apply("web", LIMITS) == [
        "resource/cpu isolator set but the cpu controller is not available, skipping",
        "rktcfg/pids isolator set but the pids controller is not available, skipping",
    ]
    assert files_of(root / "user.slice" / "rktcfg-1" / "web")["memory.max"] == "44040192"


def test_v2_parent_that_cannot_be_changed_is_a_warning(v2_tree: tuple[Path, Layout]) -> None:
    root, layout = v2_tree
    control = root / "user.slice" / "cgroup.subtree_control"
    control.unlink()
    control.mkdir()  # any write fails (EISDIR), as EBUSY does when the parent holds processes
    driver = cgroups.driver_for(plan(layout, "rktcfg-1", ["web"], own={"": "/user.slice"}))
    assert driver.create() == [
        f"cannot enable +cpu +memory +pids in {control} (Is a directory); "
        "those controllers' limits will not be enforced"
    ]
    assert read(root / "user.slice" / "rktcfg-1" / "cgroup.subtree_control") == ""
    assert len(driver.apply("web", LIMITS)) == 3


def test_v2_apply_writes_exact_values(v2_tree: tuple[Path, Layout]) -> None:
    root, layout = v2_tree
    driver = cgroups.driver_for(plan(layout, "rktcfg-1", ["web", "db"], own={"": "/user.slice"}))
    driver.create()
    assert driver.apply("web", LIMITS) == []
    web = files_of(root / "user.slice" / "rktcfg-1" / "web")
    assert web["cpu.max"] == "90000 100000"
    assert web["cpu.weight"] == str(1 + ((921 - 2) * 9999) // 262142) == "36"
    assert web["memory.max"] == "44040192"
    assert web["memory.swap.max"] == "0"
    assert web["pids.max"] == "20"
    db = files_of(root / "user.slice" / "rktcfg-1" / "db")  # untouched
    assert (db["cpu.max"], db["memory.max"], db["pids.max"]) == ("max 100000\n", "max\n", "max\n")


@pytest.mark.parametrize(
    ("limits", "expected"),
    [
        ({"cpu_limit_millis": 5}, {"cpu.max": "1000 100000"}),  # the kernel's minimum quota
        ({"cpu_limit_millis": 2500}, {"cpu.max": "250000 100000"}),
        ({"cpu_request_millis": 1000}, {"cpu.weight": "39"}),  # shares 1024
        ({"cpu_request_millis": 1}, {"cpu.weight": "1"}),  # shares 2
        ({"cpu_shares": 262144, "cpu_request_millis": 1}, {"cpu.weight": "10000"}),
        ({"cpu_shares": 2}, {"cpu.weight": "1"}),
        ({"oom_score_adj": 500}, {}),  # not a cgroup file: the spawner writes it
        ({"memory_request_bytes": 10**8}, {}),  # recorded, not enforced
    ],
)
def test_v2_mapping(
    v2_tree: tuple[Path, Layout], limits: dict[str, int], expected: dict[str, str]
) -> None:
    root, layout = v2_tree
    driver = cgroups.driver_for(plan(layout, "rktcfg-1", ["web"], own={"": "/user.slice"}))
    driver.create()
    web = root / "user.slice" / "rktcfg-1" / "web"
    before = files_of(web)
    assert driver.apply("web", Limits.from_dict(limits).as_dict()) == []
    assert files_of(web) == {**before, **expected}


def test_v2_oom_kills_and_join_files(v2_tree: tuple[Path, Layout]) -> None:
    root, layout = v2_tree
    driver = cgroups.driver_for(plan(layout, "rktcfg-1", ["web"], own={"": "/user.slice"}))
    driver.create()
    pod = root / "user.slice" / "rktcfg-1"
    assert driver.oom_kills("web") == 0
    (pod / "web" / "memory.events").write_text("low 0\nhigh 0\nmax 9\noom 3\noom_kill 3\n")
    assert driver.oom_kills("web") == 3
    assert driver.join_files("web") == [f"{pod}/web/cgroup.procs"]
    assert driver.join_files(None) == [f"{pod}/_init/cgroup.procs"]
    with pytest.raises(ValueError, match="not one of the pod's apps"):
        driver.join_files("nope")


def test_join_writes_the_pid(v2_tree: tuple[Path, Layout]) -> None:
    root, layout = v2_tree
    driver = cgroups.driver_for(plan(layout, "rktcfg-1", ["web"], own={"": "/user.slice"}))
    driver.create()
    cgroups.join(driver.join_files("web"), pid=4242)
    assert read(root / "user.slice" / "rktcfg-1" / "web" / "cgroup.procs") == "4242"
    cgroups.join(driver.join_files(None))
    assert read(root / "user.slice" / "rktcfg-1" / "_init" / "cgroup.procs") == str(os.getpid())


def test_a_failed_write_names_the_file_and_value(v2_tree: tuple[Path, Layout]) -> None:
    root, layout = v2_tree
    driver = cgroups.driver_for(plan(layout, "rktcfg-1", ["web"], own={"": "/user.slice"}))
    driver.create()
    web = root / "user.slice" / "rktcfg-1" / "web"
    (web / "pids.max").unlink()  # a cgroup file system never creates files
    with pytest.raises(CgroupError) as exc:
        driver.apply("web", {"pids": 20})
    assert str(exc.value) == f'cannot write "20" to {web}/pids.max: No such file or directory'
    assert exc.value.path == f"{web}/pids.max" and exc.value.errno == errno.ENOENT


def test_create_refuses_a_missing_parent(v2_tree: tuple[Path, Layout]) -> None:
    root, layout = v2_tree
    made = plan(layout, "rktcfg-1", ["web"], parent="/machine.slice")
    with pytest.raises(CgroupError, match=r"cgroup parent .*/machine.slice does not exist"):
        cgroups.driver_for(made).create()
    assert not (root / "machine.slice").exists()


def test_v2_remove_deepest_first_waiting_for_processes(v2_tree: tuple[Path, Layout]) -> None:
    root, layout = v2_tree
    driver = cgroups.driver_for(plan(layout, "rktcfg-1", ["web", "db"], own={"": "/user.slice"}))
    driver.create()
    pod = root / "user.slice" / "rktcfg-1"
    (pod / "web" / "cgroup.procs").write_text("4242\n")
    left = driver.remove(timeout=0.2)
    assert left == [f"{pod}/web: Device or resource busy", f"{pod}: Device or resource busy"]
    assert sorted(p.name for p in pod.iterdir() if p.is_dir()) == ["web"]

    def exit_later() -> None:
        time.sleep(0.2)
        (pod / "web" / "cgroup.procs").write_text("")

    thread = threading.Thread(target=exit_later)
    thread.start()
    try:
        assert driver.remove(timeout=5.0) == []
    finally:
        thread.join()
    assert not pod.exists()
    assert (root / "user.slice").is_dir()  # the parent stays
    assert driver.remove() == []  # already gone: nothing to report


# v1 driver -----------------------------------------------------------------------------------


def test_v1_create_apply_exact_files(v1_tree: tuple[Path, Layout]) -> None:
    root, layout = v1_tree
    made = plan(layout, "rktcfg-1", ["web", "db"], own=own_v1())
    driver = cgroups.driver_for(made)
    assert isinstance(driver, V1Driver)
    assert driver.create() == []
    for directory in (*made["pod"].values(), *made["init"].values()):
        assert Path(directory).is_dir()
    assert driver.apply("web", LIMITS) == []
    cpu = files_of(root / "cpu" / "rktcfg-1" / "web")
    assert (cpu["cpu.cfs_period_us"], cpu["cpu.cfs_quota_us"], cpu["cpu.shares"]) == (
        "100000",
        "90000",
        "921",
    )
    memory = files_of(Path(made["apps"]["web"]["memory"]))
    assert memory["memory.limit_in_bytes"] == "44040192"
    assert memory["memory.memsw.limit_in_bytes"] == "44040192"
    assert read(root / "pids" / "rktcfg-1" / "web" / "pids.max") == "20"
    assert read(root / "pids" / "rktcfg-1" / "db" / "pids.max") == "max\n"
    # nothing outside the pod's cgroups changed
    assert read(root / "memory" / OWN_MEMORY.strip("/") / "memory.limit_in_bytes") == MEMORY_MAX_V1
    assert read(root / "cpu" / "cpu.shares") == "1024\n"


@pytest.mark.parametrize(
    ("limits", "expected"),
    [
        ({"cpu_limit_millis": 1}, {"cpu.cfs_period_us": "100000", "cpu.cfs_quota_us": "1000"}),
        ({"cpu_request_millis": 250}, {"cpu.shares": "256"}),
        ({"cpu_request_millis": 1}, {"cpu.shares": "2"}),
        ({"cpu_shares": 100, "cpu_request_millis": 4000}, {"cpu.shares": "100"}),
        ({"oom_score_adj": -500}, {}),
    ],
)
def test_v1_cpu_mapping(
    v1_tree: tuple[Path, Layout], limits: dict[str, int], expected: dict[str, str]
) -> None:
    root, layout = v1_tree
    driver = cgroups.driver_for(plan(layout, "rktcfg-1", ["web"], own=own_v1()))
    driver.create()
    web = root / "cpu" / "rktcfg-1" / "web"
    before = files_of(web)
    assert driver.apply("web", Limits.from_dict(limits).as_dict()) == []
    assert files_of(web) == {**before, **expected}


def test_v1_memory_without_memsw(tmp_path: Path, kernel: FakeKernel) -> None:
    layout = v1_hierarchies(tmp_path / "cgroup", kernel, memsw=False)
    made = plan(layout, "rktcfg-1", ["web"], own=own_v1())
    driver = cgroups.driver_for(made)
    driver.create()
    assert driver.apply("web", {"memory_limit_bytes": 128 * 10**6}) == []
    memory = files_of(Path(made["apps"]["web"]["memory"]))
    assert memory["memory.limit_in_bytes"] == "128000000"
    assert "memory.memsw.limit_in_bytes" not in memory


def test_v1_missing_hierarchies_warn(tmp_path: Path, kernel: FakeKernel) -> None:
    kernel.mount_v1(tmp_path / "memory", "memory")
    layout = Layout(version="v1", v1={"memory": str(tmp_path / "memory")})
    driver = cgroups.driver_for(plan(layout, "rktcfg-1", ["web"], own={"memory": "/"}))
    driver.create()
    assert driver.apply("web", {**LIMITS, "cpu_shares": 512}) == [
        "resource/cpu isolator set but the cpu controller is not available, skipping",
        "os/linux/cpu-shares isolator set but the cpu controller is not available, skipping",
        "rktcfg/pids isolator set but the pids controller is not available, skipping",
    ]
    assert read(tmp_path / "memory" / "rktcfg-1" / "web" / "memory.limit_in_bytes") == "44040192"


def test_v1_oom_kills(v1_tree: tuple[Path, Layout]) -> None:
    _, layout = v1_tree
    made = plan(layout, "rktcfg-1", ["web"], own=own_v1())
    driver = cgroups.driver_for(made)
    driver.create()
    memory = Path(made["apps"]["web"]["memory"])
    assert driver.oom_kills("web") == 0
    (memory / "memory.oom_control").write_text("oom_kill_disable 0\nunder_oom 0\noom_kill 2\n")
    assert driver.oom_kills("web") == 2
    (memory / "memory.oom_control").write_text("oom_kill_disable 0\nunder_oom 0\n")  # old kernel
    (memory / "memory.failcnt").write_text("17\n")
    assert driver.oom_kills("web") == 1
    (memory / "memory.failcnt").write_text("0\n")
    assert driver.oom_kills("web") == 0


def test_hybrid_makes_unified_dirs_without_limits(
    v1_tree: tuple[Path, Layout], kernel: FakeKernel
) -> None:
    root, layout = v1_tree
    unified = root / "unified"
    kernel.mount_v2(unified, "hugetlb")
    hybrid = Layout(
        version="hybrid", v1=layout.v1, unified=str(unified), v2_controllers=("hugetlb",)
    )
    made = plan(hybrid, "rktcfg-1", ["web"], own={**own_v1(), "": "/"})
    driver = cgroups.driver_for(made)
    assert isinstance(driver, V1Driver)
    assert driver.create() == []
    assert driver.apply("web", LIMITS) == []
    assert files_of(unified / "rktcfg-1" / "web") == {
        "cgroup.controllers": "\n",
        "cgroup.procs": "",
        "cgroup.subtree_control": "",
        "cgroup.type": "domain\n",
    }
    assert read(unified / "cgroup.subtree_control") == ""  # nothing enabled anywhere
    assert f"{unified}/rktcfg-1/web/cgroup.procs" in driver.join_files("web")
    assert len(driver.join_files("web")) == 6


def test_v1_remove_every_hierarchy(v1_tree: tuple[Path, Layout]) -> None:
    root, layout = v1_tree
    made = plan(layout, "rktcfg-1", ["web"], own=own_v1())
    driver = cgroups.driver_for(made)
    driver.create()
    (Path(made["apps"]["web"]["memory"]) / "stray").mkdir()  # a cgroup the app made
    assert driver.remove(timeout=1.0) == []
    for directory in made["pod"].values():
        assert not Path(directory).exists()
    assert (root / "memory" / OWN_MEMORY.strip("/")).is_dir()


def test_driver_for_unknown_version() -> None:
    with pytest.raises(ValueError, match="version must be v1, v2 or hybrid"):
        cgroups.driver_for({"version": "v3"})
    with pytest.raises(ValueError, match="version: must be"):
        Layout.from_dict({"version": "v3"})


def test_the_module_imports_only_cheap_standard_library() -> None:
    """The pod supervisor's children import it under ``python -I``: no rktcfg, no typing or
    dataclasses at run time (those are only for mypy, under TYPE_CHECKING)."""
    import ast

    tree = ast.parse(Path(cgroups.__file__).read_text())
    at_run_time: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            node.body = []  # type-checking imports do not run
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            at_run_time |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            at_run_time.add(node.module)
    assert at_run_time <= {"__future__", "errno", "os", "time", "ctypes"}
