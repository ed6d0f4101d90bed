"""The pod store's state machine on real directories, locks and processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from rktcfg.errors import AmbiguousError, InputError, NotFoundError, StoreError
from rktcfg.store.pods import PodState, PodStore


@pytest.fixture
def store(tmp_path: Path) -> PodStore:
    return PodStore(str(tmp_path / "data"))


def test_lifecycle_states(store: PodStore) -> None:
    pod = store.create(name="web")
    assert pod.phase == "prepare" and pod.state() is PodState.PREPARING
    assert Path(pod.file("pod-created")).exists() and pod.name() == "web"
    pod.to_prepared()
    pod.release()
    found = store.get(pod.uuid)
    assert found.state() is PodState.PREPARED
    running = store.run_prepared(found)
    assert running.phase == "run" and store.get(pod.uuid).state() is PodState.RUNNING
    running.release()
    exited = store.get(pod.uuid)
    assert exited.state() is PodState.EXITED
    locked = store.lock(exited)
    assert locked is not None
    locked.to_exited_garbage()
    assert store.get(pod.uuid).state() is PodState.DELETING  # we hold it while deleting
    store.delete(locked)
    with pytest.raises(NotFoundError, match="no pod matches"):
        store.get(pod.uuid)


def test_an_interrupted_prepare_reads_as_aborted(store: PodStore) -> None:
    pod = store.create()
    pod.release()  # the preparing process died
    assert store.get(pod.uuid).state() is PodState.ABORTED_PREPARE
    locked = store.lock(store.get(pod.uuid))
    assert locked is not None
    locked.to_garbage()
    locked.release()
    assert [p.state() for p in store.pods(("garbage",))] == [PodState.GARBAGE]


def test_transitions_check_where_the_pod_is(store: PodStore) -> None:
    pod = store.create()
    with pytest.raises(StoreError, match="not run/"):
        pod.to_exited_garbage()
    with pytest.raises(InputError, match="not prepared"):
        store.run_prepared(store.get(pod.uuid))
    pod.release()


HOLDER = """
import os, sys, time
fd = int(sys.argv[1])
os.write(1, b"ready\\n")
time.sleep(60)
"""


def test_the_lock_outlives_the_parent_and_dies_with_the_holder(store: PodStore) -> None:
    pod = store.create()
    pod.to_run()
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(pod.fd)], pass_fds=[pod.fd], stdout=subprocess.PIPE
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == b"ready\n"
        pod.release()  # the parent lets go; the child still holds the lock
        assert store.get(pod.uuid).state() is PodState.RUNNING
        holder.send_signal(signal.SIGKILL)
        holder.wait()
        assert store.get(pod.uuid).state() is PodState.EXITED
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()


RACER = """
import sys, time
from rktcfg.store.pods import PodStore
from rktcfg.errors import InputError
store = PodStore(sys.argv[1])
while time.time() < float(sys.argv[3]):
    pass
try:
    pod = store.run_prepared(store.get(sys.argv[2]))
except InputError as exc:
    print("lost", exc, flush=True)
    sys.exit(3)
print("won", flush=True)
time.sleep(2)
"""


def test_concurrent_run_prepared_exactly_one_wins(tmp_path: Path, store: PodStore) -> None:
    pod = store.create()
    pod.to_prepared()
    pod.release()
    start = time.time() + 1.0
    racers = [
        subprocess.Popen(
            [sys.executable, "-c", RACER, str(tmp_path / "data"), pod.uuid, str(start)],
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    outputs = [r.communicate(timeout=60)[0] for r in racers]
    codes = sorted(r.returncode for r in racers)
    assert codes == [0, 3, 3, 3], outputs
    assert sum(out.startswith("won") for out in outputs) == 1
    assert store.get(pod.uuid).phase == "run"


def _uuids(*prefixes: str) -> list[uuid.UUID]:
    return [uuid.UUID(p + "0" * (32 - len(p))) for p in prefixes]


def test_lookup_by_prefix_and_name(store: PodStore) -> None:
    made = iter(_uuids("ab12", "ab34", "ab56", "cd00"))
    pods = []
    for index in range(4):
        pod = store.create(name=f"pod-{index}", uuid_factory=lambda: next(made))
        pod.to_prepared()
        pod.release()
        pods.append(pod)
    assert store.get("cd").uuid == pods[3].uuid
    assert store.get("AB3").uuid == pods[1].uuid
    assert store.get("pod-2").uuid == pods[2].uuid
    with pytest.raises(AmbiguousError, match="'ab' is ambiguous: 3 pods"):
        store.get("ab")
    with pytest.raises(NotFoundError, match="no pod matches 'x'"):
        store.get("x")
    with pytest.raises(InputError, match="cannot be empty"):
        store.get(" ")
    assert [p.uuid for p in store.pods()] == sorted(p.uuid for p in pods)


def test_phase_directories_and_modes(tmp_path: Path, store: PodStore) -> None:
    root = tmp_path / "data" / "pods"
    assert sorted(os.listdir(root)) == sorted(
        ["embryo", "prepare", "prepared", "run", "exited-garbage", "garbage"]
    )
    pod = store.create()
    assert (os.stat(pod.path).st_mode & 0o777) == 0o750
    pod.write_json("pod", {"acKind": "PodManifest"})
    assert pod.read_json("pod") == {"acKind": "PodManifest"}
    pod.release()


def test_pods_deleted_while_listed_are_left_out(tmp_path: Path, store: PodStore) -> None:
    """``list`` (statuses) and gc read every pod; one deleted meanwhile (by a concurrent
    prune or gc) is skipped, not an error."""
    from rktcfg.pods import Pods

    kept, gone = store.create(name="kept"), store.create(name="gone")
    for pod in (kept, gone):
        pod.to_prepared()
        pod.release()
    pods = Pods(str(tmp_path / "data"))
    listed = pods.all()  # the listing is taken ...
    locked = store.lock(store.get(gone.uuid))
    assert locked is not None
    locked.to_garbage()
    store.delete(locked)  # ... then one pod goes
    pods.all = lambda: listed  # type: ignore[method-assign]
    assert [s["name"] for s in pods.statuses()] == ["kept"]
    pods.store.pods = lambda phases=None: [  # type: ignore[method-assign]
        p for p in listed if phases is None or p.phase in phases
    ]
    assert pods.gc(grace_ns=0, expire_prepared_ns=10**18)["failed"] == []
    assert [p.name() for p in store.pods()] == ["kept"]
