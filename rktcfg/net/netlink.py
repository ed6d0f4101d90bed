"""The rtnetlink calls pod networks need, through pyroute2, in the host's or a pod's netns.

:class:`Netlink` is one rtnetlink connection. For a pod's network namespace, the socket is
made by the calling *thread* after a ``setns(2)`` into the namespace, which then moves straight
back: a netlink socket stays bound to the namespace it was created in, so no helper process
is forked (pyroute2's own ``netns=`` forks one per socket). The thread's namespace is
restored before anything else runs; if even that fails, the error says the thread is lost.

Every failure is a :class:`~rktcfg.errors.RuntimeFailure` naming the call and the object
(``add veth rk1a2b3c4d0 (peer eth0): File exists (EEXIST)``), chained to pyroute2's
``NetlinkError`` (its ``code`` is the errno).

pyroute2 is imported when a connection is opened, never on import of this module.
"""

from __future__ import annotations

import errno
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rktcfg.errors import RuntimeFailure

#: ifa_flags: add the address without the prefix route the kernel would add for it.
IFA_F_NOPREFIXROUTE = 0x200
#: The longest interface name the kernel takes (IFNAMSIZ - 1).
IFNAME_MAX = 15


@dataclass(frozen=True, slots=True, kw_only=True)
class Link:
    """What rktcfg reads back about an interface."""

    index: int
    name: str
    kind: str  # "veth", "bridge", "" for a physical device
    alias: str
    mac: str
    master: int  # the index of the bridge it is a port of, 0 for none
    up: bool


def _failure(what: str, code: int) -> RuntimeFailure:
    name = errno.errorcode.get(code, str(code))
    return RuntimeFailure(f"{what}: {os.strerror(code)} ({name})")


def socket_in_netns(netns_path: str, family: int, kind: int, proto: int = 0) -> socket.socket:
    """A socket created inside the network namespace at ``netns_path`` (a bind-mounted
    ``/proc/<pid>/ns/net``), by this thread, which stays in its own namespace."""
    from rktcfg.stage1 import linux

    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        try:
            target = os.open(netns_path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as exc:
            raise RuntimeFailure(f"open network namespace {netns_path}: {exc.strerror}") from exc
        try:
            linux.setns(target, linux.CLONE_NEWNET)
        except RuntimeFailure as exc:
            raise RuntimeFailure(f"enter network namespace {netns_path}: {exc}") from exc
        finally:
            os.close(target)
        try:
            return socket.socket(family, kind | socket.SOCK_CLOEXEC, proto)
        finally:
            try:
                linux.setns(own, linux.CLONE_NEWNET)
            except RuntimeFailure as exc:  # pragma: no cover - the kernel lets us back
                raise RuntimeFailure(
                    f"return from network namespace {netns_path}: {exc} (this thread is "
                    "left in the pod's network namespace)"
                ) from exc
    finally:
        os.close(own)


class Netlink:
    """An rtnetlink connection to the host's network namespace (``netns_path`` None) or to
    the one bind-mounted at ``netns_path``. A context manager; close it when done."""

    def __init__(self, netns_path: str | None = None) -> None:
        from pyroute2 import IPRoute

        self.where = "host" if netns_path is None else netns_path
        if netns_path is None:
            self._ipr: Any = IPRoute(groups=0)
        else:
            sock = socket_in_netns(
                netns_path, socket.AF_NETLINK, socket.SOCK_DGRAM, socket.NETLINK_ROUTE
            )
            try:
                self._ipr = IPRoute(groups=0, fileno=sock.fileno())
            except BaseException:
                sock.close()
                raise
            sock.detach()  # the IPRoute owns the descriptor now

    def __enter__(self) -> Netlink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._ipr.close()

    def _call(self, what: str, method: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        from pyroute2.netlink.exceptions import NetlinkError

        try:
            return method(*args, **kwargs)
        except NetlinkError as exc:
            suffix = "" if self.where == "host" else f" in {self.where}"
            raise _failure(what + suffix, exc.code) from exc

    # --- reading ---------------------------------------------------------------------------

    def link(self, name: str) -> Link | None:
        """The interface called ``name``, or None."""
        from pyroute2.netlink.exceptions import NetlinkError

        try:
            msgs = self._ipr.link("get", ifname=name)
        except NetlinkError as exc:
            if exc.code == errno.ENODEV:
                return None
            raise _failure(f"get link {name}", exc.code) from exc
        return _link(msgs[0])

    def links(self) -> list[Link]:
        return [_link(msg) for msg in self._call("list links", self._ipr.link, "dump")]

    def ports(self, bridge_index: int) -> list[str]:
        """The names of the interfaces enslaved to the bridge with ``bridge_index``."""
        return sorted(link.name for link in self.links() if link.master == bridge_index)

    # --- links -----------------------------------------------------------------------------

    def add_veth(self, name: str, peer: str, peer_netns_fd: int | None = None) -> None:
        """A veth pair: ``name`` here, ``peer`` in the namespace open as ``peer_netns_fd``
        (here when None). Both ends start down."""
        spec: dict[str, Any] = {"ifname": peer}
        if peer_netns_fd is not None:
            spec["net_ns_fd"] = peer_netns_fd
        self._call(
            f"add veth {name} (peer {peer})",
            self._ipr.link,
            "add",
            ifname=name,
            kind="veth",
            peer=spec,
        )

    def add_bridge(self, name: str) -> None:
        self._call(f"add bridge {name}", self._ipr.link, "add", ifname=name, kind="bridge")

    def set_alias(self, index: int, alias: str) -> None:
        self._call(f"set alias of link {index}", self._ipr.link, "set", index=index, ifalias=alias)

    def set_up(self, index: int, *, master: int | None = None) -> None:
        """Bring the link up (and first make it a port of bridge ``master``)."""
        what = f"set link {index} up" + (f" as a port of {master}" if master else "")
        extra: dict[str, Any] = {"master": master} if master else {}
        self._call(what, self._ipr.link, "set", index=index, state="up", **extra)

    def delete_link(self, index: int, name: str) -> bool:
        """Delete a link; False if it was already gone (deleting a veth end removes its
        peer too)."""
        from pyroute2.netlink.exceptions import NetlinkError

        try:
            self._ipr.link("del", index=index)
            return True
        except NetlinkError as exc:
            if exc.code in (errno.ENODEV, errno.ENOENT):
                return False
            raise _failure(f"delete link {name}", exc.code) from exc

    # --- addresses and routes --------------------------------------------------------------

    def add_address(
        self, index: int, address: str, prefix: int, *, no_prefix_route: bool = False
    ) -> None:
        """Add ``address/prefix``; with ``no_prefix_route`` the kernel adds no route for
        the prefix. An address that is there already is fine."""
        from pyroute2.netlink.exceptions import NetlinkError

        extra: dict[str, Any] = {"flags": IFA_F_NOPREFIXROUTE} if no_prefix_route else {}
        try:
            self._ipr.addr("add", index=index, address=address, prefixlen=prefix, **extra)
        except NetlinkError as exc:
            if exc.code != errno.EEXIST:
                suffix = "" if self.where == "host" else f" in {self.where}"
                raise _failure(
                    f"add address {address}/{prefix} to link {index}{suffix}", exc.code
                ) from exc

    def add_route(
        self,
        destination: str,
        *,
        oif: int,
        gateway: str | None = None,
        on_link: bool = False,
    ) -> None:
        """Add a route to ``destination`` (``10.0.0.0/24``, ``0.0.0.0/0``) out of link
        ``oif``, via ``gateway`` or (``on_link``) straight onto the link. One that is there
        already is fine."""
        from pyroute2.netlink.exceptions import NetlinkError

        kwargs: dict[str, Any] = {"dst": destination, "oif": oif}
        if gateway is not None:
            kwargs["gateway"] = gateway
        if on_link:
            kwargs["scope"] = "link"
        try:
            self._ipr.route("add", **kwargs)
        except NetlinkError as exc:
            if exc.code != errno.EEXIST:
                via = f" via {gateway}" if gateway else ""
                suffix = "" if self.where == "host" else f" in {self.where}"
                raise _failure(
                    f"add route {destination}{via} dev {oif}{suffix}", exc.code
                ) from exc

    def routes(self) -> list[dict[str, Any]]:
        """The main table's IPv4 routes: ``{"dst": "10.0.0.0/24" | "default", "gateway",
        "oif"}`` (for tests and status)."""
        found: list[dict[str, Any]] = []
        for msg in self._call("list routes", self._ipr.route, "dump", family=socket.AF_INET):
            if msg.get_attr("RTA_TABLE") not in (None, 254):
                continue
            dst = msg.get_attr("RTA_DST")
            found.append(
                {
                    "dst": f"{dst}/{msg['dst_len']}" if dst else "default",
                    "gateway": msg.get_attr("RTA_GATEWAY"),
                    "oif": msg.get_attr("RTA_OIF"),
                }
            )
        return found

    def addresses(self, index: int) -> list[tuple[str, int]]:
        """The IPv4 addresses on link ``index`` as (address, prefix)."""
        msgs = self._call("list addresses", self._ipr.addr, "dump", family=socket.AF_INET)
        return [
            (msg.get_attr("IFA_ADDRESS"), msg["prefixlen"]) for msg in msgs if msg["index"] == index
        ]


def _link(msg: Any) -> Link:
    info = msg.get_attr("IFLA_LINKINFO")
    kind = info.get_attr("IFLA_INFO_KIND") if info is not None else None
    return Link(
        index=int(msg["index"]),
        name=str(msg.get_attr("IFLA_IFNAME")),
        kind=str(kind or ""),
        alias=str(msg.get_attr("IFLA_IFALIAS") or ""),
        mac=str(msg.get_attr("IFLA_ADDRESS") or ""),
        master=int(msg.get_attr("IFLA_MASTER") or 0),
        up=bool(msg["flags"] & 1),
    )


def set_interface_sysctl(ifname: str, key: str, value: str) -> None:
    """Write ``net.ipv4.conf.<ifname>.<key>`` in the calling thread's network namespace
    (only ever for interfaces rktcfg made: ``forwarding``, ``route_localnet``)."""
    if "/" in ifname or ifname in ("all", "default", ".", "..") or "/" in key:
        raise ValueError(f"not an interface sysctl: {ifname}.{key}")
    path = f"/proc/sys/net/ipv4/conf/{ifname}/{key}"
    try:
        with open(path, "w", encoding="ascii") as handle:
            handle.write(value)
    except OSError as exc:
        raise RuntimeFailure(f"set net.ipv4.conf.{ifname}.{key}={value}: {exc.strerror}") from exc


def ip_forward_enabled() -> bool:
    """Whether the host forwards IPv4 between all its interfaces (``net.ipv4.ip_forward``)."""
    try:
        with open("/proc/sys/net/ipv4/ip_forward", encoding="ascii") as handle:
            return handle.read().strip() == "1"
    except OSError:
        return False
