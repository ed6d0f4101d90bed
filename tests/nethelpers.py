"""What the network tests share: running code inside a network namespace (a forked child
that setns()es into it), a tiny HTTP-ish server and client, and an "outside" client: a
namespace linked to the host by a veth of its own, standing in for another machine."""

from __future__ import annotations

import contextlib
import ipaddress
import os
import pickle
import signal
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rktcfg.net.netlink import Netlink, set_interface_sysctl
from rktcfg.stage1 import linux


def enter_netns(netns: str | None) -> None:
    """setns() this process into the namespace mounted at ``netns`` (None: stay)."""
    if netns is None:
        return
    fd = os.open(netns, os.O_RDONLY)
    try:
        linux.setns(fd, linux.CLONE_NEWNET)
    finally:
        os.close(fd)


def in_netns(netns: str | None, work: Callable[[], Any], timeout: float = 20) -> Any:
    """``work()`` in a forked child that setns()es into ``netns``; its result, or its
    exception re-raised as AssertionError."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child
        code = 0
        try:
            os.close(read_end)
            signal.alarm(int(timeout))
            enter_netns(netns)
            payload = pickle.dumps(("ok", work()))
        except BaseException as exc:
            payload, code = pickle.dumps(("error", f"{type(exc).__name__}: {exc}")), 1
        try:
            os.write(write_end, payload)
        finally:
            os._exit(code)
    os.close(write_end)
    data = b""
    while chunk := os.read(read_end, 65536):
        data += chunk
    os.close(read_end)
    os.waitpid(pid, 0)
    if not data:
        raise AssertionError(f"the child in {netns} died without an answer")
    kind, value = pickle.loads(data)
    if kind != "ok":
        raise AssertionError(f"in {netns}: {value}")
    return value


@dataclass
class Server:
    """A forked HTTP-ish server inside a network namespace (it also keeps that namespace
    alive while it runs)."""

    pid: int
    port: int

    def stop(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(self.pid, 0)


def serve(netns: str | None, port: int, address: str = "0.0.0.0") -> Server:
    """Answer each connection with ``hello from <its own address> to <the peer>``."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(read_end)
            signal.alarm(120)  # never outlive a hung test by long
            enter_netns(netns)
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
                listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                listener.bind((address, port))
                listener.listen(16)
                os.write(write_end, b"ready")
                os.close(write_end)
                while True:
                    conn, peer = listener.accept()
                    with conn:
                        conn.settimeout(5)
                        conn.recv(4096)
                        me = conn.getsockname()[0]
                        conn.sendall(
                            f"HTTP/1.0 200 OK\r\n\r\nhello from {me} to {peer[0]}".encode()
                        )
        finally:
            os._exit(1)
    os.close(write_end)
    ready = os.read(read_end, 16)
    os.close(read_end)
    if ready != b"ready":
        os.waitpid(pid, 0)
        raise AssertionError(f"server in {netns} on {address}:{port} did not start")
    return Server(pid=pid, port=port)


def fetch(netns: str | None, address: str, port: int) -> str:
    """A request to ``address:port`` from inside ``netns`` (None: the host); the body."""

    def work() -> str:
        with socket.create_connection((address, port), timeout=5) as conn:
            conn.sendall(b"GET / HTTP/1.0\r\n\r\n")
            data = b""
            while chunk := conn.recv(4096):
                data += chunk
        return data.decode().split("\r\n\r\n", 1)[1]

    return in_netns(netns, work) if netns is not None else work()


def unreachable(netns: str, address: str, port: int) -> str:
    """The error a connection from ``netns`` to ``address:port`` gets."""

    def work() -> str:
        try:
            socket.create_connection((address, port), timeout=1).close()
        except OSError as exc:
            return type(exc).__name__ + ": " + str(exc)
        return "connected"

    return str(in_netns(netns, work))


def link_outside(netns: str, link: str, host_ip: str, client_ip: str, prefix: int = 30) -> None:
    """Make ``netns`` a client on "another host": a veth ``link`` on the host (``host_ip``)
    to ``eth0`` in ``netns`` (``client_ip``, default route via ``host_ip``). Only ``link``
    forwards (not ip_forward); the caller deletes ``link`` afterwards (its peer goes too)."""
    with Netlink() as host:
        fd = os.open(netns, os.O_RDONLY)
        try:
            host.add_veth(link, "eth0", peer_netns_fd=fd)
        finally:
            os.close(fd)
        end = host.link(link)
        assert end is not None
        host.run(
            host.address(end.index, link, host_ip, prefix),
            host.change_link(end.index, link, up=True),
        )
    set_interface_sysctl(link, "forwarding", "1")
    with Netlink(netns) as inside:
        eth0 = inside.link("eth0")
        assert eth0 is not None
        inside.run(
            inside.address(eth0.index, "eth0", client_ip, prefix),
            inside.change_link(eth0.index, "eth0", up=True),
            inside.route("0.0.0.0/0", oif=eth0.index, name="eth0", gateway=host_ip),
        )


def delete_links(names: list[str] | tuple[str, ...]) -> None:
    """Delete the host links ``names`` that exist."""
    with Netlink() as host:
        for name in names:
            found = host.link(name)
            if found is not None:
                host.delete_link(found.index, name)


def routes_overlapping(network: ipaddress.IPv4Network | ipaddress.IPv6Network) -> list[str]:
    """The host's routes that overlap ``network`` (a test range must not shadow them)."""
    with Netlink() as host:
        return [
            route["dst"]
            for route in host.routes()
            if route["dst"] != "default" and ipaddress.ip_network(route["dst"]).overlaps(network)
        ]
