"""The pod store: one directory per pod, whose state is its phase directory and its lock.

Layout below the data directory::

    pods/embryo/<uuid>/          being created
    pods/prepare/<uuid>/         being prepared (locked), or an aborted prepare (unlocked)
    pods/prepared/<uuid>/        ready to run
    pods/run/<uuid>/             running (locked by its supervisor), or exited (unlocked)
    pods/exited-garbage/<uuid>/  exited and marked by gc (locked while being deleted)
    pods/garbage/<uuid>/         never ran, marked by gc (locked while being deleted)

There is no daemon and no state file: a pod's :class:`PodState` is (phase directory, whether
an exclusive ``flock`` on the pod directory is held). The supervisor inherits the locked
directory fd and holds it for its whole life, so when it dies, however it dies, the kernel
drops the lock and the pod reads as exited. A state changes only by ``rename(2)`` of the pod
directory between phase directories, followed by an fsync of both parents; transitions are
named by their target (``to_prepare``, ``to_prepared``, ``to_run``, ...). Two processes
racing to run one prepared pod: only the one that takes the lock renames it.
"""

from __future__ import annotations

import enum
import errno
import fcntl
import json
import os
import uuid as uuidlib

from rktcfg.errors import AmbiguousError, InputError, NotFoundError, StoreError
from rktcfg.fsutil import fsync_dir, same_file

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

PHASES = ("embryo", "prepare", "prepared", "run", "exited-garbage", "garbage")
#: Phases in which commands look pods up (rkt's "most dirs").
VISIBLE_PHASES = ("prepare", "prepared", "run", "exited-garbage")


class PodState(enum.Enum):
    """rkt's pod states."""

    EMBRYO = "embryo"
    PREPARING = "preparing"
    ABORTED_PREPARE = "aborted-prepare"
    PREPARED = "prepared"
    RUNNING = "running"
    EXITED = "exited"
    EXITED_GARBAGE = "exited-garbage"
    GARBAGE = "garbage"
    DELETING = "deleting"


#: (phase, lock held) -> state
_STATES = {
    ("embryo", False): PodState.EMBRYO,
    ("embryo", True): PodState.EMBRYO,
    ("prepare", True): PodState.PREPARING,
    ("prepare", False): PodState.ABORTED_PREPARE,
    ("prepared", False): PodState.PREPARED,
    ("prepared", True): PodState.PREPARED,  # someone is about to run it
    ("run", True): PodState.RUNNING,
    ("run", False): PodState.EXITED,
    ("exited-garbage", False): PodState.EXITED_GARBAGE,
    ("exited-garbage", True): PodState.DELETING,
    ("garbage", False): PodState.GARBAGE,
    ("garbage", True): PodState.DELETING,
}


def _lock_is_held(path: str) -> bool:
    """Whether another open file description holds an exclusive lock on the directory."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def wait_lock_free(path: str) -> None:
    """Block until no one holds the directory's exclusive lock (a pod's supervisor has
    exited), taking and dropping a shared lock as the state readers do."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)
    finally:
        os.close(fd)


class Pod:
    """A pod as found on disk. ``state`` is read each time it is asked for."""

    __slots__ = ("phase", "root", "uuid")

    def __init__(self, root: str, phase: str, pod_uuid: str) -> None:
        self.root = root
        self.phase = phase
        self.uuid = pod_uuid

    @property
    def path(self) -> str:
        return os.path.join(self.root, self.phase, self.uuid)

    def state(self) -> PodState:
        try:
            held = _lock_is_held(self.path)
        except FileNotFoundError:
            found = _find(self.root, self.uuid)
            if found is None:
                raise NotFoundError(f"pod {self.uuid} is gone") from None
            self.phase = found
            held = _lock_is_held(self.path)
        return _STATES[(self.phase, held)]

    def file(self, name: str) -> str:
        return os.path.join(self.path, name)

    def read_json(self, name: str) -> Any:
        with open(self.file(name), encoding="utf-8") as handle:
            return json.load(handle)

    def write_json(self, name: str, data: Any) -> None:
        """Write a file in the pod directory atomically (temp, fsync, rename)."""
        from rktcfg.fsutil import AtomicFile

        with AtomicFile(self.file(name)) as handle:
            handle.write((json.dumps(data, indent=2) + "\n").encode())

    def name(self) -> str | None:
        try:
            with open(self.file("name"), encoding="utf-8") as handle:
                return handle.read().strip() or None
        except FileNotFoundError:
            return None

    def created(self) -> int | None:
        """Creation time in ns (the mtime of ``pod-created``)."""
        try:
            return os.stat(self.file("pod-created")).st_mtime_ns
        except FileNotFoundError:
            return None

    def started(self) -> int | None:
        """Start time in ns (the mtime of ``pid``, written when the supervisor started)."""
        try:
            return os.stat(self.file("pid")).st_mtime_ns
        except FileNotFoundError:
            return None

    def marked(self) -> int:
        """When gc marked it (the ctime of the pod directory: rename updates it)."""
        return os.stat(self.path).st_ctime_ns

    def __repr__(self) -> str:
        return f"Pod({self.uuid}, {self.phase})"


def _find(root: str, pod_uuid: str) -> str | None:
    for phase in PHASES:
        if os.path.isdir(os.path.join(root, phase, pod_uuid)):
            return phase
    return None


class LockedPod(Pod):
    """A pod whose exclusive lock this process holds (through ``fd``). Transitions that need
    the lock are methods here; ``release`` gives it up, ``fd`` can be inherited by a child."""

    __slots__ = ("fd",)

    def __init__(self, root: str, phase: str, pod_uuid: str, fd: int) -> None:
        super().__init__(root, phase, pod_uuid)
        self.fd = fd

    def _move(self, target: str) -> None:
        source_dir = os.path.join(self.root, self.phase)
        target_dir = os.path.join(self.root, target)
        os.rename(self.path, os.path.join(target_dir, self.uuid))
        fsync_dir(target_dir)
        fsync_dir(source_dir)
        self.phase = target

    def to_prepare(self) -> None:
        """embryo -> prepare: now "preparing" (the lock is held)."""
        self._expect("embryo")
        self._move("prepare")

    def to_prepared(self) -> None:
        """prepare -> prepared."""
        self._expect("prepare")
        self._move("prepared")

    def to_run(self) -> None:
        """prepare or prepared -> run: "running" while the lock is held."""
        self._expect("prepare", "prepared")
        self._move("run")

    def to_garbage(self) -> None:
        self._expect("prepare", "prepared", "embryo")
        self._move("garbage")

    def to_exited_garbage(self) -> None:
        self._expect("run")
        self._move("exited-garbage")

    def _expect(self, *phases: str) -> None:
        if self.phase not in phases:
            raise StoreError(f"pod {self.uuid} is in {self.phase}/, not {' or '.join(phases)}/")

    def release(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> LockedPod:
        return self

    def __exit__(self, *_: object) -> None:
        self.release()


class PodStore:
    """The pods of one data directory."""

    def __init__(self, data_dir: str) -> None:
        self.root = os.path.join(data_dir, "pods")
        try:
            for phase in PHASES:
                os.makedirs(os.path.join(self.root, phase), mode=0o750, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create the pod store in {self.root}: {exc}") from None

    # --- creation and locking ------------------------------------------------------------

    def create(self, *, name: str | None = None, uuid_factory: Any = uuidlib.uuid4) -> LockedPod:
        """A new pod in ``prepare/``, locked by this process ("preparing")."""
        for _ in range(10):
            pod_uuid = str(uuid_factory())
            path = os.path.join(self.root, "embryo", pod_uuid)
            try:
                os.mkdir(path, 0o750)
            except FileExistsError:
                continue
            break
        else:
            raise StoreError("cannot allocate a pod UUID")
        fd = self._lock(path, blocking=True)
        assert fd is not None
        pod = LockedPod(self.root, "embryo", pod_uuid, fd)
        with open(pod.file("pod-created"), "w", encoding="utf-8"):
            pass
        if name is not None:
            with open(pod.file("name"), "w", encoding="utf-8") as handle:
                handle.write(name + "\n")
        pod.to_prepare()
        return pod

    @staticmethod
    def _lock(path: str, *, blocking: bool) -> int | None:
        from rktcfg.fsutil import flock_fd

        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        if not flock_fd(fd, blocking=blocking):
            os.close(fd)
            return None
        return fd

    def lock(self, pod: Pod, *, blocking: bool = False) -> LockedPod | None:
        """Take the pod's exclusive lock; None if another process holds it (and not blocking).
        Checks after locking that the pod did not move meanwhile."""
        try:
            fd = self._lock(pod.path, blocking=blocking)
        except FileNotFoundError:
            return None
        if fd is None:
            return None
        moved = _find(self.root, pod.uuid) != pod.phase or not same_file(fd, pod.path)
        if moved:
            os.close(fd)
            return None
        return LockedPod(self.root, pod.phase, pod.uuid, fd)

    def run_prepared(self, pod: Pod) -> LockedPod:
        """prepared -> run, keeping the lock. Of two racing callers exactly one wins; the
        other gets an error saying the pod is already being started."""
        if pod.phase != "prepared":
            raise InputError(f"pod {pod.uuid} is {pod.state().value}, not prepared")
        locked = self.lock(pod)
        if locked is None:
            raise InputError(f"pod {pod.uuid} is already being started by another process")
        try:
            locked.to_run()
        except FileNotFoundError:
            locked.release()
            raise InputError(f"pod {pod.uuid} was started by another process") from None
        except BaseException:
            locked.release()
            raise
        return locked

    # --- lookup ----------------------------------------------------------------------------

    def pods(self, phases: tuple[str, ...] = VISIBLE_PHASES) -> list[Pod]:
        found: dict[str, Pod] = {}
        for phase in phases:
            try:
                names = os.listdir(os.path.join(self.root, phase))
            except FileNotFoundError:
                continue
            for name in names:
                if name not in found and _is_uuid(name):
                    found[name] = Pod(self.root, phase, name)
        return [found[u] for u in sorted(found)]

    def by_uuid(self, pod_uuid: str) -> Pod | None:
        """The pod with this full UUID, wherever it is; None if there is none (no listing)."""
        phase = _find(self.root, pod_uuid) if pod_uuid else None
        return None if phase is None else Pod(self.root, phase, pod_uuid)

    def get(self, ref: str) -> Pod:
        """A pod by name, full UUID or unique UUID prefix. When several pods carry the name
        (one replacing another), the running one, else the newest."""
        text = ref.strip().lower()
        if not text:
            raise InputError("a pod UUID cannot be empty")
        pods = self.pods()
        named = [p for p in pods if p.name() == ref.strip()]
        if (
            len(named) > 1
        ):  # a pod being replaced and its replacement: the live one, else the newest
            running = [p for p in named if _running(p)]
            named = running if len(running) == 1 else [max(named, key=lambda p: p.created() or 0)]
        if len(named) == 1:
            return named[0]
        matches = [p for p in pods if p.uuid.startswith(text)]
        if not matches:
            raise NotFoundError(f"no pod matches {ref!r}")
        if len(matches) > 1:
            raise AmbiguousError(f"{ref!r} is ambiguous: {len(matches)} pods")
        return matches[0]

    # --- deletion ----------------------------------------------------------------------------

    def delete(self, locked: LockedPod) -> None:
        """Remove a garbage pod's directory (the caller tore down what it set up first)."""
        import shutil

        locked._expect("garbage", "exited-garbage")
        path = locked.path
        try:
            shutil.rmtree(path)
        except OSError as exc:
            if exc.errno != errno.ENOENT:
                raise StoreError(f"cannot delete pod {locked.uuid}: {exc}") from None
        locked.release()


def _is_uuid(name: str) -> bool:
    try:
        return str(uuidlib.UUID(name)) == name
    except ValueError:
        return False


def _running(pod: Pod) -> bool:
    """Whether the pod runs; False for a pod deleted meanwhile."""
    try:
        return pod.state() is PodState.RUNNING
    except NotFoundError:
        return False
