"""The fly flavor, as rkt's: one app, no namespaces, no isolators, a chroot.

At prepare time (in the rktcfg process) ``plan`` decides what the pod needs, with every
target resolved inside the app's rootfs (a private copy of the rendered tree): recursive
binds of the host's /dev, /proc and /sys, a fresh tmpfs on /tmp, the pod's volumes, and
/etc/hosts and /etc/resolv.conf when the image has none. At run time (in the supervisor)
``setup`` carries the plan out. Every mount lands in the host's mount namespace, so each is
recorded in the pod directory before it is made, and ``teardown`` (also run by gc after a
crash) unmounts everything below the pod directory, deepest first. The app runs chrooted
with the image's uid, gid and groups.
"""

from __future__ import annotations

import os

from rktcfg.stage1.base import LOCALHOST_LINES, AppSpec, record_mount, spawn_process

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def plan(rootfs: str, volumes: list[dict[str, Any]]) -> dict[str, Any]:
    """The mounts and files a fly pod needs, targets resolved inside ``rootfs``."""
    from rktcfg.image.tarsafe import resolve_in_root

    mounts: list[dict[str, Any]] = [
        {"source": d, "target": resolve_in_root(rootfs, d), "kind": "rbind"}
        for d in ("/dev", "/proc", "/sys")
    ]
    mounts.append({"source": "tmpfs", "target": resolve_in_root(rootfs, "/tmp"), "kind": "tmpfs"})
    for volume in volumes:
        mounts.append(
            {
                "source": volume["source"],
                "target": resolve_in_root(rootfs, volume["target"]),
                "kind": "rbind" if volume.get("recursive") else "bind",
                "read_only": bool(volume.get("read_only")),
            }
        )
    files: dict[str, str] = {}
    hosts = resolve_in_root(rootfs, "/etc/hosts", follow_final=False)
    if not os.path.lexists(hosts):
        files[hosts] = LOCALHOST_LINES
    resolv = resolve_in_root(rootfs, "/etc/resolv.conf", follow_final=False)
    if not os.path.lexists(resolv) and os.path.exists("/etc/resolv.conf"):
        with open("/etc/resolv.conf", encoding="utf-8") as handle:
            files[resolv] = handle.read()
    return {"mounts": mounts, "files": files}


class FlyFlavor:
    name = "fly"

    def check(self, apps: list[AppSpec]) -> None:
        if len(apps) != 1:
            raise ValueError(f"the fly flavor runs exactly one app per pod (got {len(apps)})")

    def setup(self, pod_dir: str, apps: list[AppSpec]) -> None:
        from rktcfg.stage1 import linux

        for app in apps:
            for path, content in app.setup.get("files", {}).items():
                os.makedirs(os.path.dirname(path), 0o755, exist_ok=True)
                with open(path, "w", encoding="utf-8") as handle:
                    handle.write(content)
            for mount in app.setup.get("mounts", []):
                source, target = mount["source"], mount["target"]
                if mount["kind"] == "tmpfs" or os.path.isdir(source):
                    os.makedirs(target, 0o755, exist_ok=True)
                elif not os.path.lexists(target):
                    os.makedirs(os.path.dirname(target), 0o755, exist_ok=True)
                    os.close(os.open(target, os.O_WRONLY | os.O_CREAT, 0o644))
                record_mount(pod_dir, target)
                if mount["kind"] == "tmpfs":
                    flags = linux.MS_NOSUID | linux.MS_NODEV
                    linux.mount("tmpfs", target, "tmpfs", flags, "mode=1777")
                else:
                    linux.bind_mount(
                        source,
                        target,
                        recursive=mount["kind"] == "rbind",
                        read_only=bool(mount.get("read_only")),
                    )

    def spawn(
        self, pod_dir: str, app: AppSpec, argv: list[str], stdio: tuple[int, int, int]
    ) -> int:
        return spawn_process(app, argv, stdio, chroot=True)

    def teardown(self, pod_dir: str) -> list[str]:
        from rktcfg.stage1 import linux

        return linux.unmount_below(pod_dir)
