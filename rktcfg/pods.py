"""The pod library: prepare, run, stop, remove, collect and inspect pods.

One API for the CLI, the planner's executor and the API service. The CLI parses and
prints; everything that decides or changes anything is here, on top of the pod store
(``rktcfg.store.pods``), the image store and the stage1 flavors.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from typing import Any

from rktcfg.errors import InputError, RuntimeFailure
from rktcfg.image.manifest import ImageManifest, parse_image_manifest
from rktcfg.store.images import ImageStore
from rktcfg.store.pods import LockedPod, Pod, PodState, PodStore

APP_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
FLAVORS_AVAILABLE = ("fly",)
#: Flavors the library accepts: the available ones, and the test flavor (never the CLI's).
LIBRARY_FLAVORS = (*FLAVORS_AVAILABLE, "fake")
RESTART_POLICIES = ("never", "on-failure", "always")


@dataclass(frozen=True, slots=True, kw_only=True)
class ImageArg:
    """One image of a pod, as given on the command line: ``IMAGE [--exec PATH] [-- ARGS]``."""

    ref: str
    exec: str | None = None
    args: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class Volume:
    name: str
    source: str
    read_only: bool = False
    recursive: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class MountArg:
    volume: str
    target: str


@dataclass(frozen=True, slots=True, kw_only=True)
class PodOptions:
    flavor: str = "fly"
    name: str | None = None
    set_env: tuple[tuple[str, str], ...] = ()
    volumes: tuple[Volume, ...] = ()
    mounts: tuple[MountArg, ...] = ()
    restart: str = "never"
    grace_seconds: float = 10.0
    log_max_bytes: int = 10 << 20
    log_keep: int = 3
    fetch: Any = None  # FetchOptions for images not in the store
    interactive: bool = False  # the app's stdin is the caller's (run only)
    extra: dict[str, Any] = field(default_factory=dict)


# --- resolving what the app runs as -----------------------------------------------------------


def _lookup_id(rootfs: str, value: str, database: str, what: str, image: str) -> int:
    """appc user/group resolution: a name in the image's /etc/passwd or /etc/group, else a
    number, else (a path) the owner of that file in the image."""
    from rktcfg.image.tarsafe import resolve_in_root

    path = resolve_in_root(rootfs, f"/etc/{database}")
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            for line in handle:
                parts = line.rstrip("\n").split(":")
                if len(parts) >= 3 and parts[0] == value and parts[2].isdigit():
                    return int(parts[2])
    except OSError:
        pass
    if value.isdigit():
        return int(value)
    if value.startswith("/"):
        try:
            st = os.stat(resolve_in_root(rootfs, value))
        except OSError:
            raise InputError(
                f"image {image!r}: {what} {value!r}: no such file in the image"
            ) from None
        return st.st_uid if what == "user" else st.st_gid
    raise InputError(f"image {image!r}: {what} {value!r} is not in the image's /etc/{database}")


def _find_exec(rootfs: str, argv0: str, workdir: str, path: str, image: str) -> str:
    """The absolute path inside the rootfs that ``argv0`` names (appc/rkt --exec rules)."""
    from rktcfg.image.tarsafe import resolve_in_root

    def exists(candidate: str) -> bool:
        host = resolve_in_root(rootfs, candidate)
        return os.path.isfile(host) and os.access(host, os.X_OK)

    if argv0.startswith("/"):
        candidates = [argv0]
    elif "/" in argv0:
        candidates = [os.path.normpath(os.path.join(workdir, argv0))]
    else:
        candidates = [os.path.join(d, argv0) for d in path.split(":") if d.startswith("/")]
    for candidate in candidates:
        if exists(candidate):
            return candidate
    raise InputError(f"image {image!r}: cannot find {argv0!r} in the image (try --exec=BINARY)")


def _app_name(manifest: ImageManifest, taken: set[str]) -> str:
    base = re.sub(r"[^a-z0-9]+", "-", manifest.name.rsplit("/", 1)[-1].lower()).strip("-") or "app"
    name, n = base, 2
    while name in taken:
        name, n = f"{base}-{n}", n + 1
    taken.add(name)
    return name


# --- preparing ---------------------------------------------------------------------------------


class Pods:
    """Pods of one data directory."""

    def __init__(self, data_dir: str) -> None:
        self.data_dir = data_dir
        self.store = PodStore(data_dir)

    def images(self) -> ImageStore:
        return ImageStore(self.data_dir)

    def _prepare(self, images: list[ImageArg], opts: PodOptions) -> LockedPod:
        if not images:
            raise InputError("a pod needs at least one image")
        if opts.flavor not in LIBRARY_FLAVORS:
            raise InputError(
                f"--stage1 {opts.flavor}: not available yet (available: "
                f"{', '.join(FLAVORS_AVAILABLE)})"
            )
        if opts.restart not in RESTART_POLICIES:
            raise InputError(f"--restart must be one of {', '.join(RESTART_POLICIES)}")
        if opts.flavor == "fly" and len(images) != 1:
            raise InputError(f"the fly flavor runs exactly one app per pod (got {len(images)})")
        if opts.name is not None and any(p.name() == opts.name for p in self.store.pods()):
            raise InputError(f"a pod named {opts.name!r} exists already")
        volumes = {v.name: v for v in opts.volumes}
        for mount in opts.mounts:
            if mount.volume not in volumes:
                raise InputError(f"--mount volume={mount.volume}: no such --volume")
        resolved = self._resolve_images(images, opts)
        pod = self.store.create(name=opts.name)
        try:
            self._write_pod(pod, images, resolved, opts, volumes)
        except BaseException:
            pod.release()  # an aborted prepare; gc collects it
            raise
        return pod

    def _resolve_images(
        self, images: list[ImageArg], opts: PodOptions
    ) -> list[tuple[str, ImageManifest, str]]:
        from rktcfg.image.fetch import FetchOptions, fetch_and_render
        from rktcfg.store.trees import TreeStore

        out = []
        with self.images() as store:
            trees = TreeStore(self.data_dir, store)
            for image in images:
                fetch_opts = opts.fetch or FetchOptions(policy="new")
                record = fetch_and_render(store, image.ref, fetch_opts).record
                rootfs = trees.render(record.id)
                store.touch(record.id)
                out.append((record.id, parse_image_manifest(record.manifest()), rootfs))
        return out

    def _write_pod(
        self,
        pod: LockedPod,
        images: list[ImageArg],
        resolved: list[tuple[str, ImageManifest, str]],
        opts: PodOptions,
        volumes: dict[str, Volume],
    ) -> None:
        from rktcfg.stage1 import fly
        from rktcfg.stage1.base import relative_setup

        taken: set[str] = set()
        apps: list[dict[str, Any]] = []
        runtime_apps: list[dict[str, Any]] = []
        for image, (image_id, manifest, tree) in zip(images, resolved, strict=True):
            name = _app_name(manifest, taken)
            app = manifest.app
            label = manifest.name_version
            if app is None and image.exec is None:
                raise InputError(f"image {label!r} has no app section: give --exec=BINARY")
            argv = [image.exec] if image.exec is not None else list(app.exec if app else ())
            argv += list(image.args)
            if not argv:
                raise InputError(f'image "{label}" has an empty "exec" (try --exec=BINARY)')
            app_dir = pod.file(os.path.join("apps", name))
            rootfs = os.path.join(app_dir, "rootfs")
            os.makedirs(app_dir, 0o750)
            copied = subprocess.run(
                ["cp", "-a", "--", tree, rootfs], capture_output=True, text=True, check=False
            )
            if copied.returncode != 0:
                raise RuntimeFailure(f"cannot copy the image tree: {copied.stderr.strip()}")
            env = {"PATH": APP_PATH}
            for variable in app.environment if app else ():
                env[variable.name] = variable.value
            env.update({"AC_APP_NAME": name, "container": "rktcfg"})
            env.update(dict(opts.set_env))
            workdir = (app.working_directory if app else None) or "/"
            argv[0] = _find_exec(rootfs, argv[0], workdir, env.get("PATH", APP_PATH), label)
            user = app.user if app else "0"
            group = app.group if app else "0"
            uid = _lookup_id(rootfs, user, "passwd", "user", label)
            gid = _lookup_id(rootfs, group, "group", "group", label)
            mount_points = {mp.name: mp for mp in (app.mount_points if app else ())}
            app_volumes = []
            for mount in opts.mounts:
                volume = volumes[mount.volume]
                app_volumes.append(
                    {
                        "source": volume.source,
                        "target": mount.target,
                        "read_only": volume.read_only,
                        "recursive": volume.recursive,
                    }
                )
            for mp_name, mp in mount_points.items():
                if mp_name in volumes and not any(m.volume == mp_name for m in opts.mounts):
                    volume = volumes[mp_name]
                    app_volumes.append(
                        {
                            "source": volume.source,
                            "target": mp.path,
                            "read_only": volume.read_only or mp.read_only,
                            "recursive": volume.recursive,
                        }
                    )
            handlers = {h.name: list(h.exec) for h in (app.event_handlers if app else ())}
            spec = {
                "name": name,
                "image_id": image_id,
                "image_name": label,
                "rootfs": os.path.relpath(rootfs, pod.path),
                "exec": argv,
                "env": env,
                "uid": uid,
                "gid": gid,
                "groups": list(app.supplementary_gids) if app else [],
                "working_directory": workdir,
                "pre_start": handlers.get("pre-start"),
                "post_stop": handlers.get("post-stop"),
                "volumes": app_volumes,
                "setup": relative_setup(fly.plan(rootfs, app_volumes), pod.path),
            }
            apps.append(spec)
            runtime_apps.append(
                {
                    "name": name,
                    "image": {"id": image_id, "name": manifest.name},
                    "app": {
                        "exec": argv,
                        "user": str(uid),
                        "group": str(gid),
                        "workingDirectory": workdir,
                        "environment": [{"name": k, "value": v} for k, v in env.items()],
                    },
                }
            )
        pod.write_json(
            "pod",
            {
                "acVersion": "0.8.11",
                "acKind": "PodManifest",
                "apps": runtime_apps,
                "volumes": [
                    {"name": v.name, "kind": "host", "source": v.source, "readOnly": v.read_only}
                    for v in volumes.values()
                ],
            },
        )
        pod.write_json(
            "stage1.json",
            {
                "flavor": opts.flavor,
                "restart": opts.restart,
                "grace_seconds": opts.grace_seconds,
                "logs": {"max_bytes": opts.log_max_bytes, "keep": opts.log_keep},
                "interactive": opts.interactive,
                "apps": apps,
            },
        )

    def prepare(self, images: list[ImageArg], opts: PodOptions) -> Pod:
        pod = self._prepare(images, opts)
        pod.to_prepared()
        pod.release()
        return self.store.get(pod.uuid)

    def run(self, images: list[ImageArg], opts: PodOptions) -> Pod:
        """Prepare and start a pod; returns once its apps started (or raises why not)."""
        pod = self._prepare(images, opts)
        pod.to_run()
        return self._start(pod, stdin_fd=0 if opts.interactive else None)

    def run_prepared(self, ref: str) -> Pod:
        return self._start(self.store.run_prepared(self.store.get(ref)))

    def _start(self, pod: LockedPod, *, stdin_fd: int | None = None) -> Pod:
        from rktcfg.stage1.launch import launch_supervisor, wait_started

        try:
            launch_supervisor(pod.path, pod.fd, stdin_fd=stdin_fd)
        finally:
            pod.release()  # the supervisor holds the lock now
        found = self.store.get(pod.uuid)
        error = wait_started(found.path, lambda: found.state() is not PodState.RUNNING)
        if error is not None:
            raise RuntimeFailure(f"pod {pod.uuid}: {error}")
        return found

    # --- inspecting --------------------------------------------------------------------------

    def get(self, ref: str) -> Pod:
        return self.store.get(ref)

    def all(self) -> list[Pod]:
        return self.store.pods()

    def exit_code(self, pod: Pod) -> int | None:
        try:
            with open(pod.file("exit-code"), encoding="utf-8") as handle:
                return int(handle.read().strip())
        except (FileNotFoundError, ValueError):
            return None

    def status(self, pod: Pod) -> dict[str, Any]:
        state = pod.state()
        apps = []
        try:
            stage1 = pod.read_json("stage1.json")
        except FileNotFoundError:
            stage1 = {"apps": []}
        for spec in stage1["apps"]:
            try:
                with open(pod.file(f"apps/{spec['name']}/status.json"), encoding="utf-8") as h:
                    app_status = json.load(h)
            except (FileNotFoundError, ValueError):
                app_status = {"name": spec["name"], "state": "created", "exit_code": None}
            app_status["image"] = spec.get("image_name")
            app_status["image_id"] = spec.get("image_id")
            if state is not PodState.RUNNING and app_status.get("state") == "running":
                app_status["state"] = "unknown"  # the supervisor died with it running
            apps.append(app_status)
        pid = None
        try:
            with open(pod.file("pid"), encoding="utf-8") as handle:
                pid = int(handle.read().strip())
        except (FileNotFoundError, ValueError):
            pass
        return {
            "uuid": pod.uuid,
            "name": pod.name(),
            "state": state.value,
            "flavor": stage1.get("flavor"),
            "created_at": pod.created(),
            "started_at": pod.started(),
            "pid": pid,
            "exit_code": self.exit_code(pod),
            "apps": apps,
            "networks": [],
        }

    def wait(self, pod: Pod, timeout: float | None) -> bool:
        """Wait until the pod is no longer running (or preparing); False on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while pod.state() in (PodState.RUNNING, PodState.PREPARING):
            if deadline is not None and time.monotonic() >= deadline:
                return False
            time.sleep(0.05)
        return True

    # --- stopping and removing -------------------------------------------------------------------

    def stop(self, pod: Pod, *, force: bool = False) -> bool:
        """Ask a running pod to stop (SIGTERM to its supervisor; --force: SIGKILL to its
        whole process group). False when it was not running (stop is idempotent)."""
        if pod.state() is not PodState.RUNNING:
            return False
        try:
            with open(pod.file("pid"), encoding="utf-8") as handle:
                pid = int(handle.read().strip())
        except (FileNotFoundError, ValueError):
            raise RuntimeFailure(f"pod {pod.uuid} is running but has no supervisor pid") from None
        try:
            group = os.getpgid(pid)
            if force and group != os.getpgid(0):
                # the supervisor and its apps share a process group of their own (setsid)
                os.killpg(group, signal.SIGKILL)
            elif force:
                os.kill(pid, signal.SIGKILL)
            else:
                os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            return False
        return True

    def remove(self, pod: Pod) -> None:
        state = pod.state()
        if state is PodState.RUNNING:
            raise InputError(f"pod {pod.uuid} is running: stop it first")
        if state is PodState.PREPARING or state is PodState.EMBRYO:
            raise InputError(f"pod {pod.uuid} is being prepared")
        if state is PodState.DELETING:
            raise InputError(f"pod {pod.uuid} is being deleted")
        locked = self.store.lock(pod)
        if locked is None:
            raise InputError(f"pod {pod.uuid} is busy (another command holds it)")
        if locked.phase == "run":
            locked.to_exited_garbage()
        elif locked.phase in ("prepare", "prepared"):
            locked.to_garbage()
        self._delete(locked)

    def _delete(self, locked: LockedPod) -> None:
        """Tear down what the pod set up, then delete it. Each step is idempotent; the pod
        manifest goes last, so an interrupted delete can be retried by gc."""
        from rktcfg.stage1 import linux

        for attempt in range(20):
            try:
                linux.unmount_below(locked.path)
                break
            except RuntimeFailure:
                # processes killed a moment ago may still hold the mounts while they exit
                if attempt == 19:
                    locked.release()
                    raise
                time.sleep(0.1)
        for name in os.listdir(locked.path):
            if name != "pod":
                path = os.path.join(locked.path, name)
                if os.path.isdir(path) and not os.path.islink(path):
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    os.unlink(path)
        self.store.delete(locked)

    def gc(
        self, *, grace_ns: int, expire_prepared_ns: int, mark_only: bool = False
    ) -> dict[str, list[str]]:
        """rkt's gc: mark exited pods, collect aborted prepares, expire old prepared pods, and
        delete marked pods whose grace period has passed."""
        done: dict[str, list[str]] = {
            "marked": [],
            "garbage": [],
            "deleted": [],
            "kept": [],
            "failed": [],
        }
        now = time.time_ns()
        for pod in self.store.pods(("run", "prepare", "prepared")):
            state = pod.state()
            expired = state is PodState.PREPARED and now - pod.marked() >= expire_prepared_ns
            if state not in (PodState.EXITED, PodState.ABORTED_PREPARE) and not expired:
                continue
            locked = self.store.lock(pod)
            if locked is None:
                continue
            with locked:
                if locked.phase == "run":
                    locked.to_exited_garbage()
                    done["marked"].append(pod.uuid)
                else:
                    locked.to_garbage()
                    done["garbage"].append(pod.uuid)
        if mark_only:
            return done
        for pod in self.store.pods(("exited-garbage", "garbage")):
            # the time now, not at the start: a pod marked above has a later ctime than that
            if pod.phase == "exited-garbage" and time.time_ns() - pod.marked() < grace_ns:
                done["kept"].append(pod.uuid)
                continue
            locked = self.store.lock(pod)
            if locked is None:
                continue
            try:
                self._delete(locked)
            except RuntimeFailure as exc:  # the next gc retries; the others go on
                done["failed"].append(f"{pod.uuid}: {exc.message}")
                continue
            done["deleted"].append(pod.uuid)
        return done

    def in_use_images(self) -> set[str]:
        """Image IDs that prepared, running or exited pods use (image gc must keep them)."""
        used: set[str] = set()
        for pod in self.store.pods(("prepare", "prepared", "run", "exited-garbage")):
            try:
                for app in pod.read_json("stage1.json")["apps"]:
                    used.add(app["image_id"])
            except (FileNotFoundError, ValueError, KeyError):
                continue
        return used
