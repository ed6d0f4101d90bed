"""Pod networks as root (rktcfg.net): real network namespaces, veths, bridges and nftables.

Traffic only ever goes to loopback or into namespaces these tests made. Every host object
is named ``rk<uuid8><n>`` (veths), ``rkbr-tb<pid>`` (bridges) or ``rkt<pid>o`` (the outside
client's link), addresses come from 10.213.0.0/16, and nft rules go in a table of the test
session's own (``ip rktcfg-test-<pid>``), so nothing here touches the host's own interfaces,
routes or rules. The ``world`` fixture removes every namespace, link, bridge, lease and the
nft table in a finally, also when a test fails.

masquerade and published ports need ``nft`` (Debian: nftables): without it those tests are
skipped, except under CI=true, where a missing nft is a failure.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import re
import shutil
import signal
import socket
import statistics
import tempfile
import threading
import time
import uuid as uuidlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from conftest import require
from nethelpers import (
    Server,
    delete_links,
    fetch,
    in_netns,
    link_outside,
    routes_overlapping,
    serve,
    unreachable,
)

from rktcfg.errors import InputError, RuntimeFailure
from rktcfg.net import ipam, nft, podnet
from rktcfg.net.netlink import Netlink, set_interface_sysctl
from rktcfg.stage1 import linux

TABLE = f"rktcfg-test-{os.getpid()}"
TEST_RANGE = ipaddress.ip_network("10.213.0.0/16")
BRIDGE_NET = f"tb{os.getpid() % 100000}"
OUTSIDE_LINK = f"rkt{os.getpid() % 100000}o"


def _ptp(name: str, third: int, **extra: Any) -> dict[str, Any]:
    net = {
        "name": name,
        "type": "ptp",
        "subnet": f"10.213.{third}.0/24",
        "gateway": "",
        "ip_masq": False,
        "default_route": True,
    }
    return {**net, **extra}


def _bridge(third: int, **extra: Any) -> dict[str, Any]:
    return {**_ptp(BRIDGE_NET, third), "type": "bridge", **extra}


def _require_nft() -> None:
    require(nft.available(), "masquerade and published ports need nft (Debian: nftables)")


# --- the world: pods and their cleanup ---------------------------------------------------------


@dataclass
class Pod:
    uuid: str
    dir: str
    netns: str
    record: dict[str, Any] = field(default_factory=dict)

    @property
    def ips(self) -> list[str]:
        return [n["ip"] for n in self.record["networks"]]


@dataclass
class World:
    data: str
    pods: list[Pod] = field(default_factory=list)
    servers: list[Server] = field(default_factory=list)
    cleanups: list[Callable[[], None]] = field(default_factory=list)

    def new_pod(self, phase: str = "run") -> Pod:
        pod_uuid = str(uuidlib.uuid4())
        pod_dir = os.path.join(self.data, "pods", phase, pod_uuid)
        os.makedirs(pod_dir)
        pod = Pod(uuid=pod_uuid, dir=pod_dir, netns="")
        self.pods.append(pod)
        pod.netns = podnet.create_netns(pod_dir)
        return pod

    def pod(
        self,
        networks: Sequence[Mapping[str, Any]],
        *,
        requested: Mapping[str, str] | None = None,
        ports: Sequence[Mapping[str, Any]] = (),
    ) -> Pod:
        pod = self.new_pod()
        pod.record = podnet.setup(
            pod.dir,
            pod.netns,
            networks,
            data_dir=self.data,
            pod_uuid=pod.uuid,
            requested=requested,
            ports=ports,
            nft_table=TABLE,
        )
        return pod

    def serve(self, netns: str | None, port: int, address: str = "0.0.0.0") -> Server:
        server = serve(netns, port, address)
        self.servers.append(server)
        return server


def _host_links() -> list[str]:
    with Netlink() as host:
        return [link.name for link in host.links()]


def _test_links(pods: Sequence[Pod], *, shared: bool = False) -> list[str]:
    """The host links of ``pods`` (with ``shared``: also the test bridge and outside link)."""
    prefixes = tuple(podnet.host_ifname(p.uuid, 0)[:-1] for p in pods)
    ours = (podnet.bridge_name(BRIDGE_NET), OUTSIDE_LINK) if shared else ()
    return [n for n in _host_links() if (prefixes and n.startswith(prefixes)) or n in ours]


def leftovers(world: World, pod: Pod) -> list[str]:
    """What of the pod is still there: host links, rules, leases, its namespace."""
    left = [f"link {name}" for name in _test_links([pod])]
    if nft.available():
        left += [f"nft rule {chain} {h}" for chain, h in nft.pod_rules(pod.uuid, TABLE)]
    networks = Path(world.data, ipam.NETWORKS_DIR)
    for lease in networks.glob("*/*") if networks.is_dir() else ():
        if not lease.name.startswith(".") and lease.read_text().strip() == pod.uuid:
            left.append(f"lease {lease}")
    ports = Path(world.data, ipam.PORTS_DIR)
    for lease in ports.glob("*") if ports.is_dir() else ():
        if not lease.name.startswith(".") and lease.read_text().strip() == pod.uuid:
            left.append(f"port lease {lease}")
    netns = os.path.join(pod.dir, podnet.NETNS_FILE)
    if os.path.lexists(netns):
        left.append(f"file {netns}")
    if linux.mounts_below(pod.dir):
        left.append(f"mounts below {pod.dir}")
    return left


@pytest.fixture(scope="module", autouse=True)
def _test_range_is_free() -> None:
    """The test subnets must not overlap anything the host has (they would shadow it)."""
    if os.geteuid() != 0:
        return
    clash = routes_overlapping(TEST_RANGE)
    if clash:
        pytest.fail(f"the host routes {clash} overlap the test range {TEST_RANGE}")


@pytest.fixture
def world() -> Iterator[World]:
    # Not below tmp_path: every pytest session unmounts what is mounted below
    # /tmp/pytest-of-<user> when it starts (tests/conftest.py), which would pull the
    # namespaces out from under a test when another session starts meanwhile.
    top = tempfile.mkdtemp(prefix="rktcfg-net-test-")
    made = World(data=os.path.join(top, "data"))
    os.makedirs(made.data)
    try:
        yield made
    finally:
        _clean(made)
        if not linux.mounts_below(top):
            shutil.rmtree(top, ignore_errors=True)


def _clean(made: World) -> None:
    """Remove everything the test made, whatever state it is in."""
    for server in made.servers:
        server.stop()
    for cleanup in reversed(made.cleanups):
        with contextlib.suppress(Exception):
            cleanup()
    for pod in made.pods:
        with contextlib.suppress(Exception):
            podnet.teardown(pod.dir, data_dir=made.data)
    with contextlib.suppress(Exception):
        delete_links(_test_links(made.pods, shared=True))
    for pod in made.pods:
        with contextlib.suppress(Exception):
            podnet.remove_netns(os.path.join(pod.dir, podnet.NETNS_FILE))
    if nft.available():
        with contextlib.suppress(Exception):
            nft.delete_table(TABLE)


# --- the namespace -------------------------------------------------------------------------------


def test_a_new_netns_has_only_loopback_and_it_is_up(world: World) -> None:
    pod = world.new_pod()
    assert pod.netns == os.path.join(pod.dir, "netns")
    assert pod.netns in Path(pod.dir, "mounts").read_text().split()  # recorded for gc
    assert podnet.create_netns(pod.dir) == pod.netns  # idempotent
    with Netlink(pod.netns) as inside:
        links = inside.links()
        assert [(link.name, link.up) for link in links] == [("lo", True)]
        assert inside.addresses() == [(links[0].index, "127.0.0.1", 8)]
    world.serve(pod.netns, 7001, "127.0.0.1")
    assert fetch(pod.netns, "127.0.0.1", 7001).startswith("hello from 127.0.0.1")
    assert podnet.teardown(pod.dir, data_dir=world.data) == []
    assert leftovers(world, pod) == []


# --- ptp -----------------------------------------------------------------------------------------


def test_two_ptp_pods_reach_each_other_and_the_gateway(world: World) -> None:
    net = _ptp("default", 1)
    a, b = world.pod([net]), world.pod([net])
    assert (a.ips, b.ips) == (["10.213.1.2"], ["10.213.1.3"])
    entry = a.record["networks"][0]
    assert {k: entry[k] for k in ("name", "ifname", "prefix", "gateway", "host_ifname")} == {
        "name": "default",
        "ifname": "eth0",
        "prefix": 24,
        "gateway": "10.213.1.1",
        "host_ifname": podnet.host_ifname(a.uuid, 0),
    }
    assert podnet.read_record(a.dir) == a.record and a.record["state"] == "ready"

    with Netlink(a.netns) as inside:
        eth0 = inside.link("eth0")
        assert eth0 is not None and eth0.up and eth0.mac == entry["mac"]
        assert (eth0.index, "10.213.1.2", 24) in inside.addresses()
        routes = {r["dst"]: r for r in inside.routes()}
        assert routes["default"]["gateway"] == "10.213.1.1"
        assert routes["10.213.1.0/24"]["gateway"] == "10.213.1.1"
        assert routes["10.213.1.1/32"]["scope"] == 253  # on-link
    with Netlink() as host:
        end = host.link(entry["host_ifname"])
        assert end is not None and end.kind == "veth" and end.alias == f"rktcfg pod {a.uuid}"
        assert (end.index, "10.213.1.1", 32) in host.addresses(end.index)
        assert any(r["dst"] == "10.213.1.2/32" and r["oif"] == end.index for r in host.routes())

    world.serve(a.netns, 8080)
    world.serve(b.netns, 8080)
    assert fetch(b.netns, "10.213.1.2", 8080) == "hello from 10.213.1.2 to 10.213.1.3"
    assert fetch(a.netns, "10.213.1.3", 8080) == "hello from 10.213.1.3 to 10.213.1.2"
    assert fetch(None, "10.213.1.2", 8080) == "hello from 10.213.1.2 to 10.213.1.1"  # the host
    world.serve(None, 8081, "10.213.1.1")  # the host, on the gateway address only
    assert fetch(a.netns, "10.213.1.1", 8081) == "hello from 10.213.1.1 to 10.213.1.2"

    for pod in (a, b):
        assert podnet.teardown(pod.dir, data_dir=world.data) == []
        assert leftovers(world, pod) == []
    assert podnet.teardown(a.dir, data_dir=world.data) == []  # idempotent


def test_a_pod_cannot_send_from_another_pods_address(world: World) -> None:
    """The host ends filter by reverse path (strict): a datagram from pod A claiming pod B's
    address (root in a pod may add any address) is dropped; from A's own it arrives. The
    control sets the filter off on A's link, and then the forged one arrives too."""
    net = _ptp("default", 37)
    a, b = world.pod([net]), world.pod([net])
    target = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    world.cleanups.append(target.close)
    target.bind(("10.213.37.1", 0))
    target.settimeout(1)
    port = target.getsockname()[1]

    def send(source: str) -> None:
        with Netlink() as inside:  # in the pod (forked into its netns by in_netns)
            eth0 = inside.link("eth0")
            assert eth0 is not None
            inside.run(inside.address(eth0.index, "eth0", source, 32))
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as out:
            out.bind((source, 0))
            out.sendto(source.encode(), ("10.213.37.1", port))

    def received() -> list[str]:
        got = []
        with contextlib.suppress(TimeoutError):
            while True:
                got.append(target.recvfrom(100)[0].decode())
        return got

    # its own first: that also resolves the gateway's MAC, which a forged ARP request (the
    # kernel asks from the queued packet's source) would never get answered
    in_netns(a.netns, lambda: send(a.ips[0]))
    assert received() == [a.ips[0]]
    in_netns(a.netns, lambda: send(b.ips[0]))
    assert received() == []
    set_interface_sysctl(podnet.host_ifname(a.uuid, 0), "rp_filter", "0")
    in_netns(a.netns, lambda: send(b.ips[0]))
    assert received() == [b.ips[0]]


def test_a_network_without_default_route_has_none(world: World) -> None:
    pod = world.pod([_ptp("restricted", 2, default_route=False)])
    with Netlink(pod.netns) as inside:
        routes = sorted(r["dst"] for r in inside.routes())
    assert routes == ["10.213.2.0/24", "10.213.2.1/32"]
    world.serve(None, 8082, "10.213.2.1")
    assert fetch(pod.netns, "10.213.2.1", 8082).startswith("hello from 10.213.2.1")
    # no route beyond the subnet: refused inside the pod, nothing is sent
    assert "unreachable" in unreachable(pod.netns, "10.213.99.99", 9).lower()
    assert podnet.teardown(pod.dir, data_dir=world.data) == []
    assert leftovers(world, pod) == []


def test_networks_become_eth0_eth1_in_order_and_a_requested_ip_is_used(world: World) -> None:
    pod = world.pod(
        [_ptp("front", 3), _ptp("back", 4, default_route=False)],
        requested={"back": "10.213.4.77"},
    )
    assert [(n["name"], n["ifname"], n["ip"]) for n in pod.record["networks"]] == [
        ("front", "eth0", "10.213.3.2"),
        ("back", "eth1", "10.213.4.77"),
    ]
    with Netlink(pod.netns) as inside:
        assert sorted(link.name for link in inside.links()) == ["eth0", "eth1", "lo"]
        defaults = [r for r in inside.routes() if r["dst"] == "default"]
        assert [r["gateway"] for r in defaults] == ["10.213.3.1"]
    assert podnet.teardown(pod.dir, data_dir=world.data) == []
    assert leftovers(world, pod) == []


def test_a_taken_ip_is_an_error_naming_its_holder_and_leaves_nothing(world: World) -> None:
    net = _ptp("default", 5)
    holder = world.pod([net], requested={"default": "10.213.5.50"})
    second = world.new_pod()
    with pytest.raises(InputError) as info:
        podnet.setup(
            second.dir,
            second.netns,
            [net],
            data_dir=world.data,
            pod_uuid=second.uuid,
            requested={"default": "10.213.5.50"},
            nft_table=TABLE,
        )
    assert "IP=10.213.5.50" in str(info.value) and f"taken by pod {holder.uuid}" in str(info.value)
    assert _test_links([second]) == []
    assert podnet.read_record(second.dir)["state"] == "failed"  # type: ignore[index]
    with pytest.raises(InputError, match=re.escape("must be inside the subnet 10.213.5.0/24")):
        podnet.setup(
            second.dir,
            second.netns,
            [net],
            data_dir=world.data,
            pod_uuid=second.uuid,
            requested={"default": "10.213.6.9"},
        )
    assert podnet.teardown(second.dir, data_dir=world.data) == []
    assert leftovers(world, second) == []


def test_an_address_the_host_routes_elsewhere_is_refused(world: World) -> None:
    """Two data directories with the same subnet hand out the same address; the second
    pod's host route would steal the first one's replies, so its setup fails instead."""
    net = _ptp("default", 7)
    first = world.pod([net])
    other_data = os.path.join(os.path.dirname(world.data), "other-data")
    second = world.new_pod()
    with pytest.raises(RuntimeFailure, match=re.escape(f"routes {first.ips[0]} elsewhere")):
        podnet.setup(second.dir, second.netns, [net], data_dir=other_data, pod_uuid=second.uuid)
    assert _test_links([second]) == []
    assert ipam.leases(other_data, "default") == {}
    world.serve(first.netns, 8080)  # the first pod is still reached
    assert fetch(None, first.ips[0], 8080) == f"hello from {first.ips[0]} to 10.213.7.1"


# --- bridge --------------------------------------------------------------------------------------


def test_two_pods_on_a_bridge_reach_each_other_and_the_last_removes_it(world: World) -> None:
    net = _bridge(10)
    name = podnet.bridge_name(BRIDGE_NET)
    a, b = world.pod([net]), world.pod([net])
    assert a.record["networks"][0]["bridge"] == name
    with Netlink() as host:
        bridge = host.link(name)
        assert bridge is not None and bridge.kind == "bridge" and bridge.up
        assert bridge.alias == f"rktcfg network {BRIDGE_NET}"
        assert (bridge.index, "10.213.10.1", 24) in host.addresses(bridge.index)
        assert host.ports(bridge.index) == sorted(
            [podnet.host_ifname(a.uuid, 0), podnet.host_ifname(b.uuid, 0)]
        )
    with Netlink(a.netns) as inside:
        routes = {r["dst"]: r for r in inside.routes()}
        assert routes["10.213.10.0/24"]["gateway"] is None  # on the bridge: on-link
        assert routes["default"]["gateway"] == "10.213.10.1"

    world.serve(a.netns, 8080)
    world.serve(b.netns, 8080)
    assert fetch(b.netns, a.ips[0], 8080) == f"hello from {a.ips[0]} to {b.ips[0]}"
    assert fetch(a.netns, b.ips[0], 8080) == f"hello from {b.ips[0]} to {a.ips[0]}"
    world.serve(None, 8083, "10.213.10.1")
    assert fetch(a.netns, "10.213.10.1", 8083).startswith("hello from 10.213.10.1")

    assert podnet.teardown(a.dir, data_dir=world.data) == []
    assert name in _host_links()  # b still uses it
    assert fetch(None, b.ips[0], 8080).startswith(f"hello from {b.ips[0]}")
    assert podnet.teardown(b.dir, data_dir=world.data) == []
    assert name not in _host_links()
    for pod in (a, b):
        assert leftovers(world, pod) == []


# --- nft: masquerade and published ports -------------------------------------------------------


def test_a_port_published_on_a_bridge_serves_the_other_pods_of_the_bridge(world: World) -> None:
    """A pod on the bridge reaching another's published port at the gateway: without the
    bridge hairpin SNAT the server would answer it straight over the bridge, from its own
    address, and the connection would never complete."""
    _require_nft()
    host_port = _free_port()
    server = world.pod(
        [_bridge(18)], ports=[{"name": "http", "port": 8080, "host_port": host_port}]
    )
    client = world.pod([_bridge(18)])
    world.serve(server.netns, 8080)
    ip = server.ips[0]
    assert fetch(client.netns, "10.213.18.1", host_port) == f"hello from {ip} to 10.213.18.1"
    assert fetch(client.netns, ip, 8080) == f"hello from {ip} to {client.ips[0]}"  # direct
    assert fetch(None, "127.0.0.1", host_port) == f"hello from {ip} to 10.213.18.1"


def test_ip_masq_adds_a_masquerade_rule_that_teardown_removes(world: World) -> None:
    _require_nft()
    a = world.pod([_ptp("default", 11, ip_masq=True)])
    b = world.pod([_ptp("default", 11, ip_masq=True)])
    assert len(nft.pod_rules(a.uuid, TABLE)) == 1 and len(nft.pod_rules(b.uuid, TABLE)) == 1
    # what "another host" sees: the host's address, not the pod's; without ip-masq the pod's
    outside = _outside(world)
    world.serve(outside, 8080)
    plain = world.pod([_ptp("plain", 17)])
    assert fetch(a.netns, "10.213.250.2", 8080) == "hello from 10.213.250.2 to 10.213.250.1"
    assert fetch(plain.netns, "10.213.250.2", 8080) == f"hello from 10.213.250.2 to {plain.ips[0]}"
    assert podnet.teardown(a.dir, data_dir=world.data) == []
    assert nft.pod_rules(a.uuid, TABLE) == [] and len(nft.pod_rules(b.uuid, TABLE)) == 1
    assert podnet.teardown(b.dir, data_dir=world.data) == []
    assert leftovers(world, a) == [] and leftovers(world, b) == []


def test_without_nft_ip_masq_is_a_warning(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(nft, "available", lambda: False)
    pod = world.pod([_ptp("default", 12, ip_masq=True)])
    assert "nft not found: no masquerade for network default" in pod.record["warnings"]
    monkeypatch.undo()
    if nft.available():
        assert nft.pod_rules(pod.uuid, TABLE) == []
    assert podnet.teardown(pod.dir, data_dir=world.data) == []
    assert leftovers(world, pod) == []


def _outside(world: World) -> str:
    """A network namespace acting as a client on another host: linked to the host by a veth
    ``rkt<pid>o`` (10.213.250.1/30 on the host, .2 outside, default route via .1)."""
    pod = world.new_pod("prepare")  # only for its namespace
    world.cleanups.append(lambda: delete_links([OUTSIDE_LINK]))
    link_outside(pod.netns, OUTSIDE_LINK, "10.213.250.1", "10.213.250.2")
    return pod.netns


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_a_published_port_serves_outside_clients_and_localhost(world: World) -> None:
    _require_nft()
    outside = _outside(world)
    host_port = _free_port()
    pod = world.pod(
        [_ptp("default", 13, ip_masq=True)],
        ports=[{"name": "http", "protocol": "tcp", "port": 8080, "host_port": host_port}],
    )
    ip = pod.ips[0]
    world.serve(pod.netns, 8080)
    assert fetch(outside, "10.213.250.1", host_port) == f"hello from {ip} to 10.213.250.2"
    assert fetch(None, "127.0.0.1", host_port) == f"hello from {ip} to 10.213.13.1"
    assert fetch(None, "10.213.250.1", host_port) == f"hello from {ip} to 10.213.250.1"
    assert fetch(pod.netns, "10.213.13.1", host_port) == f"hello from {ip} to 10.213.13.1"
    # what route_localnet would let a pod send to the host's 127.0.0.1 is dropped
    assert [chain for chain, _ in nft.rules_tagged(nft.GUARD_TAG, TABLE)] == ["guard"]

    # the same host port again: refused before anything is made
    with pytest.raises(InputError, match=re.escape(f"host port {host_port}/tcp")):
        world.pod([_ptp("default", 13)], ports=[{"name": "x", "port": 80, "host_port": host_port}])
    assert _test_links(world.pods[-1:]) == []

    assert podnet.teardown(pod.dir, data_dir=world.data) == []
    assert leftovers(world, pod) == []
    assert unreachable(outside, "10.213.250.1", host_port) != "connected"


def test_a_pod_cannot_reach_the_hosts_loopback_through_route_localnet(world: World) -> None:
    """route_localnet=1 on a pod's host link (for published ports) would let the pod send to
    the host's 127.0.0.1 (CVE-2020-8558); the guard rule drops that. Control: without the
    guard the datagram arrives, so the check is a real one."""
    _require_nft()
    pod = world.pod(
        [_ptp("default", 15)], ports=[{"name": "x", "port": 80, "host_port": _free_port()}]
    )
    ip, gateway = pod.ips[0], "10.213.15.1"
    target = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    world.cleanups.append(target.close)
    target.bind(("127.0.0.1", 0))
    target.settimeout(1)
    port = target.getsockname()[1]

    def attack() -> None:  # root in the pod: route 127.0.0.1 out of eth0 to the host
        from pyroute2 import IPRoute

        for link in ("all", "eth0"):
            Path(f"/proc/sys/net/ipv4/conf/{link}/route_localnet").write_text("1")
        with IPRoute() as ipr:
            lo, eth0 = ipr.link_lookup(ifname="lo")[0], ipr.link_lookup(ifname="eth0")[0]
            for dst in ("127.0.0.1/32", "127.0.0.0/8"):  # the kernel's local routes
                with contextlib.suppress(Exception):  # gone already: the second attack
                    ipr.route(
                        "del",
                        dst=dst,
                        table=255,
                        type="local",
                        proto="kernel",
                        scope="host",
                        oif=lo,
                    )
            ipr.route("replace", dst="127.0.0.1/32", gateway=gateway, oif=eth0, prefsrc=ip)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as out:
            out.sendto(b"from the pod", ("127.0.0.1", port))

    def arrived() -> bool:
        try:
            return target.recvfrom(100)[0] == b"from the pod"
        except TimeoutError:
            return False

    in_netns(pod.netns, attack)
    assert not arrived()

    # Control: with the guard chains flushed the datagram arrives. That is the test's own
    # table and, where there is one, rktcfg's own table, whose guard covers every rk* link
    # too (it is put back right after, and in the cleanup whatever happens).
    def restore() -> None:
        nft._nft(["-f", "-"], "\n".join(nft.guard_script(nft.TABLE)) + "\n")

    tables = [TABLE]
    if nft._list_table(nft.TABLE) is not None:
        tables.append(nft.TABLE)
        world.cleanups.append(restore)
    for table in tables:
        done = nft._nft(["flush", "chain", nft.FAMILY, table, "guard"])
        assert done.returncode == 0, done.stderr
    in_netns(pod.netns, attack)
    assert arrived()
    if nft.TABLE in tables:
        restore()
    # the next pod that publishes a port puts a flushed guard back, before route_localnet
    world.pod([_ptp("default", 16)], ports=[{"name": "x", "port": 80, "host_port": _free_port()}])
    assert [chain for chain, _ in nft.rules_tagged(nft.GUARD_TAG, TABLE)] == ["guard"]
    in_netns(pod.netns, attack)
    assert not arrived()


def test_a_port_a_host_process_listens_on_is_refused(world: World) -> None:
    _require_nft()
    port = _free_port()
    world.serve(None, port, "127.0.0.1")
    with pytest.raises(InputError, match=f"host port {port}/tcp: in use on the host"):
        world.pod([_ptp("default", 14)], ports=[{"name": "http", "port": 80, "host_port": port}])
    assert podnet.read_record(world.pods[-1].dir) is None  # refused before the intent


# --- many pods, and how long one takes -----------------------------------------------------------


def test_twenty_pods_set_up_at_once_get_distinct_addresses(world: World) -> None:
    net = _ptp("default", 20)
    pods = [world.new_pod() for _ in range(20)]
    errors: list[BaseException] = []
    start = threading.Barrier(len(pods))

    def setup(pod: Pod) -> None:
        try:
            start.wait()
            pod.record = podnet.setup(
                pod.dir, pod.netns, [net], data_dir=world.data, pod_uuid=pod.uuid
            )
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=setup, args=(pod,)) for pod in pods]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    ips = [pod.ips[0] for pod in pods]
    assert len(set(ips)) == 20
    assert len(_test_links(pods)) == 20
    world.serve(pods[0].netns, 8080)
    assert fetch(pods[-1].netns, ips[0], 8080) == f"hello from {ips[0]} to {ips[-1]}"
    for pod in pods:
        assert podnet.teardown(pod.dir, data_dir=world.data) == []
    assert _test_links(pods) == []
    assert all(leftovers(world, pod) == [] for pod in pods)


def test_setup_takes_milliseconds(world: World, record_property: Any) -> None:
    """Setup (veth, addresses, routes, lease, record) per pod; the target is 30 ms, the
    assertion leaves room for slow CI machines."""
    net = _ptp("default", 21)
    world.pod([net])  # the first one pays for imports
    took = []
    for _ in range(10):
        pod = world.new_pod()
        begin = time.perf_counter()
        podnet.setup(pod.dir, pod.netns, [net], data_dir=world.data, pod_uuid=pod.uuid)
        took.append(time.perf_counter() - begin)
    median_ms = statistics.median(took) * 1000
    record_property("setup_ms_median", round(median_ms, 1))
    assert median_ms < 150


# --- teardown in hard cases ----------------------------------------------------------------------


def test_teardown_after_the_netns_was_unmounted_by_hand(world: World) -> None:
    kept, gone = world.pod([_ptp("default", 30)]), world.pod([_ptp("default", 30)])
    world.serve(kept.netns, 8080)  # a process still in it keeps the namespace alive
    for pod in (kept, gone):
        linux.umount(pod.netns, linux.MNT_DETACH)
        os.unlink(pod.netns)
    time.sleep(0.2)  # the kernel destroys the unreferenced namespace (and veth) lazily
    assert podnet.host_ifname(kept.uuid, 0) in _host_links()
    for pod in (kept, gone):
        assert podnet.teardown(pod.dir, data_dir=world.data) == []
        assert leftovers(world, pod) == []


def _killed_halfway(world: World, networks: list[dict[str, Any]], patch: str) -> Pod:
    """A pod whose setup was killed with SIGKILL in ``podnet.<patch>``."""
    pod = world.new_pod()
    pid = os.fork()
    if pid == 0:
        try:

            def die(*args: Any, **kwargs: Any) -> None:
                os.kill(os.getpid(), signal.SIGKILL)

            setattr(podnet, patch, die)
            podnet.setup(
                pod.dir,
                pod.netns,
                networks,
                data_dir=world.data,
                pod_uuid=pod.uuid,
                nft_table=TABLE,
            )
        finally:
            os._exit(3)
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
    return pod


def test_teardown_after_kill_9_halfway_through_ptp_setup(world: World) -> None:
    pod = _killed_halfway(world, [_ptp("default", 31), _ptp("second", 32)], "_configure_pod_end")
    record = podnet.read_record(pod.dir)
    assert record is not None and record["state"] == "setting-up"
    assert [n["host_ifname"] for n in record["networks"]] == [
        podnet.host_ifname(pod.uuid, 0),
        podnet.host_ifname(pod.uuid, 1),
    ]
    assert _test_links([pod]) == [podnet.host_ifname(pod.uuid, 0)]  # made before the kill
    assert ipam.leases(world.data, "default") != {}
    assert podnet.teardown(pod.dir, data_dir=world.data) == []
    assert leftovers(world, pod) == []


def test_teardown_after_kill_9_between_bridge_and_port(world: World) -> None:
    pod = _killed_halfway(world, [_bridge(33)], "_make_veth")
    record = podnet.read_record(pod.dir)
    assert record is not None and record["networks"][0]["bridge_created"]
    assert podnet.bridge_name(BRIDGE_NET) in _host_links()  # made, and without ports
    assert podnet.teardown(pod.dir, data_dir=world.data) == []
    assert podnet.bridge_name(BRIDGE_NET) not in _host_links()
    assert leftovers(world, pod) == []


def test_a_lease_outlives_a_leftover_that_uses_it(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A rule that could not be removed keeps the pod's host port, a link its address: given
    to another pod they would be shadowed by the leftover. The next teardown frees them."""
    _require_nft()
    host_port = _free_port()
    pod = world.pod(
        [_ptp("default", 35, ip_masq=True)],
        ports=[{"name": "http", "port": 80, "host_port": host_port}],
    )
    real_rules, real_links = nft.delete_pod_rules, podnet._remove_links
    monkeypatch.setattr(nft, "delete_pod_rules", lambda *a, **k: ["nft rule: stuck"])
    assert podnet.teardown(pod.dir, data_dir=world.data) == ["nft rule: stuck"]
    assert ipam.leases(world.data, "default") == {}  # the veth went: so did the address
    assert ipam.port_holder(world.data, "tcp", host_port) == pod.uuid
    monkeypatch.setattr(nft, "delete_pod_rules", real_rules)

    other = world.pod([_ptp("default", 36)])
    monkeypatch.setattr(podnet, "_remove_links", lambda *a, **k: ["link: stuck"])
    assert podnet.teardown(other.dir, data_dir=world.data) == ["link: stuck"]
    assert list(ipam.leases(world.data, "default").values()) == [other.uuid]
    monkeypatch.setattr(podnet, "_remove_links", real_links)
    for left in (pod, other):
        assert podnet.teardown(left.dir, data_dir=world.data) == []
        assert leftovers(world, left) == []


def test_teardown_without_a_record_releases_and_unmounts(world: World) -> None:
    pod = world.new_pod()
    ipam.allocate(world.data, "default", "10.213.34.0/24", pod_uuid=pod.uuid)
    assert podnet.teardown(pod.dir, data_dir=world.data) == []
    assert leftovers(world, pod) == []
