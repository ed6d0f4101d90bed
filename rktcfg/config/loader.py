"""Load the effective configuration: layers, drop-ins, overrides, validation, cache.

``load_config`` gives the frozen :class:`~rktcfg.config.model.Config`; ``load_effective``
gives the validated document with origins that ``rktcfg config`` prints (and that the cache
stores), importing the parsers and cerberus only when the cache cannot answer.
``check_directory`` validates a directory of drop-ins afresh, before it is installed.

All problems of a load are collected and raised together as one
:class:`~rktcfg.errors.ConfigError`.
"""

from __future__ import annotations

import os

from rktcfg.config import cache as _cache
from rktcfg.config.layers import KINDS, Layer, Scan, resolve_layers, scan_layers
from rktcfg.version import FLAVORS, STAGE1_NAME_PREFIX, __version__

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any

    from rktcfg.config.model import Config
    from rktcfg.config.tree import Tree
    from rktcfg.errors import Problem

DEFAULT_DATA_DIR = "/var/lib/rktcfg"
DEFAULT_STAGE1_IMAGES = "/usr/lib/rktcfg/stage1-images"
DEFAULT_QEMU = "/usr/bin/qemu-system-x86_64"
DEFAULT_KVM_MEMORY_OVERHEAD = "128M"


class Override:
    """A value from a flag or the environment: (kind, key) = value."""

    __slots__ = ("key", "kind", "source", "value")

    def __init__(self, kind: str, key: str, value: Any, source: str) -> None:
        self.kind = kind
        self.key = key
        self.value = value
        self.source = source  # "flag --dir" | "env RKTCFG_DIR"

    def as_list(self) -> list[Any]:
        return [self.kind, self.key, self.value, self.source]


class Inputs:
    """Everything a load depends on besides the files: the layers and the overrides."""

    __slots__ = ("layers", "overrides")

    def __init__(self, layers: list[Layer], overrides: list[Override]) -> None:
        self.layers = layers
        self.overrides = overrides


def inputs_from(
    *,
    vendor: str | None = None,
    system: str | None = None,
    user: str | None = None,
    data_dir: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> Inputs:
    """Layers and overrides from flags (``--dir`` and the ``--*-config`` flags) and environment.

    Precedence, lowest first: files, environment (``RKTCFG_DIR``), flags (``--dir``).
    Directory values are made absolute, as rkt did.
    """
    env: Mapping[str, str] = os.environ if environ is None else environ
    overrides: list[Override] = []
    if env.get("RKTCFG_DIR"):
        overrides.append(
            Override("paths", "data", os.path.abspath(env["RKTCFG_DIR"]), "env RKTCFG_DIR")
        )
    if data_dir is not None:
        overrides.append(Override("paths", "data", os.path.abspath(data_dir), "flag --dir"))
    layers = resolve_layers(vendor=vendor, system=system, user=user, environ=env)
    return Inputs(layers, overrides)


class Effective:
    """The validated, merged configuration document with the origin of every leaf."""

    __slots__ = ("document", "layers", "notes", "origins", "sources")

    def __init__(
        self,
        document: dict[str, Any],
        origins: dict[str, str],
        sources: list[dict[str, str]],
        layers: list[dict[str, str]],
        notes: list[str],
    ) -> None:
        self.document = document
        self.origins = origins
        self.sources = sources
        self.layers = layers
        self.notes = notes

    def to_json(self) -> dict[str, Any]:
        return {
            "document": self.document,
            "origins": self.origins,
            "sources": self.sources,
            "layers": self.layers,
            "notes": self.notes,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Effective:
        return cls(
            data["document"], data["origins"], data["sources"], data["layers"], data["notes"]
        )

    def config(self) -> Config:
        from rktcfg.config.model import build_config

        return build_config(self.document, self.origins)


def builtin_document() -> dict[str, Any]:
    """What rktcfg uses when no layer sets a value (the lowest layer of every merge)."""
    flavors: dict[str, Any] = {
        name: {"name": STAGE1_NAME_PREFIX + name, "version": __version__, "location": None}
        for name in FLAVORS
    }
    flavors["kvm"].update(
        {
            "qemu": DEFAULT_QEMU,
            "kernel": None,
            "kernel-args": ["console=ttyS0", "panic=-1"],
            "accel": "auto",
            "memory-overhead": DEFAULT_KVM_MEMORY_OVERHEAD,
        }
    )
    return {
        "paths": {
            "data": DEFAULT_DATA_DIR,
            "stage1-images": DEFAULT_STAGE1_IMAGES,
            "cgroup-parent": None,
        },
        "stage1": {"default-flavor": "default", **flavors},
        "isolators": {"cpu": None, "memory": None, "pids": None},
        "net": {},
    }


def load_effective(
    inputs: Inputs, *, cache_file: str | None = None, kinds: tuple[str, ...] = KINDS
) -> Effective:
    """The effective configuration, from the cache when no input changed since it was written."""
    scan = scan_layers(inputs.layers, kinds)
    key = [
        __version__,
        [layer.as_dict() for layer in inputs.layers],
        [o.as_list() for o in inputs.overrides],
        scan.fingerprint,
    ]
    if cache_file is not None:
        hit = _cache.read(cache_file, key)
        if hit is not None:
            try:
                return Effective.from_json(hit)
            except (KeyError, TypeError):
                pass
    effective = _compute(inputs, scan)
    if cache_file is not None:
        _cache.write(cache_file, key, effective.to_json())
    return effective


def load_config(inputs: Inputs | None = None, *, cache_file: str | None = None) -> Config:
    """The frozen, typed configuration."""
    return load_effective(inputs or inputs_from(), cache_file=cache_file).config()


def check_directory(directory: str, *, vendor: str | None = None) -> tuple[Effective, int]:
    """Validate a directory of drop-ins (a layer, or one ``<kind>.d``) over the vendor layer.

    Always reads every file afresh. Returns the effective result and the number of files read
    from ``directory``; raises ConfigError with every problem found.
    """
    from rktcfg.errors import NotFoundError

    path = os.path.abspath(directory)
    if not os.path.isdir(path):
        raise NotFoundError(f"{directory}: no such directory")
    base = os.path.basename(path.rstrip("/"))
    layers = [layer for layer in resolve_layers(vendor=vendor) if layer.name == "vendor"]
    if base.endswith(".d") and base[:-2] in KINDS:
        kinds: tuple[str, ...] = (base[:-2],)
        checked = Layer("checked", os.path.dirname(path), f"--check {directory}")
    else:
        kinds = KINDS
        checked = Layer("checked", path, f"--check {directory}")
    if kinds == KINDS and not any(os.path.isdir(os.path.join(path, k + ".d")) for k in KINDS):
        raise NotFoundError(
            f"{directory}: no paths.d, stage1.d, isolators.d or net.d directory to check "
            "(give a layer directory, or one <kind>.d directory)"
        )
    scan = scan_layers([*layers, checked], kinds)
    effective = _compute(Inputs([*layers, checked], []), scan)
    count = sum(1 for s in effective.sources if s["layer"] == "checked")
    return effective, count


def _read_source(path: str, kind: str, problems: list[Problem]) -> Tree | None:
    """One drop-in file as a tree of ``{kind: ...}``; None (problems appended) when invalid."""
    import stat

    from rktcfg.config import readers, rktjson, schema
    from rktcfg.config.tree import Origin, tree_from_data
    from rktcfg.errors import ConfigError, Problem

    fmt = readers.format_of(path)
    assert fmt is not None
    try:
        # O_NONBLOCK: a FIFO dropped into a config directory must not hang rktcfg.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        with os.fdopen(fd, "rb") as handle:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                problems.append(Problem("cannot read file: not a regular file", file=path))
                return None
            raw = handle.read(readers.MAX_BYTES + 1)
    except OSError as exc:
        problems.append(Problem(f"cannot read file: {exc.strerror}", file=path))
        return None
    try:
        parsed = readers.parse_bytes(raw, fmt, path)
    except ConfigError as exc:
        problems.extend(exc.problems)
        return None
    data, lines = parsed.data, parsed.lines
    if rktjson.is_rkt_document(data):
        data, lines, found = rktjson.translate(kind, data, lines, path)
        if found:
            problems.extend(found)
            return None
        parsed = readers.Parsed(data, lines)
    found = schema.validate_file(kind, data, parsed.line_of, path)
    if found:
        problems.extend(found)
        return None
    return {kind: tree_from_data(data, lambda p: Origin.in_file(path, parsed.line_of(p)))}


def _compute(inputs: Inputs, scan: Scan) -> Effective:
    from rktcfg.config import schema
    from rktcfg.config.merge import merge_layers
    from rktcfg.config.tree import BUILTIN, Leaf, Origin, tree_from_data, tree_origins, tree_values
    from rktcfg.errors import ConfigError, Problem

    problems: list[Problem] = [Problem(msg, file=path) for path, msg in scan.problems]
    trees: list[Tree] = [tree_from_data(builtin_document(), lambda p: BUILTIN)]
    for source in scan.sources:
        tree = _read_source(source.path, source.kind, problems)
        if tree is not None:
            trees.append(tree)
    for override in inputs.overrides:
        found = schema.validate_file(
            override.kind, {override.key: override.value}, lambda p: None, None
        )
        for problem in found:
            problem.field = f"{override.source}: {problem.field}"
        problems.extend(found)
        kind, name = override.source.split(" ", 1)
        origin = Origin.flag(name) if kind == "flag" else Origin.env(name)
        trees.append({override.kind: {override.key: Leaf(override.value, origin)}})
    merged = merge_layers(trees)
    problems.extend(schema.validate_merged(merged))
    if problems:
        raise ConfigError(problems, what="the configuration")
    networks = merged.get("net")
    assert isinstance(networks, dict)
    for network in networks.values():
        assert isinstance(network, dict)
        _network_defaults(network, BUILTIN)
    return Effective(
        document=tree_values(merged),
        origins={key: str(origin) for key, origin in tree_origins(merged).items()},
        sources=[s.as_dict() for s in scan.sources],
        layers=[layer.as_dict() for layer in inputs.layers],
        notes=scan.notes,
    )


def _network_defaults(network: Tree, origin: Any) -> None:
    import ipaddress

    from rktcfg.config.tree import Leaf

    network.setdefault("ip-masq", Leaf(True, origin))
    network.setdefault("default-route", Leaf(True, origin))
    if "gateway" not in network:
        subnet = network["subnet"]
        assert isinstance(subnet, Leaf)
        # validate_merged refused subnets too small for a gateway, so there is a first host
        first_host = next(iter(ipaddress.ip_network(subnet.value).hosts()))
        network["gateway"] = Leaf(str(first_host), origin)
