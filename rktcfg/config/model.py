"""The effective configuration as frozen, typed values.

Built from a validated effective document (see ``loader``), so construction cannot fail on
user input. Every leaf's origin is in :attr:`Config.origins`, keyed by dotted path
(``paths.data``), rendered like ``file:/etc/rktcfg/paths.d/10-site.toml:3``, ``flag --dir``,
``env RKTCFG_DIR`` or ``built-in``.

Pure.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from rktcfg.isolators.quantity import parse_cpu_millis, parse_memory_bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class PathsConfig:
    data: str
    stage1_images: str
    #: None: each pod's cgroup goes below the invoking process's own cgroup, per hierarchy.
    cgroup_parent: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class FlavorConfig:
    name: str
    version: str
    location: str | None
    # kvm only
    qemu: str | None = None
    kernel: str | None = None
    kernel_args: tuple[str, ...] = ()
    accel: str | None = None
    memory_overhead_bytes: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Stage1Config:
    default_flavor: str
    flavors: Mapping[str, FlavorConfig]

    def flavor(self, name: str | None = None) -> FlavorConfig:
        return self.flavors[name or self.default_flavor]


@dataclass(frozen=True, slots=True, kw_only=True)
class IsolatorDefaults:
    """Limits for apps that set none; None is no limit."""

    cpu_millis: int | None
    memory_bytes: int | None
    pids: int | None


@dataclass(frozen=True, slots=True, kw_only=True)
class NetworkConfig:
    name: str
    type: str
    subnet: str
    gateway: str
    ip_masq: bool
    default_route: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class Config:
    paths: PathsConfig
    stage1: Stage1Config
    isolators: IsolatorDefaults
    networks: Mapping[str, NetworkConfig]
    #: dotted key -> origin text, for every leaf
    origins: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))

    def origin(self, key: str) -> str:
        return self.origins[key]


def _blank(value: Any) -> Any:
    return None if value in ("", None) else value


def build_config(document: Mapping[str, Any], origins: Mapping[str, str]) -> Config:
    """A :class:`Config` from a validated effective document (defaults already applied)."""
    paths = document["paths"]
    stage1 = document["stage1"]
    flavors: dict[str, FlavorConfig] = {}
    for name in ("fly", "default", "kvm"):
        raw = stage1[name]
        overhead = _blank(raw.get("memory-overhead"))
        flavors[name] = FlavorConfig(
            name=raw["name"],
            version=raw["version"],
            location=_blank(raw.get("location")),
            qemu=raw.get("qemu"),
            kernel=_blank(raw.get("kernel")),
            kernel_args=tuple(raw.get("kernel-args", ())),
            accel=raw.get("accel"),
            memory_overhead_bytes=None if overhead is None else parse_memory_bytes(overhead),
        )
    isolators = document["isolators"]
    cpu, memory, pids = (_blank(isolators.get(k)) for k in ("cpu", "memory", "pids"))
    networks = {
        name: NetworkConfig(
            name=name,
            type=net["type"],
            subnet=net["subnet"],
            gateway=net["gateway"],
            ip_masq=net["ip-masq"],
            default_route=net["default-route"],
        )
        for name, net in sorted(document["net"].items())
    }
    return Config(
        paths=PathsConfig(
            data=paths["data"],
            stage1_images=paths["stage1-images"],
            cgroup_parent=_blank(paths.get("cgroup-parent")),
        ),
        stage1=Stage1Config(
            default_flavor=stage1["default-flavor"], flavors=MappingProxyType(flavors)
        ),
        isolators=IsolatorDefaults(
            cpu_millis=None if cpu is None else parse_cpu_millis(cpu),
            memory_bytes=None if memory is None else parse_memory_bytes(memory),
            pids=pids,
        ),
        networks=MappingProxyType(networks),
        origins=MappingProxyType(dict(origins)),
    )
