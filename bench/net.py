"""Pod networks: setup time per pod, and published-port throughput against direct.

1. Setup: ``rktcfg.net.podnet.setup`` of a ptp network (veth pair, addresses, routes, the
   address lease and the record, fsynced) for N pods in namespaces made beforehand, median
   per pod (target <= 30 ms). Baseline in the same run, interleaved: the same veth,
   addresses and routes made by ip(8) commands (iproute2), where it is installed. Teardown
   is timed too, and ``rktcfg run /bin/true`` with ``--net default`` against ``--net none``
   shows what a network costs a whole pod start (CLI imports included).
2. Throughput: a bulk TCP transfer (``--mib`` MiB with sendfile) to a server in a pod's
   namespace, through the published host port (nftables DNAT) against straight to the pod's
   IP, from the host (127.0.0.1:hostPort against podIP:port) and from an "outside" client
   namespace linked to the host by a veth of its own (hostIP:hostPort against podIP:port).
   Median of ``--runs``, interleaved; target: published >= 0.8x direct.

Everything lives in 10.215.0.0/16, a private nft table ``rktcfg-bench-<pid>`` and a
temporary data directory, and is removed at the end. Needs root and nft.
Usage: .venv/bin/python bench/net.py [--pods N] [--runs N] [--mib N]
"""

from __future__ import annotations

import argparse
import compileall
import contextlib
import ipaddress
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid as uuidlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from nethelpers import (  # noqa: E402
    delete_links,
    enter_netns,
    in_netns,
    link_outside,
    routes_overlapping,
)
from pod_start import bench_image  # noqa: E402

from rktcfg.net import nft, podnet  # noqa: E402

RKTCFG = str(Path(sys.executable).parent / "rktcfg")
RANGE = ipaddress.ip_network("10.215.0.0/16")
TABLE = f"rktcfg-bench-{os.getpid()}"
OUTSIDE_LINK = f"rkb{os.getpid() % 100000}o"
BASELINE_PREFIX = f"rkb{os.getpid() % 100000}v"
SETUP_TARGET_S = 0.030
THROUGHPUT_TARGET = 0.8


def ptp(third: int, **extra: Any) -> dict[str, Any]:
    net = {
        "name": f"bench{third}",
        "type": "ptp",
        "subnet": f"10.215.{third}.0/24",
        "gateway": "",
        "ip_masq": False,
        "default_route": True,
    }
    return {**net, **extra}


class Pods:
    """Pod directories with namespaces, below a data directory; removes them all."""

    def __init__(self, data: str) -> None:
        self.data = data
        self.dirs: list[str] = []

    def new(self) -> tuple[str, str, str]:
        pod_uuid = str(uuidlib.uuid4())
        pod_dir = os.path.join(self.data, "pods", "run", pod_uuid)
        os.makedirs(pod_dir)
        self.dirs.append(pod_dir)
        return pod_uuid, pod_dir, podnet.create_netns(pod_dir)

    def close(self) -> None:
        for pod_dir in self.dirs:
            with contextlib.suppress(Exception):
                podnet.teardown(pod_dir, data_dir=self.data)
            with contextlib.suppress(Exception):
                podnet.remove_netns(os.path.join(pod_dir, podnet.NETNS_FILE))


# --- 1. setup -----------------------------------------------------------------------------------


def ip_baseline(netns: str, n: int) -> float:
    """The veth, addresses and routes of a ptp pod made with ip(8); seconds. Removed after."""
    host, peer = f"{BASELINE_PREFIX}{n}", "eth0"
    gateway, address = f"10.215.9.{2 * n + 1}", f"10.215.9.{2 * n + 2}"
    inside = ["nsenter", f"--net={netns}", "ip"]
    steps = [
        ["ip", "link", "add", host, "type", "veth", "peer", "name", peer, "netns", netns],
        ["ip", "addr", "add", f"{gateway}/32", "dev", host],
        ["ip", "link", "set", host, "up"],
        ["ip", "route", "add", f"{address}/32", "dev", host, "src", gateway],
        [*inside, "addr", "add", f"{address}/24", "dev", peer],
        [*inside, "link", "set", peer, "up"],
        [*inside, "route", "add", f"{gateway}/32", "dev", peer],
        [*inside, "route", "add", "default", "via", gateway, "dev", peer],
    ]
    begin = time.perf_counter()
    for step in steps:
        subprocess.run(step, check=True, stdout=subprocess.DEVNULL)
    took = time.perf_counter() - begin
    delete_links([host])
    return took


def bench_setup(data: str, count: int) -> dict[str, list[float]]:
    pods = Pods(data)
    samples: dict[str, list[float]] = {"rktcfg": [], "teardown": [], "ip(8)": []}
    baseline = shutil.which("ip") is not None and shutil.which("nsenter") is not None
    try:
        net = ptp(1)
        _, first, netns = pods.new()  # the first one pays for imports
        podnet.setup(first, netns, [net], data_dir=data, pod_uuid=os.path.basename(first))
        for n in range(count):
            pod_uuid, pod_dir, netns = pods.new()
            begin = time.perf_counter()
            podnet.setup(pod_dir, netns, [net], data_dir=data, pod_uuid=pod_uuid)
            samples["rktcfg"].append(time.perf_counter() - begin)
            begin = time.perf_counter()
            podnet.teardown(pod_dir, data_dir=data)
            samples["teardown"].append(time.perf_counter() - begin)
            if baseline and n < 100:
                _, _, other = pods.new()
                samples["ip(8)"].append(ip_baseline(other, n))
    finally:
        pods.close()
    return samples


def cli_start(work: Path, runs: int) -> dict[str, list[float]]:
    """``rktcfg run /bin/true`` with --net none and --net default, interleaved; seconds."""
    _, aci = bench_image(work)
    data = str(work / "cli-data")
    env = {**os.environ, "XDG_CACHE_HOME": str(work / "cache")}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    base = [RKTCFG, "--dir", data]
    quiet = {"env": env, "check": True, "stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    subprocess.run([*base, "fetch", str(aci)], **quiet)  # type: ignore[call-overload]
    samples: dict[str, list[float]] = {"none": [], "default": []}
    try:
        for _ in range(runs + 1):
            for net in samples:
                begin = time.perf_counter()
                cmd = [*base, "run", "--stage1", "default", "--net", net, "example.com/bench"]
                subprocess.run(cmd, **quiet)  # type: ignore[call-overload]
                samples[net].append(time.perf_counter() - begin)
    finally:
        subprocess.run([*base, "gc", "--grace-period", "0"], **quiet)  # type: ignore[call-overload]
    return {net: values[1:] for net, values in samples.items()}  # the first warms caches


# --- 2. throughput --------------------------------------------------------------------------------


def sink(netns: str, port: int) -> int:
    """A forked server in ``netns`` that reads each connection to its end and answers with
    the byte count; its pid."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(read_end)
            signal.alarm(600)
            enter_netns(netns)
            with socket.socket() as listener:
                listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                listener.bind(("0.0.0.0", port))
                listener.listen(4)
                os.write(write_end, b"ready")
                os.close(write_end)
                buffer = bytearray(1 << 20)
                while True:
                    conn, _ = listener.accept()
                    with conn:
                        total = 0
                        while n := conn.recv_into(buffer):
                            total += n
                        conn.sendall(str(total).encode())
        finally:
            os._exit(1)
    os.close(write_end)
    assert os.read(read_end, 8) == b"ready", "the sink did not start"
    os.close(read_end)
    return pid


def transfer(payload: str, address: str, port: int) -> float:
    """Send the file ``payload`` to ``address:port``; MiB/s."""
    size = os.path.getsize(payload)
    begin = time.perf_counter()
    with socket.create_connection((address, port), timeout=30) as conn, open(payload, "rb") as f:
        conn.sendfile(f)
        conn.shutdown(socket.SHUT_WR)
        answer = b""
        while chunk := conn.recv(64):
            answer += chunk
    took = time.perf_counter() - begin
    if int(answer) != size:
        raise RuntimeError(f"sent {size} bytes to {address}:{port}, the sink got {answer!r}")
    return size / (1 << 20) / took


def bench_throughput(data: str, work: Path, runs: int, mib: int) -> dict[str, list[float]]:
    pods = Pods(data)
    pids: list[int] = []
    samples: dict[str, list[float]] = {}
    payload = str(work / "payload")
    with open(payload, "wb") as handle:
        handle.truncate(mib << 20)  # sparse zeros: the disk is not what is measured
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        host_port = probe.getsockname()[1]
    try:
        pod_uuid, pod_dir, netns = pods.new()
        record = podnet.setup(
            pod_dir,
            netns,
            [ptp(2)],
            data_dir=data,
            pod_uuid=pod_uuid,
            ports=[{"name": "bulk", "protocol": "tcp", "port": 5001, "host_port": host_port}],
            nft_table=TABLE,
        )
        pod_ip = record["networks"][0]["ip"]
        pids.append(sink(netns, 5001))
        _, _, outside = pods.new()
        link_outside(outside, OUTSIDE_LINK, "10.215.250.1", "10.215.250.2")
        cases: dict[str, Callable[[], float]] = {
            "host -> pod IP (direct)": lambda: transfer(payload, pod_ip, 5001),
            "host -> 127.0.0.1:hostPort": lambda: transfer(payload, "127.0.0.1", host_port),
            "outside -> pod IP (direct)": lambda: in_netns(
                outside, lambda: transfer(payload, pod_ip, 5001), timeout=300
            ),
            "outside -> host IP:hostPort": lambda: in_netns(
                outside, lambda: transfer(payload, "10.215.250.1", host_port), timeout=300
            ),
        }
        samples = {name: [] for name in cases}
        for case in cases.values():  # warm up: ARP, conntrack, page cache
            case()
        for _ in range(runs):
            for name, case in cases.items():
                samples[name].append(case())
    finally:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
        delete_links([OUTSIDE_LINK])
        pods.close()
        nft.delete_table(TABLE)
    return samples


@contextlib.contextmanager
def workdir() -> Iterator[Path]:
    top = Path(tempfile.mkdtemp(prefix="rktcfg-net-bench-"))
    try:
        yield top
    finally:
        from rktcfg.stage1 import linux

        if linux.mounts_below(str(top)):
            linux.unmount_below(str(top))
        shutil.rmtree(top, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pods", type=int, default=30, help="pods set up one after another")
    parser.add_argument("--runs", type=int, default=5, help="transfers per case, and CLI runs")
    parser.add_argument("--mib", type=int, default=512, help="MiB per transfer")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("net: needs root (network namespaces, veths, nftables)")
        return 1
    if not nft.available():
        print("net: needs nft (Debian package nftables) for published ports")
        return 1
    clash = routes_overlapping(RANGE)
    if clash:
        print(f"net: the host routes {clash} overlap the bench range {RANGE}")
        return 1
    compileall.compile_dir(str(REPO / "rktcfg"), quiet=1)
    ok = True
    with workdir() as work:
        data = str(work / "data")
        os.makedirs(data)
        setup = bench_setup(data, args.pods)
        cli = cli_start(work, args.runs)
        throughput = bench_throughput(data, work, args.runs, args.mib)

    ours = statistics.median(setup["rktcfg"])
    verdict = "ok" if ours <= SETUP_TARGET_S else "MISSED"
    ok &= ours <= SETUP_TARGET_S
    print(f"network setup per pod (ptp, median of {args.pods}):")
    print(f"  rktcfg (netlink, lease, record)  {ours * 1000:7.1f} ms   target <= 30 ms: {verdict}")
    if setup["ip(8)"]:
        theirs = statistics.median(setup["ip(8)"])
        ratio = ours / theirs
        print(f"  ip(8) commands, same steps       {theirs * 1000:7.1f} ms   rktcfg: {ratio:.2f}x")
    print(
        f"  teardown                         {statistics.median(setup['teardown']) * 1000:7.1f} ms"
    )
    none, default = (statistics.median(cli[net]) for net in ("none", "default"))
    print(f"rktcfg run /bin/true (median of {args.runs}):")
    print(f"  --net none                       {none * 1000:7.1f} ms")
    print(
        f"  --net default                    {default * 1000:7.1f} ms   "
        f"(+{(default - none) * 1000:.0f} ms, {default / none:.2f}x)"
    )
    medians = {name: statistics.median(values) for name, values in throughput.items()}
    print(f"bulk TCP, {args.mib} MiB per transfer (median of {args.runs}, MiB/s):")
    for name, value in medians.items():
        print(f"  {name:32s} {value:8.0f}")
    for where in ("host", "outside"):
        direct = medians[f"{where} -> pod IP (direct)"]
        published = next(
            v for k, v in medians.items() if k.startswith(f"{where} ->") and "hostPort" in k
        )
        ratio = published / direct
        ok &= ratio >= THROUGHPUT_TARGET
        verdict = "ok" if ratio >= THROUGHPUT_TARGET else "MISSED"
        label = f"published / direct ({where})"
        print(f"  {label:32s} {ratio:8.2f}x   target >= 0.8x: {verdict}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
