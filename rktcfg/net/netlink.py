"""The rtnetlink calls pod networks need, in the host's or a pod's network namespace.

Messages are built and parsed with pyroute2's rtnetlink message classes (``ifinfmsg``,
``ifaddrmsg``, ``rtmsg``) and sent over a plain ``NETLINK_ROUTE`` socket, several requests in
one ``send`` where they belong together (an address, the link up and its routes), with one
acknowledgement read per request. pyroute2's ``IPRoute`` runs an asyncio loop per call, which
made a pod's setup 20-30 ms; this way the kernel's own work (~3 ms) is most of it.

For a pod's network namespace, the socket is made by the calling *thread* after a
``setns(2)`` into the namespace, which then moves straight back: a netlink socket stays bound
to the namespace it was created in, so no helper process is needed (pyroute2's ``netns=``
forks one per socket).

Every failure is a :class:`~rktcfg.errors.RuntimeFailure` naming the request and the object,
with the kernel's extended-ack text when it gives one (``add route 0.0.0.0/0 via 10.0.0.1 dev
eth0: Network is unreachable (ENETUNREACH): Nexthop has invalid gateway``); its ``__cause__``
is an ``OSError`` with the errno.

pyroute2's message modules are imported on the first request, never on import of this module,
and without pyroute2's package ``__init__`` (see :func:`message_class`).
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import struct
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from rktcfg.errors import RuntimeFailure

# <linux/netlink.h>, <linux/rtnetlink.h>, <linux/if.h>
NLM_F_REQUEST = 0x1
NLM_F_MULTI = 0x2
NLM_F_ACK = 0x4
NLM_F_DUMP = 0x300
NLM_F_EXCL = 0x200
NLM_F_CREATE = 0x400
NLM_F_CAPPED = 0x100
NLM_F_ACK_TLVS = 0x200
NLMSG_ERROR = 2
NLMSG_DONE = 3
NLMSGERR_ATTR_MSG = 1
NETLINK_CAP_ACK = 10
NETLINK_EXT_ACK = 11
SOL_NETLINK = 270
RTM_NEWLINK, RTM_DELLINK, RTM_GETLINK = 16, 17, 18
RTM_NEWADDR, RTM_GETADDR = 20, 22
RTM_NEWROUTE, RTM_GETROUTE = 24, 26
RT_TABLE_MAIN = 254
RTPROT_STATIC = 4
RT_SCOPE_UNIVERSE, RT_SCOPE_LINK = 0, 253
RTN_UNICAST = 1
IFF_UP = 0x1
RTEXT_FILTER_SKIP_STATS = 1 << 3
#: IFA_FLAGS: add the address without the prefix route the kernel would add for it.
IFA_F_NOPREFIXROUTE = 0x200
#: The longest interface name the kernel takes (IFNAMSIZ - 1).
IFNAME_MAX = 15

_HEADER = struct.Struct("=IHHII")  # struct nlmsghdr
_CREATE = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL
_CHANGE = NLM_F_REQUEST | NLM_F_ACK


@dataclass(frozen=True, slots=True, kw_only=True)
class Link:
    """What rktcfg reads back about an interface."""

    index: int
    name: str
    kind: str  # "veth", "bridge", "" for a device without a link kind
    alias: str
    mac: str
    master: int  # the index of the bridge it is a port of, 0 for none
    up: bool


@dataclass(slots=True, kw_only=True)
class Request:
    """One rtnetlink request: what it is in words, its encoded bytes, and the errnos that
    mean "done already" (EEXIST for an address or route that is there)."""

    what: str
    data: bytes
    seq: int
    ok: tuple[int, ...] = field(default_factory=tuple)


def _failure(what: str, code: int, text: str = "") -> RuntimeFailure:
    name = errno.errorcode.get(code, str(code))
    detail = f": {text}" if text else ""
    exc = RuntimeFailure(f"{what}: {os.strerror(code)} ({name}){detail}")
    exc.__cause__ = OSError(code, os.strerror(code))
    return exc


_MESSAGE_CLASSES: dict[str, Any] = {}
_MESSAGE_IMPORT = threading.Lock()


def message_class(name: str) -> Any:
    """pyroute2's rtnetlink message class ``name`` (``ifinfmsg``, ``ifaddrmsg``, ``rtmsg``).

    pyroute2's package ``__init__`` imports IPRoute, NDB, conntrack and asyncio (~250 ms on
    a pod's start); the message modules need none of that. So unless pyroute2 is imported
    already, its package module is made without running ``__init__`` (see
    :func:`_lazy_package`) and the message modules are imported below it."""
    found = _MESSAGE_CLASSES.get(name)
    if found is not None:
        return found
    with _MESSAGE_IMPORT:  # threads set up pods at once: one of them imports
        if name not in _MESSAGE_CLASSES:
            import importlib
            import sys

            if "pyroute2" not in sys.modules:
                _lazy_package("pyroute2")
            for module in ("ifinfmsg", "ifaddrmsg", "rtmsg"):
                loaded = importlib.import_module(f"pyroute2.netlink.rtnl.{module}")
                _MESSAGE_CLASSES[module] = getattr(loaded, module)
    return _MESSAGE_CLASSES[name]


def _lazy_package(package: str) -> None:
    """Put ``package`` in ``sys.modules`` as the module its ``__init__`` would fill, without
    running that yet: submodules import below it as usual, and the first lookup of any
    other attribute (``from pyroute2 import IPRoute``) runs ``__init__`` in that same module
    object, once. So there is only ever one pyroute2 module, whoever imports it later."""
    import importlib.util
    import sys
    import types

    spec = importlib.util.find_spec(package)
    if spec is None or spec.loader is None or spec.submodule_search_locations is None:
        return  # not a package we can load lazily: the first import runs __init__
    module = types.ModuleType(package)
    module.__spec__ = spec
    module.__loader__ = spec.loader
    module.__file__ = spec.origin
    module.__path__ = list(spec.submodule_search_locations)
    module.__package__ = package
    loader = spec.loader
    lock = threading.RLock()  # re-entered by __init__'s own imports, in its thread
    ran: list[bool] = []

    def __getattr__(attr: str) -> Any:
        if attr.startswith("__") and attr != "__all__":  # probes: no reason to load it all
            raise AttributeError(attr)
        if importlib.util.find_spec(f"{package}.{attr}") is not None:
            # a submodule not imported yet: `from pyroute2 import config` imports it then
            raise AttributeError(f"module {package!r} has no attribute {attr!r}")
        with lock:
            if not ran:
                ran.append(True)
                loader.exec_module(module)
        try:
            return module.__dict__[attr]
        except KeyError:
            raise AttributeError(f"module {package!r} has no attribute {attr!r}") from None

    module.__getattr__ = __getattr__  # type: ignore[method-assign]
    sys.modules[package] = module


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
    the one bind-mounted at ``netns_path``. A context manager; close it when done.

    Builders (``veth``, ``address``, ``route``, ``up``, ...) return a :class:`Request`;
    :meth:`run` sends requests in one batch and raises for the first that failed. The
    one-call methods (``add_veth``, ``add_address``, ...) run a single request."""

    def __init__(self, netns_path: str | None = None) -> None:
        self.where = "" if netns_path is None else f" in {netns_path}"
        family, kind, proto = socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE
        if netns_path is None:
            self._sock = socket.socket(family, kind | socket.SOCK_CLOEXEC, proto)
        else:
            self._sock = socket_in_netns(netns_path, family, kind, proto)
        try:
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
            for option in (NETLINK_CAP_ACK, NETLINK_EXT_ACK):
                with contextlib.suppress(OSError):  # an old kernel: plain errors, no text
                    self._sock.setsockopt(SOL_NETLINK, option, 1)
            self._sock.bind((0, 0))
        except BaseException:
            self._sock.close()
            raise
        self._seq = 0

    def __enter__(self) -> Netlink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._sock.close()

    # --- the wire --------------------------------------------------------------------------

    def _encode(
        self,
        cls: Any,
        kind: int,
        flags: int,
        fields: dict[str, Any],
        attrs: list[tuple[str, Any]],
    ) -> tuple[bytes, int]:
        self._seq += 1
        msg = cls()
        for key, value in fields.items():
            msg[key] = value
        msg["attrs"] = attrs
        msg["header"]["type"] = kind
        msg["header"]["flags"] = flags
        msg["header"]["sequence_number"] = self._seq
        msg.encode()
        return bytes(msg.data), self._seq

    def _request(
        self,
        what: str,
        cls: Any,
        kind: int,
        flags: int,
        fields: dict[str, Any],
        attrs: list[tuple[str, Any]],
        ok: tuple[int, ...] = (),
    ) -> Request:
        data, seq = self._encode(cls, kind, flags, fields, attrs)
        return Request(what=what + self.where, data=data, seq=seq, ok=ok)

    def _messages(self) -> Iterable[tuple[int, int, int, bytes]]:
        """(type, flags, seq, whole message) for each message of one datagram."""
        data = self._sock.recv(1 << 20)
        offset = 0
        while offset + _HEADER.size <= len(data):
            length, kind, flags, seq, _ = _HEADER.unpack_from(data, offset)
            if length < _HEADER.size:
                break
            yield kind, flags, seq, data[offset : offset + length]
            offset += (length + 3) & ~3

    @staticmethod
    def _error(message: bytes, flags: int) -> tuple[int, str]:
        """(errno, extended-ack text) of an NLMSG_ERROR message; errno 0 is an ack."""
        (code,) = struct.unpack_from("=i", message, _HEADER.size)
        text = ""
        if code and flags & NLM_F_ACK_TLVS:
            (inner,) = struct.unpack_from("=I", message, _HEADER.size + 4)
            offset = _HEADER.size + 4 + (_HEADER.size if flags & NLM_F_CAPPED else inner)
            while offset + 4 <= len(message):
                size, kind = struct.unpack_from("=HH", message, offset)
                if size < 4:
                    break
                if kind & 0x3FFF == NLMSGERR_ATTR_MSG:
                    text = (
                        message[offset + 4 : offset + size].split(b"\0")[0].decode(errors="replace")
                    )
                offset += (size + 3) & ~3
        return -code, text

    def run(self, *requests: Request) -> None:
        """Send ``requests`` in one batch (the kernel handles them in order) and wait for
        every acknowledgement; raise for the first that failed."""
        if not requests:
            return
        self._sock.send(b"".join(r.data for r in requests))
        pending = {r.seq: r for r in requests}
        failure: RuntimeFailure | None = None
        while pending:
            for kind, flags, seq, message in self._messages():
                request = pending.pop(seq, None)
                if request is None or kind != NLMSG_ERROR:
                    continue
                code, text = self._error(message, flags)
                if code and code not in request.ok and failure is None:
                    failure = _failure(request.what, code, text)
        if failure is not None:
            raise failure

    def _fetch(self, request: Request, cls: Any) -> list[Any]:
        """Send a get or dump request; the decoded replies (an error raises)."""
        self._sock.send(request.data)
        found: list[Any] = []
        while True:
            for kind, flags, seq, message in self._messages():
                if seq != request.seq:
                    continue
                if kind == NLMSG_DONE:
                    return found
                if kind == NLMSG_ERROR:
                    code, text = self._error(message, flags)
                    if code:
                        raise _failure(request.what, code, text)
                    return found
                msg = cls(message)
                msg.decode()
                found.append(msg)
                if not flags & NLM_F_MULTI:
                    return found

    # --- links -----------------------------------------------------------------------------

    def link(self, name: str) -> Link | None:
        """The interface called ``name``, or None."""
        ifinfmsg = message_class("ifinfmsg")

        attrs = [("IFLA_IFNAME", name), ("IFLA_EXT_MASK", RTEXT_FILTER_SKIP_STATS)]
        request = self._request(f"get link {name}", ifinfmsg, RTM_GETLINK, NLM_F_REQUEST, {}, attrs)
        try:
            msgs = self._fetch(request, ifinfmsg)
        except RuntimeFailure as exc:
            if isinstance(exc.__cause__, OSError) and exc.__cause__.errno == errno.ENODEV:
                return None
            raise
        return _link(msgs[0]) if msgs else None

    def links(self, master: int | None = None) -> list[Link]:
        """Every interface (with ``master``: the ports of that bridge)."""
        ifinfmsg = message_class("ifinfmsg")

        attrs: list[tuple[str, Any]] = [("IFLA_EXT_MASK", RTEXT_FILTER_SKIP_STATS)]
        if master:
            attrs.append(("IFLA_MASTER", master))
        request = self._request(
            "list links", ifinfmsg, RTM_GETLINK, NLM_F_REQUEST | NLM_F_DUMP, {}, attrs
        )
        found = [_link(msg) for msg in self._fetch(request, ifinfmsg)]
        return [link for link in found if master is None or link.master == master]

    def ports(self, bridge_index: int) -> list[str]:
        """The names of the interfaces enslaved to the bridge with ``bridge_index``."""
        return sorted(link.name for link in self.links(master=bridge_index))

    def veth(self, name: str, peer: str, peer_netns_fd: int | None = None) -> Request:
        """A veth pair: ``name`` here, ``peer`` in the namespace open as ``peer_netns_fd``
        (here when None). Both ends start down."""
        ifinfmsg = message_class("ifinfmsg")

        peer_attrs: list[tuple[str, Any]] = [("IFLA_IFNAME", peer)]
        if peer_netns_fd is not None:
            peer_attrs.append(("IFLA_NET_NS_FD", peer_netns_fd))
        info = {
            "attrs": [
                ("IFLA_INFO_KIND", "veth"),
                ("IFLA_INFO_DATA", {"attrs": [("VETH_INFO_PEER", {"attrs": peer_attrs})]}),
            ]
        }
        attrs = [("IFLA_IFNAME", name), ("IFLA_LINKINFO", info)]
        return self._request(
            f"add veth {name} (peer {peer})", ifinfmsg, RTM_NEWLINK, _CREATE, {}, attrs
        )

    def bridge(self, name: str) -> Request:
        ifinfmsg = message_class("ifinfmsg")

        info = {"attrs": [("IFLA_INFO_KIND", "bridge")]}
        attrs = [("IFLA_IFNAME", name), ("IFLA_LINKINFO", info)]
        return self._request(f"add bridge {name}", ifinfmsg, RTM_NEWLINK, _CREATE, {}, attrs)

    def change_link(
        self,
        index: int,
        name: str,
        *,
        up: bool = False,
        alias: str | None = None,
        master: int | None = None,
    ) -> Request:
        """Set a link up, its alias, and/or make it a port of bridge ``master``."""
        ifinfmsg = message_class("ifinfmsg")

        attrs: list[tuple[str, Any]] = []
        parts = []
        if alias is not None:
            attrs.append(("IFLA_IFALIAS", alias))
            parts.append(f"alias {alias!r}")
        if master is not None:
            attrs.append(("IFLA_MASTER", master))
            parts.append(f"master {master}")
        if up:
            parts.append("up")
        fields = {"index": index, "flags": IFF_UP if up else 0, "change": IFF_UP if up else 0}
        what = f"set link {name} {' '.join(parts)}"
        return self._request(what, ifinfmsg, RTM_NEWLINK, _CHANGE, fields, attrs)

    def delete_link(self, index: int, name: str) -> bool:
        """Delete a link; False if it was already gone (deleting a veth end removes its
        peer too)."""
        ifinfmsg = message_class("ifinfmsg")

        request = self._request(
            f"delete link {name}", ifinfmsg, RTM_DELLINK, _CHANGE, {"index": index}, []
        )
        try:
            self.run(request)
        except RuntimeFailure as exc:
            if isinstance(exc.__cause__, OSError) and exc.__cause__.errno in (
                errno.ENODEV,
                errno.ENOENT,
            ):
                return False
            raise
        return True

    # --- addresses and routes --------------------------------------------------------------

    def address(
        self, index: int, name: str, address: str, prefix: int, *, no_prefix_route: bool = False
    ) -> Request:
        """Add IPv4 ``address/prefix`` to the link; with ``no_prefix_route`` the kernel adds
        no route for the prefix. One that is there already is fine."""
        ifaddrmsg = message_class("ifaddrmsg")

        attrs: list[tuple[str, Any]] = [("IFA_LOCAL", address), ("IFA_ADDRESS", address)]
        if no_prefix_route:
            attrs.append(("IFA_FLAGS", IFA_F_NOPREFIXROUTE))
        fields = {"family": socket.AF_INET, "prefixlen": prefix, "index": index}
        what = f"add address {address}/{prefix} to {name}"
        return self._request(
            what, ifaddrmsg, RTM_NEWADDR, _CREATE, fields, attrs, ok=(errno.EEXIST,)
        )

    def route(
        self,
        destination: str,
        *,
        oif: int,
        name: str,
        gateway: str | None = None,
        on_link: bool = False,
        exclusive: bool = False,
    ) -> Request:
        """Add an IPv4 route to ``destination`` (``10.0.0.0/24``, ``0.0.0.0/0``) out of link
        ``oif``, via ``gateway`` or (``on_link``) straight onto the link. One that is there
        already is fine, unless ``exclusive`` (then it is EEXIST)."""
        rtmsg = message_class("rtmsg")

        address, _, length = destination.partition("/")
        prefix = int(length or 32)
        attrs: list[tuple[str, Any]] = [("RTA_OIF", oif)]
        if prefix:
            attrs.append(("RTA_DST", address))
        if gateway is not None:
            attrs.append(("RTA_GATEWAY", gateway))
        fields = {
            "family": socket.AF_INET,
            "dst_len": prefix,
            "table": RT_TABLE_MAIN,
            "proto": RTPROT_STATIC,
            "scope": RT_SCOPE_LINK if on_link else RT_SCOPE_UNIVERSE,
            "type": RTN_UNICAST,
        }
        via = f" via {gateway}" if gateway else ""
        return self._request(
            f"add route {destination}{via} dev {name}",
            rtmsg,
            RTM_NEWROUTE,
            _CREATE,
            fields,
            attrs,
            ok=() if exclusive else (errno.EEXIST,),
        )

    def routes(self) -> list[dict[str, Any]]:
        """The main table's IPv4 routes: ``{"dst": "10.0.0.0/24" | "default", "gateway",
        "oif", "scope"}`` (for tests and status)."""
        rtmsg = message_class("rtmsg")

        request = self._request(
            "list routes",
            rtmsg,
            RTM_GETROUTE,
            NLM_F_REQUEST | NLM_F_DUMP,
            {"family": socket.AF_INET},
            [],
        )
        found: list[dict[str, Any]] = []
        for msg in self._fetch(request, rtmsg):
            table = msg.get_attr("RTA_TABLE") or msg["table"]
            if table != RT_TABLE_MAIN:
                continue
            dst = msg.get_attr("RTA_DST")
            found.append(
                {
                    "dst": f"{dst}/{msg['dst_len']}" if dst else "default",
                    "gateway": msg.get_attr("RTA_GATEWAY"),
                    "oif": msg.get_attr("RTA_OIF"),
                    "scope": msg["scope"],
                }
            )
        return found

    def addresses(self, index: int | None = None) -> list[tuple[int, str, int]]:
        """The IPv4 addresses (of link ``index``, or all) as (index, address, prefix)."""
        ifaddrmsg = message_class("ifaddrmsg")

        request = self._request(
            "list addresses",
            ifaddrmsg,
            RTM_GETADDR,
            NLM_F_REQUEST | NLM_F_DUMP,
            {"family": socket.AF_INET},
            [],
        )
        return [
            (int(msg["index"]), str(msg.get_attr("IFA_ADDRESS")), int(msg["prefixlen"]))
            for msg in self._fetch(request, ifaddrmsg)
            if index is None or msg["index"] == index
        ]

    # --- one request at a time -------------------------------------------------------------

    def add_veth(self, name: str, peer: str, peer_netns_fd: int | None = None) -> None:
        self.run(self.veth(name, peer, peer_netns_fd))

    def add_bridge(self, name: str) -> None:
        self.run(self.bridge(name))

    def set_link(self, index: int, name: str, **changes: Any) -> None:
        self.run(self.change_link(index, name, **changes))


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
        up=bool(msg["flags"] & IFF_UP),
    )


def index_of(name: str) -> int | None:
    """The index of interface ``name`` in the calling thread's namespace, or None (an ioctl:
    much cheaper than a netlink get)."""
    try:
        return socket.if_nametoindex(name)
    except OSError:
        return None


def set_interface_sysctl(ifname: str, key: str, value: str) -> None:
    """Write ``net.ipv4.conf.<ifname>.<key>`` in the calling thread's network namespace
    (only ever for interfaces rktcfg made: ``forwarding``, ``rp_filter``,
    ``route_localnet``)."""
    if "/" in ifname or ifname in ("all", "default", ".", "..", "") or "/" in key:
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
