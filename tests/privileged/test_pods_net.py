"""Pod networks through the real ``rktcfg`` command, as root: the vendor networks ``default``
and ``default-restricted``, ``none``, a bridge network from a net.d drop-in, several networks
per pod, published ports (from the host's 127.0.0.1 and from an outside client), 20 pods
started at once, and gc after kill -9 of supervisors and after the loss of a netns.

Traffic only goes to loopback, to networks rktcfg made for these pods, and to an "outside"
client namespace the test links to the host itself (``rkq<pid>``, 10.214.250.0/30). The
bridge network is ``tb<pid>`` (10.214.1.0/24). After each test every pod is stopped and
collected by ``rktcfg gc``, and the fixture checks that none of their host links, nft rules,
address or port leases or netns mounts is left.
"""

from __future__ import annotations

import contextlib
import http.server
import ipaddress
import json
import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import require
from imagehelpers import manifest
from nethelpers import delete_links, fetch, link_outside, routes_overlapping
from podhelpers import BUSYBOX, RKTCFG, busybox_rootfs, collect_everything, rktcfg

from rktcfg.image.build import build_aci
from rktcfg.image.imports import import_aci_file
from rktcfg.net import ipam, nft, podnet
from rktcfg.net.netlink import Netlink
from rktcfg.stage1 import linux
from rktcfg.store.images import ImageStore

BRIDGE_NET = f"tb{os.getpid() % 100000}"
BRIDGE_SUBNET = "10.214.1.0/24"
OUTSIDE_LINK = f"rkq{os.getpid() % 100000}"
TEST_RANGE = ipaddress.ip_network("10.214.0.0/16")
NET_D = f"""\
# written by {__name__}: a bridge network for the tests of one session
[{BRIDGE_NET}]
type = "bridge"
subnet = "{BRIDGE_SUBNET}"
ip-masq = false
default-route = false
"""
HTTPD = "mkdir -p /w && echo {text} > /w/index.html && exec httpd -f -p 8080 -h /w"


# --- images, config and cleanup ----------------------------------------------------------------


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A data directory holding example.com/busybox and example.com/ports (port web 8080)."""
    if not BUSYBOX.exists():
        pytest.fail("/bin/busybox is missing: the Makefile installs busybox-static")
    require(nft.available(), "published ports need nft (Debian: nftables)")
    clash = routes_overlapping(TEST_RANGE)
    if clash:
        pytest.fail(f"the host routes {clash} overlap the test range {TEST_RANGE}")
    work = tmp_path_factory.mktemp("net-images")
    rootfs = busybox_rootfs(work / "rootfs")
    data = str(work / "data")
    own_hosts = work / "own-hosts"
    shutil.copytree(rootfs, own_hosts, symlinks=True)
    (own_hosts / "etc" / "hosts").write_text("127.0.0.1 localhost\n192.0.2.80 imagehost\n")
    with ImageStore(data) as images:
        for name in ("busybox", "ports", "hosts"):
            doc = manifest(name=f"example.com/{name}")
            doc["app"] = {"exec": ["/bin/sh", "-c", "echo hello"], "user": "0", "group": "0"}
            if name == "ports":
                doc["app"]["ports"] = [{"name": "web", "protocol": "tcp", "port": 8080}]
            tree = own_hosts if name == "hosts" else rootfs
            build_aci(str(tree), str(work / f"{name}.aci"), doc)
            import_aci_file(images, str(work / f"{name}.aci"))
    return data


def host_links() -> list[str]:
    with Netlink() as host:
        return [link.name for link in host.links()]


def network_leftovers(data: str, uuids: set[str]) -> list[str]:
    """What rktcfg made for the pods ``uuids`` that is still there: host links (and the test
    bridge), nft rules, address and port leases, netns files and mounts."""
    prefixes = tuple(podnet.host_ifname(uuid, 0)[:-1] for uuid in uuids)
    left = [
        f"link {name}"
        for name in host_links()
        if (prefixes and name.startswith(prefixes)) or name == podnet.bridge_name(BRIDGE_NET)
    ]
    for uuid in sorted(uuids):
        left += [f"nft rule {chain} #{handle}" for chain, handle in nft.pod_rules(uuid)]
    for kind in (ipam.NETWORKS_DIR, ipam.PORTS_DIR):
        top = Path(data, kind)
        for lease in sorted(top.rglob("*")) if top.is_dir() else ():
            if lease.is_file() and not lease.name.startswith("."):
                left.append(f"lease {lease.relative_to(data)} ({lease.read_text().strip()})")
    for netns in Path(data, "pods").glob(f"*/*/{podnet.NETNS_FILE}"):
        left.append(f"netns {netns}")
    left += [f"mount {point}" for point in linux.mounts_below(data)]
    return left


@pytest.fixture
def data(store: str, isolated_env: Path) -> Iterator[str]:
    """The module's data directory, with the test bridge network in the system layer
    ($RKTCFG_SYSTEM_CONFIG/net.d). Afterwards: every pod stopped and collected by gc, and
    nothing of their networks left."""
    net_d = Path(os.environ["RKTCFG_SYSTEM_CONFIG"], "net.d")
    net_d.mkdir(parents=True)
    (net_d / "50-test.toml").write_text(NET_D)
    try:
        yield store
    finally:
        seen = {p["uuid"] for p in json.loads(rktcfg(store, "list", "-o", "json").stdout)}
        gc, mounted = collect_everything(store)
        left = network_leftovers(store, seen)
        delete_links([OUTSIDE_LINK])
        listed = json.loads(rktcfg(store, "list", "-o", "json").stdout)
        assert (left, mounted, listed) == ([], [], []), (gc.stdout, gc.stderr)


# --- helpers ----------------------------------------------------------------------------------


def detach(data: str, *args: str) -> str:
    """Start a detached default pod; its UUID."""
    return rktcfg(data, "run", "--stage1", "default", "-d", *args).stdout.strip()


def httpd(data: str, text: str, *pod_flags: str, image: str = "busybox") -> str:
    """A detached pod serving ``text`` on port 8080; its UUID."""
    script = HTTPD.format(text=text)
    return detach(data, *pod_flags, f"example.com/{image}", "--exec", "/bin/sh", "--", "-c", script)


def sh(
    data: str, script: str, *pod_flags: str, image: str = "busybox"
) -> subprocess.CompletedProcess[str]:
    """``/bin/sh -c SCRIPT`` in an attached default pod."""
    return rktcfg(
        data,
        "run",
        "--stage1",
        "default",
        *pod_flags,
        f"example.com/{image}",
        "--exec",
        "/bin/sh",
        "--",
        "-c",
        script,
        check=False,
    )


def status(data: str, ref: str) -> dict[str, Any]:
    found: dict[str, Any] = json.loads(rktcfg(data, "status", ref, "-o", "json").stdout)
    return found


def until(check: Callable[[], Any], timeout: float = 15, step: float = 0.2) -> Any:
    """``check()``'s first true result; its last one (or exception) at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = check()
            if result or time.monotonic() > deadline:
                return result
        except (OSError, AssertionError):
            if time.monotonic() > deadline:
                raise
        time.sleep(step)


def wget(data: str, url: str, *pod_flags: str) -> str:
    """What ``wget URL`` prints in a new pod (retried while the server comes up)."""

    def attempt() -> str:
        return sh(data, f"timeout 5 wget -q -O- {url}", *pod_flags).stdout.strip()

    return str(until(attempt))


@contextlib.contextmanager
def host_server(address: str) -> Iterator[int]:
    """An HTTP server on the host at ``address`` (a gateway rktcfg made); yields its port."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = f"host saw {self.client_address[0]}\n".encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer((address, 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# --- default, default-restricted, none ---------------------------------------------------------


def test_default_pods_reach_each_other_and_the_hosts_gateway_address(data: str) -> None:
    server = httpd(data, "served")
    found = status(data, server)
    (net,) = found["networks"]
    assert net["name"] == "default" and net["ifname"] == "eth0" and net["type"] == "ptp"
    assert ipaddress.ip_address(net["ip"]) in ipaddress.ip_network("172.16.28.0/24")
    assert net["gateway"] == "172.16.28.1" and net["host_ifname"] in host_links()
    assert found["network_state"] == "ready", found
    assert wget(data, f"http://{net['ip']}:8080/") == "served"
    with host_server("172.16.28.1") as port:
        out = sh(data, f"ip route; wget -q -O- http://172.16.28.1:{port}/").stdout
    lines = [line.strip() for line in out.splitlines()]
    assert "default via 172.16.28.1 dev eth0" in lines, out
    assert lines[-1].startswith("host saw 172.16.28."), out
    assert f"default:ip4={net['ip']}" in rktcfg(data, "list").stdout
    bad = rktcfg(data, "run", "--net", "nosuch", "example.com/busybox", check=False)
    assert bad.returncode == 2 and "unknown network 'nosuch'" in bad.stderr
    assert BRIDGE_NET in bad.stderr and "default-restricted" in bad.stderr  # net.d is read


def test_default_restricted_has_no_default_route_but_reaches_the_host(data: str) -> None:
    flags = ("--net", "default-restricted")
    # the host's end has the gateway address once a pod is on the network
    holder = detach(data, *flags, "example.com/busybox", "--exec", "/bin/sleep", "--", "60")
    with host_server("172.31.0.1") as port:
        out = sh(
            data,
            "ip route; ip route get 192.0.2.1 2>&1; ip -4 -o addr show eth0; "
            f"wget -q -O- http://172.31.0.1:{port}/",
            *flags,
        )
    assert out.returncode == 0, out.stderr
    assert "default" not in out.stdout, out.stdout
    assert "172.31.0.0/16 via 172.31.0.1 dev eth0" in out.stdout, out.stdout
    assert "unreachable" in out.stdout.lower(), out.stdout  # no route: nothing is sent
    assert " inet 172.31." in out.stdout and "host saw 172.31." in out.stdout, out.stdout
    rktcfg(data, "stop", "--force", holder)


def test_none_has_only_loopback(data: str) -> None:
    out = sh(data, "ip -o link; ip -4 -o addr", "--net", "none")
    assert out.returncode == 0, out.stderr
    links = [line.split(":")[1].strip() for line in out.stdout.splitlines() if "mtu" in line]
    assert links == ["lo"], out.stdout
    assert "127.0.0.1/8" in out.stdout and "eth0" not in out.stdout


def test_the_hostname_resolves_inside_the_pod(data: str) -> None:
    script = (
        "mkdir -p /w && echo by-name > /w/index.html && httpd -p 8080 -h /w && sleep 0.3; "
        "hostname; timeout 5 wget -q -O- http://$(hostname):8080/"
    )
    out = sh(data, script, "--hostname", "podhost")
    assert out.returncode == 0 and out.stdout.split() == ["podhost", "by-name"], out
    # an image with an /etc/hosts of its own keeps it, with the hostname added
    out = sh(data, f"cat /etc/hosts; {script}", "--hostname", "podhost", image="hosts")
    lines = out.stdout.splitlines()
    assert lines[:3] == ["127.0.0.1 localhost", "192.0.2.80 imagehost", "127.0.1.1\tpodhost"]
    assert out.returncode == 0 and lines[3:] == ["podhost", "by-name"], out


def test_a_private_users_pod_on_a_network_binds_a_low_port(data: str) -> None:
    # its root is not root in the user namespace owning the network namespace
    script = (
        "mkdir -p /w && echo low > /w/index.html && httpd -p 80 -h /w && sleep 0.3; "
        "cat /proc/sys/net/ipv4/ip_unprivileged_port_start; timeout 5 wget -q -O- http://127.0.0.1:80/"
    )
    out = sh(data, script, "--private-users")
    assert out.returncode == 0 and out.stdout.split() == ["0", "low"], out


# --- a bridge network from net.d, and several networks per pod ---------------------------------


def test_bridge_pods_reach_each_other_and_a_second_network_is_eth1(data: str) -> None:
    server = httpd(data, "bridged", "--net", BRIDGE_NET)
    (net,) = status(data, server)["networks"]
    assert net["type"] == "bridge" and net["bridge"] == podnet.bridge_name(BRIDGE_NET)
    assert ipaddress.ip_address(net["ip"]) in ipaddress.ip_network(BRIDGE_SUBNET)
    with Netlink() as host:
        bridge = host.link(net["bridge"])
        assert bridge is not None and bridge.kind == "bridge"
        ports = host.ports(bridge.index)
    assert ports == [net["host_ifname"]], ports
    # the client is on default (eth0) and the bridge (eth1), in the order --net names them
    both = ("--net", f"default,{BRIDGE_NET}")
    out = sh(data, f"ip -4 -o addr; timeout 5 wget -q -O- http://{net['ip']}:8080/", *both)
    assert out.returncode == 0, out.stderr
    addrs = {
        line.split()[1]: line.split()[3] for line in out.stdout.splitlines() if " inet " in line
    }
    assert addrs["eth0"].startswith("172.16.28.") and addrs["eth1"].startswith("10.214.1.")
    assert out.stdout.splitlines()[-1] == "bridged"
    rktcfg(data, "stop", "--force", server)
    rktcfg(data, "status", server, "--wait=10s")
    rktcfg(data, "gc", "--grace-period", "0")
    assert podnet.bridge_name(BRIDGE_NET) not in host_links()  # its last pod took it along


# --- published ports ---------------------------------------------------------------------------


@pytest.fixture
def outside(tmp_path: Path) -> Iterator[str]:
    """A network namespace standing in for a client on another host: a veth to the host
    (10.214.250.1 on the host, .2 outside, default route via .1)."""
    (tmp_path / "outside").mkdir()
    netns = podnet.create_netns(str(tmp_path / "outside"))
    try:
        link_outside(netns, OUTSIDE_LINK, "10.214.250.1", "10.214.250.2")
        yield netns
    finally:
        delete_links([OUTSIDE_LINK])
        podnet.remove_netns(netns)


def test_a_pod_files_host_port_serves_an_outside_client_and_localhost(
    data: str, tmp_path: Path, outside: str
) -> None:
    host_port = free_port()
    script = HTTPD.format(text="published")
    pod_file = tmp_path / "pods" / "pub.yaml"
    pod_file.parent.mkdir()
    pod_file.write_text(
        json.dumps(
            {
                "apiVersion": "rktcfg/v1",
                "kind": "Pod",
                "metadata": {"name": "pub"},
                "spec": {
                    "apps": [
                        {
                            "name": "web",
                            "image": "example.com/ports",
                            "exec": ["/bin/sh", "-c", script],
                            "ports": [{"name": "web", "port": 8080, "hostPort": host_port}],
                        }
                    ]
                },
            }
        )
    )
    rktcfg(data, "apply", str(pod_file), "--wait=30s")
    found = status(data, "pub")
    ip = found["networks"][0]["ip"]
    assert found["published_ports"] == [
        {
            "name": "web",
            "protocol": "tcp",
            "port": 8080,
            "host_port": host_port,
            "host_ip": "",
            "network": "default",
        }
    ]
    # an outside client reaches the host's address; 127.0.0.1 works on the host itself
    assert until(lambda: fetch(outside, "10.214.250.1", host_port)) == "published\n"
    assert fetch(None, "127.0.0.1", host_port) == "published\n"
    assert wget(data, f"http://{ip}:8080/") == "published"  # and straight to the pod

    # the port is taken while the pod runs ...
    again = ("--port", f"web:{host_port}", "example.com/ports")
    taken = rktcfg(data, "run", *again, check=False)
    assert taken.returncode == 2 and f"published by pod {found['uuid']}" in taken.stderr
    # ... and so is its address
    wanted = rktcfg(data, "run", "--net", f"default:IP={ip}", "example.com/busybox", check=False)
    assert wanted.returncode == 2 and found["uuid"] in wanted.stderr, wanted.stderr
    # once it exited both are free again, without a gc: the exited pod's network goes
    rktcfg(data, "stop", found["uuid"])
    rktcfg(data, "status", found["uuid"], "--wait=10s")
    replaced = httpd(data, "again", "--port", f"web:{host_port}", image="ports")
    assert until(lambda: fetch(outside, "10.214.250.1", host_port)) == "again\n"
    assert status(data, found["uuid"])["network_state"] == "torn-down"
    reused = sh(data, "ip -4 -o addr show eth0", "--net", f"default:IP={ip}")
    assert f" inet {ip}/24 " in reused.stdout, (reused.stdout, reused.stderr)
    (row,) = [
        r for r in rktcfg(data, "list").stdout.splitlines() if r.startswith(found["uuid"][:8])
    ]
    assert row.split()[-1] == "-", row  # no address shown: it is not the exited pod's any more
    rktcfg(data, "stop", "--force", replaced)
    rktcfg(data, "delete", str(pod_file))


def test_a_port_published_on_one_host_ip_answers_only_there(data: str, outside: str) -> None:
    host_port = free_port()
    pod = httpd(data, "one-ip", "--port", f"web:10.214.250.1:{host_port}", image="ports")
    assert until(lambda: fetch(outside, "10.214.250.1", host_port)) == "one-ip\n"
    assert fetch(None, "10.214.250.1", host_port) == "one-ip\n"  # the host, to that address
    with pytest.raises(OSError):  # nothing listens on 127.0.0.1:host_port, nothing DNATs it
        fetch(None, "127.0.0.1", host_port)
    assert status(data, pod)["published_ports"][0]["host_ip"] == "10.214.250.1"
    bad = rktcfg(
        data, "run", "--port", f"web:192.0.2.1:{host_port}", "example.com/ports", check=False
    )
    assert (
        bad.returncode == 2 and "host IP 192.0.2.1: must be an address of this host" in bad.stderr
    )
    rktcfg(data, "stop", "--force", pod)


# --- many pods at once -------------------------------------------------------------------------


def test_twenty_pods_started_at_once_get_distinct_addresses(data: str) -> None:
    argv = [RKTCFG, "--dir", data, "run", "--stage1", "default", "-d", "example.com/busybox"]
    argv += ["--exec", "/bin/sleep", "--", "600"]
    starts = [
        subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(20)
    ]
    results = [(p.communicate(timeout=120), p.returncode) for p in starts]
    assert [rc for _, rc in results] == [0] * 20, [err for (_, err), _ in results]
    uuids = [out.strip() for (out, _), _ in results]
    ips = [status(data, uuid)["networks"][0]["ip"] for uuid in uuids]
    assert len(set(ips)) == 20, ips
    links = set(host_links())
    assert all(podnet.host_ifname(uuid, 0) in links for uuid in uuids)
    leases = ipam.leases(data, "default")
    assert sorted(leases.values()) == sorted(uuids)
    assert sorted(leases) == sorted(ips)


# --- gc after kill -9 and after the loss of a netns ---------------------------------------------


def test_gc_after_kill_9_of_supervisors_and_a_lost_netns_leaves_nothing(data: str) -> None:
    published = httpd(data, "x", "--port", f"web:{free_port()}", image="ports")
    bridged = detach(
        data, "--net", BRIDGE_NET, "example.com/busybox", "--exec", "/bin/sleep", "--", "600"
    )
    lost = detach(data, "example.com/busybox", "--exec", "/bin/sleep", "--", "600")
    uuids = {published, bridged, lost}
    assert nft.pod_rules(published) != []
    for uuid in uuids:
        os.kill(status(data, uuid)["pid"], signal.SIGKILL)
    for uuid in uuids:
        rktcfg(data, "status", uuid, "--wait=10s")
        assert status(data, uuid)["state"] == "exited"
    # a reboot-like loss: the namespace mount is gone, and with it (once PID 1 died) the
    # namespace and the veth pair; the record and the leases remain
    netns = os.path.join(data, "pods", "run", lost, podnet.NETNS_FILE)
    linux.umount(netns, linux.MNT_DETACH)
    os.unlink(netns)
    gc = rktcfg(data, "gc", "--grace-period", "0")
    for uuid in uuids:
        assert f"garbage collected pod {uuid}" in gc.stdout, gc.stdout
    assert network_leftovers(data, uuids) == []
