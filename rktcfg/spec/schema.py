"""The structure of pod documents: one cerberus schema per kind, and what it reports.

``RKTCFG_V1`` (``apiVersion: rktcfg/v1``) and ``KUBERNETES_V1`` (the Kubernetes ``v1`` Pod
subset rktcfg reads) say which fields exist, their types and the format of single values
(AC Names, absolute paths, ports, durations, IP addresses). What spans fields -- a mount's
volume exists, names are unique, isolator values -- is checked while the canonical spec is
built (``rktcfg.spec.build``).

:func:`validate` returns every :class:`~rktcfg.errors.Problem` with the file, line and field
path (``spec.apps[0].ports[1].port``). cerberus is slow (a millisecond or more per pod on a
small machine, and as much again to create a validator), so a valid document is confirmed
by :func:`conforms`, a walk over the same schema dicts that applies the same rules; only a
document that fails it is handed to cerberus, whose errors are the ones reported. The two
must agree on every document: ``tests/unit/test_spec_fuzz.py`` checks that they do.

Pure: data in, problems out.
"""

from __future__ import annotations

import difflib
import ipaddress
import re
from collections.abc import Callable
from typing import Any

from rktcfg.config.readers import KeyPath
from rktcfg.durations import parse_duration
from rktcfg.errors import Problem, describe_value
from rktcfg.names import AC_NAME, AC_NAME_RULE
from rktcfg.version import FLAVORS

RESTART_POLICIES = ("never", "on-failure", "always")
KUBERNETES_RESTART_POLICIES = {"Always": "always", "OnFailure": "on-failure", "Never": "never"}
PROTOCOLS = ("tcp", "udp")
KUBERNETES_PROTOCOLS = {"TCP": "tcp", "UDP": "udp"}

_HOSTNAME_LABEL = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")
_MODE = re.compile(r"^[0-7]{3,4}$")
_UINT32_MAX = 2**32 - 1

# --- value checks: each returns what was expected, or None when the value is fine ----------
# They see values of the right type only (cerberus checks the type first).


def check_acname(value: Any) -> str | None:
    return None if AC_NAME.match(value) else AC_NAME_RULE


def check_kubernetes_name(value: Any) -> str | None:
    if AC_NAME.match(value):
        return None
    if "." in value:
        return AC_NAME_RULE + "; Kubernetes allows dots in pod names, rktcfg does not"
    return AC_NAME_RULE


def check_image(value: Any) -> str | None:
    if not value.strip() or value != value.strip():
        return "must be an image name, sha512- ID, path or URL, without spaces around it"
    return None


def check_nonempty(value: Any) -> str | None:
    return "must not be empty" if len(value) == 0 else None


def check_abspath(value: Any) -> str | None:
    return None if value.startswith("/") else "must be an absolute path"


def check_ip(value: Any) -> str | None:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return "must be an IP address like 10.0.0.1 or fd00::1"
    return None


def check_hostname(value: Any) -> str | None:
    labels = value.split(".")
    if len(value) <= 253 and all(_HOSTNAME_LABEL.match(label) for label in labels):
        return None
    return "must be a host name like web or web.example.com"


def check_duration(value: Any) -> str | None:
    try:
        nanoseconds = parse_duration(value)
    except ValueError:
        return "must be a duration like 10s, 1m30s or 500ms"
    return None if nanoseconds > 0 else "must be a duration longer than 0, like 10s"


def check_port(value: Any) -> str | None:
    return None if 1 <= value <= 65535 else "must be a port number from 1 to 65535"


def check_positive(value: Any) -> str | None:
    return None if value >= 1 else "must be a whole number, at least 1"


def check_uint(value: Any) -> str | None:
    return None if 0 <= value <= _UINT32_MAX else "must be an ID from 0 to 4294967295"


def check_id(value: Any) -> str | None:
    """A user or group: a name, or a number."""
    if isinstance(value, int):
        return check_uint(value)
    return None if value.strip() else "must be a user or group name, or a number"


def check_mode(value: Any) -> str | None:
    if isinstance(value, int):
        return (
            'must be an octal mode in quotes, like "0755" (YAML reads an unquoted 0755 as '
            "the number 493)"
        )
    return None if _MODE.match(value) else 'must be an octal mode like "0755"'


CHECKS: dict[str, Callable[[Any], str | None]] = {
    "acname": check_acname,
    "kubernetes_name": check_kubernetes_name,
    "image": check_image,
    "nonempty": check_nonempty,
    "abspath": check_abspath,
    "ip": check_ip,
    "hostname": check_hostname,
    "duration": check_duration,
    "port": check_port,
    "positive": check_positive,
    "uint": check_uint,
    "id": check_id,
    "mode": check_mode,
}

#: What a value of the wrong type is told, for checks whose words say more than a type.
CHECK_TYPE_WORDS: dict[Any, str] = {
    "duration": 'must be a duration in quotes, like "10s", "1m30s" or "500ms"',
    "mode": 'must be an octal mode in quotes, like "0755"',
    "ip": "must be an IP address like 10.0.0.1 or fd00::1",
    "port": "must be a port number from 1 to 65535",
    "id": "must be a user or group name, or a number",
}

# --- schemas -------------------------------------------------------------------------------


def _opt(kind: str | list[str], **rules: Any) -> dict[str, Any]:
    """An optional field: null means the default."""
    return {"type": kind, "nullable": True, **rules}


def _req(kind: str | list[str], **rules: Any) -> dict[str, Any]:
    return {"type": kind, "required": True, **rules}


def _list_of(item: dict[str, Any], **rules: Any) -> dict[str, Any]:
    return _opt("list", schema=item, **rules)


def _table(schema: dict[str, Any], **rules: Any) -> dict[str, Any]:
    return _opt("dict", schema=schema, **rules)


_STRINGS = _list_of({"type": "string"})
_STRING_MAP = _opt("dict", valuesrules={"type": "string"})
_ID = _opt(["string", "integer"], check="id")
_CPU = _opt(["string", "number"])
_MEMORY = _opt(["string", "integer"])

_V1_APP: dict[str, Any] = {
    "name": _req("string", check="acname"),
    "image": _req("string", check="image"),
    "exec": _opt("list", check="nonempty", schema={"type": "string"}),
    "args": _STRINGS,
    "env": _opt(["dict", "list"]),  # a table or a list of {name, value}: see build.py
    "user": _ID,
    "group": _ID,
    "supplementaryGroups": _list_of({"type": ["string", "integer"], "check": "id"}),
    "workingDirectory": _opt("string", check="abspath"),
    "readOnlyRootFS": _opt("boolean"),
    # any appc isolator by its full name, too: names and values are checked in build.py
    "isolators": _table(
        {"cpu": _CPU, "memory": _MEMORY, "pids": _opt("integer")}, allow_unknown=True
    ),
    "mounts": _list_of(
        {
            "type": "dict",
            "schema": {
                "volume": _req("string", check="acname"),
                "path": _req("string", check="abspath"),
                "readOnly": _opt("boolean"),
            },
        }
    ),
    "ports": _list_of(
        {
            "type": "dict",
            "schema": {
                "name": _opt("string", check="acname"),
                "port": _req("integer", check="port"),
                "protocol": _opt("string", allowed=list(PROTOCOLS)),
                "hostPort": _opt("integer", check="port"),
                "hostIP": _opt("string", check="ip"),
            },
        }
    ),
    "healthCheck": _table(
        {
            "exec": _req("list", check="nonempty", schema={"type": "string"}),
            "interval": _opt("string", check="duration"),
            "timeout": _opt("string", check="duration"),
            "retries": _opt("integer", check="positive"),
        }
    ),
    "annotations": _STRING_MAP,
}

_V1_VOLUME: dict[str, Any] = {
    "name": _req("string", check="acname"),
    "kind": _req("string", allowed=["host", "empty"]),
    "source": _opt("string", check="nonempty"),
    "readOnly": _opt("boolean"),
    "recursive": _opt("boolean"),
    "mode": _opt(["string", "integer"], check="mode"),
    "uid": _opt("integer", check="uint"),
    "gid": _opt("integer", check="uint"),
}

RKTCFG_V1: dict[str, Any] = {
    "apiVersion": _req("string"),
    "kind": _req("string"),
    "metadata": _req(
        "dict",
        schema={
            "name": _req("string", check="acname"),
            "labels": _STRING_MAP,
            "annotations": _STRING_MAP,
        },
    ),
    "spec": _req(
        "dict",
        schema={
            "stage1": _opt("string", allowed=list(FLAVORS)),
            "restartPolicy": _opt("string", allowed=list(RESTART_POLICIES)),
            "net": _opt(["list", "string"]),  # names are checked in build.py
            "hostname": _opt("string", check="hostname"),
            "dns": _list_of({"type": "string", "check": "ip"}),
            "apps": _req("list", check="nonempty", schema={"type": "dict", "schema": _V1_APP}),
            "volumes": _list_of({"type": "dict", "schema": _V1_VOLUME}),
        },
    ),
}

_K8S_RESOURCES = _table({"cpu": _CPU, "memory": _MEMORY})
_K8S_SECONDS = _opt("integer", check="positive")

_K8S_CONTAINER: dict[str, Any] = {
    "name": _req("string", check="acname"),
    "image": _req("string", check="image"),
    "command": _opt("list", check="nonempty", schema={"type": "string"}),
    "args": _STRINGS,
    "env": _opt("list"),  # items ({name, value}; valueFrom refused) are checked in build.py
    "resources": _table({"limits": _K8S_RESOURCES, "requests": _K8S_RESOURCES}),
    "ports": _list_of(
        {
            "type": "dict",
            "schema": {
                "name": _opt("string", check="acname"),
                "containerPort": _req("integer", check="port"),
                "protocol": _opt("string", allowed=list(KUBERNETES_PROTOCOLS)),
                "hostPort": _opt("integer", check="port"),
                "hostIP": _opt("string", check="ip"),
            },
        }
    ),
    "volumeMounts": _list_of(
        {
            "type": "dict",
            "schema": {
                "name": _req("string", check="acname"),
                "mountPath": _req("string", check="abspath"),
                "readOnly": _opt("boolean"),
            },
        }
    ),
    "workingDir": _opt("string", check="abspath"),
    "securityContext": _table(
        {
            "readOnlyRootFilesystem": _opt("boolean"),
            "runAsUser": _opt("integer", check="uint"),
            "runAsGroup": _opt("integer", check="uint"),
        }
    ),
    "livenessProbe": _table(
        {
            "exec": _req(
                "dict",
                schema={"command": _req("list", check="nonempty", schema={"type": "string"})},
            ),
            "periodSeconds": _K8S_SECONDS,
            "timeoutSeconds": _K8S_SECONDS,
            "failureThreshold": _K8S_SECONDS,
        }
    ),
}

_K8S_VOLUME: dict[str, Any] = {
    "name": _req("string", check="acname"),
    "hostPath": _table({"path": _req("string", check="nonempty")}),
    "emptyDir": _table({}),
}

KUBERNETES_V1: dict[str, Any] = {
    "apiVersion": _req("string"),
    "kind": _req("string"),
    "metadata": _req(
        "dict",
        schema={
            "name": _req("string", check="kubernetes_name"),
            "labels": _STRING_MAP,
            "annotations": _STRING_MAP,
        },
    ),
    "spec": _req(
        "dict",
        schema={
            "containers": _req(
                "list", check="nonempty", schema={"type": "dict", "schema": _K8S_CONTAINER}
            ),
            "volumes": _list_of({"type": "dict", "schema": _K8S_VOLUME}),
            "restartPolicy": _opt("string", allowed=list(KUBERNETES_RESTART_POLICIES)),
            "hostNetwork": _opt("boolean"),
            "hostname": _opt("string", check="hostname"),
            "dnsConfig": _table({"nameservers": _list_of({"type": "string", "check": "ip"})}),
        },
    ),
}

SCHEMAS: dict[str, dict[str, Any]] = {"rktcfg/v1": RKTCFG_V1, "v1": KUBERNETES_V1}


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


#: Fields of the Kubernetes Pod (metadata, PodSpec, Container, Probe, volumes, ...) that
#: rktcfg does not read: named as unsupported, without a "did you mean" for a typo.
KUBERNETES_FIELDS = _words(
    """
    namespace generateName uid resourceVersion generation creationTimestamp deletionTimestamp
    deletionGracePeriodSeconds ownerReferences finalizers managedFields selfLink status
    initContainers ephemeralContainers activeDeadlineSeconds affinity
    automountServiceAccountToken dnsPolicy enableServiceLinks hostAliases hostIPC hostPID
    hostUsers imagePullSecrets nodeName nodeSelector os overhead preemptionPolicy priority
    priorityClassName readinessGates resourceClaims runtimeClassName schedulerName
    schedulingGates securityContext serviceAccount serviceAccountName setHostnameAsFQDN
    shareProcessNamespace subdomain terminationGracePeriodSeconds tolerations
    topologySpreadConstraints envFrom imagePullPolicy lifecycle readinessProbe startupProbe
    resizePolicy restartPolicy stdin stdinOnce terminationMessagePath terminationMessagePolicy
    tty volumeDevices httpGet tcpSocket grpc initialDelaySeconds successThreshold searches
    options type medium sizeLimit configMap secret persistentVolumeClaim projected downwardAPI
    nfs csi ephemeral iscsi glusterfs cephfs rbd image fc flexVolume azureDisk azureFile
    awsElasticBlockStore gcePersistentDisk subPath subPathExpr mountPropagation
    recursiveReadOnly allowPrivilegeEscalation capabilities privileged procMount runAsNonRoot
    seLinuxOptions seccompProfile windowsOptions appArmorProfile claims
    """
)
#: Kubernetes names of fields that rktcfg/v1 calls otherwise.
RKTCFG_NAMES = {
    "command": "exec",
    "containers": "apps",
    "workingDir": "workingDirectory",
    "volumeMounts": "mounts",
    "livenessProbe": "healthCheck",
    "resources": "isolators",
    "containerPort": "port",
    "mountPath": "path",
    "readOnlyRootFilesystem": "readOnlyRootFS",
    "hostNetwork": "net",
}

# --- the fast walk -------------------------------------------------------------------------
# Each schema is compiled once into nested closures that apply cerberus's rules as the
# validator subclass below configures them: ``integer`` and ``number`` exclude bool; null
# passes where ``nullable``; ``allowed``, ``check``, ``valuesrules`` and ``schema`` (a table's
# fields or a list's items) as cerberus applies them; ``allow_unknown`` is inherited.

_CLASSES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "dict": (dict,),
    "list": (list,),
}
_Test = Callable[[Any], bool]
_COMPILED: dict[int, _Test] = {}


def conforms(schema: dict[str, Any], document: dict[str, Any]) -> bool:
    """Whether cerberus would find nothing wrong with ``document`` (and much faster)."""
    test = _COMPILED.get(id(schema))
    if test is None:
        test = _COMPILED[id(schema)] = _compile_mapping(schema, False)
    return test(document)


def _compile_mapping(schema: dict[str, Any], allow_unknown: bool) -> _Test:
    fields = {key: _compile_value(rules, allow_unknown) for key, rules in schema.items()}
    required = tuple(key for key, rules in schema.items() if rules.get("required"))

    def test(value: dict[str, Any]) -> bool:
        for key, item in value.items():
            field = fields.get(key)
            if field is None:
                if not allow_unknown:
                    return False
            elif not field(item):
                return False
        return all(key in value for key in required)

    return test


def _compile_value(rules: dict[str, Any], allow_unknown: bool) -> _Test:
    nullable = bool(rules.get("nullable"))
    kind = rules.get("type")
    kinds: tuple[str, ...] = (kind,) if isinstance(kind, str) else tuple(kind or ())
    classes = tuple(c for k in kinds for c in _CLASSES[k])
    # bool is an int to Python, not to cerberus's integer (as configured) or number
    no_bool = "boolean" not in kinds and bool({"integer", "number"} & set(kinds))
    allowed = rules.get("allowed")
    check = CHECKS[rules["check"]] if "check" in rules else None
    values = _compile_value(rules["valuesrules"], allow_unknown) if "valuesrules" in rules else None
    sub = rules.get("schema")
    fields = items = None
    if isinstance(sub, dict):
        if "dict" in kinds:
            fields = _compile_mapping(sub, rules.get("allow_unknown", allow_unknown))
        if "list" in kinds:
            items = _compile_value(sub, allow_unknown)

    def test(value: Any) -> bool:
        if value is None:
            return nullable
        if classes and (not isinstance(value, classes) or (no_bool and isinstance(value, bool))):
            return False
        if allowed is not None and value not in allowed:
            return False
        if check is not None and check(value) is not None:
            return False
        if isinstance(value, dict):
            if values is not None and not all(values(v) for v in value.values()):
                return False
            return fields is None or fields(value)
        if isinstance(value, list) and items is not None:
            return all(items(v) for v in value)
        return True

    return test


# --- cerberus ------------------------------------------------------------------------------

_VALIDATORS: dict[str, Any] = {}


def _validator(api_version: str) -> Any:
    """The one cerberus validator of a schema (creating one costs as much as a validation)."""
    validator = _VALIDATORS.get(api_version)
    if validator is None:
        from typing import ClassVar

        from cerberus import TypeDefinition, Validator

        class _Validator(Validator):  # type: ignore[misc]
            # cerberus counts True as an integer; pod files must not.
            types_mapping: ClassVar[dict[str, Any]] = {
                **Validator.types_mapping,
                "integer": TypeDefinition("integer", (int,), (bool,)),
            }

            def _validate_check(self, check: Any, field: str, value: Any) -> None:
                """{'type': 'string'}"""
                if value is None:
                    return
                expected = CHECKS[check](value)
                if expected is not None:
                    self._error(field, expected)

        validator = _Validator(SCHEMAS[api_version])
        _VALIDATORS[api_version] = validator
    return validator


def cerberus_problems(api_version: str, document: dict[str, Any]) -> list[tuple[KeyPath, str, Any]]:
    """What cerberus finds wrong: (path, expected, got) with got None for nothing to show.

    Unknown fields come back with expected ``""`` (the caller words them).
    """
    validator = _validator(api_version)
    if validator.validate(document, normalize=False):
        return []
    out: list[tuple[KeyPath, str, Any]] = []
    _convert(validator._errors, SCHEMAS[api_version], out)
    return out


_TYPE_WORDS = {
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "true or false",
    "dict": "a table",
    "list": "a list",
}


def type_words(kind: Any) -> str:
    names = [kind] if isinstance(kind, str) else list(kind)
    words = [_TYPE_WORDS.get(n, n) for n in names]
    if len(words) == 1:
        return "must be " + words[0]
    return "must be " + ", ".join(words[:-1]) + " or " + words[-1]


def rules_at(schema: dict[str, Any], path: KeyPath) -> dict[str, Any] | None:
    """The rules of the field at ``path`` (list indices skip to the item rules)."""
    rules: dict[str, Any] | None = {"type": "dict", "schema": schema}
    for key in path:
        if rules is None:
            return None
        sub = rules.get("schema")
        kind = rules.get("type")
        kinds = (kind,) if isinstance(kind, str) else tuple(kind or ())
        if not isinstance(sub, dict):
            return None
        if isinstance(key, int):
            rules = sub if "list" in kinds else None
        else:
            found = sub.get(key) if "dict" in kinds else None
            rules = found if isinstance(found, dict) else None
    return rules


def known_keys(schema: dict[str, Any], path: KeyPath) -> list[str]:
    """The field names of the table at ``path``."""
    rules = rules_at(schema, path)
    sub = rules.get("schema") if rules is not None else None
    return sorted(sub) if isinstance(sub, dict) else []


def _convert(errors: Any, schema: dict[str, Any], out: list[tuple[KeyPath, str, Any]]) -> None:
    for error in errors:
        if error.is_group_error:
            _convert(error.child_errors, schema, out)
            continue
        path: KeyPath = tuple(error.document_path)
        got: Any = describe_value(error.value)
        if error.code == 0x03:  # unknown field
            expected, got = "", None
        elif error.rule == "required":
            expected, got = "is required", None
        elif error.rule == "type":
            rules = rules_at(schema, path)
            check = rules.get("check") if rules is not None else None
            expected = CHECK_TYPE_WORDS.get(check) or type_words(error.constraint)
        elif error.rule == "nullable":
            rules = rules_at(schema, path)
            kind = rules.get("type") if rules is not None else None
            expected = (type_words(kind) if kind else "must have a value") + ", not null"
        elif error.rule == "allowed":
            expected = "must be one of " + ", ".join(str(c) for c in error.constraint)
        elif error.info and isinstance(error.info[0], str):
            expected = error.info[0]
        else:
            expected = str(error.rule or "invalid value")
        out.append((path, expected, got))


def unknown_field(api_version: str, schema: dict[str, Any], path: KeyPath) -> str:
    """The message for an unknown field, with the closest known key when there is one."""
    key = str(path[-1])
    known = known_keys(schema, path[:-1])
    if api_version == "v1" and len(path) >= 2 and path[-2] in ("limits", "requests"):
        return "not supported: rktcfg limits cpu and memory only"
    if api_version == "v1" and key in KUBERNETES_FIELDS:
        return "not supported: rktcfg reads a subset of the Kubernetes Pod"
    renamed = RKTCFG_NAMES.get(key) if api_version == "rktcfg/v1" else None
    if renamed in known:
        return f'unknown field (did you mean "{renamed}"? rktcfg/v1 calls it that)'
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    if close:
        return f'unknown field (did you mean "{close[0]}"?)'
    return "unknown field" + ("; known fields: " + ", ".join(known) if known else "")


def problem(
    file: str, line_of: Callable[[KeyPath], int | None], path: KeyPath, expected: str, got: Any
) -> Problem:
    return Problem(expected, file=file, line=line_of(path), field=dotted(path), got=got)


def dotted(path: KeyPath) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out
