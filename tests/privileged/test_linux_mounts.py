"""rktcfg.stage1.linux against the real kernel: mounts, the gc teardown, namespaces, pivot_root.

Every test that mounts anything runs its body in a forked child that first unshares its mount
namespace and makes "/" rslave (the ``in_private_ns`` fixture): whatever the body mounts, and
whatever a failing body leaves behind, disappears with the child. An autouse fixture checks
that the host's mount table is the same after each test as before it.
"""

from __future__ import annotations

import collections
import errno
import os
import socket
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from rktcfg.errors import RuntimeFailure
from rktcfg.stage1 import linux
from rktcfg.stage1.linux import MountInfo

Body = Callable[[], None]
Runner = Callable[[Body], None]


def host_table() -> list[tuple[int, str, str]]:
    return [(m.mount_id, m.mount_point, m.fstype) for m in linux.mountinfo()]


@pytest.fixture(autouse=True)
def host_mounts_unchanged() -> Iterator[None]:
    before = host_table()
    yield
    assert host_table() == before, "a test changed the host's mount table"


def run_in_child(body: Body, *, private_mount_ns: bool = True) -> None:
    """Run ``body`` in a forked child (in its own mount namespace, "/" rslave); fail the test
    with the child's traceback if it raised."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never return into pytest
        os.close(read_fd)
        code, report = 1, b""
        try:
            if private_mount_ns:
                linux.unshare(linux.CLONE_NEWNS)
                linux.mount(None, "/", None, linux.MS_REC | linux.MS_SLAVE)
            body()
            code, report = 0, b"ok"
        except BaseException:
            report = traceback.format_exc().encode(errors="replace")
        finally:
            try:
                view = memoryview(report)
                while view:
                    view = view[os.write(write_fd, view) :]
            finally:
                os._exit(code)
    os.close(write_fd)
    chunks = []
    with os.fdopen(read_fd, "rb") as pipe:
        while chunk := pipe.read(65536):
            chunks.append(chunk)
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    report = b"".join(chunks).decode(errors="replace")
    if code != 0 or report != "ok":
        pytest.fail(f"child exited {code}:\n{report}", pytrace=False)


@pytest.fixture
def in_private_ns() -> Runner:
    return run_in_child


def tmpfs(path: Path, flags: int = 0) -> str:
    path.mkdir(parents=True, exist_ok=True)
    linux.mount("tmpfs", str(path), "tmpfs", flags, "size=4m,mode=755")
    return str(path)


def points_below(path: Path | str) -> list[str]:
    return [m.mount_point for m in linux.mounts_below(str(path))]


def points() -> set[str]:
    return {m.mount_point for m in linux.mountinfo()}


def delete_from_another_namespace(path: Path) -> None:
    """rmdir a mount point the way a half-finished cleanup elsewhere would: from a namespace
    where it is not mounted. The kernel then detaches its mounts in every namespace."""
    pid = os.fork()
    if pid == 0:
        try:
            linux.unshare(linux.CLONE_NEWNS)
            linux.mount(None, "/", None, linux.MS_REC | linux.MS_PRIVATE)
            linux.umount(str(path), linux.MNT_DETACH)
            os.rmdir(path)
            os._exit(0)
        except BaseException:
            traceback.print_exc()
            os._exit(1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


# -- mountinfo ------------------------------------------------------------------------------


def test_mountinfo_parses_escapes_optional_fields_and_empty_source(tmp_path: Path) -> None:
    table = tmp_path / "mountinfo"
    table.write_text(
        "36 35 98:0 /mnt1 /mnt/with\\040space rw,noatime master:1 shared:7 - ext3 /dev/root rw\n"
        "37 36 0:40 / /a\\011tab\\012nl\\134bs rw,nosuid - tmpfs  rw\n"
        "38 36 0:41 /sub\\040dir /plain ro - overlay overlay rw,lowerdir=/l\n"
    )
    first, second, third = linux.mountinfo(str(table))
    assert first == MountInfo(
        mount_id=36,
        parent_id=35,
        mount_point="/mnt/with space",
        root="/mnt1",
        fstype="ext3",
        source="/dev/root",
        propagation=("master:1", "shared:7"),
        options=("rw", "noatime"),
    )
    assert first.shared
    assert second.mount_point == "/a\ttab\nnl\\bs"
    assert second.source == ""
    assert second.propagation == ()
    assert not second.shared
    assert third.root == "/sub dir"
    assert third.options == ("ro",)


def test_mountinfo_rejects_a_line_that_is_not_one(tmp_path: Path) -> None:
    table = tmp_path / "mountinfo"
    table.write_text("36 35 98:0 / / rw - ext4 /dev/vda rw\nnot a mount line\n")
    with pytest.raises(RuntimeFailure, match=r"mountinfo:2: not a mountinfo line"):
        linux.mountinfo(str(table))


def test_mountinfo_unescapes_a_real_directory_with_a_space(
    in_private_ns: Runner, tmp_path: Path
) -> None:
    pod = tmp_path / "pod"
    spaced = pod / "with space"

    def body() -> None:
        tmpfs(spaced)
        assert str(spaced) in points()
        assert points_below(pod) == [str(spaced)]
        assert linux.unmount_below(str(pod)) == [str(spaced)]
        assert points_below(pod) == []

    in_private_ns(body)


def test_unmount_order_children_first_and_newest_first_on_one_point() -> None:
    def info(mount_id: int, parent_id: int, point: str) -> MountInfo:
        return MountInfo(
            mount_id=mount_id,
            parent_id=parent_id,
            mount_point=point,
            root="/",
            fstype="tmpfs",
            source="tmpfs",
        )

    table = [
        info(10, 1, "/p/a"),
        info(11, 10, "/p/a/x"),
        info(12, 11, "/p/a/x"),  # stacked on /p/a/x
        info(13, 1, "/p/b/c"),  # hidden by 14, mounted over its parent directory later
        info(14, 1, "/p/b"),
        info(15, 12, "/p/a/x/y"),
    ]
    order = [m.mount_id for m in linux.unmount_order(table)]
    assert order == [15, 12, 11, 14, 13, 10]


# -- unmount_below: the gc teardown -----------------------------------------------------------


def test_unmount_below_removes_every_kind_of_mount_and_nothing_outside(
    in_private_ns: Runner, tmp_path: Path
) -> None:
    pod = tmp_path / "b"
    data, src, lower, upper, work = (tmp_path / n for n in ("data", "src", "lower", "up", "work"))
    for directory in (data, src, lower, upper, work, pod):
        directory.mkdir()
    (data / "file").write_text("data")
    (lower / "from-lower").write_text("lower")
    peer = tmp_path / "peer"

    def body() -> None:
        # Outside the prefix, all of which must survive: siblings that share its name as a
        # string prefix, a submount of a bind source, and a peer of a shared mount inside.
        outside = {tmpfs(tmp_path / "b-c"), tmpfs(tmp_path / "bc"), tmpfs(src / "sub")}
        (src / "sub" / "in-sub").write_text("sub")

        os.makedirs(pod / "bind")
        linux.bind_mount(str(data), str(pod / "bind"), recursive=False)
        tmpfs(pod / "tmp")
        os.makedirs(pod / "rbind")
        linux.bind_mount(str(src), str(pod / "rbind"))  # brings src/sub along
        assert (pod / "rbind" / "sub" / "in-sub").read_text() == "sub"

        assert linux.overlay_supported()
        rootfs = pod / "rootfs"
        rootfs.mkdir()
        options = f"lowerdir={lower},upperdir={upper},workdir={work}"
        linux.mount("overlay", str(rootfs), "overlay", 0, options)
        assert (rootfs / "from-lower").read_text() == "lower"
        tmpfs(rootfs / "dev")

        tmpfs(pod / "stack")
        tmpfs(pod / "stack")

        shared = tmpfs(pod / "shared")
        linux.mount(None, shared, None, linux.MS_SHARED)
        peer.mkdir()
        linux.bind_mount(shared, str(peer), recursive=False)  # same peer group
        tmpfs(pod / "shared" / "sub")  # propagates to peer/sub
        outside |= {str(peer), str(peer / "sub")}
        assert {str(peer), str(peer / "sub")} <= points()
        assert any(m.shared for m in linux.mounts_below(shared))

        before = points_below(pod)
        assert len(before) == 10
        undone = linux.unmount_below(str(pod))

        assert points_below(pod) == []
        assert collections.Counter(undone) == collections.Counter(before)
        for child, parent in [
            (pod / "rbind" / "sub", pod / "rbind"),
            (rootfs / "dev", rootfs),
            (pod / "shared" / "sub", pod / "shared"),
        ]:
            assert undone.index(str(child)) < undone.index(str(parent))
        assert outside <= points(), "a mount outside the prefix was touched"
        assert (src / "sub" / "in-sub").read_text() == "sub"
        assert (data / "file").read_text() == "data"
        assert linux.unmount_below(str(pod)) == [], "a second call must do nothing"

    in_private_ns(body)


def test_unmount_below_a_prefix_that_is_itself_a_mount_reached_through_a_symlink(
    in_private_ns: Runner, tmp_path: Path
) -> None:
    pod = tmp_path / "pod"
    link = tmp_path / "link"
    link.symlink_to(pod)

    def body() -> None:
        tmpfs(pod)
        tmpfs(pod / "stage1" / "rootfs")
        assert linux.unmount_below(str(link)) == [str(pod / "stage1" / "rootfs"), str(pod)]
        assert points_below(pod) == []
        assert linux.unmount_below(str(link)) == []

    in_private_ns(body)


def test_unmount_below_a_half_deleted_pod(in_private_ns: Runner, tmp_path: Path) -> None:
    pod = tmp_path / "pod"
    pod.mkdir()

    def body() -> None:
        inner = tmpfs(pod / "a" / "inner")
        deep = tmpfs(pod / "a" / "inner" / "deep")
        outer = str(pod / "a")
        linux.mount("tmpfs", outer, "tmpfs")  # over a directory that has a mount below it
        tmpfs(pod / "a" / "top")
        tmpfs(pod / "by-hand")
        tmpfs(pod / "deleted")
        tmpfs(pod / "deleted" / "sub")
        (pod / "manifest").write_text("{}")

        linux.umount(str(pod / "by-hand"))  # already removed by hand
        delete_from_another_namespace(pod / "deleted")  # mount point directory deleted
        assert not (pod / "deleted").exists()
        assert points_below(pod / "deleted") == []
        (pod / "manifest").unlink()  # the rest of the pod directory half gone

        undone = linux.unmount_below(str(pod))
        # outer hides inner and deep: they are reached in a second pass, inner is not
        # lazily detached for being busy with deep in the first
        assert undone == [str(pod / "a" / "top"), outer, deep, inner]
        assert points_below(pod) == []
        assert linux.unmount_below(str(pod)) == []
        assert linux.unmount_below(str(tmp_path / "never-existed")) == []

    in_private_ns(body)


def test_unmount_below_detaches_a_busy_mount_lazily(in_private_ns: Runner, tmp_path: Path) -> None:
    pod = tmp_path / "pod"

    def body() -> None:
        busy = tmpfs(pod / "busy")
        (pod / "busy" / "open").write_text("still readable")
        with open(pod / "busy" / "open", encoding="utf-8") as handle:
            with pytest.raises(RuntimeFailure) as caught:
                linux.umount(busy)
            assert linux.errno_of(caught.value) == errno.EBUSY
            assert linux.unmount_below(str(pod)) == [busy]
            assert points_below(pod) == []
            assert handle.read() == "still readable"

    in_private_ns(body)


def test_unmount_below_refuses_the_root() -> None:
    with pytest.raises(ValueError, match="refusing"):
        linux.unmount_below("/")


# -- wrappers -------------------------------------------------------------------------------


def test_bind_mount_read_only_is_read_only_all_the_way_down(
    in_private_ns: Runner, tmp_path: Path
) -> None:
    src, dst, file_dst = tmp_path / "src", tmp_path / "dst", tmp_path / "file-dst"

    def body() -> None:
        tmpfs(src, linux.MS_NOSUID | linux.MS_NODEV)
        tmpfs(src / "sub")
        (src / "file").write_text("x")
        dst.mkdir()
        linux.bind_mount(str(src), str(dst), read_only=True)
        for target in (dst / "new", dst / "sub" / "new", dst / "file"):
            with pytest.raises(OSError) as caught:
                target.write_text("y")
            assert caught.value.errno == errno.EROFS, target
        (src / "new").write_text("the source stays writable")
        (src / "sub" / "new").write_text("and so does its submount")
        top = next(m for m in linux.mountinfo() if m.mount_point == str(dst))
        assert {"ro", "nosuid", "nodev"} <= set(top.options), "remount must keep nosuid,nodev"

        file_dst.write_text("")
        linux.bind_mount(str(src / "file"), str(file_dst), recursive=False, read_only=True)
        assert file_dst.read_text() == "x"
        with pytest.raises(OSError) as caught:
            file_dst.write_text("y")
        assert caught.value.errno == errno.EROFS

        undone = linux.unmount_below(str(tmp_path))
        assert str(dst / "sub") in undone
        assert points_below(tmp_path) == []

    in_private_ns(body)


def test_failures_name_the_call_the_path_and_the_errno(
    in_private_ns: Runner, tmp_path: Path
) -> None:
    missing = tmp_path / "missing"

    def body() -> None:
        with pytest.raises(RuntimeFailure) as caught:
            linux.mount("tmpfs", str(missing), "tmpfs")
        assert str(caught.value) == (
            f"mount tmpfs (tmpfs) on {missing}: No such file or directory (ENOENT)"
        )
        assert linux.errno_of(caught.value) == errno.ENOENT
        with pytest.raises(RuntimeFailure, match=r"^unmount .*: Invalid argument \(EINVAL\)$"):
            linux.umount(str(tmp_path))
        with pytest.raises(RuntimeFailure, match=r"^bind mount .*missing on"):
            linux.bind_mount(str(missing), str(tmp_path))
        fd = os.open("/proc/self/ns/uts", os.O_RDONLY)
        try:
            with pytest.raises(RuntimeFailure, match=r"^setns\(fd \d+, CLONE_NEWNET\): "):
                linux.setns(fd, linux.CLONE_NEWNET)
        finally:
            os.close(fd)

    in_private_ns(body)


def test_unshare_and_setns_round_trip_the_hostname(in_private_ns: Runner) -> None:
    host_name = socket.gethostname()

    def body() -> None:
        original = os.readlink("/proc/self/ns/uts")
        fd = os.open("/proc/self/ns/uts", os.O_RDONLY)
        try:
            linux.unshare(linux.CLONE_NEWUTS)
            assert os.readlink("/proc/self/ns/uts") != original
            socket.sethostname("rktcfg-uts-test")
            assert socket.gethostname() == "rktcfg-uts-test"
            linux.setns(fd, linux.CLONE_NEWUTS)
        finally:
            os.close(fd)
        assert os.readlink("/proc/self/ns/uts") == original
        assert socket.gethostname() == host_name

    in_private_ns(body)
    assert socket.gethostname() == host_name


def test_pivot_root_into_a_tmpfs(in_private_ns: Runner, tmp_path: Path) -> None:
    new_root = tmp_path / "new-root"

    def body() -> None:
        tmpfs(new_root)
        (new_root / "marker").write_text("new")
        (new_root / "old").mkdir()
        linux.pivot_root(str(new_root), str(new_root / "old"))
        os.chdir("/")
        assert sorted(os.listdir("/")) == ["marker", "old"]
        assert os.path.isdir(f"/old{tmp_path}"), "the old root is under put_old"
        linux.umount("/old", linux.MNT_DETACH)
        os.rmdir("/old")
        assert os.listdir("/") == ["marker"]
        os.mkdir("/proc")
        linux.mount("proc", "/proc", "proc", linux.MS_NOSUID | linux.MS_NODEV | linux.MS_NOEXEC)
        assert [(m.mount_point, m.fstype) for m in linux.mountinfo()] == [
            ("/", "tmpfs"),
            ("/proc", "proc"),
        ]

    in_private_ns(body)
