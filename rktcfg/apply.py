"""Carrying out a plan: pod files in, pods that match them out.

``rktcfg.spec`` loads the pod files, ``rktcfg.plan`` observes the stores once and computes a
pure plan; this module turns each action into calls on the pod library, one pod at a time,
each under the library's own pod locks and the whole run under the data directory's apply
lock (two applies never interleave). One pod's failure does not stop the others.

A replace prepares the new pod first (a pod that cannot be prepared leaves the old one
running), then stops the old one and waits for it, so the two never run at once (no port
clash), then starts the new one and only then removes the old one. Host volumes are never
touched; ``empty`` volumes belong to a pod and start empty in its replacement.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from rktcfg.errors import InputError, RktcfgError, RuntimeFailure
from rktcfg.plan.planner import ownership_annotations

APPLY_LOCK = "apply.lock"
#: --wait counts an app as ready once it has run this long (and passes its health check).
SETTLE_SECONDS = 1.0


@dataclass
class Outcome:
    """What happened to one pod."""

    pod: str
    kind: str
    ok: bool
    message: str
    uuid: str | None = None


@dataclass
class Report:
    outcomes: list[Outcome] = field(default_factory=list)

    @property
    def failed(self) -> list[Outcome]:
        return [o for o in self.outcomes if not o.ok]

    def summary(self) -> str:
        counts: dict[str, int] = {}
        for outcome in self.outcomes:
            if outcome.ok:
                counts[outcome.kind] = counts.get(outcome.kind, 0) + 1
        done = ", ".join(f"{n} {_PAST.get(k, k)}" for k, n in sorted(counts.items())) or "nothing"
        return f"{done}; {len(self.failed)} failed"


_PAST = {
    "create": "created",
    "replace": "replaced",
    "start": "started",
    "stop": "stopped",
    "remove": "removed",
    "collect": "collected",
    "unchanged": "unchanged",
    "conflict": "in conflict",
}


@contextlib.contextmanager
def apply_lock(data_dir: str, *, wait: bool = True) -> Iterator[None]:
    """The data directory's apply lock: one apply (or watch turn) at a time."""
    os.makedirs(data_dir, 0o750, exist_ok=True)
    from rktcfg.fsutil import flock_fd

    fd = os.open(os.path.join(data_dir, APPLY_LOCK), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o640)
    if not flock_fd(fd, blocking=wait):  # (it closes fd on an unexpected error)
        os.close(fd)
        raise RuntimeFailure("another rktcfg apply is running on this data directory")
    try:
        yield
    finally:
        os.close(fd)


# --- from a pod file's spec to the pod library's arguments ---------------------------------------


def _seconds(text: Any, what: str) -> float:
    from rktcfg.durations import parse_duration

    if isinstance(text, int | float):
        return float(text)
    try:
        return parse_duration(str(text)) / 1e9
    except ValueError as exc:
        raise InputError(f"{what}: {exc}") from None


def _isolators(values: dict[str, Any]) -> tuple[dict[str, Any], ...]:
    from rktcfg.isolators import resolve

    out = []
    for key, value in sorted(values.items()):
        name = resolve.SHORT_NAMES.get(key, key)
        if name in (resolve.CPU, resolve.MEMORY) and not isinstance(value, dict):
            value = {"limit": str(value), "request": str(value)}
        out.append({"name": name, "value": value})
    return tuple(out)


def pod_request(
    desired: Any, *, apply_set: str, spec_hash: str, default_flavor: str, base: Any
) -> tuple[list[Any], Any]:
    """The pod library's ``(images, options)`` for a desired pod. ``base`` is a
    :class:`~rktcfg.pods.PodOptions` with the machine's settings (cgroup parent, isolator
    defaults, fetch options); the pod file decides the rest."""
    import dataclasses

    from rktcfg.pods import ImageArg, MountArg, Volume

    spec = desired.spec
    images = []
    for app in spec["apps"]:
        exec_ = list(app["exec"] or [])
        check = app.get("healthCheck")
        health = None
        if check:
            health = {
                "exec": list(check["exec"]),
                "interval_s": _seconds(check.get("interval", "10s"), f"{app['name']}: interval"),
                "timeout_s": _seconds(check.get("timeout", "1s"), f"{app['name']}: timeout"),
                "retries": int(check.get("retries", 3)),
            }
        images.append(
            ImageArg(
                ref=app["image"],
                exec=exec_[0] if exec_ else None,
                args=tuple(exec_[1:] + list(app.get("args") or [])),
                pod_isolators=_isolators(app.get("isolators") or {}),
                read_only_rootfs=bool(app.get("readOnlyRootFS")),
                name=app["name"],
                env=tuple(sorted((app.get("env") or {}).items())),
                user=app.get("user"),
                group=app.get("group"),
                supplementary_groups=tuple(app.get("supplementaryGroups") or ()),
                working_directory=app.get("workingDirectory"),
                mounts=tuple(
                    MountArg(volume=m["volume"], target=m["path"], read_only=bool(m["readOnly"]))
                    for m in app.get("mounts") or ()
                ),
                health_check=health,
                annotations=tuple(sorted((app.get("annotations") or {}).items())),
                ports=tuple(app.get("ports") or ()),
            )
        )
    volumes = []
    for volume in spec.get("volumes") or ():
        if volume["kind"] == "empty":
            volumes.append(
                Volume(
                    name=volume["name"],
                    kind="empty",
                    read_only=bool(volume.get("readOnly")),
                    mode=int(str(volume.get("mode") or "0755"), 8),
                    uid=int(volume.get("uid") or 0),
                    gid=int(volume.get("gid") or 0),
                )
            )
        else:
            volumes.append(
                Volume(
                    name=volume["name"],
                    source=volume["source"],
                    read_only=bool(volume.get("readOnly")),
                    recursive=volume.get("recursive"),
                )
            )
    nets = list(spec.get("net") or ["default"])
    net = ",".join(nets)
    annotations = {
        **{f"label/{k}": str(v) for k, v in (spec.get("labels") or {}).items()},
        **{str(k): str(v) for k, v in (spec.get("annotations") or {}).items()},
        **ownership_annotations(desired, apply_set=apply_set, hash=spec_hash),
    }
    options = dataclasses.replace(
        base,
        flavor=spec.get("stage1") or default_flavor,
        name=desired.name,
        restart=spec.get("restartPolicy") or "never",
        volumes=tuple(volumes),
        mounts=(),
        hostname=spec.get("hostname"),
        net=net,
        dns=tuple(spec.get("dns") or ()),
        annotations=tuple(sorted(annotations.items())),
        spec=spec,
    )
    return images, options


# --- executing ---------------------------------------------------------------------------------


class Executor:
    """Runs a plan's actions against one data directory."""

    def __init__(
        self,
        pods: Any,
        *,
        desired: Sequence[Any],
        apply_set: str,
        default_flavor: str,
        base_options: Any,
        log: Callable[[str], None] = lambda _: None,
        stop_timeout: float = 60.0,
        files: dict[str, Any] | None = None,
        image_files: dict[str, Any] | None = None,
    ) -> None:
        self.pods = pods
        #: the observed content hashes of the pods' read-only host files
        self.files = dict(files or {})
        #: the plan's image file IDs by size and mtime: not hashed again to record a pod's
        self.image_files = dict(image_files or {})
        self.desired = {d.name: d for d in desired}
        self.apply_set = apply_set
        self.default_flavor = default_flavor
        self.base = base_options
        self.log = log
        self.stop_timeout = stop_timeout
        #: uuids of the pods this run created or started (``--wait`` waits for them)
        self.started: list[str] = []

    def execute(self, plan: Any) -> Report:
        report = Report()
        for action in plan.actions:
            try:
                outcome = self._one(action)
            except RktcfgError as exc:
                outcome = Outcome(action.pod, action.kind, False, exc.message, action.uuid)
            except OSError as exc:
                outcome = Outcome(action.pod, action.kind, False, str(exc), action.uuid)
            if action.kind != "unchanged":
                verdict = "ok" if outcome.ok else "FAILED"
                self.log(f"{action.kind} {action.pod}: {outcome.message} ({verdict})")
            report.outcomes.append(outcome)
        return report

    def _request(self, action: Any) -> tuple[list[Any], Any]:
        """The pod library's arguments for a create or replace. The images are fetched first,
        so that the hash recorded in the pod covers the IDs they resolve to now (an image the
        plan saw as missing would otherwise make the next plan replace the pod)."""
        import dataclasses

        from rktcfg.image.fetch import FetchOptions, fetch_and_render
        from rktcfg.plan.observe import resolve_images
        from rktcfg.plan.planner import hash_resolved, resolved_spec

        desired = self.desired.get(action.pod)
        if desired is None:
            raise InputError(f"pod {action.pod}: no definition to {action.kind} it from")
        refs = [app["image"] for app in desired.spec["apps"]]
        with self.pods.images() as store:
            for ref in dict.fromkeys(refs):
                fetch_and_render(store, ref, self.base.fetch or FetchOptions(policy="new"))
        observed = {
            "images": resolve_images(self.pods.data_dir, refs, cache=self.image_files),
            "files": self.files,
        }
        resolved = resolved_spec(desired, observed)
        images, options = pod_request(
            desired,
            apply_set=self.apply_set,
            spec_hash=hash_resolved(resolved),
            default_flavor=self.default_flavor,
            base=self.base,
        )
        return images, dataclasses.replace(options, spec=resolved)

    def _stop_and_wait(self, uuid: str) -> None:
        pod = self.pods.get(uuid)
        if self.pods.stop(pod) and not self.pods.wait(pod, self.stop_timeout):
            self.pods.stop(pod, force=True)
            if not self.pods.wait(pod, 10):
                raise RuntimeFailure(f"pod {uuid} did not stop")

    def remove(self, uuid: str) -> None:
        """Stop a pod (gracefully, then by force) and remove it."""
        self._stop_and_wait(uuid)
        pod = self.pods.get(uuid)
        for _ in range(50):  # a supervisor that just exited may still hold the lock a moment
            try:
                self.pods.remove(pod)
                return
            except InputError as exc:
                if "busy" not in exc.message:
                    raise
                time.sleep(0.1)
        self.pods.remove(pod)

    def _one(self, action: Any) -> Outcome:
        try:
            return self._act(action)
        finally:
            for warning in self.pods.warnings:
                self.log(f"warning: {action.pod}: {warning}")
            self.pods.warnings.clear()

    def _act(self, action: Any) -> Outcome:
        kind, name = action.kind, action.pod
        if kind == "unchanged":
            return Outcome(name, kind, True, action.reason, action.uuid)
        if kind == "conflict":
            return Outcome(name, kind, False, action.reason, action.uuid)
        if kind == "create":
            images, options = self._request(action)
            pod = self.pods.run(images, options)
            self.started.append(pod.uuid)
            return Outcome(name, kind, True, f"created {pod.uuid}", pod.uuid)
        if kind == "replace":
            images, options = self._request(action)
            import dataclasses

            new = self.pods.prepare(images, dataclasses.replace(options, replaces=action.uuid))
            try:
                self._stop_and_wait(action.uuid)
            except RktcfgError:
                self.pods.remove(self.pods.get(new.uuid))  # the old one is still there
                raise
            self.pods.run_prepared(new.uuid)
            self.started.append(new.uuid)
            self.remove(action.uuid)
            return Outcome(name, kind, True, f"{action.uuid} replaced by {new.uuid}", new.uuid)
        if kind == "start":
            self.pods.run_prepared(action.uuid)
            self.started.append(action.uuid)
            return Outcome(name, kind, True, f"started {action.uuid}", action.uuid)
        if kind == "stop":
            self._stop_and_wait(action.uuid)
            return Outcome(name, kind, True, f"stopped {action.uuid}", action.uuid)
        if kind in ("remove", "collect"):
            self.remove(action.uuid)
            return Outcome(name, kind, True, f"removed {action.uuid}", action.uuid)
        raise InputError(f"pod {name}: unknown action {kind!r}")

    def wait(self, timeout: float | None) -> tuple[list[str], list[str]]:
        """Wait until the started pods' apps run (and pass their health checks, where they
        have one). Returns the pods still not ready when the time is up, and why each pod
        that did not make it failed (it exited non-zero, or an app was killed unhealthy)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        pending = list(self.started)
        failed: list[str] = []
        while pending:
            still = []
            for uuid in pending:
                status = self.pods.status(self.pods.get(uuid))
                apps = status["apps"]
                bad = [
                    f"app {a['name']} {a['reason'] or 'exited'}"
                    + (f" (exit code {a['exit_code']})" if a.get("exit_code") else "")
                    for a in apps
                    if a.get("reason") in ("unhealthy", "oom-killed")
                    or (a.get("state") == "exited" and a.get("exit_code"))
                ]
                if bad:
                    failed.append(f"pod {status['name'] or uuid} ({uuid}): {', '.join(bad)}")
                    continue
                if status["state"] != "running":
                    continue  # it ran to completion: nothing to wait for
                settled = time.time_ns() - int(SETTLE_SECONDS * 1e9)
                ready = all(  # running for a moment (an app that fails at once is not ready)
                    a.get("state") == "running"
                    and a.get("health") in (None, "healthy")
                    and (a.get("started_at") or 0) <= settled
                    for a in apps
                )
                if not ready:
                    still.append(uuid)
            pending = still
            if not pending or (deadline is not None and time.monotonic() >= deadline):
                break
            time.sleep(0.1)
        return pending, failed
