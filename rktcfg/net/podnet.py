"""A pod's networks: its network namespace, interfaces, addresses, routes and NAT rules.

Three calls, in this order over a pod's life:

- :func:`create_netns` makes the pod's network namespace and bind-mounts it on
  ``<pod dir>/netns``, so that it outlives the process that made it (the supervisor later
  ``setns(2)``-es into it).
- :func:`setup` gives the namespace one interface per network (``eth0``, ``eth1``, ... in
  the order given): an address leased from the network (:mod:`rktcfg.net.ipam`), a veth
  pair to the host and its routes, a masquerade rule for ``ip_masq`` networks and DNAT for
  published ports (:mod:`rktcfg.net.nft`).
- :func:`teardown` removes all of it again, from the record alone: idempotent, also after a
  kill -9 halfway through :func:`setup` or after the namespace file was unmounted by hand.

The record, ``<pod dir>/networks.json``, is written (and fsynced) with the *intent* -- every
host interface, bridge and nft table the pod will use, by name -- before the first of them is
made, and again with the final addresses when all is done. Paths in it are relative to the pod
directory, which moves between phase directories.

What a network looks like:

- ``ptp``: a veth pair. Host end ``rk<uuid8><n>`` in the host's namespace with the gateway
  address as a /32 and an on-link /32 route to the pod. Pod end ``eth<n>`` with the pod's
  address and the subnet's prefix but no prefix route (``noprefixroute``), an on-link /32
  route to the gateway, the subnet via the gateway (so pods of one network reach each other
  through the host) and, with ``default_route``, the default route via the gateway. The
  host end gets ``forwarding=1`` (this interface only, not the host-wide ``ip_forward``).
- ``bridge``: a Linux bridge ``rkbr-<name>`` with the gateway address (made by the first pod,
  removed with the last), one veth per pod whose host end is a port of it. Pod end
  ``eth<n>`` with the pod's address and the subnet's on-link prefix route (pods reach each
  other directly) and, with ``default_route``, the default route via the gateway.

Published ports go to the first ``ip_masq`` network (else the last, as in rkt): a host port
lease (:func:`rktcfg.net.ipam.take_port`), DNAT rules, and ``route_localnet=1`` on that
network's host link so that 127.0.0.1:hostPort works (see :mod:`rktcfg.net.nft` for the
guard that keeps pods off the host's loopback).

rktcfg never changes host-wide settings: forwarding is switched on per interface, for its
own links. With ``net.ipv4.ip_forward=0``, pods reach the host and each other, but traffic
masqueraded out of the host (and published ports used from other hosts) is not forwarded
on the host's own uplink; setup then says so in the record's ``warnings``.

Host interfaces carry the alias ``rktcfg pod <uuid>`` (bridges ``rktcfg network <name>``);
teardown deletes an interface only if its name is recorded and its alias is rktcfg's (or,
for a veth made by a setup killed before it set the alias, empty).
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import json
import os
import socket
from collections.abc import Mapping, Sequence
from typing import Any

from rktcfg.errors import InputError, RuntimeFailure
from rktcfg.net import ipam, nft

TYPE_CHECKING = False
if TYPE_CHECKING:
    from rktcfg.net.netlink import Netlink

# rktcfg.net.netlink is imported where it is used: readers of the record (list, status)
# do not pay for it.

RECORD_FILE = "networks.json"
NETNS_FILE = "netns"
RECORD_VERSION = 1
NETWORK_TYPES = ("ptp", "bridge")
HOST_PREFIX = "rk"
BRIDGE_PREFIX = "rkbr-"


# --- names -----------------------------------------------------------------------------------


def host_ifname(pod_uuid: str, n: int) -> str:
    """The host end of the pod's n-th veth: ``rk`` + the UUID's first 8 hex digits + n."""
    return f"{HOST_PREFIX}{pod_uuid.replace('-', '')[:8]}{n}"


def bridge_name(network: str) -> str:
    """``rkbr-<network>``, shortened with a hash when that would not fit in an interface name."""
    import hashlib

    from rktcfg.net.netlink import IFNAME_MAX

    name = BRIDGE_PREFIX + network
    if len(name) <= IFNAME_MAX:
        return name
    digest = hashlib.sha256(network.encode()).hexdigest()[:4]
    return f"{BRIDGE_PREFIX}{network[:5]}-{digest}"


def pod_alias(pod_uuid: str) -> str:
    return f"rktcfg pod {pod_uuid}"


def bridge_alias(network: str) -> str:
    return f"rktcfg network {network}"


# --- the record ------------------------------------------------------------------------------


def record_path(pod_dir: str) -> str:
    return os.path.join(pod_dir, RECORD_FILE)


def read_record(pod_dir: str) -> dict[str, Any] | None:
    """The pod's network record, None if it has none (or only an unreadable one)."""
    try:
        with open(record_path(pod_dir), encoding="utf-8") as handle:
            data = json.load(handle)
    except (FileNotFoundError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def write_record(pod_dir: str, record: Mapping[str, Any], *, durable: bool = True) -> None:
    """Replace the record: a temporary file, fsync, rename, fsync of the directory (the
    fsyncs only when ``durable``)."""
    path = record_path(pod_dir)
    tmp = path + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o640)
    try:
        os.write(fd, (json.dumps(record, indent=2, sort_keys=True) + "\n").encode())
        if durable:
            os.fsync(fd)
    finally:
        os.close(fd)
    os.rename(tmp, path)
    if durable:
        from rktcfg.fsutil import fsync_dir

        fsync_dir(pod_dir)


def _relative(pod_dir: str, path: str) -> str:
    rel = os.path.relpath(os.path.abspath(path), os.path.abspath(pod_dir))
    return os.path.abspath(path) if rel.startswith("..") else rel


# --- the network namespace -------------------------------------------------------------------


def _is_netns_mount(path: str) -> bool:
    from rktcfg.stage1 import linux

    real = os.path.realpath(path)
    return any(m.mount_point == real and m.fstype == "nsfs" for m in linux.mounts_below(real))


def create_netns(pod_dir: str, *, sysctls: Mapping[str, str] | None = None) -> str:
    """Make the pod's network namespace, with ``lo`` up, bind-mounted on ``<pod dir>/netns``;
    returns that path. Idempotent: a namespace mounted there already is kept.

    A forked child unshares the namespace, brings ``lo`` up, writes ``sysctls`` (``net.*``
    keys only, e.g. ``{"net.ipv4.ip_unprivileged_port_start": "0"}`` for a pod whose root is
    not root in the namespace's owning user namespace) and bind-mounts its
    ``/proc/self/ns/net`` on the file. The mount point is recorded (``mounts``) before."""
    from rktcfg.stage1 import base, linux

    path = os.path.join(pod_dir, NETNS_FILE)
    settings = dict(sysctls or {})
    for key in settings:
        if not key.startswith("net.") or "/" in key or ".." in key:
            raise InputError(f"netns sysctl: must be a net.* key (got {key!r})")
    if os.path.exists(path) and _is_netns_mount(path):
        return path
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
    os.close(fd)
    if path not in base.recorded_mounts(pod_dir):  # a retry after a failed attempt
        base.record_mount(pod_dir, path)

    def work() -> None:
        linux.unshare(linux.CLONE_NEWNET)
        linux.loopback_up()
        for key, value in settings.items():
            with open("/proc/sys/" + key.replace(".", "/"), "w", encoding="ascii") as handle:
                handle.write(value)
        linux.mount("/proc/self/ns/net", path, None, linux.MS_BIND)

    try:
        base.in_child(work)
    except RuntimeError as exc:
        raise RuntimeFailure(f"create network namespace {path}: {exc}") from exc
    return path


def remove_netns(path: str) -> list[str]:
    """Unmount (lazily) and delete a namespace file; returns what failed. Idempotent."""
    from rktcfg.stage1 import linux

    left: list[str] = []
    for _ in range(8):  # one mount normally; more if it was mounted several times
        try:
            linux.umount(path, linux.MNT_DETACH | linux.UMOUNT_NOFOLLOW)
        except RuntimeFailure as exc:
            if linux.errno_of(exc) not in (errno.EINVAL, errno.ENOENT):
                left.append(str(exc))
            break
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError as exc:
        left.append(f"remove {path}: {exc.strerror}")
    return left


# --- checking the request (pure) -------------------------------------------------------------


def _check_networks(
    networks: Sequence[Mapping[str, Any]], requested: Mapping[str, str]
) -> list[dict[str, Any]]:
    problems: list[str] = []
    checked: list[dict[str, Any]] = []
    seen: set[str] = set()
    for i, net in enumerate(networks):
        name = str(net.get("name", ""))
        where = f"networks[{i}] ({name or 'unnamed'})"
        if name in seen:
            problems.append(f"{where}: listed twice")
        seen.add(name)
        kind = net.get("type")
        if kind not in NETWORK_TYPES:
            problems.append(f"{where}.type: must be ptp or bridge (got {kind!r})")
            continue
        try:
            pool = ipam.make_pool(name, str(net.get("subnet", "")), str(net.get("gateway") or ""))
        except InputError as exc:
            problems.append(f"{where}: {exc}")
            continue
        if pool.subnet.version != 4:
            problems.append(f"{where}.subnet: only IPv4 networks are supported (got {pool.subnet})")
            continue
        if name in requested:
            try:
                ipam.check_requested(pool, requested[name])
            except InputError as exc:
                problems.append(str(exc))
        checked.append(
            {
                "name": name,
                "type": kind,
                "subnet": str(pool.subnet),
                "gateway": str(pool.gateway),
                "ip_masq": bool(net.get("ip_masq", False)),
                "default_route": bool(net.get("default_route", False)),
            }
        )
    for name in sorted(set(requested) - seen):
        problems.append(f"IP={requested[name]} for network {name}: the pod is not on it")
    if problems:
        raise InputError("; ".join(problems))
    return checked


def _check_ports(ports: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    problems: list[str] = []
    checked: list[dict[str, Any]] = []
    seen: set[tuple[str, int]] = set()
    for i, port in enumerate(ports):
        where = f"ports[{i}] ({port.get('name') or 'unnamed'})"
        proto = str(port.get("protocol") or "tcp")
        host_ip = str(port.get("host_ip") or "")
        try:
            target, host_port = int(port["port"]), int(port["host_port"])
        except (KeyError, TypeError, ValueError):
            problems.append(f"{where}: needs a port and a host_port (got {dict(port)!r})")
            continue
        if proto not in ("tcp", "udp"):
            problems.append(f"{where}.protocol: must be tcp or udp (got {proto!r})")
        for label, value in (("port", target), ("host_port", host_port)):
            if not 0 < value < 65536:
                problems.append(f"{where}.{label}: must be 1-65535 (got {value})")
        if host_ip:
            try:
                if ipaddress.ip_address(host_ip).version != 4:
                    raise ValueError
            except ValueError:
                problems.append(f"{where}.host_ip: must be an IPv4 address (got {host_ip!r})")
        if (proto, host_port) in seen:
            problems.append(f"{where}: host port {host_port}/{proto} is published twice")
        seen.add((proto, host_port))
        checked.append(
            {
                "name": str(port.get("name") or ""),
                "protocol": proto,
                "port": target,
                "host_port": host_port,
                "host_ip": "" if host_ip == "0.0.0.0" else host_ip,
            }
        )
    if problems:
        raise InputError("; ".join(problems))
    return checked


def check_host_port(protocol: str, host_port: int, host_ip: str = "") -> None:
    """InputError if a host process listens on the port already (it would be shadowed by the
    DNAT rule), or ``host_ip`` is not an address of this host."""
    kind = socket.SOCK_STREAM if protocol == "tcp" else socket.SOCK_DGRAM
    with socket.socket(socket.AF_INET, kind) as probe:
        if protocol == "tcp":  # TIME_WAIT leftovers are no conflict, a listener is
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host_ip or "0.0.0.0", host_port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise InputError(
                    f"host port {host_port}/{protocol}: in use on the host "
                    f"(got {host_ip or '*'}:{host_port})"
                ) from None
            if exc.errno == errno.EADDRNOTAVAIL:
                raise InputError(
                    f"host IP {host_ip}: must be an address of this host (got {host_ip!r})"
                ) from None
            raise RuntimeFailure(f"check host port {host_port}/{protocol}: {exc.strerror}") from exc


def _forwarding_network(entries: Sequence[Mapping[str, Any]]) -> int:
    """Which network published ports go to (rkt's rule): the first with ip_masq, else the
    last."""
    for i, entry in enumerate(entries):
        if entry["ip_masq"]:
            return i
    return len(entries) - 1


# --- setup -----------------------------------------------------------------------------------


def plan_record(
    pod_dir: str,
    netns_path: str,
    networks: Sequence[Mapping[str, Any]],
    *,
    pod_uuid: str,
    ports: Sequence[Mapping[str, Any]] = (),
    nft_table: str = nft.TABLE,
) -> dict[str, Any]:
    """The intent record: what setup will make, by name, before any of it exists."""
    entries = []
    for n, net in enumerate(networks):
        entries.append(
            {
                **net,
                "ifname": f"eth{n}",
                "host_ifname": host_ifname(pod_uuid, n),
                "bridge": bridge_name(net["name"]) if net["type"] == "bridge" else None,
                "bridge_created": False,
                "ip": None,
                "prefix": ipaddress.ip_network(net["subnet"]).prefixlen,
                "mac": None,
                "state": "planned",
            }
        )
    if ports and entries:
        target = _forwarding_network(entries)
        ports = [{**p, "network": entries[target]["name"]} for p in ports]
    return {
        "version": RECORD_VERSION,
        "pod": pod_uuid,
        "state": "setting-up",
        "netns": _relative(pod_dir, netns_path),
        # whether setup may add nft rules: teardown skips nft (two runs of it) when not
        "nft": bool(ports) or any(e["ip_masq"] for e in entries),
        "nft_table": nft_table,
        "networks": entries,
        "ports": list(ports),
        "warnings": [],
    }


def setup(
    pod_dir: str,
    netns_path: str,
    networks: Sequence[Mapping[str, Any]],
    *,
    data_dir: str,
    pod_uuid: str,
    requested: Mapping[str, str] | None = None,
    ports: Sequence[Mapping[str, Any]] = (),
    nft_table: str = nft.TABLE,
) -> dict[str, Any]:
    """Give the pod's namespace its networks; returns the record.

    ``networks``: dicts ``{"name", "type": "ptp"|"bridge", "subnet", "gateway" ("": the first
    host address), "ip_masq", "default_route"}``, one interface each (eth0, eth1, ... in this
    order). ``requested``: network name -> the address the pod asks for (``--net NAME:IP=``).
    ``ports``: ``{"name", "protocol": "tcp"|"udp", "port", "host_port", "host_ip" ("": all)}``,
    published on the first ip_masq network, else the last (as rkt does).

    The record's ``networks`` hold per network ``name, type, ifname, ip, prefix, gateway,
    subnet, host_ifname, mac`` (the pod end's), ``bridge``; its ``warnings`` what the user
    should know (``nft not found: no masquerade``, IP forwarding off). Bad input: InputError,
    before anything is made. A failure halfway (a taken ``requested`` address or host port
    is an InputError too): everything made so far is removed again (except the namespace)
    and the error raised; :func:`teardown` cleans up whatever that could not.
    """
    requested = dict(requested or {})
    checked = _check_networks(networks, requested)
    wanted_ports = _check_ports(ports)
    if wanted_ports and not checked:
        raise InputError("ports: publishing a port needs a network (got none)")
    if wanted_ports and not nft.available():
        raise RuntimeFailure("nft not found: cannot publish ports (install nftables)")
    old = read_record(pod_dir)
    if old is not None and old.get("networks") and old.get("state") not in ("torn-down", "failed"):
        raise RuntimeFailure(
            f"pod {pod_uuid}: networks are set up already ({RECORD_FILE}); tear them down first"
        )
    if not os.path.exists(netns_path):
        raise RuntimeFailure(f"network namespace {netns_path}: no such file")
    for port in wanted_ports:
        check_host_port(port["protocol"], port["host_port"], port["host_ip"])

    record = plan_record(
        pod_dir, netns_path, checked, pod_uuid=pod_uuid, ports=wanted_ports, nft_table=nft_table
    )
    write_record(pod_dir, record)
    try:
        _setup(pod_dir, netns_path, record, data_dir=data_dir, requested=requested)
    except BaseException as exc:
        left = _undo(pod_dir, record, data_dir=data_dir)
        record["state"] = "failed"
        with contextlib.suppress(OSError):
            write_record(pod_dir, record)
        if left and isinstance(exc, RuntimeFailure):
            raise RuntimeFailure(f"{exc} (and left behind: {'; '.join(left)})") from exc
        raise
    return record


def _setup(
    pod_dir: str,
    netns_path: str,
    record: dict[str, Any],
    *,
    data_dir: str,
    requested: Mapping[str, str],
) -> None:
    from rktcfg.net.netlink import Netlink, ip_forward_enabled, set_interface_sysctl

    pod_uuid: str = record["pod"]
    entries: list[dict[str, Any]] = record["networks"]
    warnings: list[str] = record["warnings"]
    for port in record["ports"]:
        ipam.take_port(data_dir, pod_uuid, port["protocol"], port["host_port"])
    rules: list[nft.Rule] = []
    netns_fd = os.open(netns_path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        with Netlink() as host, Netlink(netns_path) as pod:
            for entry in entries:
                lease = ipam.allocate(
                    data_dir,
                    entry["name"],
                    entry["subnet"],
                    pod_uuid=pod_uuid,
                    gateway=entry["gateway"],
                    requested=requested.get(entry["name"]),
                )
                entry.update(ip=lease.ip, prefix=lease.prefix, gateway=lease.gateway)
                if entry["type"] == "ptp":
                    _setup_ptp(host, pod, entry, netns_fd, pod_uuid)
                else:
                    _setup_bridge(host, pod, entry, netns_fd, pod_uuid, pod_dir, record, data_dir)
                entry["state"] = "ready"
                if entry["ip_masq"]:
                    if nft.available():
                        rules += nft.masquerade_rules(pod_uuid, entry["ip"], entry["subnet"])
                    else:
                        warnings.append(f"nft not found: no masquerade for network {entry['name']}")
            target = entries[_forwarding_network(entries)] if record["ports"] else None
            if target is not None:
                hairpin = target["subnet"] if target["type"] == "bridge" else None
                rules += nft.port_rules(pod_uuid, target["ip"], record["ports"], hairpin)
    finally:
        os.close(netns_fd)
    # the rules first: route_localnet is safe only once the guard against it is in place
    nft.apply(pod_uuid, rules, record["nft_table"], guard=target is not None)
    if target is not None:  # the host's 127.0.0.1 may reach the published port
        set_interface_sysctl(target["bridge"] or target["host_ifname"], "route_localnet", "1")
    if (record["ports"] or any(e["ip_masq"] for e in entries)) and not ip_forward_enabled():
        warnings.append(
            "net.ipv4.ip_forward is 0: pods reach the host and each other, but masqueraded "
            "traffic and published ports from other hosts are not forwarded (rktcfg leaves "
            "host-wide settings alone: sysctl -w net.ipv4.ip_forward=1)"
        )
    record["state"] = "ready"
    # not fsynced: the intent alone is enough for teardown, this adds the addresses
    write_record(pod_dir, record, durable=False)


def _remove_leftover(host: Netlink, name: str, alias: str) -> None:
    """Delete ``name`` if it is this pod's own leftover (from a setup killed before its
    teardown); refuse if it belongs to someone else."""
    found = host.link(name)
    if found is None:
        return
    if found.alias == alias or (found.kind == "veth" and not found.alias):
        host.delete_link(found.index, name)
        return
    raise RuntimeFailure(
        f"host interface {name}: exists and is not this pod's (alias {found.alias!r})"
    )


def _make_veth(host: Netlink, entry: dict[str, Any], netns_fd: int, pod_uuid: str) -> int:
    """The veth pair of one network; returns the host end's index. A leftover of this pod
    with the host end's name is replaced."""
    from rktcfg.net.netlink import index_of

    name = entry["host_ifname"]
    try:
        host.add_veth(name, entry["ifname"], peer_netns_fd=netns_fd)
    except RuntimeFailure as exc:
        if not isinstance(exc.__cause__, OSError) or exc.__cause__.errno != errno.EEXIST:
            raise
        _remove_leftover(host, name, pod_alias(pod_uuid))
        host.add_veth(name, entry["ifname"], peer_netns_fd=netns_fd)
    index = index_of(name)
    if index is None:
        raise RuntimeFailure(f"add veth {name}: gone right after it was made")
    return index


def _configure_pod_end(pod: Netlink, entry: dict[str, Any], *, routed_subnet: bool) -> None:
    """Address, link up and routes on the pod's ``eth<n>``, in one batch."""
    name = entry["ifname"]
    link = pod.link(name)
    if link is None:
        raise RuntimeFailure(f"{name}: not in the pod's network namespace")
    ip, prefix, gateway, index = entry["ip"], entry["prefix"], entry["gateway"], link.index
    batch = [
        pod.address(index, name, ip, prefix, no_prefix_route=routed_subnet),
        pod.change_link(index, name, up=True),
    ]
    if routed_subnet:
        batch += [
            pod.route(f"{gateway}/32", oif=index, name=name, on_link=True),
            pod.route(entry["subnet"], oif=index, name=name, gateway=gateway),
        ]
    if entry["default_route"]:
        batch.append(pod.route("0.0.0.0/0", oif=index, name=name, gateway=gateway))
    pod.run(*batch)
    entry["mac"] = link.mac


def _setup_ptp(
    host: Netlink, pod: Netlink, entry: dict[str, Any], netns_fd: int, pod_uuid: str
) -> None:
    from rktcfg.net.netlink import set_interface_sysctl

    name = entry["host_ifname"]
    index = _make_veth(host, entry, netns_fd, pod_uuid)
    host.run(
        host.change_link(index, name, alias=pod_alias(pod_uuid)),
        host.address(index, name, entry["gateway"], 32),
        host.change_link(index, name, up=True),
    )
    try:  # a route to the address elsewhere would take the pod's replies: refuse it
        host.run(host.route(f"{entry['ip']}/32", oif=index, name=name, exclusive=True))
    except RuntimeFailure as exc:
        if not isinstance(exc.__cause__, OSError) or exc.__cause__.errno != errno.EEXIST:
            raise
        raise RuntimeFailure(
            f"network {entry['name']}: the host routes {entry['ip']} elsewhere already "
            f"(another rktcfg data directory, or something else, uses {entry['subnet']}; "
            "give one of them another subnet in net.d)"
        ) from exc
    set_interface_sysctl(name, "forwarding", "1")
    set_interface_sysctl(name, "rp_filter", "1")  # strict: only the pod's own address
    _configure_pod_end(pod, entry, routed_subnet=True)


def _setup_bridge(
    host: Netlink,
    pod: Netlink,
    entry: dict[str, Any],
    netns_fd: int,
    pod_uuid: str,
    pod_dir: str,
    record: dict[str, Any],
    data_dir: str,
) -> None:
    from rktcfg.net.netlink import set_interface_sysctl

    name, alias = entry["bridge"], bridge_alias(entry["name"])
    # under the network's lock: a teardown never removes the bridge between our look and
    # our port joining it
    with ipam.network_lock(data_dir, entry["name"]):
        bridge = host.link(name)
        if bridge is None:
            entry["bridge_created"] = True
            write_record(pod_dir, record)  # the intent, before the bridge exists
            host.add_bridge(name)
            bridge = host.link(name)
            if bridge is None:
                raise RuntimeFailure(f"add bridge {name}: gone right after it was made")
        elif bridge.kind != "bridge" or bridge.alias not in ("", alias):
            raise RuntimeFailure(
                f"host interface {name}: exists and is not rktcfg's bridge for network "
                f"{entry['name']} (kind {bridge.kind or 'device'}, alias {bridge.alias!r})"
            )
        host.run(
            host.change_link(bridge.index, name, alias=alias),
            host.address(bridge.index, name, entry["gateway"], entry["prefix"]),
            host.change_link(bridge.index, name, up=True),
        )
        set_interface_sysctl(name, "forwarding", "1")
        set_interface_sysctl(name, "rp_filter", "1")  # strict: only the bridge's subnet
        index = _make_veth(host, entry, netns_fd, pod_uuid)
        host.set_link(
            index, entry["host_ifname"], alias=pod_alias(pod_uuid), master=bridge.index, up=True
        )
    _configure_pod_end(pod, entry, routed_subnet=False)


# --- teardown --------------------------------------------------------------------------------


def _undo(pod_dir: str, record: Mapping[str, Any], *, data_dir: str) -> list[str]:
    """Remove the record's interfaces, bridges, rules and leases (not the namespace)."""
    pod_uuid = str(record.get("pod") or os.path.basename(os.path.normpath(pod_dir)))
    table = str(record.get("nft_table") or nft.TABLE)
    rules_left: list[str] = []
    try:
        if record.get("nft", True):  # (nothing to remove where nft is missing)
            rules_left += nft.delete_pod_rules(pod_uuid, table)
    except (RuntimeFailure, OSError) as exc:
        rules_left.append(str(exc))
    entries = [e for e in record.get("networks") or () if isinstance(e, dict)]
    links_left: list[str] = []
    if entries:
        try:
            links_left += _remove_links(entries, pod_uuid, data_dir)
        except (RuntimeFailure, OSError) as exc:  # no netlink connection at all
            links_left.append(str(exc))
    # A lease goes only with what uses it: an address whose veth (and /32 route) is still
    # there, or a host port whose DNAT rule is, handed to another pod would be shadowed by
    # the leftover. gc retries the teardown, and releases them then.
    left = rules_left + links_left
    try:
        if not links_left:
            ipam.release(data_dir, pod_uuid)
        if not rules_left:
            ipam.release_ports(data_dir, pod_uuid)
    except (OSError, InputError) as exc:
        left.append(f"release leases of pod {pod_uuid}: {exc}")
    return left


def _remove_links(entries: Sequence[Mapping[str, Any]], pod_uuid: str, data_dir: str) -> list[str]:
    from rktcfg.net.netlink import Netlink

    left: list[str] = []
    alias = pod_alias(pod_uuid)
    with Netlink() as host:
        for entry in reversed(entries):
            name = str(entry.get("host_ifname") or "")
            try:
                found = host.link(name) if name.startswith(HOST_PREFIX) else None
                if found is not None and (
                    found.alias == alias or (found.kind == "veth" and not found.alias)
                ):
                    host.delete_link(found.index, name)
                bridge = entry.get("bridge")
                if bridge and str(bridge).startswith(BRIDGE_PREFIX):
                    _remove_bridge_if_unused(host, entry, data_dir)
            except RuntimeFailure as exc:
                left.append(str(exc))
            except InputError as exc:  # a record naming an impossible network
                left.append(f"network {entry.get('name')!r}: {exc}")
    return left


def _remove_bridge_if_unused(host: Netlink, entry: Mapping[str, Any], data_dir: str) -> None:
    name, network = str(entry["bridge"]), str(entry["name"])
    with ipam.network_lock(data_dir, network):
        bridge = host.link(name)
        if bridge is None or bridge.kind != "bridge":
            return
        ours = bridge.alias == bridge_alias(network) or (
            not bridge.alias and entry.get("bridge_created")
        )
        if ours and not host.ports(bridge.index):
            host.delete_link(bridge.index, name)


def teardown(pod_dir: str, *, data_dir: str) -> list[str]:
    """Remove everything :func:`setup` and :func:`create_netns` made for the pod, from its
    record: nft rules, host veth ends (their pod ends go with them), bridges left without
    ports, leases, and the namespace mount and file. Returns what could not be removed
    (empty: all gone). Idempotent; works from a record of intent only (a setup killed
    halfway) and when the namespace is gone already."""
    record = read_record(pod_dir)
    left: list[str] = []
    if record is None:
        pod_uuid = os.path.basename(os.path.normpath(pod_dir))
        try:
            ipam.release(data_dir, pod_uuid)
            ipam.release_ports(data_dir, pod_uuid)
        except (OSError, InputError) as exc:
            left.append(f"release leases of pod {pod_uuid}: {exc}")
    else:
        left += _undo(pod_dir, record, data_dir=data_dir)
    left += remove_netns(os.path.join(pod_dir, NETNS_FILE))
    if record is not None and not left and record.get("state") != "torn-down":
        record = {**record, "state": "torn-down"}
        try:
            write_record(pod_dir, record)
        except OSError as exc:
            left.append(f"update {record_path(pod_dir)}: {exc.strerror}")
    return left
