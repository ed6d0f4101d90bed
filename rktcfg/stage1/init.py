"""The pod supervisor: ``python -I -m rktcfg.stage1.init POD_DIR LOCK_FD``.

A small detached process per pod (started by ``rktcfg.stage1.launch`` with a double fork and
setsid), importing only the standard library and ``rktcfg.stage1``. It holds the pod's lock
fd for its whole life, so the pod reads as exited the moment it dies, however it dies.

It sets the pod up through the flavor, starts each app (running ``pre-start`` handlers
first), pumps the apps' stdout and stderr into rotating log files, writes each app's status
(``apps/<app>/status.json``: exit code, times, restarts), applies the restart policy
(``never``, ``on-failure``, ``always``; backoff 1 s doubling to 5 min, reset after 10 min
up), runs each app's health check (every interval, killed after its timeout; after
``retries`` failures in a row the app is killed and its restart policy applies), runs
``post-stop`` handlers, and on SIGTERM stops the apps with SIGTERM and then SIGKILL
after the grace period. The pod's exit status (``exit-code``) is the first failing app's
code, in manifest order, or 0.
"""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import signal
import sys
import time

from rktcfg.stage1.base import AppSpec, get_flavor, in_child, read_stage1
from rktcfg.stage1.logs import RotatingLog

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from rktcfg.stage1.base import Flavor

BACKOFF_START = 1.0
BACKOFF_MAX = 300.0
BACKOFF_RESET_AFTER = 600.0


def _write_json(path: str, data: object) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as handle:
        json.dump(data, handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def _touch(path: str, content: str = "") -> None:
    _write_json_text(path, content)


def _write_json_text(path: str, content: str) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.write(content)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


class AppRun:
    """One app's supervision state."""

    def __init__(self, spec: AppSpec, directory: str, logs: dict[str, int]) -> None:
        self.spec = spec
        self.directory = directory
        self.pid: int | None = None
        self.started_ns = 0
        self.finished_ns = 0
        self.exit_code: int | None = None
        self.restarts = 0
        self.backoff = BACKOFF_START
        self.restart_at: float | None = None
        #: why it last exited, when known beyond the code ("oom-killed")
        self.reason: str | None = None
        self.oom_kills = 0
        #: the health check: {"exec", "interval_s", "timeout_s", "retries"}, or None
        self.check: dict[str, Any] | None = spec.raw.get("health_check")
        self.health: str | None = None  # starting | healthy | unhealthy
        self.failures = 0
        self.check_pid: int | None = None
        self.check_deadline = 0.0
        self.next_check = 0.0
        self.killed_unhealthy = False
        self.logs = {
            stream: RotatingLog(
                os.path.join(directory, f"{stream}.log"),
                max_bytes=logs.get("max_bytes", 10 << 20),
                keep=logs.get("keep", 3),
            )
            for stream in ("stdout", "stderr")
        }

    def status(self) -> dict[str, object]:
        state = "running" if self.pid is not None else ("exited" if self.finished_ns else "created")
        if self.restart_at is not None:
            state = "restarting"
        return {
            "name": self.spec.name,
            "state": state,
            "exit_code": self.exit_code,
            "started_at": self.started_ns or None,
            "finished_at": self.finished_ns or None,
            "restarts": self.restarts,
            "pid": self.pid,
            "reason": self.reason,
            "health": self.health,
            "health_failures": self.failures if self.check else None,
        }

    def save(self) -> None:
        _write_json(os.path.join(self.directory, "status.json"), self.status())


class Supervisor:
    def __init__(self, pod_dir: str) -> None:
        self.pod_dir = pod_dir
        self.stage1 = read_stage1(pod_dir)
        self.flavor = get_flavor(self.stage1["flavor"])
        self.policy: str = self.stage1.get("restart", "never")
        self.grace: float = float(self.stage1.get("grace_seconds", 10))
        self.apps = [
            AppRun(
                AppSpec(data, pod_dir),
                os.path.join(pod_dir, "apps", data["name"]),
                self.stage1.get("logs", {}),
            )
            for data in self.stage1["apps"]
        ]
        self.selector = selectors.DefaultSelector()
        self.open_pipes = 0
        self.stop_requested = False
        self.force_deadline: float | None = None
        self.metadata: Any = None
        self.cgroups: Any = None  # the cgroup driver, loaded on first use (False: none)

    def start_metadata(self) -> None:
        """Serve the appc metadata service (in the pod's network namespace, on its loopback)
        and give the apps its URL, token included."""
        from rktcfg.stage1.metadata import MetadataService, load_or_create_key

        with open(os.path.join(self.pod_dir, "mds-token"), encoding="ascii") as handle:
            token = handle.read().strip()
        key = load_or_create_key(self.stage1["data_dir"])
        self.metadata = MetadataService(self.pod_dir, token=token, key=key)
        url = self.metadata.start(self.selector)
        for app in self.apps:
            app.spec.env["AC_METADATA_URL"] = url

    # --- processes -------------------------------------------------------------------------

    def _handler(self, argv: list[str], app: AppRun) -> int:
        """Run an event handler to completion, its output in the app's logs. The loop keeps
        turning meanwhile (logs, the metadata service), and a stop request kills it."""
        read_out, write_out = os.pipe()
        read_err, write_err = os.pipe()
        devnull = os.open(os.devnull, os.O_RDONLY)
        pid = self.flavor.spawn(self.pod_dir, app.spec, argv, (devnull, write_out, write_err))
        for fd in (devnull, write_out, write_err):
            os.close(fd)
        pipes = {read_out, read_err}
        for fd, stream in ((read_out, "stdout"), (read_err, "stderr")):
            os.set_blocking(fd, False)
            self.selector.register(fd, selectors.EVENT_READ, (app, stream))
            self.open_pipes += 1
        status: int | None = None
        killed = False
        while status is None or any(fd in self.selector.get_map() for fd in pipes):
            self._pump(0.05)
            if self.metadata is not None:
                self.metadata.expire(time.monotonic())
            if status is None:
                done, code = os.waitpid(pid, os.WNOHANG)
                if done:
                    status = code
                elif self.stop_requested and not killed:
                    killed = True
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
        return os.waitstatus_to_exitcode(status)

    def start(self, app: AppRun) -> None:
        app.restart_at = None
        if app.spec.pre_start:
            code = self._handler(app.spec.pre_start, app)
            if code != 0:
                app.exit_code = 128 - code if code < 0 else code
                app.finished_ns = time.time_ns()
                app.save()
                return
        read_out, write_out = os.pipe()
        read_err, write_err = os.pipe()
        # An interactive app reads what the attached `rktcfg run` was given (our stdin).
        interactive = self.stage1.get("interactive")
        stdin = os.dup(0) if interactive else os.open(os.devnull, os.O_RDONLY)
        app.pid = self.flavor.spawn(
            self.pod_dir, app.spec, app.spec.exec, (stdin, write_out, write_err)
        )
        for fd in (stdin, write_out, write_err):
            os.close(fd)
        for fd, stream in ((read_out, "stdout"), (read_err, "stderr")):
            os.set_blocking(fd, False)
            self.selector.register(fd, selectors.EVENT_READ, (app, stream))
            self.open_pipes += 1
        app.started_ns = time.time_ns()
        app.finished_ns = 0
        app.exit_code = None
        if app.check:
            app.health, app.failures, app.killed_unhealthy = "starting", 0, False
            app.next_check = time.monotonic() + min(1.0, float(app.check["interval_s"]))
        app.save()

    def _exited(self, app: AppRun, status: int) -> None:
        code = os.waitstatus_to_exitcode(status)
        app.exit_code = 128 - code if code < 0 else code  # killed by signal N: 128 + N
        app.pid = None
        app.finished_ns = time.time_ns()
        app.reason = "unhealthy" if app.killed_unhealthy else None
        if app.check_pid is not None:  # its check dies with it
            with contextlib.suppress(ProcessLookupError):
                os.kill(app.check_pid, signal.SIGKILL)
        kills = self._oom_kills(app)
        if kills > app.oom_kills:
            app.oom_kills = kills
            if code == -signal.SIGKILL:  # the app itself, not only a child of it
                app.reason = "oom-killed"
        if app.spec.post_stop:
            self._handler(app.spec.post_stop, app)
        ran = (app.finished_ns - app.started_ns) / 1e9
        wants = self.policy == "always" or (self.policy == "on-failure" and app.exit_code != 0)
        if wants and not self.stop_requested:
            if ran >= BACKOFF_RESET_AFTER:
                app.backoff = BACKOFF_START
            app.restart_at = time.monotonic() + app.backoff
            app.backoff = min(app.backoff * 2, BACKOFF_MAX)
        app.save()

    def _oom_kills(self, app: AppRun) -> int:
        """How often the kernel's OOM killer struck in the app's cgroup (0 without one)."""
        if self.cgroups is None:
            try:
                with open(os.path.join(self.pod_dir, "cgroups.json"), encoding="utf-8") as h:
                    from rktcfg.isolators.cgroups import driver_for

                    self.cgroups = driver_for(json.load(h))
            except (OSError, ValueError):
                self.cgroups = False
        if not self.cgroups:
            return 0
        try:
            return int(self.cgroups.oom_kills(app.spec.name))
        except (OSError, ValueError):
            return 0

    def _signal_all(self, signum: int) -> None:
        for app in self.apps:
            if app.pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(app.pid, signum)

    # --- the loop ------------------------------------------------------------------------------

    def _pump(self, timeout: float) -> None:
        for key, mask in self.selector.select(timeout):
            if callable(key.data):  # the metadata service's sockets
                key.data(key, mask)
                continue
            app, stream = key.data
            fd = key.fd
            try:
                chunk = os.read(fd, 65536)
            except BlockingIOError:
                continue
            if chunk:
                app.logs[stream].write(chunk)
                continue
            self.selector.unregister(fd)
            os.close(fd)
            self.open_pipes -= 1

    def _reap(self) -> None:
        by_pid = {app.pid: app for app in self.apps if app.pid is not None}
        checks = {app.check_pid: app for app in self.apps if app.check_pid is not None}
        while by_pid or checks:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            app = by_pid.pop(pid, None)
            if app is not None:
                self._exited(app, status)
                continue
            app = checks.pop(pid, None)
            if app is not None:
                self._checked(app, os.waitstatus_to_exitcode(status) == 0)

    # --- health checks -----------------------------------------------------------------------

    def _run_checks(self, now: float) -> None:
        """Start the checks that are due; kill those past their timeout (a failure)."""
        for app in self.apps:
            check = app.check
            if check is None or app.pid is None or self.stop_requested:
                continue
            if app.check_pid is not None:
                if now >= app.check_deadline:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(app.check_pid, signal.SIGKILL)
                continue
            if now < app.next_check:
                continue
            devnull = os.open(os.devnull, os.O_RDWR)
            try:
                app.check_pid = self.flavor.spawn(
                    self.pod_dir, app.spec, list(check["exec"]), (devnull, devnull, devnull)
                )
            finally:
                os.close(devnull)
            app.check_deadline = now + float(check["timeout_s"])

    def _checked(self, app: AppRun, passed: bool) -> None:
        """A check ended: healthy on success; after ``retries`` failures in a row the app is
        killed, and its restart policy decides what follows."""
        check = app.check
        assert check is not None
        app.check_pid = None
        app.next_check = time.monotonic() + float(check["interval_s"])
        before = (app.health, app.failures)
        if passed:
            app.health, app.failures = "healthy", 0
        else:
            app.failures += 1
            if app.failures >= int(check["retries"]):
                app.health = "unhealthy"
                if app.pid is not None and not app.killed_unhealthy:
                    app.killed_unhealthy = True
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(app.pid, signal.SIGKILL)
        if (app.health, app.failures) != before:
            app.save()

    def _wake_on_signals(self) -> None:
        """SIGCHLD (and the stop signals) wake the loop at once: the signal module writes
        to a pipe the selector watches, so an exit is seen without waiting for a timeout."""
        read_end, write_end = os.pipe()
        for fd in (read_end, write_end):
            os.set_blocking(fd, False)
        signal.set_wakeup_fd(write_end, warn_on_full_buffer=False)
        signal.signal(signal.SIGCHLD, lambda *_: None)

        def drain(*_: object) -> None:
            with contextlib.suppress(BlockingIOError):
                while os.read(read_end, 512):
                    pass

        self.selector.register(read_end, selectors.EVENT_READ, drain)

    def run(self) -> int:
        self._wake_on_signals()
        for app in self.apps:
            os.makedirs(app.directory, 0o750, exist_ok=True)
            self.start(app)
        _touch(os.path.join(self.pod_dir, "started"))
        while True:
            now = time.monotonic()
            if self.stop_requested and self.force_deadline is None:
                self.force_deadline = now + self.grace
                for app in self.apps:
                    app.restart_at = None
                self._signal_all(signal.SIGTERM)
            if self.force_deadline is not None and now >= self.force_deadline:
                self._signal_all(signal.SIGKILL)
            self._pump(0.05)
            if self.metadata is not None:
                self.metadata.expire(time.monotonic())
            self._reap()
            self._run_checks(time.monotonic())
            for app in self.apps:
                if app.restart_at is not None and time.monotonic() >= app.restart_at:
                    app.restarts += 1
                    self.start(app)
            running = any(
                a.pid is not None or a.restart_at is not None or a.check_pid is not None
                for a in self.apps
            )
            if not running and self.open_pipes == 0:
                break
        if self.metadata is not None:
            self.metadata.close()
        for app in self.apps:
            for log in app.logs.values():
                log.close()
            app.save()
        code = next((a.exit_code for a in self.apps if a.exit_code), 0) or 0
        _touch(os.path.join(self.pod_dir, "exit-code"), f"{code}\n")
        return code

    def request_stop(self, *_: object) -> None:
        self.stop_requested = True


def _teardown(flavor: Flavor, pod_dir: str) -> None:
    if getattr(flavor, "teardown_inline", False):
        flavor.teardown(pod_dir)
    else:
        in_child(lambda: flavor.teardown(pod_dir))


def main(argv: list[str]) -> int:
    pod_dir = argv[1]
    os.chdir(pod_dir)
    _touch(os.path.join(pod_dir, "pid"), f"{os.getpid()}\n")
    supervisor: Supervisor | None = None
    try:
        supervisor = Supervisor(pod_dir)
        supervisor.flavor.check([a.spec for a in supervisor.apps])
        specs = [a.spec for a in supervisor.apps]
        boot = getattr(supervisor.flavor, "boot", None)
        if boot is not None:  # the default flavor's PID 1: the first child, before any other
            boot(pod_dir, specs)
        in_child(lambda: supervisor.flavor.setup(pod_dir, specs))
        if supervisor.stage1.get("metadata"):
            supervisor.start_metadata()
    except Exception as exc:
        _touch(os.path.join(pod_dir, "start-error"), f"{exc}\n")
        sys.stderr.write(f"rktcfg supervisor: cannot start the pod: {exc}\n")
        with contextlib.suppress(Exception):
            flavor = supervisor.flavor if supervisor else get_flavor(read_stage1(pod_dir)["flavor"])
            _teardown(flavor, pod_dir)
        return 1
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, supervisor.request_stop)
    try:
        code = supervisor.run()
    finally:
        try:
            _teardown(supervisor.flavor, pod_dir)
        except Exception as exc:
            sys.stderr.write(f"rktcfg supervisor: teardown failed (gc will retry): {exc}\n")
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv))
