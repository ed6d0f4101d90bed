"""Host-local address leases (rktcfg.net.ipam): pure pool arithmetic, and lease files under
a lock that never hand one address to two pods, also when threads or processes race."""

from __future__ import annotations

import ipaddress
import multiprocessing
import os
import re
import threading
from pathlib import Path

import pytest

from rktcfg.errors import InputError, RuntimeFailure
from rktcfg.net import ipam

SUBNET = "10.213.40.0/24"


def _pod(data: Path, uuid: str, phase: str = "run") -> str:
    (data / "pods" / phase / uuid).mkdir(parents=True, exist_ok=True)
    return uuid


def _leases(data: Path, network: str = "net") -> dict[str, str]:
    return ipam.leases(str(data), network)


# --- pools (pure) ------------------------------------------------------------------------------


def test_the_gateway_defaults_to_the_first_host_and_is_never_handed_out() -> None:
    pool = ipam.make_pool("net", "10.213.40.0/30")
    assert str(pool.gateway) == "10.213.40.1"
    assert pool.size() == 1
    assert ipam.next_free(pool, set()) == int(ipaddress.ip_address("10.213.40.2"))
    assert ipam.next_free(pool, {int(ipaddress.ip_address("10.213.40.2"))}) is None


def test_next_free_starts_after_the_last_and_wraps_around() -> None:
    pool = ipam.make_pool("net", SUBNET)
    last = int(ipaddress.ip_address("10.213.40.254"))
    assert ipam.next_free(pool, set(), after=last) == int(ipaddress.ip_address("10.213.40.2"))
    five = int(ipaddress.ip_address("10.213.40.5"))
    assert ipam.next_free(pool, {five + 1}, after=five) == five + 2


def test_a_gateway_inside_the_range_is_skipped() -> None:
    pool = ipam.make_pool("net", SUBNET, "10.213.40.3")
    found = [ipam.next_free(pool, set(), after=int(ipaddress.ip_address("10.213.40.2")))]
    assert found == [int(ipaddress.ip_address("10.213.40.4"))]


@pytest.mark.parametrize(
    ("subnet", "gateway", "message"),
    [
        ("10.213.40.0/31", "", "a /30 or larger"),
        ("10.213.40.1/24", "", "must be a network"),
        ("nonsense", "", "must be a network"),
        (SUBNET, "10.213.41.1", "inside the subnet"),
        (SUBNET, "10.213.40.255", "inside the subnet"),
        (SUBNET, "x", "must be an IP address"),
    ],
)
def test_bad_pools_are_input_errors(subnet: str, gateway: str, message: str) -> None:
    with pytest.raises(InputError, match=message):
        ipam.make_pool("net", subnet, gateway)


@pytest.mark.parametrize(
    ("requested", "message"),
    [
        ("10.213.41.5", "must be inside the subnet 10.213.40.0/24"),
        ("10.213.40.1", "is the network's gateway"),
        ("10.213.40.0", "is the subnet's network address"),
        ("10.213.40.255", "is the subnet's broadcast address"),
        ("fd00::1", "must be inside the subnet"),
        ("ten", "must be an IP address"),
    ],
)
def test_requested_addresses_outside_the_pool_are_refused(requested: str, message: str) -> None:
    pool = ipam.make_pool("net", SUBNET)
    with pytest.raises(InputError, match=message) as info:
        ipam.check_requested(pool, requested)
    assert f"IP={requested}" in str(info.value)


def test_ipv6_pools_work_without_enumerating_them() -> None:
    pool = ipam.make_pool("net", "fd00:213::/64")
    assert str(pool.gateway) == "fd00:213::1"
    assert ipam.next_free(pool, set()) == int(ipaddress.ip_address("fd00:213::2"))


# --- leases on disk ------------------------------------------------------------------------------


def test_allocations_are_distinct_recorded_and_released(tmp_path: Path) -> None:
    a, b = _pod(tmp_path, "a"), _pod(tmp_path, "b", "prepared")
    first = ipam.allocate(str(tmp_path), "net", SUBNET, pod_uuid=a)
    second = ipam.allocate(str(tmp_path), "net", SUBNET, pod_uuid=b)
    assert (first.ip, second.ip) == ("10.213.40.2", "10.213.40.3")
    assert (first.prefix, first.gateway, first.subnet) == (24, "10.213.40.1", SUBNET)
    assert _leases(tmp_path) == {"10.213.40.2": "a", "10.213.40.3": "b"}
    assert ipam.release(str(tmp_path), "a") == ["net/10.213.40.2"]
    assert _leases(tmp_path) == {"10.213.40.3": "b"}
    assert ipam.release(str(tmp_path), "a") == []  # idempotent


def test_a_pod_asking_again_gets_its_own_address(tmp_path: Path) -> None:
    a = _pod(tmp_path, "a")
    first = ipam.allocate(str(tmp_path), "net", SUBNET, pod_uuid=a)
    assert ipam.allocate(str(tmp_path), "net", SUBNET, pod_uuid=a) == first
    assert list(_leases(tmp_path)) == [first.ip]


def test_a_freed_address_is_not_reused_at_once(tmp_path: Path) -> None:
    for uuid in "abc":
        _pod(tmp_path, uuid)
    first = ipam.allocate(str(tmp_path), "net", SUBNET, pod_uuid="a")
    ipam.release(str(tmp_path), "a")
    assert ipam.allocate(str(tmp_path), "net", SUBNET, pod_uuid="b").ip != first.ip


def test_a_requested_address_is_taken_or_a_clear_error(tmp_path: Path) -> None:
    a, b = _pod(tmp_path, "a"), _pod(tmp_path, "b")
    lease = ipam.allocate(str(tmp_path), "net", SUBNET, pod_uuid=a, requested="10.213.40.77")
    assert lease.ip == "10.213.40.77"
    with pytest.raises(InputError) as info:
        ipam.allocate(str(tmp_path), "net", SUBNET, pod_uuid=b, requested="10.213.40.77")
    assert "IP=10.213.40.77" in str(info.value) and "taken by pod a" in str(info.value)
    with pytest.raises(InputError, match="inside the subnet"):
        ipam.allocate(str(tmp_path), "net", SUBNET, pod_uuid=b, requested="192.0.2.1")
    assert _leases(tmp_path) == {"10.213.40.77": "a"}


def test_a_pod_asking_for_another_address_moves_to_it(tmp_path: Path) -> None:
    a = _pod(tmp_path, "a")
    ipam.allocate(str(tmp_path), "net", SUBNET, pod_uuid=a)
    ipam.allocate(str(tmp_path), "net", SUBNET, pod_uuid=a, requested="10.213.40.9")
    assert _leases(tmp_path) == {"10.213.40.9": "a"}


def test_leases_of_gone_pods_are_reclaimed_when_in_the_way(tmp_path: Path) -> None:
    for uuid in ("gone", "gone2"):
        _pod(tmp_path, uuid)
    subnet = "10.213.40.0/30"  # room for exactly one pod
    held = ipam.allocate(str(tmp_path), "net", subnet, pod_uuid="gone")
    os.rmdir(tmp_path / "pods" / "run" / "gone")  # deleted without gc releasing the lease
    _pod(tmp_path, "new")
    assert ipam.allocate(str(tmp_path), "net", subnet, pod_uuid="new").ip == held.ip
    assert _leases(tmp_path) == {held.ip: "new"}
    # a requested address held by a gone pod is reclaimed too
    ipam.allocate(str(tmp_path), "net", SUBNET, pod_uuid="gone2", requested="10.213.40.50")
    os.rmdir(tmp_path / "pods" / "run" / "gone2")
    lease = ipam.allocate(str(tmp_path), "net", SUBNET, pod_uuid="new", requested="10.213.40.50")
    assert lease.ip == "10.213.40.50"


def test_a_pod_in_a_later_phase_keeps_its_lease(tmp_path: Path) -> None:
    _pod(tmp_path, "old", "exited-garbage")
    held = ipam.allocate(str(tmp_path), "net", "10.213.40.0/30", pod_uuid="old")
    _pod(tmp_path, "new")
    with pytest.raises(RuntimeFailure, match=re.escape("no free address left in 10.213.40.0/30")):
        ipam.allocate(str(tmp_path), "net", "10.213.40.0/30", pod_uuid="new")
    assert _leases(tmp_path) == {held.ip: "old"}


def test_an_empty_lease_from_a_dead_writer_is_reclaimed(tmp_path: Path) -> None:
    directory = tmp_path / "networks" / "net"
    directory.mkdir(parents=True)
    (directory / "10.213.40.2").write_text("")
    _pod(tmp_path, "new")
    assert ipam.allocate(str(tmp_path), "net", "10.213.40.0/30", pod_uuid="new").ip == (
        "10.213.40.2"
    )


def test_network_names_cannot_escape_the_data_directory(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="AC Name"):
        ipam.allocate(str(tmp_path), "../x", SUBNET, pod_uuid="a")


def test_release_covers_every_network(tmp_path: Path) -> None:
    a = _pod(tmp_path, "a")
    ipam.allocate(str(tmp_path), "one", SUBNET, pod_uuid=a)
    ipam.allocate(str(tmp_path), "two", "10.213.41.0/24", pod_uuid=a)
    assert sorted(ipam.release(str(tmp_path), a)) == ["one/10.213.40.2", "two/10.213.41.2"]


def test_host_ports_are_leased_to_one_pod(tmp_path: Path) -> None:
    a, b = _pod(tmp_path, "a"), _pod(tmp_path, "b")
    ipam.take_port(str(tmp_path), a, "tcp", 8080)
    ipam.take_port(str(tmp_path), a, "tcp", 8080)  # idempotent
    ipam.take_port(str(tmp_path), b, "udp", 8080)  # another protocol
    with pytest.raises(InputError, match="8080/tcp: is published by pod a"):
        ipam.take_port(str(tmp_path), b, "tcp", 8080)
    assert ipam.release_ports(str(tmp_path), a) == ["tcp-8080"]
    ipam.take_port(str(tmp_path), b, "tcp", 8080)
    os.rmdir(tmp_path / "pods" / "run" / "b")
    ipam.take_port(str(tmp_path), a, "tcp", 8080)  # b is gone: reclaimed


# --- concurrency -------------------------------------------------------------------------------


def test_twenty_threads_never_share_an_address(tmp_path: Path) -> None:
    uuids = [_pod(tmp_path, f"pod{i}") for i in range(20)]
    got: dict[str, str] = {}
    errors: list[BaseException] = []
    start = threading.Barrier(len(uuids))

    def take(uuid: str) -> None:
        try:
            start.wait()
            got[uuid] = ipam.allocate(str(tmp_path), "net", SUBNET, pod_uuid=uuid).ip
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=take, args=(u,)) for u in uuids]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert len(set(got.values())) == len(uuids)
    assert _leases(tmp_path) == {ip: uuid for uuid, ip in got.items()}


def _allocate_in_process(data: str, uuid: str, start: threading.Barrier, out: object) -> None:
    start.wait()
    lease = ipam.allocate(data, "net", "10.213.40.0/27", pod_uuid=uuid)
    out.put((uuid, lease.ip))  # type: ignore[attr-defined]


def test_twenty_processes_never_share_an_address(tmp_path: Path) -> None:
    uuids = [_pod(tmp_path, f"pod{i}") for i in range(20)]
    context = multiprocessing.get_context("fork")
    start = context.Barrier(len(uuids))
    out = context.Queue()
    procs = [
        context.Process(target=_allocate_in_process, args=(str(tmp_path), u, start, out))
        for u in uuids
    ]
    for proc in procs:
        proc.start()
    try:
        got = dict(out.get(timeout=30) for _ in uuids)
    finally:
        for proc in procs:
            proc.join(timeout=30)
    assert all(proc.exitcode == 0 for proc in procs)
    assert len(set(got.values())) == len(uuids)  # a /27 holds 29 pods: 20 fit, no two alike
    assert _leases(tmp_path) == {ip: uuid for uuid, ip in got.items()}
