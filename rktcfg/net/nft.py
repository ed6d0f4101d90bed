"""The nftables rules of pod networks: masquerade and published ports, tagged per pod.

All rules live in one table, ``ip rktcfg`` (the name is a parameter so tests use their own),
with four base chains that are created on first use and left in place (empty, they match
nothing)::

    prerouting   nat    hook prerouting  priority -100  published ports: DNAT
    output       nat    hook output      priority -100  published ports, from the host itself
    postrouting  nat    hook postrouting priority  100  masquerade; hairpin SNAT
    guard        filter hook prerouting  priority -300  drop what rk* links send to 127/8

Every rule carries the comment ``rktcfg:<pod uuid>``, so :func:`delete_pod_rules` removes
exactly one pod's rules (by handle, in one transaction) and never anyone else's. Rules are
added in one ``nft -f`` transaction per call: all of them or none.

A published port (``hostIP:hostPort -> podIP:port``) is DNATed in ``prerouting`` (clients
elsewhere) and in ``output`` (clients on the host). For 127.0.0.1 to work, the pod's
host-side link gets ``route_localnet=1`` (set by :mod:`rktcfg.net.podnet`) and connections
from 127.0.0.0/8 are masqueraded to the link's address on their way to the pod. The one rule
of the ``guard`` chain (:data:`GUARD`, made with the chains) drops packets *to* 127.0.0.0/8
arriving on any ``rk*`` link, which route_localnet would otherwise let a pod send to the
host's loopback services (CVE-2020-8558); it stays in place when pods go.

The rule builders are pure; :func:`apply`, :func:`pod_rules`, :func:`delete_pod_rules` and
:func:`delete_table` run ``nft``.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rktcfg.errors import RuntimeFailure

TABLE = "rktcfg"
FAMILY = "ip"
#: Base chain -> its definition.
CHAINS = {
    "prerouting": "type nat hook prerouting priority -100; policy accept;",
    "output": "type nat hook output priority -100; policy accept;",
    "postrouting": "type nat hook postrouting priority 100; policy accept;",
    "guard": "type filter hook prerouting priority -300; policy accept;",
}
#: Packets to 127.0.0.0/8 arriving on a pod's link (any ``rk*`` link: rktcfg's veths and
#: bridges) are dropped, before conntrack, so ``route_localnet`` cannot be used against the
#: host's loopback services. Added with the chains, never per pod, never removed.
GUARD = 'iifname "rk*" ip daddr 127.0.0.0/8 drop'
GUARD_TAG = "rktcfg:guard"
_TIMEOUT_S = 20.0
_TABLE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,31}$")


@dataclass(frozen=True, slots=True, kw_only=True)
class Rule:
    """One rule: the chain it goes in, its nft text (without the comment) and what it is
    for, in words (for error messages)."""

    chain: str
    text: str
    what: str


def available() -> bool:
    """Whether the ``nft`` command is installed."""
    return shutil.which("nft") is not None


def tag(pod_uuid: str) -> str:
    """The comment every rule of the pod carries."""
    return f"rktcfg:{pod_uuid}"


def masquerade_rules(pod_uuid: str, pod_ip: str, subnet: str) -> list[Rule]:
    """Masquerade what the pod sends anywhere but its own subnet."""
    return [
        Rule(
            chain="postrouting",
            text=f"ip saddr {pod_ip} ip daddr != {subnet} masquerade",
            what=f"masquerade for {pod_ip} (pod {pod_uuid})",
        )
    ]


def port_rules(
    pod_uuid: str,
    pod_ip: str,
    ports: Sequence[Mapping[str, Any]],
    bridge_subnet: str | None = None,
) -> list[Rule]:
    """DNAT for each published port ``{"protocol", "port", "host_port", "host_ip"}``
    (``host_ip`` "" or 0.0.0.0: every local address), and hairpin SNAT so that 127.0.0.1 and
    the pod itself can use it. On a bridge (``bridge_subnet``) also for the other pods of the
    bridge: without it the pod would answer them straight over the bridge, from an address
    they did not send to."""
    rules: list[Rule] = []
    for port in ports:
        proto = str(port.get("protocol") or "tcp")
        target, host_port = int(port["port"]), int(port["host_port"])
        host_ip = str(port.get("host_ip") or "")
        match = "fib daddr type local" if host_ip in ("", "0.0.0.0") else f"ip daddr {host_ip}"
        shown = f"{host_ip or '*'}:{host_port}/{proto} -> {pod_ip}:{target} (pod {pod_uuid})"
        dnat = f"{match} {proto} dport {host_port} dnat to {pod_ip}:{target}"
        rules += [
            Rule(chain="prerouting", text=dnat, what=f"DNAT {shown}"),
            Rule(chain="output", text=dnat, what=f"DNAT from the host {shown}"),
            Rule(
                chain="postrouting",
                text=f"ip saddr 127.0.0.0/8 ip daddr {pod_ip} {proto} dport {target} masquerade",
                what=f"hairpin SNAT from 127.0.0.1 for {shown}",
            ),
            Rule(
                chain="postrouting",
                text=f"ip saddr {pod_ip} ip daddr {pod_ip} {proto} dport {target} masquerade",
                what=f"hairpin SNAT from the pod itself for {shown}",
            ),
        ]
        if bridge_subnet:
            rules.append(
                Rule(
                    chain="postrouting",
                    text=(
                        f"ip saddr {bridge_subnet} ip daddr {pod_ip} {proto} dport {target} "
                        "ct status dnat masquerade"
                    ),
                    what=f"hairpin SNAT from the bridge's pods for {shown}",
                )
            )
    return rules


def _check_table(table: str) -> None:
    if not _TABLE_NAME.match(table):
        raise ValueError(f"nft table name: must be letters, digits, - and _ (got {table!r})")


def script(pod_uuid: str, rules: Sequence[Rule], table: str = TABLE) -> list[str]:
    """The ``nft -f`` lines that add ``rules`` (tagged with the pod's UUID)."""
    _check_table(table)
    comment = tag(pod_uuid)
    return [f'add rule {FAMILY} {table} {r.chain} {r.text} comment "{comment}"' for r in rules]


def table_script(table: str = TABLE) -> list[str]:
    """The ``nft -f`` lines that create the table and its chains where they are missing."""
    _check_table(table)
    lines = [f"add table {FAMILY} {table}"]
    lines += [f"add chain {FAMILY} {table} {name} {{ {spec} }}" for name, spec in CHAINS.items()]
    return lines + guard_script(table)


def guard_script(table: str = TABLE) -> list[str]:
    """The ``nft -f`` lines that make the guard chain hold exactly the guard rule (also when
    someone flushed it)."""
    return [
        f"flush chain {FAMILY} {table} guard",
        f'add rule {FAMILY} {table} guard {GUARD} comment "{GUARD_TAG}"',
    ]


def _nft(args: list[str], stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    nft = shutil.which("nft")
    if nft is None:
        raise RuntimeFailure("nft not found: install nftables")
    try:
        return subprocess.run(
            [nft, *args],
            input=stdin,
            capture_output=True,
            text=True,
            check=False,
            timeout=_TIMEOUT_S,
        )
    except subprocess.TimeoutExpired as exc:
        raise RuntimeFailure(f"nft {' '.join(args)}: no answer after {_TIMEOUT_S:.0f} s") from exc


def _first_error(stderr: str) -> str:
    for line in stderr.splitlines():
        if "Error:" in line:
            return line.split("Error:", 1)[1].strip()
    return stderr.strip().splitlines()[0] if stderr.strip() else "failed"


def apply(pod_uuid: str, rules: Sequence[Rule], table: str = TABLE, *, guard: bool = False) -> None:
    """Add ``rules`` for the pod in one transaction (none of them on failure). The error
    names the rule nft refused. With ``guard`` (published ports: the caller sets
    route_localnet next) the same transaction makes sure the guard rule is in place.

    The rules are tried on their own first; only if the table or a chain is missing is the
    transaction repeated with them created first (re-adding existing base chains costs
    nft ~10 ms)."""
    if not rules:
        return
    lines = (guard_script(table) if guard else []) + script(pod_uuid, rules, table)
    done = _nft(["-f", "-"], "\n".join(lines) + "\n")
    if done.returncode != 0 and "No such file or directory" in done.stderr:
        lines = table_script(table) + script(pod_uuid, rules, table)
        done = _nft(["-f", "-"], "\n".join(lines) + "\n")
    if done.returncode == 0:
        return
    first = len(lines) - len(rules)
    which = re.search(r"^[^:\n]*:(\d+):", done.stderr, re.MULTILINE)
    line = int(which.group(1)) - 1 if which else -1
    if first <= line < len(lines):
        rule = rules[line - first]
        raise RuntimeFailure(
            f"nft: cannot add the {rule.what}: {_first_error(done.stderr)} "
            f"(rule: {rule.chain} {rule.text})"
        )
    raise RuntimeFailure(
        f"nft: cannot set up table {FAMILY} {table} for pod {pod_uuid}: {_first_error(done.stderr)}"
    )


def _list_table(table: str) -> list[dict[str, Any]] | None:
    """The table's objects (``nft -j -a list table``), None if there is no such table."""
    _check_table(table)
    done = _nft(["-j", "-a", "list", "table", FAMILY, table])
    if done.returncode != 0:
        if "No such file or directory" in done.stderr:
            return None
        error = _first_error(done.stderr)
        raise RuntimeFailure(f"nft: cannot list table {FAMILY} {table}: {error}")
    try:
        items: list[dict[str, Any]] = json.loads(done.stdout)["nftables"]
    except (ValueError, KeyError, TypeError) as exc:
        raise RuntimeFailure(f"nft: unreadable listing of table {FAMILY} {table}") from exc
    return items


def rules_tagged(comment: str, table: str = TABLE) -> list[tuple[str, int]]:
    """The rules whose comment is ``comment``, as (chain, handle)."""
    items = _list_table(table) or []
    return [
        (str(item["rule"]["chain"]), int(item["rule"]["handle"]))
        for item in items
        if "rule" in item and item["rule"].get("comment") == comment
    ]


def pod_rules(pod_uuid: str, table: str = TABLE) -> list[tuple[str, int]]:
    """The pod's rules as (chain, handle)."""
    return rules_tagged(tag(pod_uuid), table)


def delete_pod_rules(pod_uuid: str, table: str = TABLE) -> list[str]:
    """Remove every rule tagged with the pod's UUID, in one transaction; returns what could
    not be removed (empty when all went, also when there was nothing or no table)."""
    if not available():
        return []
    error = "failed"
    for _ in range(3):  # a rule another teardown removed meanwhile fails the batch: list again
        rules = pod_rules(pod_uuid, table)
        if not rules:
            return []
        lines = [f"delete rule {FAMILY} {table} {chain} handle {h}" for chain, h in rules]
        done = _nft(["-f", "-"], "\n".join(lines) + "\n")
        if done.returncode == 0:
            return []
        error = _first_error(done.stderr)
    left = pod_rules(pod_uuid, table)
    return [f"nft rule {FAMILY} {table} {chain} handle {h}: {error}" for chain, h in left]


def delete_table(table: str = TABLE) -> bool:
    """Delete the whole table (tests, and uninstalling); False if there was none."""
    _check_table(table)
    done = _nft(["delete", "table", FAMILY, table])
    if done.returncode == 0:
        return True
    if "No such file or directory" in done.stderr:
        return False
    raise RuntimeFailure(f"nft: cannot delete table {FAMILY} {table}: {_first_error(done.stderr)}")
