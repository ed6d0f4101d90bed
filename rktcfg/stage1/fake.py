"""A flavor for tests without root: no mounts, no chroot; every call is recorded.

It runs the app's binary from the host path of its rootfs (so a static busybox works), in
the app's working directory there, and keeps ``calls`` (also written to ``fake-calls`` in the
pod directory, so a test can read what the supervisor asked for). The contract tests run the
same suite against it and against the real flavors, so it cannot drift from them.
"""

from __future__ import annotations

import json
import os

from rktcfg.stage1.base import AppSpec, spawn_process


class FakeFlavor:
    name = "fake"

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    def _record(self, pod_dir: str, call: str, detail: str) -> None:
        self.calls.append((call, detail))
        with open(os.path.join(pod_dir, "fake-calls"), "a", encoding="utf-8") as handle:
            handle.write(json.dumps([call, detail]) + "\n")

    def check(self, apps: list[AppSpec]) -> None:
        if not apps:
            raise ValueError("a pod needs at least one app")

    def setup(self, pod_dir: str, apps: list[AppSpec]) -> None:
        self._record(pod_dir, "setup", ",".join(a.name for a in apps))

    def spawn(
        self, pod_dir: str, app: AppSpec, argv: list[str], stdio: tuple[int, int, int]
    ) -> int:
        self._record(pod_dir, "spawn", " ".join([app.name, *argv]))
        return spawn_process(app, argv, stdio, chroot=False)

    def teardown(self, pod_dir: str) -> list[str]:
        self._record(pod_dir, "teardown", "")
        return []
