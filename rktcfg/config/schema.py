"""One cerberus schema per configuration kind, and the checks cerberus cannot express.

``validate_file`` checks one file's data on its own (unknown keys, types, absolute paths,
CIDRs, quantities); ``validate_merged`` checks what only the merged result shows (a network
without a subnet, a gateway outside its subnet, overlapping networks). Both return every
:class:`~rktcfg.errors.Problem` found, never raise for bad input.

Pure: data in, problems out.
"""

from __future__ import annotations

import difflib
import ipaddress
from collections.abc import Callable
from typing import Any, ClassVar

from cerberus import TypeDefinition, Validator

from rktcfg.config.tree import Leaf, Origin, Tree, first_origin
from rktcfg.errors import Problem, describe_value
from rktcfg.isolators.quantity import QuantityError, parse_cpu_millis, parse_memory_bytes
from rktcfg.names import AC_IDENTIFIER, AC_NAME
from rktcfg.version import FLAVORS

#: Network names with a built-in meaning that net.d cannot define.
RESERVED_NETWORKS = ("host", "none")
STAGE1_URL_SCHEMES = ("file", "http", "https", "docker")

# --- value checks: each returns what was expected, or None when the value is fine ----------


def check_abspath(value: Any) -> str | None:
    if isinstance(value, str) and not value.startswith("/"):
        return "must be an absolute path"
    return None


def check_abspath_or_empty(value: Any) -> str | None:
    return None if value == "" else check_abspath(value)


def check_cgroup_path(value: Any) -> str | None:
    if not isinstance(value, str) or value == "":
        return None  # "" clears a lower layer's value: back to the caller's own cgroup
    if not value.startswith("/") or any(part in (".", "..") for part in value.split("/")):
        return "must be an absolute cgroup path like /rktcfg, without . or .."
    return None


def check_ac_identifier(value: Any) -> str | None:
    if isinstance(value, str) and not AC_IDENTIFIER.match(value):
        return "must be an AC Identifier like example.com/stage1-default"
    return None


def check_stage1_location(value: Any) -> str | None:
    if not isinstance(value, str) or value == "" or value.startswith("/"):
        return None
    scheme, sep, _ = value.partition("://")
    if sep and scheme in STAGE1_URL_SCHEMES:
        return None
    return "must be an absolute path or a file, http, https or docker URL"


def check_cidr(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    try:
        ipaddress.ip_network(value, strict=True)
    except ValueError:
        try:
            network = ipaddress.ip_interface(value).network
        except ValueError:
            return "must be a CIDR network like 172.16.28.0/24"
        if "/" in value:
            return f"must be a network address with no host bits set, like {network}"
        return "must be a CIDR network like 172.16.28.0/24"
    if "/" not in value:
        return "must be a CIDR network like 172.16.28.0/24, with a prefix length"
    return None


def check_ip(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return "must be an IP address like 172.16.28.1"
    return None


def _quantity_check(parse: Callable[[object], int]) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        if value == "":
            return None  # an empty value clears a lower layer's default
        try:
            parse(value)
        except QuantityError as exc:
            return str(exc)
        return None

    return check


def check_pids(value: Any) -> str | None:
    if value == "" or (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
        return None
    return "must be a whole number of processes, at least 1"


CHECKS: dict[str, Callable[[Any], str | None]] = {
    "abspath": check_abspath,
    "abspath_or_empty": check_abspath_or_empty,
    "cgroup_path": check_cgroup_path,
    "ac_identifier": check_ac_identifier,
    "stage1_location": check_stage1_location,
    "cidr": check_cidr,
    "ip": check_ip,
    "cpu": _quantity_check(parse_cpu_millis),
    "memory": _quantity_check(parse_memory_bytes),
    "pids": check_pids,
}

# --- schemas -------------------------------------------------------------------------------

_FLAVOR: dict[str, Any] = {
    "name": {"type": "string", "check": "ac_identifier"},
    "version": {"type": "string"},
    "location": {"type": "string", "check": "stage1_location"},
}
_KVM: dict[str, Any] = {
    **_FLAVOR,
    "qemu": {"type": "string", "check": "abspath"},
    "kernel": {"type": "string", "check": "abspath_or_empty"},
    "kernel-args": {"type": "list", "schema": {"type": "string"}},
    "accel": {"type": "string", "allowed": ["auto", "kvm", "tcg"]},
    "memory-overhead": {"type": ["string", "integer"], "check": "memory"},
}

SCHEMAS: dict[str, dict[str, Any]] = {
    "paths": {
        "data": {"type": "string", "check": "abspath"},
        "stage1-images": {"type": "string", "check": "abspath"},
        "cgroup-parent": {"type": "string", "check": "cgroup_path"},
    },
    "stage1": {
        "default-flavor": {"type": "string", "allowed": list(FLAVORS)},
        "fly": {"type": "dict", "schema": _FLAVOR},
        "default": {"type": "dict", "schema": _FLAVOR},
        "kvm": {"type": "dict", "schema": _KVM},
    },
    "isolators": {
        "cpu": {"type": ["string", "integer", "float"], "check": "cpu"},
        "memory": {"type": ["string", "integer"], "check": "memory"},
        "pids": {"check": "pids"},
    },
}
#: net.d files are tables of networks by name; each network has this schema.
NETWORK_SCHEMA: dict[str, Any] = {
    "type": {"type": "string", "allowed": ["ptp", "bridge"]},
    "subnet": {"type": "string", "check": "cidr"},
    "gateway": {"type": "string", "check": "ip"},
    "ip-masq": {"type": "boolean"},
    "default-route": {"type": "boolean"},
}

_TYPE_WORDS = {
    "string": "a string",
    "integer": "an integer",
    "float": "a number",
    "boolean": "true or false",
    "dict": "a table",
    "list": "a list",
}


class _Validator(Validator):  # type: ignore[misc]
    # cerberus counts True as an integer; configuration must not.
    types_mapping: ClassVar[dict[str, Any]] = {
        **Validator.types_mapping,
        "integer": TypeDefinition("integer", (int,), (bool,)),
    }

    def _validate_check(self, checks: Any, field: str, value: Any) -> None:
        """{'type': 'string'}"""
        if value is None:
            return  # reported once, as a missing value
        expected = CHECKS[checks](value)
        if expected is not None:
            self._error(field, expected)


def _type_words(constraint: Any) -> str:
    names = [constraint] if isinstance(constraint, str) else list(constraint)
    words = [_TYPE_WORDS.get(n, n) for n in names]
    if len(words) == 1:
        return "must be " + words[0]
    return "must be " + ", ".join(words[:-1]) + " or " + words[-1]


def _schema_at(schema: dict[str, Any], path: tuple[Any, ...]) -> dict[str, Any]:
    for key in path:
        rule = schema.get(key, {})
        schema = rule.get("schema", {}) if isinstance(rule, dict) else {}
    return schema


def _convert(
    errors: Any,
    schema: dict[str, Any],
    prefix: tuple[Any, ...],
    line_of: Callable[[tuple[Any, ...]], int | None],
    file: str | None,
) -> list[Problem]:
    problems: list[Problem] = []
    for error in errors:
        if error.is_group_error:
            problems.extend(_convert(error.child_errors, schema, prefix, line_of, file))
            continue
        path = tuple(error.document_path)
        full = (*prefix, *path)
        field = ".".join(str(p) for p in full)
        got: str | None = describe_value(error.value)
        if error.code == 0x03:  # unknown field
            known = sorted(_schema_at(schema, path[:-1]))
            close = difflib.get_close_matches(str(path[-1]), known, n=1, cutoff=0.6)
            if close:
                expected = f'unknown key (did you mean "{close[0]}"?)'
            else:
                expected = "unknown key" + ("; known keys: " + ", ".join(known) if known else "")
            got = None
        elif error.rule == "type":
            expected = _type_words(error.constraint)
        elif error.rule == "nullable":
            rule = _schema_at(schema, path[:-1]).get(path[-1], {})
            kind = rule.get("type") if isinstance(rule, dict) else None
            expected = (_type_words(kind) if kind else "must have a value") + (
                ', not empty (to clear a lower layer\'s value, write "" where that is allowed)'
            )
        elif error.rule == "allowed":
            expected = "must be one of " + ", ".join(str(c) for c in error.constraint)
        elif error.rule == "empty":
            expected = "must not be empty"
        elif error.info and isinstance(error.info[0], str):
            expected = error.info[0]
        else:
            expected = str(error.rule or "invalid value")
        problems.append(Problem(expected, file=file, line=line_of(full), field=field, got=got))
    return problems


def _validate(
    schema: dict[str, Any],
    data: dict[str, Any],
    prefix: tuple[Any, ...],
    line_of: Callable[[tuple[Any, ...]], int | None],
    file: str | None,
) -> list[Problem]:
    validator = _Validator(schema)
    if validator.validate(data):
        return []
    return _convert(validator._errors, schema, prefix, line_of, file)


def validate_file(
    kind: str,
    data: dict[str, Any],
    line_of: Callable[[tuple[Any, ...]], int | None],
    file: str | None,
) -> list[Problem]:
    """Every problem in one file's data, on its own."""
    if kind != "net":
        return _validate(SCHEMAS[kind], data, (), line_of, file)
    problems: list[Problem] = []
    for name, network in data.items():
        line = line_of((name,))
        if not AC_NAME.match(name):
            expected = "network names must be AC Names like backend or my-net"
            problems.append(Problem(expected, file=file, line=line, field=name))
        elif name in RESERVED_NETWORKS:
            expected = f"{name!r} is built in (host, none) and cannot be defined in net.d"
            problems.append(Problem(expected, file=file, line=line, field=name))
        if not isinstance(network, dict):
            problems.append(
                Problem(
                    "must be a table of network settings",
                    file=file,
                    line=line,
                    field=name,
                    got=describe_value(network),
                )
            )
            continue
        problems.extend(_validate(NETWORK_SCHEMA, network, (name,), line_of, file))
    return problems


def _origin_problem(expected: str, origin: Origin | None, field: str, got: Any) -> Problem:
    file = line = None
    where = ""
    if origin is not None and origin.kind == "file":
        file, line = origin.file, origin.line
    elif origin is not None:
        where = str(origin) + ": "
    return Problem(expected, file=file, line=line, field=where + field, got=got)


def validate_merged(tree: Tree) -> list[Problem]:
    """Problems only the merged configuration shows."""
    problems: list[Problem] = []
    networks = tree.get("net", {})
    assert isinstance(networks, dict)
    subnets: list[tuple[str, ipaddress.IPv4Network | ipaddress.IPv6Network, Origin | None]] = []
    for name, node in sorted(networks.items()):
        if not isinstance(node, dict):
            continue
        origin = first_origin(node)
        for key in ("type", "subnet"):
            if key not in node:
                problems.append(
                    _origin_problem(
                        f"network {name!r} needs a {key}", origin, f"{name}.{key}", None
                    )
                )
        subnet_leaf = node.get("subnet")
        if not isinstance(subnet_leaf, Leaf):
            continue
        subnet = ipaddress.ip_network(subnet_leaf.value)
        subnets.append((name, subnet, subnet_leaf.origin))
        gateway_leaf = node.get("gateway")
        if isinstance(gateway_leaf, Leaf):
            gateway = ipaddress.ip_address(gateway_leaf.value)
            usable = subnet.num_addresses <= 2 or gateway not in (
                subnet.network_address,
                subnet.broadcast_address,
            )
            if gateway not in subnet or not usable:
                problems.append(
                    _origin_problem(
                        f"must be a host address inside the subnet {subnet}",
                        gateway_leaf.origin,
                        f"{name}.gateway",
                        describe_value(gateway_leaf.value),
                    )
                )
        elif subnet.num_addresses < 4:
            problems.append(
                _origin_problem(
                    "must leave room for a gateway and pods (a /30 or larger)",
                    subnet_leaf.origin,
                    f"{name}.subnet",
                    describe_value(subnet_leaf.value),
                )
            )
    for i, (name, subnet, origin) in enumerate(subnets):
        for other, other_subnet, _ in subnets[:i]:
            if subnet.version == other_subnet.version and subnet.overlaps(other_subnet):
                problems.append(
                    _origin_problem(
                        f"overlaps the subnet {other_subnet} of network {other!r}",
                        origin,
                        f"{name}.subnet",
                        describe_value(str(subnet)),
                    )
                )
    return problems
