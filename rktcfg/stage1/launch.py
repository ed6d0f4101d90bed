"""Start a pod's supervisor as a detached process: double fork, setsid, stdio to a log.

The supervisor inherits the pod's locked directory fd (made inheritable for the exec) and
so holds the pod lock for its whole life; the caller may close its own copy afterwards.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time

SUPERVISOR_LOG = "supervisor.log"


def isolate(namespaces: int, hostname: str | None, netns: str | None = None) -> None:
    """Put the calling process into new namespaces before it execs the supervisor: the
    ``CLONE_NEW*`` flags in ``namespaces``; a new mount namespace becomes a slave of the
    host's (mounts flow in, never out), a new UTS namespace gets ``hostname``, a new network
    namespace gets its loopback up."""
    from rktcfg.stage1 import linux

    if netns is not None:  # the pod's networks were made in this netns file beforehand
        fd = os.open(netns, os.O_RDONLY | os.O_CLOEXEC)
        try:
            linux.setns(fd, linux.CLONE_NEWNET)
        finally:
            os.close(fd)
    linux.unshare(namespaces)
    if namespaces & linux.CLONE_NEWNS:
        linux.mount(None, "/", None, linux.MS_REC | linux.MS_SLAVE)
    if namespaces & linux.CLONE_NEWUTS and hostname:
        import socket

        socket.sethostname(hostname)
    if namespaces & linux.CLONE_NEWNET:
        linux.loopback_up()


def launch_supervisor(
    pod_dir: str,
    lock_fd: int,
    *,
    stdin_fd: int | None = None,
    namespaces: int = 0,
    hostname: str | None = None,
    netns: str | None = None,
) -> None:
    """Start ``python -I -m rktcfg.stage1.init POD_DIR LOCK_FD``; return once it is detached.
    With ``stdin_fd`` the supervisor's stdin is that fd (for an interactive app), else
    /dev/null. With ``namespaces`` (CLONE_NEW* flags) it starts in new namespaces
    (:func:`isolate`); a failure there is written to the pod's ``start-error``."""
    log = os.open(
        os.path.join(pod_dir, SUPERVISOR_LOG), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640
    )
    devnull = os.open(os.devnull, os.O_RDONLY)
    argv = [sys.executable, "-I", "-m", "rktcfg.stage1.init", pod_dir, str(lock_fd)]
    middle = os.fork()
    if middle == 0:
        try:
            os.setsid()
            if os.fork() != 0:
                os._exit(0)
            os.dup2(devnull if stdin_fd is None else stdin_fd, 0)
            os.dup2(log, 1)
            os.dup2(log, 2)
            os.set_inheritable(lock_fd, True)
            for fd in range(3, 1024):
                if fd != lock_fd:
                    with contextlib.suppress(OSError):
                        os.close(fd)
            if namespaces or netns:
                isolate(namespaces, hostname, netns)
            os.execv(sys.executable, argv)
        except BaseException as exc:
            with contextlib.suppress(BaseException):
                message = f"cannot isolate the pod: {exc}\n"
                os.write(2, message.encode())
                with open(os.path.join(pod_dir, "start-error"), "w", encoding="utf-8") as out:
                    out.write(message)
            os._exit(127)
    os.close(log)
    os.close(devnull)
    os.waitpid(middle, 0)


def wait_started(pod_dir: str, lock_is_free: object, timeout: float = 60.0) -> str | None:
    """Wait until the supervisor says the apps started (None) or why it could not (the
    message), or until it died without saying (a message too)."""
    assert callable(lock_is_free)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if os.path.exists(os.path.join(pod_dir, "started")):
            return None
        error = os.path.join(pod_dir, "start-error")
        if os.path.exists(error):
            with open(error, encoding="utf-8") as handle:
                return handle.read().strip() or "the pod failed to start"
        if lock_is_free():
            if os.path.exists(os.path.join(pod_dir, "started")):
                return None
            return f"the supervisor exited before starting the apps (see {SUPERVISOR_LOG})"
        time.sleep(0.002)
    return "timed out waiting for the pod to start"
