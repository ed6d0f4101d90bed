"""One pod document to its canonical spec: ``rktcfg/v1`` and the Kubernetes ``v1`` subset.

:func:`build_pod` checks the document's structure (``rktcfg.spec.schema``), then what spans
fields, and builds the canonical spec: every key present, defaults filled in, host volume
sources and image paths made absolute against the file's directory. Checks:

- ``apiVersion`` is ``rktcfg/v1`` or ``v1``, ``kind`` is ``Pod``;
- unknown fields (with the closest known name), wrong types, bad single values;
- label and annotation names are AC Identifiers (``rktcfg.dev/`` is rktcfg's own);
- ``net`` names, ``host`` and ``none`` alone;
- env names and string values; Kubernetes ``valueFrom`` is refused, naming the field;
- isolators: short forms ``cpu``, ``memory``, ``pids`` and full appc names, their values
  checked by :func:`rktcfg.isolators.resolve.resolve`, so the same rules apply everywhere;
- app, volume and port names unique; every mount's volume exists; ports do not clash.

With ``warn``, fields rktcfg does not know or support (and isolators it does not enforce)
become notes and are dropped; they are never dropped without a word.

Pure: the only question asked of the file system is the ``is_file`` callable (does an image
reference name a file next to the pod file?).
"""

from __future__ import annotations

import difflib
import json
import os
import re
from collections.abc import Callable
from typing import Any

from rktcfg.config.readers import KeyPath, Parsed
from rktcfg.errors import Problem, describe_value
from rktcfg.isolators import resolve
from rktcfg.names import AC_IDENTIFIER, AC_IDENTIFIER_RULE, AC_NAME
from rktcfg.spec import schema as schemas

#: Annotations rktcfg writes on the pods it creates; pod files may not set them.
RESERVED_ANNOTATION_PREFIX = "rktcfg.dev/"
#: appc isolators rktcfg enforces, by full name.
ENFORCED_ISOLATORS = (
    resolve.CPU,
    resolve.MEMORY,
    resolve.CPU_SHARES,
    resolve.OOM_SCORE_ADJ,
    resolve.PIDS,
    resolve.NO_NEW_PRIVILEGES,
    resolve.CAPS_RETAIN,
    resolve.CAPS_REMOVE,
)
DEFAULT_INTERVAL = "10s"
DEFAULT_TIMEOUT = "1s"
DEFAULT_RETRIES = 3
DEFAULT_MODE = "0755"

_ENV_NAME = re.compile(r"^[^=\0]+$")
_STRING_HINT = 'must be a string (quote numbers and booleans: "8080", "true")'


class _Nothing:
    pass


_NOTHING: Any = _Nothing()


class Dialect:
    """Where the fields the cross-checks read are, in one apiVersion."""

    __slots__ = ("apps", "mount_path", "mount_volume", "mounts", "port", "protocols")

    def __init__(
        self,
        *,
        apps: str,
        mounts: str,
        mount_volume: str,
        mount_path: str,
        port: str,
        protocols: dict[str, str],
    ) -> None:
        self.apps = apps
        self.mounts = mounts
        self.mount_volume = mount_volume
        self.mount_path = mount_path
        self.port = port
        self.protocols = protocols


RKTCFG_DIALECT = Dialect(
    apps="apps",
    mounts="mounts",
    mount_volume="volume",
    mount_path="path",
    port="port",
    protocols={p: p for p in schemas.PROTOCOLS},
)
KUBERNETES_DIALECT = Dialect(
    apps="containers",
    mounts="volumeMounts",
    mount_volume="name",
    mount_path="mountPath",
    port="containerPort",
    protocols=schemas.KUBERNETES_PROTOCOLS,
)


class Built:
    """A valid document's pod: name, canonical spec, host files, where its name is."""

    __slots__ = ("host_files", "line", "name", "spec")

    def __init__(
        self, name: str, spec: dict[str, Any], host_files: tuple[str, ...], line: int | None
    ) -> None:
        self.name = name
        self.spec = spec
        self.host_files = host_files
        self.line = line


class Context:
    """One document being built: where it is, and what was found wrong with it."""

    def __init__(
        self,
        *,
        file: str,
        directory: str,
        parsed: Parsed,
        index: int,
        line: int | None = None,
        warn: bool,
        is_file: Callable[[str], bool],
    ) -> None:
        self.file = file  # as shown in messages
        self.directory = directory  # absolute: relative paths in the document start here
        self.parsed = parsed
        self.index = index
        self.line = line  # where the document starts: the line of what has no line
        self.warn = warn
        self.is_file = is_file
        self.problems: list[Problem] = []
        self._notes: list[tuple[tuple[str, int, str, str], str]] = []

    def problem(self, path: KeyPath, expected: str, got: str | None) -> Problem:
        return Problem(
            expected,
            file=self.file,
            line=self.parsed.line_of(path) or self.line,
            field=schemas.dotted(path) or None,
            got=got,
        )

    def fail(self, path: KeyPath, expected: str, got: Any = _NOTHING) -> None:
        shown = None if got is _NOTHING else describe_value(got)
        self.problems.append(self.problem(path, expected, shown))

    def has_problem(self, path: KeyPath) -> bool:
        """Whether something is already said about the field at ``path``."""
        field = schemas.dotted(path)
        return any(p.field == field for p in self.problems)

    def fail_shown(self, path: KeyPath, expected: str, shown: str | None) -> None:
        self.problems.append(self.problem(path, expected, shown))

    def unsupported(self, path: KeyPath, expected: str, consequence: str = "") -> None:
        """Something rktcfg does not support: an error, or with ``warn`` a note."""
        problem = self.problem(path, expected, None)
        if self.warn:
            self.note(f"{problem}; ignored (validate=warn){consequence}", problem.sort_key())
        else:
            self.problems.append(problem)

    def note(self, text: str, key: tuple[str, int, str, str] | None = None) -> None:
        self._notes.append((key or (self.file, 0, "", text), text))

    @property
    def notes(self) -> list[str]:
        """The notes, in the order of the document."""
        return [text for _, text in sorted(self._notes)]


# --- reading raw values defensively: a wrong type was reported by the schema ---------------


def _table(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _items(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _integer(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _flag(value: Any, default: bool) -> bool:
    return value if isinstance(value, bool) else default


def _strings(value: Any) -> list[str]:
    return [item for item in _items(value) if isinstance(item, str)]


def _id(value: Any) -> str | None:
    """A user or group as a string: names as written, numbers in decimal."""
    if isinstance(value, str):
        return value
    number = _integer(value)
    return None if number is None else str(number)


def _close(word: str, known: list[str]) -> str:
    match = difflib.get_close_matches(word, known, n=1, cutoff=0.6)
    return f' (did you mean "{match[0]}"?)' if match else ""


# --- the document --------------------------------------------------------------------------


def build_pod(data: dict[str, Any], ctx: Context) -> Built | None:
    """The pod of one document, or None (``ctx.problems`` or ``ctx.notes`` say why)."""
    api_version = data.get("apiVersion")
    kind = data.get("kind")
    is_object = isinstance(api_version, str) and isinstance(kind, str)
    if ctx.warn and is_object and (kind != "Pod" or api_version not in schemas.SCHEMAS):
        # another kind of object (a Service next to its Pod): not ours to read
        ctx.note(
            f"skipped {ctx.file} document {ctx.index}: {kind} ({api_version}) is not a pod; "
            "ignored (validate=warn)"
        )
        return None
    if not isinstance(api_version, str) or api_version not in schemas.SCHEMAS:
        expected = "must be rktcfg/v1 (a rktcfg pod) or v1 (a Kubernetes Pod)"
        if "apiVersion" not in data:
            ctx.fail(("apiVersion",), "is required: " + expected[len("must be ") :])
        else:
            ctx.fail(("apiVersion",), expected, api_version)
        return None
    if kind != "Pod":
        if "kind" not in data:
            ctx.fail(("kind",), "is required: Pod")
        else:
            ctx.fail(("kind",), "must be Pod", kind)
        return None
    _check_structure(api_version, data, ctx)
    if api_version == "rktcfg/v1":
        spec = _rktcfg_spec(data, ctx)
        dialect = RKTCFG_DIALECT
    else:
        spec = _kubernetes_spec(data, ctx)
        dialect = KUBERNETES_DIALECT
    _cross_check(_table(data.get("spec")), dialect, ctx)
    name = _text(_table(data.get("metadata")).get("name"))
    if ctx.problems or name is None:
        return None
    host_files = _host_files(spec, ctx.directory)
    return Built(name, spec, host_files, ctx.parsed.line_of(("metadata", "name")))


def _check_structure(api_version: str, data: dict[str, Any], ctx: Context) -> None:
    schema = schemas.SCHEMAS[api_version]
    if schemas.conforms(schema, data):
        return
    dropped: list[KeyPath] = []
    for path, expected, shown in schemas.cerberus_problems(api_version, data):
        if expected:
            ctx.fail_shown(path, expected, shown)
            continue
        ctx.unsupported(path, schemas.unknown_field(api_version, schema, path))
        dropped.append(path)
    if ctx.warn:
        for path in dropped:
            parent: Any = data
            for key in path[:-1]:
                parent = parent[key]
            del parent[path[-1]]


def _string_map(
    value: Any, path: KeyPath, ctx: Context, *, pod_annotations: bool
) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, item in _table(value).items():
        if not AC_IDENTIFIER.match(key):
            ctx.fail(
                (*path, key), AC_IDENTIFIER_RULE + " (it is stored in the appc pod manifest)", key
            )
        elif pod_annotations and key.startswith(RESERVED_ANNOTATION_PREFIX):
            ctx.fail(
                (*path, key), f"{RESERVED_ANNOTATION_PREFIX}* annotations are rktcfg's own", key
            )
        elif isinstance(item, str):
            out[key] = item
    return out


def _metadata(data: dict[str, Any], ctx: Context) -> tuple[dict[str, str], dict[str, str]]:
    meta = _table(data.get("metadata"))
    labels = _string_map(meta.get("labels"), ("metadata", "labels"), ctx, pod_annotations=False)
    annotations = _string_map(
        meta.get("annotations"), ("metadata", "annotations"), ctx, pod_annotations=True
    )
    return labels, annotations


def _rktcfg_spec(data: dict[str, Any], ctx: Context) -> dict[str, Any]:
    labels, annotations = _metadata(data, ctx)
    raw = _table(data.get("spec"))
    apps = [
        _rktcfg_app(app, ("spec", "apps", i), ctx)
        for i, app in enumerate(_items(raw.get("apps")))
        if isinstance(app, dict)
    ]
    volumes = [
        _rktcfg_volume(volume, ("spec", "volumes", i), ctx)
        for i, volume in enumerate(_items(raw.get("volumes")))
        if isinstance(volume, dict)
    ]
    return {
        "labels": labels,
        "annotations": annotations,
        "stage1": _text(raw.get("stage1")),
        "restartPolicy": _text(raw.get("restartPolicy")) or "never",
        "net": _net(raw.get("net"), ("spec", "net"), ctx),
        "hostname": _text(raw.get("hostname")),
        "dns": _strings(raw.get("dns")),
        "apps": apps,
        "volumes": sorted(volumes, key=lambda v: str(v["name"])),
    }


def _net(value: Any, path: KeyPath, ctx: Context) -> list[str]:
    if value is None:
        return ["default"]
    if isinstance(value, str):
        items: list[tuple[KeyPath, Any]] = [(path, value)]
    elif isinstance(value, list):
        items = [((*path, i), item) for i, item in enumerate(value)]
        if not value:
            ctx.fail(path, "must name at least one network (none for no network)", value)
    else:
        return ["default"]
    out: list[str] = []
    for where, item in items:
        if not isinstance(item, str):
            ctx.fail(where, "must be a string", item)
        elif not AC_NAME.match(item):
            ctx.fail(
                where,
                "must be default, default-restricted, host, none or a network of net.d "
                "(an AC Name)",
                item,
            )
        elif item in out:
            ctx.fail(where, "is listed twice", item)
        else:
            out.append(item)
    for alone in ("host", "none"):
        if alone in out and len(out) > 1:
            ctx.fail(path, f"{alone} must be the only network", value)
    return out or ["default"]


def _image(ref: str, ctx: Context) -> str:
    """As written, but a path to an image file becomes absolute (against the file's dir).

    ``./x`` and ``../x`` are paths whether or not the file exists yet (so a later error names
    the right place); ``images/x.aci`` and ``x.aci`` only when such a file exists, since an
    image name (``example.com/x``) looks the same.
    """
    if "://" in ref or ref.startswith("/"):
        return ref
    if ref.startswith(("./", "../")):
        return os.path.normpath(os.path.join(ctx.directory, ref))
    if "/" in ref or ref.endswith(".aci"):
        candidate = os.path.normpath(os.path.join(ctx.directory, ref))
        if ctx.is_file(candidate):
            return candidate
    return ref


def _env(value: Any, path: KeyPath, ctx: Context) -> dict[str, str]:
    out: dict[str, str] = {}
    if isinstance(value, dict):
        for key, item in value.items():
            if not _ENV_NAME.match(key):
                ctx.fail((*path, key), "must be an environment variable name (no = or NUL)", key)
            elif not isinstance(item, str):
                ctx.fail((*path, key), _STRING_HINT, item)
            else:
                out[key] = item
        return out
    where: dict[str, int] = {}
    for i, item in enumerate(_items(value)):
        at: KeyPath = (*path, i)
        if not isinstance(item, dict):
            ctx.fail(at, "must be a table {name, value}", item)
            continue
        for key in item:
            if key not in ("name", "value", "valueFrom"):
                ctx.unsupported((*at, key), "unknown field" + _close(key, ["name", "value"]))
        name = item.get("name")
        if "valueFrom" in item:
            shown = f": {name} is not set" if isinstance(name, str) else ""
            ctx.unsupported(
                (*at, "valueFrom"),
                "not supported: rktcfg sets literal values (value) only; it has no "
                "ConfigMaps, Secrets or field references",
                shown,
            )
            continue
        if name is None:
            ctx.fail((*at, "name"), "is required")
            continue
        if not isinstance(name, str):
            ctx.fail((*at, "name"), "must be a string", name)
            continue
        if not _ENV_NAME.match(name):
            ctx.fail((*at, "name"), "must be an environment variable name (no = or NUL)", name)
            continue
        literal = item.get("value")
        if literal is None:
            literal = ""  # as in Kubernetes: no value is the empty string
        if not isinstance(literal, str):
            ctx.fail((*at, "value"), _STRING_HINT, literal)
            continue
        if name in where:
            ctx.fail(
                (*at, "name"),
                f"is set twice (also in {schemas.dotted((*path, where[name]))})",
                name,
            )
            continue
        where[name] = i
        out[name] = literal
    return out


def _isolators(written: dict[str, tuple[Any, KeyPath]], ctx: Context) -> dict[str, Any]:
    """Canonical isolators from ``{key: (value, where written)}``; values checked by resolve."""
    out: dict[str, Any] = {}
    layer: list[dict[str, Any]] = []
    keys: dict[str, str] = {}  # full appc name -> the key it was written as
    known = [*resolve.SHORT_NAMES, *ENFORCED_ISOLATORS, *resolve.NOT_ENFORCED]
    for key, (value, path) in written.items():
        name = resolve.SHORT_NAMES.get(key, key)
        if name in resolve.NOT_ENFORCED:
            ctx.unsupported(path, "an appc isolator rktcfg does not enforce")
            continue
        if name not in ENFORCED_ISOLATORS:
            ctx.unsupported(path, "unknown isolator" + _close(key, known))
            continue
        if name in keys:
            ctx.fail(path, f"sets {name} again (also set as {keys[name]})")
            continue
        if key in ("cpu", "memory"):
            if isinstance(value, bool) or not isinstance(value, str | int | float):
                continue  # the schema said what is wrong
            layer.append({"name": name, "value": {"limit": value}})
            out[key] = value if isinstance(value, str) else repr(value)
        elif key == "pids":
            if _integer(value) is None:
                continue
            layer.append({"name": name, "value": value})
            out[key] = value
        else:
            layer.append({"name": name, "value": value})
            out[key] = value
        keys[name] = key
    for problem in _isolator_problems(layer):
        field = problem.field or ""
        name = max(
            (n for n in keys if field == n or field.startswith(n + ".")), key=len, default=""
        )
        if not name:
            ctx.fail_shown((), f"isolators: {problem.expected}", problem.got)
            continue
        key = keys[name]
        path = written[key][1]
        rest = field[len(name) + 1 :]
        if rest and key not in resolve.SHORT_NAMES:
            path = (*path, *rest.split("."))
        ctx.fail_shown(path, problem.expected, problem.got)
    return out


_RESOLVED: dict[str, tuple[Problem, ...]] = {}


def _isolator_problems(layer: list[dict[str, Any]]) -> tuple[Problem, ...]:
    """What :func:`rktcfg.isolators.resolve.resolve` finds wrong with one app's isolators.

    Remembered by value: pods of one repository repeat their limits, and quantities are
    parsed with Fractions, which is slow.
    """
    key = json.dumps(layer, sort_keys=True, default=repr)
    found = _RESOLVED.get(key)
    if found is None:
        try:
            resolve.resolve([layer], where=["pod file"])
            found = ()
        except resolve.IsolatorError as exc:
            found = exc.problems
        if len(_RESOLVED) >= 4096:
            _RESOLVED.clear()
        _RESOLVED[key] = found
    return found


def _health_check(
    command: Any, interval: str | None, timeout: str | None, retries: int | None
) -> dict[str, Any]:
    return {
        "exec": _strings(command),
        "interval": interval or DEFAULT_INTERVAL,
        "timeout": timeout or DEFAULT_TIMEOUT,
        "retries": DEFAULT_RETRIES if retries is None else retries,
    }


def _protocol(port: dict[str, Any], dialect: Dialect) -> str:
    """A port's protocol in rktcfg's words (tcp, udp); tcp when none is written."""
    return dialect.protocols.get(_text(port.get("protocol")) or "", "tcp")


def _mounts(app: dict[str, Any], dialect: Dialect) -> list[dict[str, Any]]:
    """An app's (container's) mounts, canonical: ``{volume, path, readOnly}``."""
    return [
        {
            "volume": _text(mount.get(dialect.mount_volume)),
            "path": _text(mount.get(dialect.mount_path)),
            "readOnly": _flag(mount.get("readOnly"), False),
        }
        for mount in _items(app.get(dialect.mounts))
        if isinstance(mount, dict)
    ]


def _ports(app: dict[str, Any], dialect: Dialect) -> list[dict[str, Any]]:
    """An app's (container's) ports, canonical (see :func:`_port`)."""
    return [
        _port(
            port.get("name"),
            port.get(dialect.port),
            _protocol(port, dialect),
            port.get("hostPort"),
            port.get("hostIP"),
        )
        for port in _items(app.get("ports"))
        if isinstance(port, dict)
    ]


def _port(name: Any, port: Any, protocol: str, host_port: Any, host_ip: Any) -> dict[str, Any]:
    number = _integer(port)
    return {
        "name": _text(name) or f"{protocol}-{number}",
        "port": number,
        "protocol": protocol,
        "hostPort": _integer(host_port),
        "hostIP": _text(host_ip),
    }


def _app(
    *,
    name: Any,
    image: Any,
    exec_: list[str] | None,
    args: list[str],
    env: dict[str, str],
    user: str | None = None,
    group: str | None = None,
    supplementary_groups: list[str] | None = None,
    working_directory: Any = None,
    read_only_root_fs: bool = False,
    isolators: dict[str, Any],
    mounts: list[dict[str, Any]],
    ports: list[dict[str, Any]],
    health_check: dict[str, Any] | None,
    annotations: dict[str, str] | None = None,
) -> dict[str, Any]:
    return {
        "name": _text(name) or "",
        "image": _text(image) or "",
        "exec": exec_,
        "args": args,
        "env": env,
        "user": user,
        "group": group,
        "supplementaryGroups": supplementary_groups or [],
        "workingDirectory": _text(working_directory),
        "readOnlyRootFS": read_only_root_fs,
        "isolators": isolators,
        "mounts": mounts,
        "ports": ports,
        "healthCheck": health_check,
        "annotations": annotations or {},
    }


def _rktcfg_app(app: dict[str, Any], path: KeyPath, ctx: Context) -> dict[str, Any]:
    image = _text(app.get("image"))
    written = {
        key: (value, (*path, "isolators", key))
        for key, value in _table(app.get("isolators")).items()
        if value is not None
    }
    check = app.get("healthCheck")
    health = None
    if isinstance(check, dict):
        health = _health_check(
            check.get("exec"),
            _text(check.get("interval")),
            _text(check.get("timeout")),
            _integer(check.get("retries")),
        )
    groups = [_id(group) for group in _items(app.get("supplementaryGroups"))]
    return _app(
        name=app.get("name"),
        image=_image(image, ctx) if image else None,
        exec_=_strings(app["exec"]) if isinstance(app.get("exec"), list) else None,
        args=_strings(app.get("args")),
        env=_env(app.get("env"), (*path, "env"), ctx),
        user=_id(app.get("user")),
        group=_id(app.get("group")),
        supplementary_groups=[group for group in groups if group is not None],
        working_directory=app.get("workingDirectory"),
        read_only_root_fs=_flag(app.get("readOnlyRootFS"), False),
        isolators=_isolators(written, ctx),
        mounts=_mounts(app, RKTCFG_DIALECT),
        ports=_ports(app, RKTCFG_DIALECT),
        health_check=health,
        annotations=_string_map(
            app.get("annotations"), (*path, "annotations"), ctx, pod_annotations=False
        ),
    )


def _host_source(source: str, ctx: Context) -> str:
    return os.path.normpath(os.path.join(ctx.directory, source))


def _volume(
    name: Any,
    kind: str,
    *,
    source: str | None = None,
    read_only: bool = False,
    recursive: bool = True,
    mode: str | None = None,
    uid: int | None = None,
    gid: int | None = None,
) -> dict[str, Any]:
    return {
        "name": _text(name) or "",
        "kind": kind,
        "source": source,
        "readOnly": read_only,
        "recursive": recursive,
        "mode": mode,
        "uid": uid,
        "gid": gid,
    }


def _rktcfg_volume(volume: dict[str, Any], path: KeyPath, ctx: Context) -> dict[str, Any]:
    kind = _text(volume.get("kind")) or ""
    read_only = _flag(volume.get("readOnly"), False)
    name = volume.get("name")
    if kind == "host":
        for key in ("mode", "uid", "gid"):
            if volume.get(key) is not None and not ctx.has_problem((*path, key)):
                ctx.fail(
                    (*path, key),
                    f"must be absent for a host volume (only empty volumes have a {key})",
                    volume[key],
                )
        source = _text(volume.get("source"))
        if volume.get("source") is None:
            ctx.fail((*path, "source"), "is required for a host volume")
        return _volume(
            name,
            "host",
            source=_host_source(source, ctx) if source else None,
            read_only=read_only,
            recursive=_flag(volume.get("recursive"), True),
        )
    if kind == "empty":
        for key in ("source", "recursive"):
            if volume.get(key) is not None and not ctx.has_problem((*path, key)):
                ctx.fail(
                    (*path, key),
                    f"must be absent for an empty volume (only host volumes have a {key})",
                    volume[key],
                )
        mode = _text(volume.get("mode"))
        uid, gid = _integer(volume.get("uid")), _integer(volume.get("gid"))
        return _volume(
            name,
            "empty",
            read_only=read_only,
            mode=_octal(mode) if mode and schemas.check_mode(mode) is None else DEFAULT_MODE,
            uid=0 if uid is None else uid,
            gid=0 if gid is None else gid,
        )
    return _volume(name, kind, read_only=read_only)


def _octal(mode: str) -> str:
    return format(int(mode, 8), "04o")


# --- Kubernetes ----------------------------------------------------------------------------


def _kubernetes_spec(data: dict[str, Any], ctx: Context) -> dict[str, Any]:
    labels, annotations = _metadata(data, ctx)
    raw = _table(data.get("spec"))
    apps = [
        _kubernetes_app(container, ("spec", "containers", i), ctx)
        for i, container in enumerate(_items(raw.get("containers")))
        if isinstance(container, dict)
    ]
    volumes = [
        _kubernetes_volume(volume, ("spec", "volumes", i), ctx)
        for i, volume in enumerate(_items(raw.get("volumes")))
        if isinstance(volume, dict)
    ]
    policy = _text(raw.get("restartPolicy")) or "Always"
    return {
        "labels": labels,
        "annotations": annotations,
        "stage1": None,
        "restartPolicy": schemas.KUBERNETES_RESTART_POLICIES.get(policy, "always"),
        "net": ["host"] if raw.get("hostNetwork") is True else ["default"],
        "hostname": _text(raw.get("hostname")),
        "dns": _strings(_table(raw.get("dnsConfig")).get("nameservers")),
        "apps": apps,
        "volumes": sorted(volumes, key=lambda v: str(v["name"])),
    }


def _kubernetes_app(container: dict[str, Any], path: KeyPath, ctx: Context) -> dict[str, Any]:
    command = container.get("command")
    args = _strings(container.get("args"))
    exec_: list[str] | None = None
    if isinstance(command, list):
        exec_, args = _strings(command) + args, []
    resources = _table(container.get("resources"))
    limits, requests = _table(resources.get("limits")), _table(resources.get("requests"))
    written: dict[str, tuple[Any, KeyPath]] = {}
    for key in ("cpu", "memory"):  # a request counts only where there is no limit
        if limits.get(key) is not None:
            written[key] = (limits[key], (*path, "resources", "limits", key))
        elif requests.get(key) is not None:
            written[key] = (requests[key], (*path, "resources", "requests", key))
    security = _table(container.get("securityContext"))
    probe = container.get("livenessProbe")
    health = None
    if isinstance(probe, dict):
        period, timeout = (
            _integer(probe.get("periodSeconds")),
            _integer(probe.get("timeoutSeconds")),
        )
        health = _health_check(
            _table(probe.get("exec")).get("command"),
            None if period is None else f"{period}s",
            None if timeout is None else f"{timeout}s",
            _integer(probe.get("failureThreshold")),
        )
    image = _text(container.get("image"))
    return _app(
        name=container.get("name"),
        image=_image(image, ctx) if image else None,
        exec_=exec_,
        args=args,
        env=_env(container.get("env"), (*path, "env"), ctx),
        user=_id(security.get("runAsUser")),
        group=_id(security.get("runAsGroup")),
        working_directory=container.get("workingDir"),
        read_only_root_fs=_flag(security.get("readOnlyRootFilesystem"), False),
        isolators=_isolators(written, ctx),
        mounts=_mounts(container, KUBERNETES_DIALECT),
        ports=_ports(container, KUBERNETES_DIALECT),
        health_check=health,
    )


def _kubernetes_volume(volume: dict[str, Any], path: KeyPath, ctx: Context) -> dict[str, Any]:
    name = volume.get("name")
    host_path, empty_dir = volume.get("hostPath"), volume.get("emptyDir")
    if host_path is not None and empty_dir is not None:
        ctx.fail(path, "must have one of hostPath and emptyDir, not both")
    elif isinstance(host_path, dict):
        source = _text(host_path.get("path"))
        return _volume(name, "host", source=_host_source(source, ctx) if source else None)
    elif isinstance(empty_dir, dict):
        return _volume(name, "empty", mode=DEFAULT_MODE, uid=0, gid=0)
    elif host_path is None and empty_dir is None and set(volume) <= {"name"}:
        ctx.fail(path, "needs hostPath or emptyDir (the volume types rktcfg supports)")
    return _volume(name, "")


# --- what spans fields ---------------------------------------------------------------------


def _cross_check(raw: dict[str, Any], dialect: Dialect, ctx: Context) -> None:
    """Unique app, volume and port names, mounts of volumes that exist, no port clashes."""
    volumes: dict[str, int] = {}
    for i, volume in enumerate(_items(raw.get("volumes"))):
        name = _text(_table(volume).get("name"))
        if name is None:
            continue
        if name in volumes:
            ctx.fail(
                ("spec", "volumes", i, "name"),
                f"volume names must be unique in a pod (also spec.volumes[{volumes[name]}])",
                name,
            )
        else:
            volumes[name] = i
    apps: dict[str, int] = {}
    port_names: dict[str, KeyPath] = {}
    host_ports: dict[tuple[str, str | None, int], KeyPath] = {}
    for i, app in enumerate(_items(raw.get(dialect.apps))):
        app_path: KeyPath = ("spec", dialect.apps, i)
        app = _table(app)
        name = _text(app.get("name"))
        if name is not None:
            if name in apps:
                ctx.fail(
                    (*app_path, "name"),
                    f"app names must be unique in a pod (also spec.{dialect.apps}[{apps[name]}])",
                    name,
                )
            else:
                apps[name] = i
        targets: dict[str, int] = {}
        for j, mount in enumerate(_items(app.get(dialect.mounts))):
            mount = _table(mount)
            mount_path: KeyPath = (*app_path, dialect.mounts, j)
            volume_name = _text(mount.get(dialect.mount_volume))
            if volume_name is not None and volume_name not in volumes:
                listed = ", ".join(sorted(volumes)) or "none"
                ctx.fail(
                    (*mount_path, dialect.mount_volume),
                    f"must name a volume of spec.volumes (volumes: {listed})"
                    + _close(volume_name, sorted(volumes)),
                    volume_name,
                )
            target = _text(mount.get(dialect.mount_path))
            if target is not None:
                target = os.path.normpath(target)
                if target in targets:
                    ctx.fail(
                        (*mount_path, dialect.mount_path),
                        f"is mounted twice in this app (also {dialect.mounts}[{targets[target]}])",
                        mount.get(dialect.mount_path),
                    )
                else:
                    targets[target] = j
        app_ports: dict[tuple[str, int], int] = {}
        for j, port in enumerate(_items(app.get("ports"))):
            port = _table(port)
            port_path: KeyPath = (*app_path, "ports", j)
            protocol = _protocol(port, dialect)
            number = _integer(port.get(dialect.port))
            if number is None:
                continue
            name = _text(port.get("name")) or f"{protocol}-{number}"
            if name in port_names:
                ctx.fail(
                    (*port_path, "name") if "name" in port else port_path,
                    f"port names must be unique in a pod (also {schemas.dotted(port_names[name])})",
                    name,
                )
            else:
                port_names[name] = port_path
            if (protocol, number) in app_ports:
                ctx.fail(
                    (*port_path, dialect.port),
                    f"is listed twice in this app (also ports[{app_ports[protocol, number]}])",
                    number,
                )
            else:
                app_ports[protocol, number] = j
            host_port = _integer(port.get("hostPort"))
            if host_port is None:
                continue
            key = (protocol, _text(port.get("hostIP")), host_port)
            if key in host_ports:
                ctx.fail(
                    (*port_path, "hostPort"),
                    f"is published twice (also {schemas.dotted(host_ports[key])})",
                    host_port,
                )
            else:
                host_ports[key] = port_path


def _host_files(spec: dict[str, Any], directory: str) -> tuple[str, ...]:
    """The host volumes whose content is part of the pod's spec: those inside the pod file's
    directory (the repository), read-only for every app (the volume is readOnly, or each
    mount of it is). A volume an app writes, or a path outside the repository such as /usr,
    is not the repository's content: hashing it would replace the pod at every apply."""
    mounts: dict[str, list[bool]] = {}
    for app in spec["apps"]:
        for mount in app["mounts"]:
            mounts.setdefault(mount["volume"], []).append(bool(mount["readOnly"]))
    root = os.path.join(os.path.abspath(directory), "")
    return tuple(
        sorted(
            {
                volume["source"]
                for volume in spec["volumes"]
                if volume["kind"] == "host"
                and volume["source"]
                and (volume["source"] + "/").startswith(root)
                and (
                    volume["readOnly"]
                    or (mounts.get(volume["name"]) and all(mounts[volume["name"]]))
                )
            }
        )
    )
