"""appc image and pod manifests (App Container spec 0.8.11, also reading 0.7.x) as frozen values.

:func:`parse_image_manifest` and :func:`parse_pod_manifest` take bytes, text or an already
decoded dict, check everything the spec asks in one pass and raise one
:class:`~rktcfg.errors.ValidationError` carrying every :class:`~rktcfg.errors.Problem`, each
with the dotted field path (``app.ports[0].port``), what was expected and what was found.

Reading is lenient where the spec asks for forward compatibility and where old manifests differ:

- keys this module does not know are ignored, and their paths are kept in ``ignored_keys`` so
  the caller can warn about them;
- ``supplementaryGids`` (the spelling of the spec's example) is read like ``supplementaryGIDs``;
- a 0.7.x integer volume ``mode`` is read as the octal string 0.8 uses (``493`` -> ``"0755"``);
- JSON ``null`` counts as absent, as it does for Go's decoder;
- isolators with names this module does not know are kept unchecked; see
  :func:`unknown_isolators`. Known isolators have their values checked.

Names use the spec's strict regexes from :mod:`rktcfg.names` (stricter than Go's code).
:func:`image_manifest_to_json` and :func:`pod_manifest_to_json` write canonical 0.8.11 JSON, and
``parse(to_json(m)) == m``; what the document carried is kept, unchanged, in ``raw``.

Pure: no I/O, apart from :func:`host_os_arch` asking the kernel (uname) what it runs on.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import urlsplit

from rktcfg.errors import ImageError, Problem, ValidationError, describe_value
from rktcfg.isolators.quantity import (
    QuantityError,
    parse_cpu_millis,
    parse_memory_bytes,
    parse_quantity,
)
from rktcfg.names import AC_IDENTIFIER, AC_IDENTIFIER_RULE, AC_NAME, AC_NAME_RULE, IMAGE_ID

#: The spec version this module implements and writes.
SPEC_VERSION = "0.8.11"

#: ``types.ValidOSArch``: the os/arch pairs an image may be labelled with.
VALID_OS_ARCH: Mapping[str, tuple[str, ...]] = {
    "linux": (
        "amd64",
        "i386",
        "aarch64",
        "aarch64_be",
        "armv6l",
        "armv7l",
        "armv7b",
        "ppc64",
        "ppc64le",
        "s390x",
    ),
    "freebsd": ("amd64", "i386", "arm"),
    "darwin": ("x86_64", "i386"),
}

#: Isolators whose values this module checks; any other name is kept unchecked.
KNOWN_ISOLATORS = (
    "resource/cpu",
    "resource/memory",
    "resource/block-bandwidth",
    "resource/block-iops",
    "resource/network-bandwidth",
    "os/linux/capabilities-retain-set",
    "os/linux/capabilities-remove-set",
    "os/linux/no-new-privileges",
    "os/linux/seccomp-retain-set",
    "os/linux/seccomp-remove-set",
    "os/linux/selinux-context",
    "os/linux/apparmor-profile",
    "os/linux/oom-score-adj",
    "os/linux/cpu-shares",
    "os/unix/sysctl",
)

EVENT_HANDLER_NAMES = ("pre-start", "post-stop")
VOLUME_KINDS = ("host", "empty")

#: Go's rule for environment variable names (0.8.11 allows ``.`` and ``-``).
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z_0-9.-]*$")
ENV_NAME_RULE = (
    "must be an environment variable name (a letter or _, then letters, digits, _ . or -)"
)
IMAGE_ID_RULE = "must be an image ID (sha512- and the 128 hex digits of the digest)"
DEPENDENCY_ID_RULE = 'must be an image ID ("sha512-" and the hex digest)'

_SEMVER = re.compile(
    r"^(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)"
    r"(?:-((?:0|[1-9][0-9]*|[0-9]*[a-zA-Z-][0-9a-zA-Z-]*)"
    r"(?:\.(?:0|[1-9][0-9]*|[0-9]*[a-zA-Z-][0-9a-zA-Z-]*))*))?"
    r"(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$"
)
_RFC3339 = re.compile(
    r"^([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})(\.[0-9]+)?"
    r"(Z|[+-]([0-9]{2}):([0-9]{2}))$"
)
_IPV4 = re.compile(r"^(?:(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])(?:\.|$)){4}$")
_OCTAL_MODE = re.compile(r"^0*[0-7]{1,4}$")
_ERRNO = re.compile(r"^E[A-Z0-9]+$")
_LOOSE_IMAGE_ID = re.compile(r"^sha512-[^-]+$")

_UINT32_MAX = 2**32 - 1
_UINT64_MAX = 2**64 - 1


# --------------------------------------------------------------------------------------------
# Values


@dataclass(frozen=True, slots=True, kw_only=True)
class Label:
    name: str
    value: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Annotation:
    name: str
    value: str


@dataclass(frozen=True, slots=True, kw_only=True)
class EnvironmentVariable:
    name: str
    value: str


@dataclass(frozen=True, slots=True, kw_only=True)
class EventHandler:
    name: str  # "pre-start" or "post-stop"
    exec: tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class MountPoint:
    name: str
    path: str
    read_only: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class Port:
    name: str
    protocol: str
    port: int
    count: int = 1
    socket_activated: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class Isolator:
    """One isolator. The value is kept as canonical JSON text, so the isolator is immutable,
    hashable and compares by content; :attr:`value` decodes a fresh copy."""

    name: str
    value_json: str

    @classmethod
    def of(cls, name: str, value: Any) -> Isolator:
        return cls(name=name, value_json=_canonical_json(value))

    @property
    def value(self) -> Any:
        return json.loads(self.value_json)

    @property
    def known(self) -> bool:
        return self.name in KNOWN_ISOLATORS


@dataclass(frozen=True, slots=True, kw_only=True)
class App:
    exec: tuple[str, ...] = ()
    user: str
    group: str
    supplementary_gids: tuple[int, ...] = ()
    event_handlers: tuple[EventHandler, ...] = ()
    #: None: not given (the executor uses ``/``).
    working_directory: str | None = None
    environment: tuple[EnvironmentVariable, ...] = ()
    mount_points: tuple[MountPoint, ...] = ()
    ports: tuple[Port, ...] = ()
    isolators: tuple[Isolator, ...] = ()
    #: Sorted (key, value) pairs.
    user_annotations: tuple[tuple[str, str], ...] = ()
    user_labels: tuple[tuple[str, str], ...] = ()

    def event_handler(self, name: str) -> EventHandler | None:
        return next((h for h in self.event_handlers if h.name == name), None)


@dataclass(frozen=True, slots=True, kw_only=True)
class Dependency:
    image_name: str
    image_id: str | None = None
    labels: tuple[Label, ...] = ()
    size: int | None = None


def _label(labels: tuple[Label, ...], name: str) -> str | None:
    return next((label.value for label in labels if label.name == name), None)


@dataclass(frozen=True, slots=True, kw_only=True)
class ImageManifest:
    name: str
    labels: tuple[Label, ...] = ()
    app: App | None = None
    dependencies: tuple[Dependency, ...] = ()
    path_whitelist: tuple[str, ...] = ()
    annotations: tuple[Annotation, ...] = ()
    #: The acVersion the document declared (to_json always writes SPEC_VERSION).
    ac_version: str = field(default=SPEC_VERSION, compare=False)
    #: Dotted paths of keys that were ignored, for the caller to warn about.
    ignored_keys: tuple[str, ...] = field(default=(), compare=False)
    #: The decoded document exactly as given (for ``image cat-manifest``).
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def label(self, name: str) -> str | None:
        return _label(self.labels, name)

    def annotation(self, name: str) -> str | None:
        return next((a.value for a in self.annotations if a.name == name), None)

    @property
    def version(self) -> str | None:
        return self.label("version")

    @property
    def name_version(self) -> str:
        version = self.version
        return self.name if version is None else f"{self.name}:{version}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Volume:
    name: str
    kind: str  # "host" or "empty"
    #: host only: an absolute path on the host.
    source: str | None = None
    #: None: not given.
    read_only: bool | None = None
    #: host only; None: not given (the executor should bind recursively).
    recursive: bool | None = None
    #: empty only; an octal string like "0755"; None: not given (the spec default is 0755).
    mode: str | None = None
    #: empty only; None: not given (the spec default is 0).
    uid: int | None = None
    gid: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Mount:
    volume: str
    path: str
    app_volume: Volume | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class RuntimeImage:
    #: None in a template (not reified) pod manifest.
    id: str | None = None
    name: str | None = None
    labels: tuple[Label, ...] = ()

    def label(self, name: str) -> str | None:
        return _label(self.labels, name)


@dataclass(frozen=True, slots=True, kw_only=True)
class RuntimeApp:
    name: str
    image: RuntimeImage
    #: Replaces the image's whole app when given.
    app: App | None = None
    read_only_root_fs: bool = False
    mounts: tuple[Mount, ...] = ()
    annotations: tuple[Annotation, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class ExposedPort:
    name: str
    host_port: int
    #: None: all addresses.
    host_ip: str | None = None
    pod_port: Port | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class PodManifest:
    apps: tuple[RuntimeApp, ...]
    volumes: tuple[Volume, ...] = ()
    isolators: tuple[Isolator, ...] = ()
    annotations: tuple[Annotation, ...] = ()
    ports: tuple[ExposedPort, ...] = ()
    user_annotations: tuple[tuple[str, str], ...] = ()
    user_labels: tuple[tuple[str, str], ...] = ()
    ac_version: str = field(default=SPEC_VERSION, compare=False)
    ignored_keys: tuple[str, ...] = field(default=(), compare=False)
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def app(self, name: str) -> RuntimeApp | None:
        return next((a for a in self.apps if a.name == name), None)

    def volume(self, name: str) -> Volume | None:
        return next((v for v in self.volumes if v.name == name), None)


def unknown_isolators(isolators: Iterable[Isolator]) -> tuple[str, ...]:
    """The names, each once and in order, of isolators this module does not know."""
    names = [i.name for i in isolators if i.name not in KNOWN_ISOLATORS]
    return tuple(dict.fromkeys(names))


def is_reified(pod: PodManifest) -> bool:
    """Whether every app of the pod names its image by ID (the form an executor runs)."""
    return all(app.image.id is not None for app in pod.apps)


# --------------------------------------------------------------------------------------------
# Host check


_MACHINE_TO_APPC = {
    "x86_64": "amd64",
    "amd64": "amd64",
    "aarch64": "aarch64",
    "arm64": "aarch64",
    "aarch64_be": "aarch64_be",
    "i386": "i386",
    "i486": "i386",
    "i586": "i386",
    "i686": "i386",
    "armv6l": "armv6l",
    "armv7l": "armv7l",
    "armv7b": "armv7b",
    "ppc64": "ppc64",
    "ppc64le": "ppc64le",
    "s390x": "s390x",
}


def appc_os_arch(system: str, machine: str) -> tuple[str, str]:
    """``platform.system()`` and ``platform.machine()`` in appc naming."""
    os_name = system.lower()
    machine = machine.lower()
    if os_name == "darwin" and machine in ("x86_64", "amd64"):
        return os_name, "x86_64"
    return os_name, _MACHINE_TO_APPC.get(machine, machine)


def host_os_arch() -> tuple[str, str]:
    """This host's os and arch in appc naming: ``("linux", "amd64")`` on x86_64 Linux."""
    uname = os.uname()  # what platform.system() and machine() read, without importing it
    return appc_os_arch(uname.sysname, uname.machine)


def check_runs_here(manifest: ImageManifest, host: tuple[str, str] | None = None) -> None:
    """Raise ImageError unless the image's os/arch labels allow it on ``host`` (default: this
    host). An image without an os label runs anywhere; arch only counts next to os."""
    host_os, host_arch = host if host is not None else host_os_arch()
    image_os = manifest.label("os")
    if image_os is None:
        return
    image_arch = manifest.label("arch")
    if image_os == host_os and (image_arch is None or image_arch == host_arch):
        return
    wanted = image_os if image_arch is None else f"{image_os}/{image_arch}"
    raise ImageError(
        f"image {manifest.name_version} is for {wanted}, but this host is {host_os}/{host_arch}",
        field="labels",
    )


# --------------------------------------------------------------------------------------------
# Reading


class _Missing:
    pass


_MISSING = _Missing()


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_json(value: object) -> bool:
    if value is None or isinstance(value, str | bool | int):
        return True
    if isinstance(value, float):
        return value == value and value not in (float("inf"), float("-inf"))
    if isinstance(value, list | tuple):
        return all(_is_json(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _is_json(v) for k, v in value.items())
    return False


def _canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False)


def _is_absolute(value: str) -> bool:
    return value.startswith("/")


def _valid_rfc3339(value: str) -> bool:
    match = _RFC3339.fullmatch(value)
    if match is None:
        return False
    year, month, day, hour, minute, second = (int(match.group(i)) for i in range(1, 7))
    try:
        datetime.datetime(year, month, day, hour, minute, second)
    except ValueError:
        return False
    if match.group(8) == "Z":
        return True
    return int(match.group(9)) <= 23 and int(match.group(10)) <= 59


def _valid_http_url(value: str) -> bool:
    try:
        parts = urlsplit(value)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.netloc)


class _Reader:
    """Collects problems and ignored keys while typed values are read out of decoded JSON."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.problems: list[Problem] = []
        self.ignored: list[str] = []

    def fail(self, path: str, expected: str, value: object = _MISSING) -> None:
        got = None if isinstance(value, _Missing) else describe_value(value)
        self.problems.append(Problem(expected, file=self.source, field=path or None, got=got))

    def table(self, value: object, path: str, known: Iterable[str]) -> dict[str, Any] | None:
        """``value`` as an object, recording its unknown keys; None (and a problem) if not."""
        if not isinstance(value, dict):
            self.fail(path, "must be an object", value)
            return None
        known = frozenset(known)
        for key in value:
            if not isinstance(key, str):
                self.fail(path, "must have only string keys", key)
            elif key not in known:
                self.ignored.append(_join(path, key))
        return value

    def present(self, obj: dict[str, Any], key: str, path: str, required: bool) -> bool:
        if obj.get(key) is not None:
            return True
        if required:
            self.fail(_join(path, key), "is required")
        return False

    def text(
        self,
        obj: dict[str, Any],
        key: str,
        path: str,
        *,
        required: bool = False,
        non_empty: bool = False,
    ) -> str | None:
        if not self.present(obj, key, path, required):
            return None
        value = obj[key]
        if not isinstance(value, str):
            self.fail(_join(path, key), "must be a string", value)
            return None
        if non_empty and not value:
            self.fail(_join(path, key), "must not be empty", value)
            return None
        return value

    def matching(
        self,
        obj: dict[str, Any],
        key: str,
        path: str,
        pattern: re.Pattern[str],
        rule: str,
        *,
        required: bool = False,
    ) -> str | None:
        if not self.present(obj, key, path, required):
            return None
        value = obj[key]
        if not isinstance(value, str) or not pattern.fullmatch(value):
            self.fail(_join(path, key), rule, value)
            return None
        return value

    def identifier(
        self, obj: dict[str, Any], key: str, path: str, *, required: bool = False
    ) -> str | None:
        return self.matching(obj, key, path, AC_IDENTIFIER, AC_IDENTIFIER_RULE, required=required)

    def acname(
        self, obj: dict[str, Any], key: str, path: str, *, required: bool = False
    ) -> str | None:
        return self.matching(obj, key, path, AC_NAME, AC_NAME_RULE, required=required)

    def absolute_path(
        self, obj: dict[str, Any], key: str, path: str, *, required: bool = False
    ) -> str | None:
        value = self.text(obj, key, path, required=required)
        if value is not None and not _is_absolute(value):
            self.fail(_join(path, key), "must be an absolute path", value)
            return None
        return value

    def boolean(self, obj: dict[str, Any], key: str, path: str) -> bool | None:
        if not self.present(obj, key, path, False):
            return None
        value = obj[key]
        if not isinstance(value, bool):
            self.fail(_join(path, key), "must be true or false", value)
            return None
        return value

    def integer(
        self,
        obj: dict[str, Any],
        key: str,
        path: str,
        low: int,
        high: int,
        *,
        required: bool = False,
        rule: str | None = None,
    ) -> int | None:
        if not self.present(obj, key, path, required):
            return None
        value = obj[key]
        if not _is_int(value) or not low <= value <= high:
            self.fail(_join(path, key), rule or f"must be an integer from {low} to {high}", value)
            return None
        assert isinstance(value, int)
        return value

    def items(self, obj: dict[str, Any], key: str, path: str) -> list[tuple[str, Any]]:
        """The (path, item) pairs of a list field; [] when absent or not a list."""
        if not self.present(obj, key, path, False):
            return []
        value = obj[key]
        where = _join(path, key)
        if not isinstance(value, list | tuple):
            self.fail(where, "must be a list", value)
            return []
        return [(f"{where}[{i}]", item) for i, item in enumerate(value)]

    def strings(
        self, obj: dict[str, Any], key: str, path: str, *, required: bool = False
    ) -> tuple[str, ...]:
        """A list of strings; with ``required``, a non-empty one."""
        if not self.present(obj, key, path, required):
            return ()
        out: list[str] = []
        items = self.items(obj, key, path)
        for where, item in items:
            if isinstance(item, str):
                out.append(item)
            else:
                self.fail(where, "must be a string", item)
        if required and not items and isinstance(obj[key], list | tuple):
            self.fail(_join(path, key), "must not be empty", obj[key])
        return tuple(out)

    def string_map(self, obj: dict[str, Any], key: str, path: str) -> tuple[tuple[str, str], ...]:
        if not self.present(obj, key, path, False):
            return ()
        value = obj[key]
        where = _join(path, key)
        if not isinstance(value, dict):
            self.fail(where, "must be an object of strings", value)
            return ()
        out: list[tuple[str, str]] = []
        for k, v in value.items():
            if not isinstance(k, str):
                self.fail(where, "must have only string keys", k)
            elif not isinstance(v, str):
                self.fail(f"{where}.{k}", "must be a string", v)
            else:
                out.append((k, v))
        return tuple(sorted(out))

    def unique(self, seen: dict[str, str], name: str, where: str, what: str) -> bool:
        """Record ``name`` at ``where``; False (and a problem) if it was seen before."""
        if name in seen:
            self.fail(where, f"must be unique; {seen[name]} has the same {what}", name)
            return False
        seen[name] = where
        return True


def _read_version(r: _Reader, obj: dict[str, Any]) -> str:
    if not r.present(obj, "acVersion", "", True):
        return SPEC_VERSION
    value = obj["acVersion"]
    if not isinstance(value, str) or not _SEMVER.fullmatch(value):
        r.fail("acVersion", "must be a SemVer version like 0.8.11", value)
        return SPEC_VERSION
    if value.split(".", 1)[0] != "0":
        r.fail(
            "acVersion",
            f"must have major version 0: this is appc {SPEC_VERSION} (and reads 0.x manifests)",
            value,
        )
    return value


def _read_kind(r: _Reader, obj: dict[str, Any], kind: str) -> None:
    if r.present(obj, "acKind", "", True) and obj["acKind"] != kind:
        r.fail("acKind", f'must be "{kind}"', obj["acKind"])


def _read_labels(r: _Reader, obj: dict[str, Any], key: str, path: str) -> tuple[Label, ...]:
    labels: list[Label] = []
    seen: dict[str, str] = {}
    value_at: dict[str, str] = {}
    for where, item in r.items(obj, key, path):
        entry = r.table(item, where, ("name", "value"))
        if entry is None:
            continue
        name = r.identifier(entry, "name", where, required=True)
        value = r.text(entry, "value", where, required=True)
        if name == "name":
            r.fail(_join(where, "name"), 'must not be "name" (the name is its own field)', name)
            continue
        if name is None or not r.unique(seen, name, _join(where, "name"), "label name"):
            continue
        if value is None:
            continue
        value_at[name] = _join(where, "value")
        labels.append(Label(name=name, value=value))
    os_name = _label(tuple(labels), "os")
    arch = _label(tuple(labels), "arch")
    if os_name is not None:
        archs = VALID_OS_ARCH.get(os_name)
        if archs is None:
            r.fail(
                value_at["os"], "must be a known os: " + ", ".join(sorted(VALID_OS_ARCH)), os_name
            )
        elif arch is not None and arch not in archs:
            r.fail(value_at["arch"], f"must be an arch for {os_name}: " + ", ".join(archs), arch)
    return tuple(labels)


def _read_annotations(
    r: _Reader, obj: dict[str, Any], key: str, path: str
) -> tuple[Annotation, ...]:
    annotations: list[Annotation] = []
    seen: dict[str, str] = {}
    for where, item in r.items(obj, key, path):
        entry = r.table(item, where, ("name", "value"))
        if entry is None:
            continue
        name = r.identifier(entry, "name", where, required=True)
        value = r.text(entry, "value", where, required=True)
        if name is None or not r.unique(seen, name, _join(where, "name"), "annotation name"):
            continue
        if value is None:
            continue
        if name == "created" and not _valid_rfc3339(value):
            r.fail(
                _join(where, "value"),
                "must be an RFC 3339 time like 2014-10-27T19:32:27Z (annotation created)",
                value,
            )
            continue
        if name in ("homepage", "documentation") and not _valid_http_url(value):
            r.fail(
                _join(where, "value"), f"must be an http or https URL (annotation {name})", value
            )
            continue
        annotations.append(Annotation(name=name, value=value))
    return tuple(annotations)


# Isolators -----------------------------------------------------------------------------------


def _check_quantities(r: _Reader, name: str, value: Any, path: str) -> None:
    """resource/cpu and resource/memory: ``{request?, limit?}``, ``default`` false or absent."""
    entry = r.table(value, path, _ISOLATOR_KEYS[name])
    if entry is None:
        return
    if entry.get("default") is not None and entry["default"] is not False:
        r.fail(_join(path, "default"), f"must be false or absent for {name}", entry["default"])
    parse = parse_cpu_millis if name == "resource/cpu" else parse_memory_bytes
    amounts: dict[str, int] = {}
    for key in ("request", "limit"):
        if entry.get(key) is None:
            continue
        try:
            amounts[key] = parse(entry[key])
        except QuantityError as exc:
            r.fail(_join(path, key), str(exc), entry[key])
    if "request" in amounts and "limit" in amounts and amounts["request"] > amounts["limit"]:
        r.fail(_join(path, "request"), "must not be more than the limit", entry["request"])


def _check_default_limit(r: _Reader, name: str, value: Any, path: str) -> None:
    """resource/block-bandwidth, block-iops, network-bandwidth: ``{default: true, limit}``."""
    entry = r.table(value, path, _ISOLATOR_KEYS[name])
    if entry is None:
        return
    if entry.get("default") is not True:
        r.fail(_join(path, "default"), f"must be true for {name}", entry.get("default", _MISSING))
    if entry.get("request") is not None:
        r.fail(
            _join(path, "request"),
            f"must be absent for {name} (it has only a limit)",
            entry["request"],
        )
    if not r.present(entry, "limit", path, True):
        return
    try:
        amount = parse_quantity(entry["limit"])
    except QuantityError:
        amount = None
    if amount is None or amount < 1 or amount.denominator != 1:
        r.fail(
            _join(path, "limit"), "must be a whole quantity of at least 1, like 10M", entry["limit"]
        )


def _check_set(r: _Reader, name: str, value: Any, path: str) -> None:
    """Capability and seccomp sets: ``{set: [...]}`` (seccomp: and ``errno``)."""
    seccomp = "seccomp" in name
    entry = r.table(value, path, _ISOLATOR_KEYS[name])
    if entry is None:
        return
    if r.present(entry, "set", path, True):
        items = r.strings(entry, "set", path, required=True)
        if any(not item for item in items):
            r.fail(_join(path, "set"), "must not contain empty names", entry["set"])
    if seccomp:
        r.matching(entry, "errno", path, _ERRNO, "must be an errno name in capitals, like EPERM")


def _check_selinux(r: _Reader, name: str, value: Any, path: str) -> None:
    entry = r.table(value, path, _ISOLATOR_KEYS[name])
    if entry is None:
        return
    for key in ("user", "role", "type", "level"):
        text = r.text(entry, key, path, required=True, non_empty=True)
        if text is not None and key != "level" and ":" in text:
            r.fail(_join(path, key), "must not contain ':'", text)


def _check_apparmor(r: _Reader, name: str, value: Any, path: str) -> None:
    entry = r.table(value, path, _ISOLATOR_KEYS[name])
    if entry is not None:
        r.text(entry, "profile", path, required=True, non_empty=True)


def _check_bool(r: _Reader, name: str, value: Any, path: str) -> None:
    if not isinstance(value, bool):
        r.fail(path, f"must be true or false for {name}", value)


def _check_oom(r: _Reader, name: str, value: Any, path: str) -> None:
    if not _is_int(value) or not -1000 <= value <= 1000:
        r.fail(path, "must be an integer from -1000 to 1000", value)


def _check_cpu_shares(r: _Reader, name: str, value: Any, path: str) -> None:
    if not _is_int(value) or not 2 <= value <= 262144:
        r.fail(path, "must be an integer from 2 to 262144", value)


def _check_sysctl(r: _Reader, name: str, value: Any, path: str) -> None:
    if not isinstance(value, dict):
        r.fail(path, "must be an object of sysctl names and string values", value)
        return
    for key, setting in value.items():
        if not isinstance(key, str) or not key:
            r.fail(path, "must have non-empty sysctl names as keys", key)
        elif not isinstance(setting, str):
            r.fail(_join(path, key), "must be a string (sysctl values are strings)", setting)


_ISOLATOR_CHECKS = {
    "resource/cpu": _check_quantities,
    "resource/memory": _check_quantities,
    "resource/block-bandwidth": _check_default_limit,
    "resource/block-iops": _check_default_limit,
    "resource/network-bandwidth": _check_default_limit,
    "os/linux/capabilities-retain-set": _check_set,
    "os/linux/capabilities-remove-set": _check_set,
    "os/linux/no-new-privileges": _check_bool,
    "os/linux/seccomp-retain-set": _check_set,
    "os/linux/seccomp-remove-set": _check_set,
    "os/linux/selinux-context": _check_selinux,
    "os/linux/apparmor-profile": _check_apparmor,
    "os/linux/oom-score-adj": _check_oom,
    "os/linux/cpu-shares": _check_cpu_shares,
    "os/unix/sysctl": _check_sysctl,
}

# The keys of known isolators' object values; others are ignored (and dropped).
_ISOLATOR_KEYS: dict[str, tuple[str, ...]] = {
    "resource/cpu": ("default", "request", "limit"),
    "resource/memory": ("default", "request", "limit"),
    "resource/block-bandwidth": ("default", "request", "limit"),
    "resource/block-iops": ("default", "request", "limit"),
    "resource/network-bandwidth": ("default", "request", "limit"),
    "os/linux/capabilities-retain-set": ("set",),
    "os/linux/capabilities-remove-set": ("set",),
    "os/linux/seccomp-retain-set": ("set", "errno"),
    "os/linux/seccomp-remove-set": ("set", "errno"),
    "os/linux/selinux-context": ("user", "role", "type", "level"),
    "os/linux/apparmor-profile": ("profile",),
}

# Isolators of which a list may hold only one between them.
_EXCLUSIVE = (
    ("os/linux/capabilities-retain-set", "os/linux/capabilities-remove-set"),
    ("os/linux/seccomp-retain-set", "os/linux/seccomp-remove-set"),
    ("os/unix/sysctl",),
)


def _read_isolators(r: _Reader, obj: dict[str, Any], key: str, path: str) -> tuple[Isolator, ...]:
    isolators: list[Isolator] = []
    first_of_group: dict[int, tuple[str, str]] = {}
    for where, item in r.items(obj, key, path):
        entry = r.table(item, where, ("name", "value"))
        if entry is None:
            continue
        name = r.identifier(entry, "name", where, required=True)
        if "value" not in entry:
            r.fail(_join(where, "value"), "is required")
            continue
        value = entry["value"]
        if name is None:
            continue
        if not _is_json(value):
            r.fail(_join(where, "value"), "must be a JSON value", value)
            continue
        check = _ISOLATOR_CHECKS.get(name)
        if check is not None:
            check(r, name, value, _join(where, "value"))
        keys = _ISOLATOR_KEYS.get(name)
        if keys is not None and isinstance(value, dict):
            value = {k: v for k, v in value.items() if k in keys}  # ignored keys are dropped
        for group, names in enumerate(_EXCLUSIVE):
            if name not in names:
                continue
            if group in first_of_group:
                other, other_where = first_of_group[group]
                expected = (
                    "must appear at most once"
                    if other == name
                    else f"must not be combined with {other}"
                )
                r.fail(_join(where, "name"), f"{expected} ({other_where})", name)
            else:
                first_of_group[group] = (name, where)
        isolators.append(Isolator.of(name, value))
    return tuple(isolators)


# App --------------------------------------------------------------------------------------------

_APP_KEYS = (
    "exec",
    "user",
    "group",
    "supplementaryGIDs",
    "supplementaryGids",
    "eventHandlers",
    "workingDirectory",
    "environment",
    "mountPoints",
    "ports",
    "isolators",
    "userAnnotations",
    "userLabels",
)


def _read_port(r: _Reader, value: Any, path: str) -> Port | None:
    entry = r.table(value, path, ("name", "protocol", "port", "count", "socketActivated"))
    if entry is None:
        return None
    name = r.acname(entry, "name", path, required=True)
    protocol = r.text(entry, "protocol", path, required=True, non_empty=True)
    port = r.integer(
        entry, "port", path, 1, 65535, required=True, rule="must be a port number from 1 to 65535"
    )
    count = r.integer(
        entry, "count", path, 1, _UINT32_MAX, rule="must be a port count of at least 1"
    )
    socket_activated = r.boolean(entry, "socketActivated", path)
    if port is not None and count is not None and port + count - 1 > 65535:
        r.fail(
            _join(path, "count"),
            f"must keep the port range within 65535 (port {port} + count - 1 <= 65535)",
            count,
        )
        return None
    if name is None or protocol is None or port is None:
        return None
    return Port(
        name=name,
        protocol=protocol,
        port=port,
        count=1 if count is None else count,
        socket_activated=bool(socket_activated),
    )


def _read_app(r: _Reader, value: Any, path: str) -> App | None:
    entry = r.table(value, path, _APP_KEYS)
    if entry is None:
        return None
    exec_ = r.strings(entry, "exec", path)
    user = r.text(entry, "user", path, required=True, non_empty=True)
    group = r.text(entry, "group", path, required=True, non_empty=True)

    gid_key = "supplementaryGIDs"
    if entry.get("supplementaryGIDs") is None:
        gid_key = "supplementaryGids"
    elif entry.get("supplementaryGids") is not None:
        r.fail(
            _join(path, "supplementaryGids"),
            "must not be given together with supplementaryGIDs (the same field spelt twice)",
            entry["supplementaryGids"],
        )
    gids: list[int] = []
    for where, item in r.items(entry, gid_key, path):
        if _is_int(item) and 0 <= item <= _UINT32_MAX:
            gids.append(item)
        else:
            r.fail(where, "must be a group ID (a non-negative integer)", item)

    handlers: list[EventHandler] = []
    seen_handlers: dict[str, str] = {}
    for where, item in r.items(entry, "eventHandlers", path):
        handler = r.table(item, where, ("name", "exec"))
        if handler is None:
            continue
        name = r.text(handler, "name", where, required=True)
        argv = r.strings(handler, "exec", where, required=True)
        if name is not None and name not in EVENT_HANDLER_NAMES:
            r.fail(_join(where, "name"), 'must be "pre-start" or "post-stop"', name)
            continue
        if name is None or not r.unique(seen_handlers, name, _join(where, "name"), "name"):
            continue
        handlers.append(EventHandler(name=name, exec=argv))

    working_directory = r.absolute_path(entry, "workingDirectory", path)

    environment: list[EnvironmentVariable] = []
    seen_env: dict[str, str] = {}
    for where, item in r.items(entry, "environment", path):
        variable = r.table(item, where, ("name", "value"))
        if variable is None:
            continue
        name = r.matching(variable, "name", where, ENV_NAME, ENV_NAME_RULE, required=True)
        env_value = r.text(variable, "value", where, required=True)
        if name is None or not r.unique(seen_env, name, _join(where, "name"), "name"):
            continue
        if env_value is not None:
            environment.append(EnvironmentVariable(name=name, value=env_value))

    mount_points: list[MountPoint] = []
    seen_mounts: dict[str, str] = {}
    for where, item in r.items(entry, "mountPoints", path):
        mount_point = r.table(item, where, ("name", "path", "readOnly"))
        if mount_point is None:
            continue
        name = r.acname(mount_point, "name", where, required=True)
        mount_path = r.absolute_path(mount_point, "path", where, required=True)
        read_only = r.boolean(mount_point, "readOnly", where)
        if name is None or not r.unique(seen_mounts, name, _join(where, "name"), "name"):
            continue
        if mount_path is not None:
            mount_points.append(MountPoint(name=name, path=mount_path, read_only=bool(read_only)))

    ports: list[Port] = []
    seen_ports: dict[str, str] = {}
    for where, item in r.items(entry, "ports", path):
        port = _read_port(r, item, where)
        if port is not None and r.unique(seen_ports, port.name, _join(where, "name"), "name"):
            ports.append(port)

    isolators = _read_isolators(r, entry, "isolators", path)
    user_annotations = r.string_map(entry, "userAnnotations", path)
    user_labels = r.string_map(entry, "userLabels", path)
    if user is None or group is None:
        return None
    return App(
        exec=exec_,
        user=user,
        group=group,
        supplementary_gids=tuple(gids),
        event_handlers=tuple(handlers),
        working_directory=working_directory,
        environment=tuple(environment),
        mount_points=tuple(mount_points),
        ports=tuple(ports),
        isolators=isolators,
        user_annotations=user_annotations,
        user_labels=user_labels,
    )


# Image manifest ----------------------------------------------------------------------------------

_IMAGE_KEYS = (
    "acKind",
    "acVersion",
    "name",
    "labels",
    "app",
    "dependencies",
    "pathWhitelist",
    "annotations",
)


def _read_dependency(r: _Reader, value: Any, path: str) -> Dependency | None:
    entry = r.table(value, path, ("imageName", "imageID", "labels", "size"))
    if entry is None:
        return None
    image_name = r.identifier(entry, "imageName", path, required=True)
    image_id = r.matching(entry, "imageID", path, _LOOSE_IMAGE_ID, DEPENDENCY_ID_RULE)
    labels = _read_labels(r, entry, "labels", path)
    size = r.integer(
        entry, "size", path, 0, _UINT64_MAX, rule="must be a size in bytes (a non-negative integer)"
    )
    if image_name is None:
        return None
    return Dependency(image_name=image_name, image_id=image_id, labels=labels, size=size)


def _read_image(r: _Reader, doc: dict[str, Any]) -> ImageManifest | None:
    _read_kind(r, doc, "ImageManifest")
    version = _read_version(r, doc)
    name = r.identifier(doc, "name", "", required=True)
    labels = _read_labels(r, doc, "labels", "")
    app = _read_app(r, doc["app"], "app") if r.present(doc, "app", "", False) else None
    dependencies = [
        _read_dependency(r, item, where) for where, item in r.items(doc, "dependencies", "")
    ]
    whitelist: list[str] = []
    for where, item in r.items(doc, "pathWhitelist", ""):
        if isinstance(item, str) and _is_absolute(item):
            whitelist.append(item)
        else:
            r.fail(where, "must be an absolute path", item)
    annotations = _read_annotations(r, doc, "annotations", "")
    if name is None:
        return None
    return ImageManifest(
        name=name,
        labels=labels,
        app=app,
        dependencies=tuple(d for d in dependencies if d is not None),
        path_whitelist=tuple(whitelist),
        annotations=annotations,
        ac_version=version,
    )


# Pod manifest -------------------------------------------------------------------------------------

_POD_KEYS = (
    "acVersion",
    "acKind",
    "apps",
    "volumes",
    "isolators",
    "annotations",
    "ports",
    "userAnnotations",
    "userLabels",
)
_VOLUME_KEYS = ("name", "kind", "source", "readOnly", "recursive", "mode", "uid", "gid")


def _read_volume(r: _Reader, value: Any, path: str) -> Volume | None:
    entry = r.table(value, path, _VOLUME_KEYS)
    if entry is None:
        return None
    name = r.acname(entry, "name", path, required=True)
    kind: str | None = None
    if r.present(entry, "kind", path, True):
        if entry["kind"] in VOLUME_KINDS:
            kind = entry["kind"]
        else:
            r.fail(_join(path, "kind"), 'must be "host" or "empty"', entry["kind"])
    read_only = r.boolean(entry, "readOnly", path)
    source: str | None = None
    recursive: bool | None = None
    mode: str | None = None
    uid = gid = None
    if kind == "host":
        source = r.absolute_path(entry, "source", path, required=True)
        recursive = r.boolean(entry, "recursive", path)
        for key in ("mode", "uid", "gid"):
            if entry.get(key) is not None:
                r.fail(
                    _join(path, key),
                    f"must be absent for a host volume (only empty volumes have a {key})",
                    entry[key],
                )
    elif kind == "empty":
        for key in ("source", "recursive"):
            if entry.get(key) is not None:
                r.fail(
                    _join(path, key),
                    f"must be absent for an empty volume (only host volumes have a {key})",
                    entry[key],
                )
        mode = _read_mode(r, entry, path)
        uid = r.integer(
            entry, "uid", path, 0, _UINT32_MAX, rule="must be a user ID (a non-negative integer)"
        )
        gid = r.integer(
            entry, "gid", path, 0, _UINT32_MAX, rule="must be a group ID (a non-negative integer)"
        )
    if name is None or kind is None:
        return None
    return Volume(
        name=name,
        kind=kind,
        source=source,
        read_only=read_only,
        recursive=recursive,
        mode=mode,
        uid=uid,
        gid=gid,
    )


def _read_mode(r: _Reader, entry: dict[str, Any], path: str) -> str | None:
    """An octal mode string; a 0.7.x integer mode (493) becomes its 0.8 string ("0755")."""
    if not r.present(entry, "mode", path, False):
        return None
    value = entry["mode"]
    if _is_int(value) and 0 <= value <= 0o7777:
        return f"{value:04o}"
    if isinstance(value, str) and _OCTAL_MODE.fullmatch(value):
        return value
    r.fail(_join(path, "mode"), 'must be an octal mode string like "0755"', value)
    return None


def _read_runtime_app(r: _Reader, value: Any, path: str) -> RuntimeApp | None:
    entry = r.table(
        value, path, ("name", "image", "app", "readOnlyRootFS", "mounts", "annotations")
    )
    if entry is None:
        return None
    name = r.acname(entry, "name", path, required=True)
    image: RuntimeImage | None = None
    if r.present(entry, "image", path, True):
        where = _join(path, "image")
        image_entry = r.table(entry["image"], where, ("id", "name", "labels"))
        if image_entry is not None:
            image_id = r.matching(image_entry, "id", where, IMAGE_ID, IMAGE_ID_RULE)
            image_name = r.identifier(image_entry, "name", where)
            labels = _read_labels(r, image_entry, "labels", where)
            if image_entry.get("id") is None and image_entry.get("name") is None:
                r.fail(where, "must have an id or a name", image_entry)
            image = RuntimeImage(id=image_id, name=image_name, labels=labels)
    app = None
    if r.present(entry, "app", path, False):
        app = _read_app(r, entry["app"], _join(path, "app"))
    read_only_root_fs = r.boolean(entry, "readOnlyRootFS", path)
    mounts: list[Mount] = []
    for where, item in r.items(entry, "mounts", path):
        mount = r.table(item, where, ("volume", "path", "appVolume"))
        if mount is None:
            continue
        volume = r.acname(mount, "volume", where, required=True)
        mount_path = r.absolute_path(mount, "path", where, required=True)
        app_volume = None
        if r.present(mount, "appVolume", where, False):
            app_volume = _read_volume(r, mount["appVolume"], _join(where, "appVolume"))
        if volume is not None and mount_path is not None:
            mounts.append(Mount(volume=volume, path=mount_path, app_volume=app_volume))
    annotations = _read_annotations(r, entry, "annotations", path)
    if name is None or image is None:
        return None
    return RuntimeApp(
        name=name,
        image=image,
        app=app,
        read_only_root_fs=bool(read_only_root_fs),
        mounts=tuple(mounts),
        annotations=annotations,
    )


def _read_exposed_port(r: _Reader, value: Any, path: str) -> ExposedPort | None:
    entry = r.table(value, path, ("name", "hostPort", "hostIP", "podPort"))
    if entry is None:
        return None
    name = r.acname(entry, "name", path, required=True)
    host_port = r.integer(
        entry,
        "hostPort",
        path,
        1,
        65535,
        required=True,
        rule="must be a port number from 1 to 65535",
    )
    host_ip = r.matching(entry, "hostIP", path, _IPV4, "must be an IPv4 address like 10.0.0.1")
    pod_port = None
    if r.present(entry, "podPort", path, False):
        pod_port = _read_port(r, entry["podPort"], _join(path, "podPort"))
    if name is None or host_port is None:
        return None
    return ExposedPort(name=name, host_port=host_port, host_ip=host_ip, pod_port=pod_port)


def _read_pod(r: _Reader, doc: dict[str, Any]) -> PodManifest | None:
    version = _read_version(r, doc)
    _read_kind(r, doc, "PodManifest")
    apps: list[RuntimeApp] = []
    seen_apps: dict[str, str] = {}
    if r.present(doc, "apps", "", True):
        for where, item in r.items(doc, "apps", ""):
            app = _read_runtime_app(r, item, where)
            if app is not None and r.unique(seen_apps, app.name, _join(where, "name"), "name"):
                apps.append(app)
    volumes: list[Volume] = []
    seen_volumes: dict[str, str] = {}
    for where, item in r.items(doc, "volumes", ""):
        volume = _read_volume(r, item, where)
        if volume is not None and r.unique(seen_volumes, volume.name, _join(where, "name"), "name"):
            volumes.append(volume)
    isolators = _read_isolators(r, doc, "isolators", "")
    annotations = _read_annotations(r, doc, "annotations", "")
    ports = [_read_exposed_port(r, item, where) for where, item in r.items(doc, "ports", "")]
    return PodManifest(
        apps=tuple(apps),
        volumes=tuple(volumes),
        isolators=isolators,
        annotations=annotations,
        ports=tuple(p for p in ports if p is not None),
        user_annotations=r.string_map(doc, "userAnnotations", ""),
        user_labels=r.string_map(doc, "userLabels", ""),
        ac_version=version,
    )


# Entry points -------------------------------------------------------------------------------------


class _Reject(ValueError):
    pass


def _reject_constant(name: str) -> Any:
    raise _Reject(f"{name} is not JSON")


def _decode(data: bytes | str | Mapping[str, Any], source: str) -> dict[str, Any]:
    """The document as a dict, or a ValidationError with one problem."""
    if isinstance(data, Mapping):
        return data if isinstance(data, dict) else dict(data)
    if isinstance(data, bytes | bytearray):
        try:
            text = bytes(data).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ValidationError(
                [Problem(f"must be UTF-8 JSON (bad byte at offset {exc.start})", file=source)],
                what=source,
            ) from None
    elif isinstance(data, str):
        text = data
    else:
        raise ValidationError(
            [Problem("must be a JSON object", file=source, got=describe_value(data))], what=source
        )
    try:
        doc = json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        problem = Problem(
            f"is not valid JSON: {exc.msg} (column {exc.colno})", file=source, line=exc.lineno
        )
        raise ValidationError([problem], what=source) from None
    except _Reject as exc:
        raise ValidationError(
            [Problem(f"is not valid JSON: {exc}", file=source)], what=source
        ) from None
    except RecursionError:
        raise ValidationError([Problem("is nested too deeply", file=source)], what=source) from None
    if not isinstance(doc, dict):
        raise ValidationError(
            [Problem("must be a JSON object", file=source, got=describe_value(doc))], what=source
        )
    return doc


def _finish(r: _Reader, source: str) -> None:
    if r.problems:
        raise ValidationError(r.problems, what=source)


def parse_image_manifest(
    data: bytes | str | Mapping[str, Any], *, source: str = "manifest"
) -> ImageManifest:
    """An image manifest from JSON bytes, text or a decoded dict; ValidationError listing every
    problem otherwise. ``source`` names the document in problems (``example.aci:manifest``)."""
    return _parse(data, source, _IMAGE_KEYS, _read_image)


def parse_pod_manifest(
    data: bytes | str | Mapping[str, Any], *, source: str = "pod manifest"
) -> PodManifest:
    """A pod manifest (template or reified) from JSON bytes, text or a decoded dict."""
    return _parse(data, source, _POD_KEYS, _read_pod)


_Document = TypeVar("_Document", ImageManifest, PodManifest)


def _parse(
    data: bytes | str | Mapping[str, Any],
    source: str,
    keys: Any,
    read: Callable[[_Reader, dict[str, Any]], _Document | None],
) -> _Document:
    doc = _decode(data, source)
    r = _Reader(source)
    r.table(doc, "", keys)
    try:
        value: _Document | None = read(r, doc)
    except RecursionError:
        r.fail("", "is nested too deeply")
        value = None
    _finish(r, source)
    assert value is not None
    return _with_provenance(value, r, doc)


def _with_provenance(value: _Document, r: _Reader, doc: dict[str, Any]) -> _Document:
    return dataclasses.replace(value, ignored_keys=tuple(r.ignored), raw=doc)


# --------------------------------------------------------------------------------------------
# Writing


def _pairs(items: Iterable[Label | Annotation | EnvironmentVariable]) -> list[dict[str, str]]:
    return [{"name": item.name, "value": item.value} for item in items]


def _port_json(port: Port) -> dict[str, Any]:
    return {
        "name": port.name,
        "protocol": port.protocol,
        "port": port.port,
        "count": port.count,
        "socketActivated": port.socket_activated,
    }


def _app_json(app: App) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if app.exec:
        out["exec"] = list(app.exec)
    out["user"] = app.user
    out["group"] = app.group
    if app.supplementary_gids:
        out["supplementaryGIDs"] = list(app.supplementary_gids)
    if app.event_handlers:
        out["eventHandlers"] = [{"name": h.name, "exec": list(h.exec)} for h in app.event_handlers]
    if app.working_directory is not None:
        out["workingDirectory"] = app.working_directory
    if app.environment:
        out["environment"] = _pairs(app.environment)
    if app.mount_points:
        out["mountPoints"] = [_mount_point_json(m) for m in app.mount_points]
    if app.ports:
        out["ports"] = [_port_json(p) for p in app.ports]
    if app.isolators:
        out["isolators"] = [{"name": i.name, "value": i.value} for i in app.isolators]
    if app.user_annotations:
        out["userAnnotations"] = dict(app.user_annotations)
    if app.user_labels:
        out["userLabels"] = dict(app.user_labels)
    return out


def _mount_point_json(mount_point: MountPoint) -> dict[str, Any]:
    out: dict[str, Any] = {"name": mount_point.name, "path": mount_point.path}
    if mount_point.read_only:
        out["readOnly"] = True
    return out


def image_manifest_to_json(manifest: ImageManifest) -> dict[str, Any]:
    """Canonical appc 0.8.11 JSON: the spec's field order, absent optionals left out."""
    out: dict[str, Any] = {
        "acKind": "ImageManifest",
        "acVersion": SPEC_VERSION,
        "name": manifest.name,
    }
    if manifest.labels:
        out["labels"] = _pairs(manifest.labels)
    if manifest.app is not None:
        out["app"] = _app_json(manifest.app)
    if manifest.dependencies:
        out["dependencies"] = [_dependency_json(d) for d in manifest.dependencies]
    if manifest.path_whitelist:
        out["pathWhitelist"] = list(manifest.path_whitelist)
    if manifest.annotations:
        out["annotations"] = _pairs(manifest.annotations)
    return out


def _dependency_json(dependency: Dependency) -> dict[str, Any]:
    out: dict[str, Any] = {"imageName": dependency.image_name}
    if dependency.image_id is not None:
        out["imageID"] = dependency.image_id
    if dependency.labels:
        out["labels"] = _pairs(dependency.labels)
    if dependency.size is not None:
        out["size"] = dependency.size
    return out


def _volume_json(volume: Volume) -> dict[str, Any]:
    out: dict[str, Any] = {"name": volume.name, "kind": volume.kind}
    optional = (
        ("source", volume.source),
        ("readOnly", volume.read_only),
        ("recursive", volume.recursive),
        ("mode", volume.mode),
        ("uid", volume.uid),
        ("gid", volume.gid),
    )
    out.update((key, value) for key, value in optional if value is not None)
    return out


def _runtime_app_json(app: RuntimeApp) -> dict[str, Any]:
    image: dict[str, Any] = {}
    if app.image.name is not None:
        image["name"] = app.image.name
    if app.image.id is not None:
        image["id"] = app.image.id
    if app.image.labels:
        image["labels"] = _pairs(app.image.labels)
    out: dict[str, Any] = {"name": app.name, "image": image}
    if app.app is not None:
        out["app"] = _app_json(app.app)
    if app.read_only_root_fs:
        out["readOnlyRootFS"] = True
    if app.mounts:
        out["mounts"] = [_mount_json(m) for m in app.mounts]
    if app.annotations:
        out["annotations"] = _pairs(app.annotations)
    return out


def _mount_json(mount: Mount) -> dict[str, Any]:
    out: dict[str, Any] = {"volume": mount.volume, "path": mount.path}
    if mount.app_volume is not None:
        out["appVolume"] = _volume_json(mount.app_volume)
    return out


def _exposed_port_json(port: ExposedPort) -> dict[str, Any]:
    out: dict[str, Any] = {"name": port.name, "hostPort": port.host_port}
    if port.host_ip is not None:
        out["hostIP"] = port.host_ip
    if port.pod_port is not None:
        out["podPort"] = _port_json(port.pod_port)
    return out


def pod_manifest_to_json(pod: PodManifest) -> dict[str, Any]:
    """Canonical appc 0.8.11 JSON for a pod manifest."""
    out: dict[str, Any] = {
        "acVersion": SPEC_VERSION,
        "acKind": "PodManifest",
        "apps": [_runtime_app_json(a) for a in pod.apps],
    }
    if pod.volumes:
        out["volumes"] = [_volume_json(v) for v in pod.volumes]
    if pod.isolators:
        out["isolators"] = [{"name": i.name, "value": i.value} for i in pod.isolators]
    if pod.annotations:
        out["annotations"] = _pairs(pod.annotations)
    if pod.ports:
        out["ports"] = [_exposed_port_json(p) for p in pod.ports]
    if pod.user_annotations:
        out["userAnnotations"] = dict(pod.user_annotations)
    if pod.user_labels:
        out["userLabels"] = dict(pod.user_labels)
    return out


# --------------------------------------------------------------------------------------------
# App strings


def parse_app_string(text: str, *, source: str | None = None) -> tuple[str, dict[str, str]]:
    """``name[:version][,label=value...]`` as (name, labels); the version is the ``version``
    label. At most one colon, straight after the name (as appc discovery reads it)."""
    problems: list[Problem] = []

    def bad(expected: str) -> None:
        problems.append(Problem(expected, file=source, got=describe_value(text)))

    if not isinstance(text, str):
        bad("must be an app string like example.com/app:1.0,os=linux")
        raise ValidationError(problems, what="app string")
    first_comma, first_colon = text.find(","), text.find(":")
    if text.count(":") > 1 or (first_comma > -1 and first_colon > first_comma):
        bad("may have at most one colon, right after the name (name:version,label=value)")
        raise ValidationError(problems, what="app string")
    head, comma, rest = text.partition(",")
    name, colon, version = head.partition(":")
    if not AC_IDENTIFIER.fullmatch(name):
        bad("the name " + AC_IDENTIFIER_RULE)
    labels: dict[str, str] = {}
    if colon:
        if version:
            labels["version"] = version
        else:
            bad("must have a version after the colon")
    for part in rest.split(",") if comma else ():
        key, equals, value = part.partition("=")
        if not equals or not value:
            bad(f"has {part!r} where a label=value belongs")
        elif not AC_IDENTIFIER.fullmatch(key):
            bad(f"has the label {key!r}, but a label name " + AC_IDENTIFIER_RULE)
        elif key == "name":
            bad('must not have a label called "name" (the name comes first)')
        elif key in labels:
            bad(f"has the label {key!r} twice")
        else:
            labels[key] = value
    if problems:
        raise ValidationError(problems, what="app string")
    return name, labels


def format_app_string(name: str, labels: Mapping[str, str]) -> str:
    """The app string for a name and labels: ``example.com/app:1.0,os=linux``. Labels keep
    their order; a value holding a comma or colon will not read back."""
    version = labels.get("version")
    text = name if version is None else f"{name}:{version}"
    return text + "".join(f",{k}={v}" for k, v in labels.items() if k != "version")
