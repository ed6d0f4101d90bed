"""Host-local address allocation: one lease file per address, taken under a lock.

Layout below the data directory::

    networks/<name>/.lock        flock(2)ed while leases of <name> are read or changed
    networks/<name>/.last        the address handed out last (the next search starts after it)
    networks/<name>/<ip>         a lease: the UUID of the pod that holds <ip>, one line

A lease is written to a temporary file and ``link(2)``-ed into place, so it appears whole or
not at all, and only under the network directory's lock, so two pods started at once never
get one address (the same pattern as ``--private-users`` ranges in :mod:`rktcfg.pods`).
Allocation hands out the subnet's host addresses in order, starting after the one handed out
last (a just-freed address is not reused at once), and skips the network address, the
gateway and the broadcast address. A lease whose pod no longer exists in any live phase
directory (``pods/{embryo,prepare,prepared,run,exited-garbage}/<uuid>``) is reclaimed when
it is in the way: when its address is requested, or when no address is free (so an
allocation costs a directory listing, not a look at every pod). The pod a lease is taken
for must exist in one of those phases.

Host ports that pods publish are leased the same way (``ports/<proto>-<port>``).

The :func:`network_lock` also serialises changes to a network's shared bridge.

:class:`Pool` and its functions are pure; the rest touches the file system.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
from collections.abc import Iterator
from dataclasses import dataclass

from rktcfg.errors import InputError, RuntimeFailure
from rktcfg.fsutil import flock_fd
from rktcfg.names import AC_NAME

NETWORKS_DIR = "networks"
LOCK_FILE = ".lock"
LAST_FILE = ".last"
#: Phase directories whose pods keep their leases (a pod in ``garbage`` never ran).
LIVE_PHASES = ("embryo", "prepare", "prepared", "run", "exited-garbage")

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True, kw_only=True)
class Lease:
    """An address a pod holds on one network."""

    network: str
    ip: str
    prefix: int
    gateway: str
    subnet: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Pool:
    """The addresses of one network that pods may get: ``first``..``last`` minus the
    gateway."""

    network: str
    subnet: IPNetwork
    gateway: IPAddress
    first: int
    last: int

    def usable(self, address: IPAddress) -> bool:
        return self.first <= int(address) <= self.last and address != self.gateway

    def size(self) -> int:
        return self.last - self.first + 1 - (1 if self.first <= int(self.gateway) else 0)


def make_pool(network: str, subnet: str, gateway: str = "") -> Pool:
    """The pool of ``network``; ``gateway`` "" is the subnet's first host address.

    Raises InputError for a subnet or gateway that leaves no address for a pod."""
    try:
        net = ipaddress.ip_network(subnet, strict=True)
    except ValueError:
        raise InputError(
            f"network {network}: subnet: must be a network like 10.0.0.0/24 (got {subnet!r})"
        ) from None
    base = int(net.network_address)
    if net.version == 4:
        if net.prefixlen > 30:
            raise InputError(
                f"network {network}: subnet: must leave room for a gateway and pods "
                f"(a /30 or larger) (got {subnet!r})"
            )
        first, last = base + 1, int(net.broadcast_address) - 1
    else:
        if net.prefixlen > 126:
            raise InputError(
                f"network {network}: subnet: must leave room for a gateway and pods "
                f"(a /126 or larger) (got {subnet!r})"
            )
        first, last = base + 1, int(net.broadcast_address)
    if gateway:
        try:
            gw = ipaddress.ip_address(gateway)
        except ValueError:
            raise InputError(
                f"network {network}: gateway: must be an IP address (got {gateway!r})"
            ) from None
        if gw.version != net.version or not first <= int(gw) <= last:
            raise InputError(
                f"network {network}: gateway: must be a host address inside the subnet "
                f"{net} (got {gateway!r})"
            )
    else:
        gw = ipaddress.ip_address(first) if net.version == 4 else ipaddress.IPv6Address(first)
    return Pool(network=network, subnet=net, gateway=gw, first=first, last=last)


def _address(pool: Pool, value: int) -> IPAddress:
    if pool.subnet.version == 4:
        return ipaddress.IPv4Address(value)
    return ipaddress.IPv6Address(value)


def check_requested(pool: Pool, requested: str) -> IPAddress:
    """``requested`` as an address of ``pool``, or InputError saying why it cannot be one."""
    where = f"network {pool.network}: IP={requested}"
    try:
        address = ipaddress.ip_address(requested)
    except ValueError:
        raise InputError(f"{where}: must be an IP address (got {requested!r})") from None
    if address.version != pool.subnet.version or address not in pool.subnet:
        raise InputError(f"{where}: must be inside the subnet {pool.subnet} (got {requested!r})")
    if address == pool.gateway:
        raise InputError(f"{where}: is the network's gateway (got {requested!r})")
    if not pool.usable(address):
        kind = "network" if int(address) < pool.first else "broadcast"
        raise InputError(f"{where}: is the subnet's {kind} address (got {requested!r})")
    return address


def next_free(pool: Pool, taken: set[int], after: int | None = None) -> int | None:
    """The first usable address after ``after`` (wrapping around) that is not ``taken``."""
    span = pool.last - pool.first + 1
    start = 0 if after is None or not pool.first <= after <= pool.last else after - pool.first + 1
    gateway = int(pool.gateway)
    # at most len(taken) + 2 addresses are skipped before a free one turns up
    for step in range(min(span, len(taken) + 2)):
        candidate = pool.first + (start + step) % span
        if candidate != gateway and candidate not in taken:
            return candidate
    return None


# --- leases on disk ------------------------------------------------------------------------------


def _network_dir(data_dir: str, network: str) -> str:
    if not AC_NAME.match(network):
        raise InputError(f"network name: must be an AC Name like backend (got {network!r})")
    return os.path.join(data_dir, NETWORKS_DIR, network)


@contextlib.contextmanager
def network_lock(data_dir: str, network: str) -> Iterator[str]:
    """Hold the exclusive lock of ``network``'s lease directory; yields the directory."""
    with _locked(_network_dir(data_dir, network)) as directory:
        yield directory


@contextlib.contextmanager
def _locked(directory: str) -> Iterator[str]:
    os.makedirs(directory, 0o700, exist_ok=True)
    fd = os.open(os.path.join(directory, LOCK_FILE), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    flock_fd(fd, blocking=True)  # closes fd if it fails
    try:
        yield directory
    finally:
        os.close(fd)


def pod_exists(data_dir: str, pod_uuid: str) -> bool:
    """Whether the pod is in a phase directory that keeps its leases. Phases are checked in
    the order pods move through them, so a pod renamed meanwhile is still found."""
    pods_root = os.path.join(data_dir, "pods")
    return bool(pod_uuid) and any(
        os.path.isdir(os.path.join(pods_root, phase, pod_uuid)) for phase in LIVE_PHASES
    )


def _read_owner(path: str) -> str | None:
    try:
        with open(path, encoding="ascii", errors="replace") as handle:
            return handle.read().strip()
    except FileNotFoundError:
        return None


def _read_leases(directory: str) -> dict[str, str]:
    """ip -> owner ("" for a lease whose writer died before it was linked whole)."""
    found: dict[str, str] = {}
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return found
    for name in names:
        if name.startswith("."):
            continue
        owner = _read_owner(os.path.join(directory, name))
        if owner is not None:
            found[name] = owner
    return found


def leases(data_dir: str, network: str) -> dict[str, str]:
    """The leases of ``network``: ip -> pod UUID (read without the lock: a snapshot)."""
    return _read_leases(_network_dir(data_dir, network))


def _link_lease(directory: str, ip: str, pod_uuid: str) -> bool:
    """Put a lease for ``ip`` in place; False if there is one already."""
    tmp = os.path.join(directory, f".{pod_uuid}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="ascii") as handle:
        handle.write(pod_uuid + "\n")
    try:
        os.link(tmp, os.path.join(directory, ip))
        return True
    except FileExistsError:
        return False
    finally:
        os.unlink(tmp)


def _read_last(directory: str) -> int | None:
    try:
        with open(os.path.join(directory, LAST_FILE), encoding="ascii") as handle:
            return int(ipaddress.ip_address(handle.read().strip()))
    except (FileNotFoundError, ValueError):
        return None


def _write_last(directory: str, ip: str) -> None:
    with open(os.path.join(directory, LAST_FILE), "w", encoding="ascii") as handle:
        handle.write(ip + "\n")


def allocate(
    data_dir: str,
    network: str,
    subnet: str,
    *,
    pod_uuid: str,
    gateway: str = "",
    requested: str | None = None,
) -> Lease:
    """Lease an address of ``network`` for ``pod_uuid`` (whose pod directory must exist).

    A pod that already holds an address on ``network`` gets it again (unless it asks for
    another one with ``requested``, which then replaces it). ``requested`` outside the subnet,
    or the gateway, network or broadcast address: InputError. Taken by another live pod:
    InputError naming the address and its holder. No address left: RuntimeFailure.
    """
    pool = make_pool(network, subnet, gateway)
    wanted = check_requested(pool, requested) if requested else None
    with network_lock(data_dir, network) as directory:
        held = _read_leases(directory)
        mine = [ip for ip, owner in held.items() if owner == pod_uuid and _in_pool(pool, ip)]
        if mine and (wanted is None or str(wanted) in mine):
            ip = str(wanted) if wanted is not None else sorted(mine)[0]
            return _lease(pool, ip)
        if wanted is not None:
            ip = str(wanted)
            holder = held.get(ip)
            if holder is not None and holder != pod_uuid:
                if pod_exists(data_dir, holder):
                    raise InputError(
                        f"network {network}: IP={ip}: is taken by pod {holder} (got {ip!r})"
                    )
                _drop(directory, ip)  # its pod is gone: reclaimed
            if not _link_lease(directory, ip, pod_uuid):
                raise RuntimeFailure(f"network {network}: lease for {ip} appeared meanwhile")
        else:
            ip = _take_next(pool, directory, held, pod_uuid, data_dir)
            _write_last(directory, ip)
        for old in mine:  # the pod asked for another address than the one it held
            if old != ip:
                _drop(directory, old)
        return _lease(pool, ip)


def _in_pool(pool: Pool, ip: str) -> bool:
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return False
    return address.version == pool.subnet.version and pool.usable(address)


def _drop(directory: str, ip: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(os.path.join(directory, ip))


def _take_next(
    pool: Pool, directory: str, held: dict[str, str], pod_uuid: str, data_dir: str
) -> str:
    """Lease the next free address; when there is none, reclaim the leases whose pods are
    gone and look again."""
    taken: set[int] = set()
    for ip in held:
        with contextlib.suppress(ValueError):
            taken.add(int(ipaddress.ip_address(ip)))
    after = _read_last(directory)
    reclaimed = False
    while True:
        found = next_free(pool, taken, after)
        if found is None:
            if reclaimed:
                raise RuntimeFailure(
                    f"network {pool.network}: no free address left in {pool.subnet} "
                    f"({pool.size()} addresses, all leased)"
                )
            reclaimed = True
            alive: dict[str, bool] = {}
            for ip, owner in held.items():
                if owner not in alive:
                    alive[owner] = pod_exists(data_dir, owner)
                if not alive[owner]:  # under the lock, so no one else reclaims it
                    _drop(directory, ip)
                    with contextlib.suppress(ValueError):
                        taken.discard(int(ipaddress.ip_address(ip)))
            continue
        ip = str(_address(pool, found))
        if _link_lease(directory, ip, pod_uuid):
            return ip
        taken.add(found)  # a lease no one should have written without the lock


def _lease(pool: Pool, ip: str) -> Lease:
    return Lease(
        network=pool.network,
        ip=ip,
        prefix=pool.subnet.prefixlen,
        gateway=str(pool.gateway),
        subnet=str(pool.subnet),
    )


def release(data_dir: str, pod_uuid: str, network: str | None = None) -> list[str]:
    """Drop the pod's leases (on ``network``, or on every network); returns the
    ``<network>/<ip>`` names released. Idempotent."""
    root = os.path.join(data_dir, NETWORKS_DIR)
    if network is not None:
        names = [network]
    else:
        try:
            names = sorted(n for n in os.listdir(root) if AC_NAME.match(n))
        except FileNotFoundError:
            return []
    released: list[str] = []
    for name in names:
        if not os.path.isdir(os.path.join(root, name)):
            continue
        # under the lock: an allocator may be reclaiming the lease of a pod that is gone
        released += [f"{name}/{ip}" for ip in _release_in(_network_dir(data_dir, name), pod_uuid)]
    return released


def _release_in(directory: str, pod_uuid: str) -> list[str]:
    """Under the directory's lock, drop the leases ``pod_uuid`` holds there; their names."""
    with _locked(directory):
        mine = sorted(name for name, owner in _read_leases(directory).items() if owner == pod_uuid)
        for name in mine:
            _drop(directory, name)
    return mine


# --- host port leases ----------------------------------------------------------------------------

PORTS_DIR = "ports"


def take_port(data_dir: str, pod_uuid: str, protocol: str, port: int) -> None:
    """Lease host port ``port``/``protocol`` for a pod (``<data_dir>/ports/<proto>-<port>``):
    two pods never publish one host port, whatever host IPs they name. Taken by another live
    pod: InputError naming it. Idempotent for the pod that holds it."""
    if protocol not in ("tcp", "udp") or not 0 < port < 65536:
        raise InputError(f"host port: must be 1-65535/tcp|udp (got {port}/{protocol})")
    name = f"{protocol}-{port}"
    with _locked(os.path.join(data_dir, PORTS_DIR)) as directory:
        path = os.path.join(directory, name)
        owner = _read_owner(path)
        if owner == pod_uuid:
            return
        if owner is not None:
            if pod_exists(data_dir, owner):
                raise InputError(
                    f"host port {port}/{protocol}: is published by pod {owner} (got {port})"
                )
            os.unlink(path)
        if not _link_lease(directory, name, pod_uuid):
            raise RuntimeFailure(f"host port {port}/{protocol}: lease appeared meanwhile")


def port_holder(data_dir: str, protocol: str, port: int) -> str | None:
    """The pod UUID that leases host port ``port``/``protocol``, if any (read without the
    lock: a snapshot)."""
    return _read_owner(os.path.join(data_dir, PORTS_DIR, f"{protocol}-{port}"))


def address_holder(data_dir: str, network: str, ip: str) -> str | None:
    """The pod UUID that leases ``ip`` on ``network``, if any (a snapshot, like
    :func:`port_holder`)."""
    return _read_owner(os.path.join(_network_dir(data_dir, network), ip))


def release_ports(data_dir: str, pod_uuid: str) -> list[str]:
    """Drop the pod's host port leases; returns their names (``tcp-8080``). Idempotent."""
    directory = os.path.join(data_dir, PORTS_DIR)
    if not os.path.isdir(directory):
        return []
    return _release_in(directory, pod_uuid)
