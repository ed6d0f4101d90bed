"""--private-users host ranges: one lease file per range, never shared, reclaimed when the
pod that held it is gone."""

from __future__ import annotations

import os
import threading
from pathlib import Path

from rktcfg.pods import USERNS_SIZE, release_user_range, take_user_range


def _pod(data: Path, phase: str, uuid: str) -> None:
    (data / "pods" / phase / uuid).mkdir(parents=True)


def _take_all(data: Path, uuids: list[str]) -> dict[str, int]:
    """Each pod takes a range, all at once, from its own thread."""
    got: dict[str, int] = {}

    def take(uuid: str) -> None:
        got[uuid] = take_user_range(str(data), uuid)

    threads = [threading.Thread(target=take, args=(u,)) for u in uuids]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return got


def test_ranges_are_distinct_and_released(tmp_path: Path) -> None:
    _pod(tmp_path, "run", "a")
    _pod(tmp_path, "prepared", "b")
    first = take_user_range(str(tmp_path), "a")
    second = take_user_range(str(tmp_path), "b")
    assert first == USERNS_SIZE and second == 2 * USERNS_SIZE
    release_user_range(str(tmp_path), "a")
    _pod(tmp_path, "run", "c")
    assert take_user_range(str(tmp_path), "c") == first  # the lowest free range again
    leases = [n for n in os.listdir(tmp_path / "userns") if not n.startswith(".")]
    assert sorted(leases) == sorted([str(first), str(second)])


def test_a_lease_whose_pod_is_gone_is_reclaimed(tmp_path: Path) -> None:
    _pod(tmp_path, "run", "gone")
    base = take_user_range(str(tmp_path), "gone")
    os.rmdir(tmp_path / "pods" / "run" / "gone")  # deleted without gc releasing its lease
    _pod(tmp_path, "run", "new")
    assert take_user_range(str(tmp_path), "new") == base
    assert (tmp_path / "userns" / str(base)).read_text().strip() == "new"


def test_concurrent_takers_never_share_a_range(tmp_path: Path) -> None:
    uuids = [f"pod{i}" for i in range(16)]
    for uuid in uuids:
        _pod(tmp_path, "prepare", uuid)
    got = _take_all(tmp_path, uuids)
    assert len(set(got.values())) == len(uuids)
    assert all(base % USERNS_SIZE == 0 and base >= USERNS_SIZE for base in got.values())


def test_concurrent_reclaimers_of_one_stale_lease_never_share_it(tmp_path: Path) -> None:
    (tmp_path / "userns").mkdir()
    (tmp_path / "userns" / str(USERNS_SIZE)).write_text("gone\n")  # its pod no longer exists
    (tmp_path / "userns" / str(2 * USERNS_SIZE)).write_text("")  # killed before it was written
    uuids = [f"pod{i}" for i in range(12)]
    for uuid in uuids:
        _pod(tmp_path, "prepare", uuid)
    got = _take_all(tmp_path, uuids)
    assert len(set(got.values())) == len(uuids)
    owners = {
        int(name): (tmp_path / "userns" / name).read_text().strip()
        for name in os.listdir(tmp_path / "userns")
        if not name.startswith(".")
    }
    assert owners == {base: uuid for uuid, base in got.items()}
