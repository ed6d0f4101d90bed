"""Whatever a pod file holds, loading yields pods or a ValidationError, never another error.

And the fast check of a valid document (``rktcfg.spec.schema.conforms``) agrees with cerberus
on every document: it only decides whether cerberus needs to be asked.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from rktcfg.errors import ValidationError
from rktcfg.spec import load
from rktcfg.spec.schema import SCHEMAS, cerberus_problems, conforms

KEYS = [
    # rktcfg/v1
    "apiVersion", "kind", "metadata", "spec", "name", "labels", "annotations", "stage1",
    "restartPolicy", "net", "hostname", "dns", "apps", "volumes", "image", "exec", "args",
    "env", "user", "group", "supplementaryGroups", "workingDirectory", "readOnlyRootFS",
    "isolators", "cpu", "memory", "pids", "os/linux/no-new-privileges", "resource/cpu",
    "os/linux/capabilities-retain-set", "set", "limit", "mounts", "volume", "path", "readOnly",
    "ports", "port", "protocol", "hostPort", "hostIP", "healthCheck", "interval", "timeout",
    "retries", "source", "recursive", "mode", "uid", "gid", "value", "valueFrom",
    # Kubernetes
    "containers", "command", "resources", "limits", "requests", "containerPort",
    "volumeMounts", "mountPath", "workingDir", "securityContext", "readOnlyRootFilesystem",
    "runAsUser", "runAsGroup", "livenessProbe", "periodSeconds", "timeoutSeconds",
    "failureThreshold", "hostPath", "emptyDir", "hostNetwork", "dnsConfig", "nameservers",
    "namespace",
]  # fmt: skip
SCALARS = [
    "rktcfg/v1", "v1", "Pod", "web", "Web", "a.b", "host", "empty", "default", "none", "tcp",
    "UDP", "TCP", "Always", "never", "on-failure", "500m", "64M", "16m", "1Gi", "10s", "0s",
    "/abs", "rel", "./x.aci", "0755", "755", "10.0.0.1", "fd00::1", "example.com/x:1", "",
    "CAP_NET_ADMIN", "kvm", "rktcfg.dev/name",
]  # fmt: skip

values = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(2**66), 2**66),
        st.floats(allow_nan=True),
        st.sampled_from(SCALARS),
        st.text(max_size=6),
    ),
    lambda children: st.one_of(
        st.lists(children, max_size=3),
        st.dictionaries(
            st.one_of(st.sampled_from(KEYS), st.text(max_size=4)), children, max_size=5
        ),
    ),
    max_leaves=25,
)


def _app() -> Any:
    fields = {"name": st.sampled_from(["web", "db", "Web"]), "image": st.sampled_from(SCALARS)}
    extra = st.dictionaries(st.sampled_from(KEYS), values, max_size=4)
    return st.builds(lambda base, more: {**base, **more}, st.fixed_dictionaries(fields), extra)


def _pod(api_version: str) -> Any:
    """Pods with junk in every place: mostly invalid, they reach deep into the builder."""
    kubernetes = api_version == "v1"
    spec = st.builds(
        lambda apps, more: {("containers" if kubernetes else "apps"): apps, **more},
        st.lists(_app(), max_size=3),
        st.dictionaries(st.sampled_from(KEYS), values, max_size=3),
    )
    return st.fixed_dictionaries(
        {
            "apiVersion": st.just(api_version),
            "kind": st.just("Pod"),
            "metadata": st.fixed_dictionaries(
                {"name": st.sampled_from(["web", "a.b", "x"])},
                optional={"labels": values, "annotations": values},
            ),
            "spec": spec,
        }
    )


#: (valid, invalid) candidates per check
STRINGS_BY_CHECK = {
    "acname": (["web", "db", "my-app"], ["Web", "a--b", "a.b", ""]),
    "kubernetes_name": (["web", "db"], ["a.b", "Web"]),
    "image": (["example.com/x:1", "./x.aci", "sha512-abc"], [" x", ""]),
    "nonempty": (["x", "./site", "/srv"], [""]),
    "abspath": (["/abs", "/"], ["rel"]),
    "ip": (["10.0.0.1", "fd00::1"], ["localhost"]),
    "hostname": (["web", "web.example.com"], ["-bad", "a" * 64]),
    "duration": (["10s", "1m30s"], ["0s", "0", "ten"]),
    "id": (["root", "1000"], ["", " "]),
    "mode": (["0755", "755"], ["0800", "rwx"]),
    None: (["x", "web"], [""]),
}
INTEGERS_BY_CHECK = {
    "port": ([1, 80, 8080, 65535], [0, 65536]),
    "positive": ([1, 3], [0]),
    "uint": ([0, 1000], [-1, 2**32]),
    "id": ([0, 1000], [-1]),
    None: ([0, 1, 100], []),
}
ISOLATORS = {
    "cpu": (["500m", "2", 1, 0.5], ["lots", "-1"]),
    "memory": (["64M", 1 << 20], ["16m", "1x"]),
    "pids": ([1, 100], [0]),
    "os/linux/no-new-privileges": ([True, False], ["yes"]),
    "resource/cpu": ([{"limit": "1"}], ["1", {"request": "2", "limit": "1"}]),
    "os/linux/capabilities-retain-set": ([{"set": ["CAP_NET_ADMIN"]}], [{}]),
    "os/linux/seccomp-remove-set": ([], [{"set": ["reboot"]}]),
    "gpu": ([], [1]),
}


def _candidates(pair: tuple[list[Any], list[Any]], mutate: bool) -> Any:
    good, bad = pair
    options = [*good, *bad] if mutate or not good else good
    return st.sampled_from(options)


def _scalar(kind: str, rules: dict[str, Any], mutate: bool) -> Any:
    check = rules.get("check")
    if kind == "string":
        if "allowed" in rules:
            return _candidates((list(rules["allowed"]), ["other"]), mutate)
        return _candidates(STRINGS_BY_CHECK.get(check, STRINGS_BY_CHECK[None]), mutate)
    if kind == "integer":
        return _candidates(INTEGERS_BY_CHECK.get(check, INTEGERS_BY_CHECK[None]), mutate)
    if kind == "number":
        return st.one_of(st.integers(1, 4), st.floats(0.5, 4))
    if kind == "boolean":
        return st.booleans()
    if kind == "dict":
        if "valuesrules" in rules:
            keys = ["tier", "example.com/x"] + (["Bad Key", "rktcfg.dev/set"] if mutate else [])
            return st.dictionaries(
                st.sampled_from(keys), _from_rules(rules["valuesrules"], mutate), max_size=2
            )
        if rules.get("allow_unknown"):  # isolators: short forms and full names
            names = [n for n, (good, _) in ISOLATORS.items() if mutate or good]
            return st.lists(st.sampled_from(names), unique=True, max_size=3).flatmap(
                lambda chosen: st.fixed_dictionaries(
                    {n: _candidates(ISOLATORS[n], mutate) for n in chosen}
                )
            )
        return _mapping(rules.get("schema", {}), mutate)
    if kind == "list":
        item = rules.get("schema")
        low = 1 if check == "nonempty" and not mutate else 0
        return st.lists(_from_rules(item, mutate) if item else values, min_size=low, max_size=2)
    return values


def _from_rules(rules: dict[str, Any], mutate: bool) -> Any:
    """Values that conform to ``rules``; with ``mutate``, often values that do not."""
    kind = rules.get("type", "string")
    kinds = [kind] if isinstance(kind, str) else list(kind)
    good = st.one_of(*(_scalar(k, rules, mutate) for k in kinds))
    if not mutate:
        return good
    return st.one_of(good, good, good, good, st.none(), values)


def _mapping(schema: dict[str, Any], mutate: bool) -> Any:
    required = {k: _from_rules(r, mutate) for k, r in schema.items() if r.get("required")}
    optional = {k: _from_rules(r, mutate) for k, r in schema.items() if not r.get("required")}
    base = st.fixed_dictionaries(required, optional=optional)
    if not mutate:
        return base
    unknown = st.dictionaries(st.sampled_from(KEYS), values, max_size=1)
    return st.one_of(base, base, base, st.builds(lambda a, b: {**b, **a}, base, unknown))


def _document(api_version: str, mutate: bool) -> Any:
    """Pods drawn from the schema: valid ones, or with ``mutate`` nearly valid ones."""
    schema = SCHEMAS[api_version]
    body = {k: v for k, v in schema.items() if k not in ("apiVersion", "kind")}
    return st.builds(
        lambda rest: {"apiVersion": api_version, "kind": "Pod", **rest}, _mapping(body, mutate)
    )


documents = st.one_of(
    _document("rktcfg/v1", False),
    _document("v1", False),
    _document("rktcfg/v1", True),
    _document("v1", True),
    _pod("rktcfg/v1"),
    _pod("v1"),
    st.dictionaries(st.sampled_from(KEYS), values),
)


def _load(name: str, content: bytes, validate: str = "strict") -> None:
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / name).write_bytes(content)
        try:
            loaded = load([tmp], validate=validate, environ={"HOME": "/root"})
        except ValidationError as exc:
            assert exc.problems
            event("invalid")
            return
        event("loaded" if loaded.pods else "no pods")
        for pod in loaded.pods:
            assert json.loads(json.dumps(pod.spec)) == pod.spec


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(documents, min_size=1, max_size=3), st.sampled_from(["strict", "warn"]))
def test_arbitrary_documents(docs: list[Any], validate: str) -> None:
    _load("pod.yaml", yaml.safe_dump_all(docs).encode(), validate)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(documents)
def test_arbitrary_json(doc: Any) -> None:
    _load("pod.json", json.dumps(doc).encode())


@settings(max_examples=100, deadline=None)
@given(st.sampled_from(["pod.yaml", "pod.json", "pod.yaml.j2"]), st.binary(max_size=200))
def test_arbitrary_bytes(name: str, content: bytes) -> None:
    _load(name, content)


@settings(max_examples=100, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("{}%#-:[] \n\tab|=.'\"()*&")), max_size=120))
def test_arbitrary_template_text(text: str) -> None:
    _load("pod.yaml.j2", text.encode())


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(sorted(SCHEMAS)), documents)
def test_the_fast_check_agrees_with_cerberus(api_version: str, doc: dict[str, Any]) -> None:
    schema = SCHEMAS[api_version]
    valid = conforms(schema, doc)
    event("valid" if valid else "invalid")
    assert valid == (not cerberus_problems(api_version, doc))
