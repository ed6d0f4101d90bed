"""One app's effective isolation, resolved from layers of appc isolators.

Layers, lowest precedence first: the configuration's ``isolators.d`` defaults (``defaults``),
then the image manifest, the pod file and the command line (``layers``). Each layer is a list
of appc isolator dicts ``{"name": ..., "value": ...}``. Within a layer the last isolator of
a name wins; a higher layer wins over a lower one, field by field:

- ``resource/cpu``, ``resource/memory``: ``{"limit", "request"}``. A limit alone sets the
  request too (appc: the request defaults to the limit); a request alone sets only the
  request. ``default`` must be false or absent.
- ``os/linux/cpu-shares`` (2..262144), ``os/linux/oom-score-adj`` (-1000..1000) and
  ``rktcfg/pids`` (rktcfg's own: the most processes the app may have, at least 1): integers.
- ``os/linux/no-new-privileges``: a bool, false unless a layer says otherwise.
- ``os/linux/capabilities-retain-set`` / ``-remove-set`` (``{"set": [...]}``): a layer holding
  one replaces whatever lower layers decided. Retain keeps exactly the set; remove takes the
  set from appc's default 14 (:data:`~rktcfg.isolators.caps.DEFAULT_CAPS`). Both in one layer
  is an error; so are an empty set and an unknown name.

Isolators appc defines but rktcfg does not enforce (block and network bandwidth, seccomp,
SELinux, AppArmor, sysctl) and names nobody defines are listed in
:attr:`Isolation.ignored`; ``strict=True`` refuses them instead. Every bad value in every
layer is collected into one :class:`IsolatorError`, each problem naming the layer, the
isolator and the value.

Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

from rktcfg.errors import Problem, ValidationError, describe_value
from rktcfg.isolators import caps
from rktcfg.isolators.quantity import QuantityError, parse_cpu_millis, parse_memory_bytes

CPU = "resource/cpu"
MEMORY = "resource/memory"
CPU_SHARES = "os/linux/cpu-shares"
OOM_SCORE_ADJ = "os/linux/oom-score-adj"
PIDS = "rktcfg/pids"
NO_NEW_PRIVILEGES = "os/linux/no-new-privileges"
#: Pod files' short isolator names (``isolators: {cpu: 250m}``).
SHORT_NAMES = {"cpu": CPU, "memory": MEMORY, "pids": PIDS}
CAPS_RETAIN = "os/linux/capabilities-retain-set"
CAPS_REMOVE = "os/linux/capabilities-remove-set"

#: Isolators appc defines that rktcfg reads but does not enforce.
NOT_ENFORCED: tuple[str, ...] = (
    "resource/block-bandwidth",
    "resource/block-iops",
    "resource/network-bandwidth",
    "os/linux/seccomp-retain-set",
    "os/linux/seccomp-remove-set",
    "os/linux/selinux-context",
    "os/linux/apparmor-profile",
    "os/unix/sysctl",
)

#: The ranges of the integer isolators: name -> (Limits field, lowest, highest or None).
_INTEGERS: Mapping[str, tuple[str, int, int | None]] = {
    CPU_SHARES: ("cpu_shares", 2, 262144),
    OOM_SCORE_ADJ: ("oom_score_adj", -1000, 1000),
    PIDS: ("pids", 1, None),
}


class IsolatorError(ValidationError, ValueError):
    """Isolators that cannot be resolved; carries every problem found."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Limits:
    """Resource limits in base units (millicores, bytes, processes); None is no limit."""

    cpu_limit_millis: int | None = None
    cpu_request_millis: int | None = None
    memory_limit_bytes: int | None = None
    memory_request_bytes: int | None = None
    cpu_shares: int | None = None
    oom_score_adj: int | None = None
    pids: int | None = None

    def as_dict(self) -> dict[str, int | None]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Limits:
        """The inverse of :meth:`as_dict`; keys it does not know are ignored."""
        values: dict[str, int | None] = {}
        for f in fields(cls):
            value = data.get(f.name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                raise ValueError(f"limits.{f.name}: must be an integer or null (got {value!r})")
            values[f.name] = value
        return cls(**values)


@dataclass(frozen=True, slots=True, kw_only=True)
class Isolation:
    """What the stage1 enforces for one app."""

    limits: Limits
    #: Sorted ``CAP_`` names: the bounding, permitted, effective and inheritable set.
    capabilities: tuple[str, ...]
    no_new_privileges: bool
    #: Isolators not enforced, each with the reason: ``resource/block-iops (not supported)``.
    ignored: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {
            "limits": self.limits.as_dict(),
            "capabilities": list(self.capabilities),
            "no_new_privileges": self.no_new_privileges,
            "ignored": list(self.ignored),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Isolation:
        """The inverse of :meth:`as_dict` (as read back from a pod's stage1.json)."""
        capabilities = data.get("capabilities", list(caps.DEFAULT_CAPS))
        nnp = data.get("no_new_privileges", False)
        ignored = data.get("ignored", [])
        if not isinstance(capabilities, list | tuple):
            raise ValueError(f"capabilities: must be a list (got {capabilities!r})")
        if not isinstance(nnp, bool):
            raise ValueError(f"no_new_privileges: must be true or false (got {nnp!r})")
        if not isinstance(ignored, list | tuple) or not all(isinstance(i, str) for i in ignored):
            raise ValueError(f"ignored: must be a list of strings (got {ignored!r})")
        return cls(
            limits=Limits.from_dict(data.get("limits") or {}),
            capabilities=tuple(sorted({caps.normalize(c) for c in capabilities})),
            no_new_privileges=nnp,
            ignored=tuple(ignored),
        )


class _Resolver:
    """The state of one resolution: what the layers so far decided, and what was wrong."""

    def __init__(self) -> None:
        self.limits: dict[str, int] = {}
        self.capabilities: frozenset[str] = frozenset(caps.DEFAULT_CAPS)
        self.no_new_privileges = False
        self.ignored: dict[str, tuple[str, str]] = {}  # name -> (reason, first layer)
        self.problems: list[Problem] = []

    def fail(self, where: str, field: str, expected: str, value: object) -> None:
        self.problems.append(Problem(expected, file=where, field=field, got=describe_value(value)))

    def layer(self, where: str, isolators: Sequence[Mapping[str, Any]]) -> None:
        last: dict[str, Any] = {}  # name -> value; the last of a name in this layer wins
        for index, isolator in enumerate(isolators):
            name = isolator.get("name") if isinstance(isolator, Mapping) else None
            if not isinstance(name, str) or not name:
                self.fail(where, f"isolators[{index}]", "must be {name, value}", isolator)
                continue
            last.pop(name, None)  # keep the order of the last occurrence
            last[name] = isolator.get("value")
        if CAPS_RETAIN in last and CAPS_REMOVE in last:
            self.fail(
                where,
                CAPS_REMOVE,
                f"must not be combined with {CAPS_RETAIN} in one layer",
                last[CAPS_REMOVE],
            )
            del last[CAPS_RETAIN], last[CAPS_REMOVE]
        for name, value in last.items():
            self.isolator(where, name, value)

    def isolator(self, where: str, name: str, value: Any) -> None:
        if name == CPU:
            self.quantities(where, name, value, "cpu", parse_cpu_millis)
        elif name == MEMORY:
            self.quantities(where, name, value, "memory", parse_memory_bytes)
        elif name in _INTEGERS:
            key, low, high = _INTEGERS[name]
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                bad = True
            else:
                bad = high is not None and value > high
            if bad:
                span = f"from {low} to {high}" if high is not None else f"of at least {low}"
                self.fail(where, name, f"must be an integer {span}", value)
            else:
                self.limits[key] = value
        elif name == NO_NEW_PRIVILEGES:
            if isinstance(value, bool):
                self.no_new_privileges = value
            else:
                self.fail(where, name, "must be true or false", value)
        elif name in (CAPS_RETAIN, CAPS_REMOVE):
            self.capability_set(where, name, value)
        else:
            reason = "not supported" if name in NOT_ENFORCED else "unknown isolator"
            self.ignored.setdefault(name, (reason, where))

    def quantities(
        self, where: str, name: str, value: Any, key: str, parse: Callable[[object], int]
    ) -> None:
        if not isinstance(value, Mapping):
            self.fail(where, name, "must be a table of limit and request", value)
            return
        if value.get("default") is not None and value["default"] is not False:
            self.fail(where, f"{name}.default", "must be false or absent", value["default"])
        amounts: dict[str, int] = {}
        for part in ("limit", "request"):
            if value.get(part) is None:
                continue
            if (
                part == "request"
                and "limit" not in amounts
                and value["request"] == value.get("limit")
            ):
                continue  # the same bad value as the limit: said once
            try:
                amounts[part] = parse(value[part])
            except QuantityError as exc:
                self.fail(where, f"{name}.{part}", str(exc), value[part])
        if len(amounts) == 2 and amounts["request"] > amounts["limit"]:
            self.fail(where, f"{name}.request", "must not be more than the limit", value["request"])
            return
        unit = "millis" if key == "cpu" else "bytes"
        if "limit" in amounts:
            self.limits[f"{key}_limit_{unit}"] = amounts["limit"]
            self.limits[f"{key}_request_{unit}"] = amounts.get("request", amounts["limit"])
        elif "request" in amounts:
            self.limits[f"{key}_request_{unit}"] = amounts["request"]

    def capability_set(self, where: str, name: str, value: Any) -> None:
        items = value.get("set") if isinstance(value, Mapping) else None
        if not isinstance(items, list | tuple) or not items:
            self.fail(where, f"{name}.set", "must be a non-empty list of capability names", items)
            return
        chosen: set[str] = set()
        bad = False
        for item in items:
            try:
                chosen.add(caps.normalize(item))
            except ValueError:
                self.fail(where, f"{name}.set", "must hold Linux capability names", item)
                bad = True
        if bad:
            return
        if name == CAPS_RETAIN:
            self.capabilities = frozenset(chosen)
        else:
            self.capabilities = frozenset(caps.DEFAULT_CAPS) - chosen


def resolve(
    layers: Sequence[Sequence[Mapping[str, Any]]],
    *,
    defaults: Mapping[str, int | None] | None = None,
    strict: bool = False,
    where: Sequence[str] | None = None,
) -> Isolation:
    """The effective isolation of one app from ``layers`` of isolators, lowest first.

    ``defaults`` (keys ``cpu_millis``, ``memory_bytes``, ``pids``, as in the configuration's
    ``IsolatorDefaults``; None is no limit) form a layer below all of them, named
    ``isolators.d``. ``where`` names each layer for messages (``image example.com/x``,
    ``pod file``, ``command line``). Raises :class:`IsolatorError` (a ``ValueError``) with
    every bad value found; with ``strict``, isolators that would be ignored are errors too.
    """
    names = list(where) if where is not None else [f"layers[{i}]" for i in range(len(layers))]
    if len(names) != len(layers):
        raise ValueError(f"where: must name each of the {len(layers)} layers (got {names!r})")
    resolver = _Resolver()
    if defaults:
        resolver.layer("isolators.d", _default_isolators(defaults))
    for name, layer in zip(names, layers, strict=True):
        resolver.layer(name, layer)
    if strict:
        for isolator, (reason, layer_name) in resolver.ignored.items():
            expected = f"is refused in strict mode: rktcfg does not enforce it ({reason})"
            resolver.problems.append(Problem(expected, file=layer_name, field=isolator))
    if resolver.problems:
        raise IsolatorError(resolver.problems, what="isolators")
    return Isolation(
        limits=Limits(**resolver.limits),
        capabilities=tuple(sorted(resolver.capabilities)),
        no_new_privileges=resolver.no_new_privileges,
        ignored=tuple(f"{name} ({reason})" for name, (reason, _) in resolver.ignored.items()),
    )


def _default_isolators(defaults: Mapping[str, int | None]) -> list[dict[str, Any]]:
    """The configuration's defaults as the isolators they stand for."""
    unknown = set(defaults) - {"cpu_millis", "memory_bytes", "pids"}
    if unknown:
        raise ValueError(f"defaults: unknown keys {sorted(unknown)}")
    isolators: list[dict[str, Any]] = []
    cpu, memory, pids = (defaults.get(k) for k in ("cpu_millis", "memory_bytes", "pids"))
    if cpu is not None:
        isolators.append({"name": CPU, "value": {"limit": f"{cpu}m"}})  # request = limit
    if memory is not None:
        isolators.append({"name": MEMORY, "value": {"limit": memory}})
    if pids is not None:
        isolators.append({"name": PIDS, "value": pids})
    return isolators


def cli_isolators(
    cpu: str | None,
    memory: str | None,
    caps_retain: str | None,
    caps_remove: str | None,
    cpu_shares: str | None = None,
    oom_score_adj: str | None = None,
) -> list[dict[str, Any]]:
    """The appc isolators that per-app command-line flags stand for.

    ``--cpu=Q`` and ``--memory=Q`` set request and limit to Q, as in rkt; ``--caps-retain`` and
    ``--caps-remove`` take comma-separated names (``NET_ADMIN,sys_time``) and exclude each
    other. Every value is checked here, so the command line fails before anything is done.
    """
    problems: list[Problem] = []
    out: list[dict[str, Any]] = []

    def fail(flag: str, expected: str, value: object) -> None:
        problems.append(Problem(expected, field=flag, got=describe_value(value)))

    for flag, name, text, parse in (
        ("--cpu", CPU, cpu, parse_cpu_millis),
        ("--memory", MEMORY, memory, parse_memory_bytes),
    ):
        if text is None:
            continue
        try:
            parse(text)
        except QuantityError as exc:
            fail(flag, str(exc), text)
            continue
        out.append({"name": name, "value": {"request": text.strip(), "limit": text.strip()}})
    if caps_retain is not None and caps_remove is not None:
        fail("--caps-remove", "must not be combined with --caps-retain", caps_remove)
    else:
        for flag, name, text in (
            ("--caps-retain", CAPS_RETAIN, caps_retain),
            ("--caps-remove", CAPS_REMOVE, caps_remove),
        ):
            if text is None:
                continue
            items = [item.strip() for item in text.split(",") if item.strip()]
            if not items:
                fail(flag, "must be comma-separated capability names like NET_ADMIN", text)
                continue
            chosen: list[str] = []
            for item in items:
                try:
                    chosen.append(caps.normalize(item))
                except ValueError:
                    fail(flag, "must hold Linux capability names like NET_ADMIN", item)
            out.append({"name": name, "value": {"set": sorted(set(chosen))}})
    for flag, name, text in (
        ("--cpu-shares", CPU_SHARES, cpu_shares),
        ("--oom-score-adj", OOM_SCORE_ADJ, oom_score_adj),
    ):
        if text is None:
            continue
        _, low, high = _INTEGERS[name]
        try:
            number = int(text.strip(), 10)
        except ValueError:
            number = None
        if number is None or number < low or (high is not None and number > high):
            fail(flag, f"must be an integer from {low} to {high}", text)
            continue
        out.append({"name": name, "value": number})
    if problems:
        raise IsolatorError(problems, what="the command line")
    return out
