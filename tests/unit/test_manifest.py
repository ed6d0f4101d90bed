"""appc image and pod manifests: the spec's fixtures, round trips, and every rule's message."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rktcfg.errors import ImageError, Problem, ValidationError
from rktcfg.image.manifest import (
    SPEC_VERSION,
    ImageManifest,
    Isolator,
    Label,
    PodManifest,
    appc_os_arch,
    check_runs_here,
    format_app_string,
    host_os_arch,
    image_manifest_to_json,
    is_reified,
    parse_app_string,
    parse_image_manifest,
    parse_pod_manifest,
    pod_manifest_to_json,
    unknown_isolators,
)
from rktcfg.names import AC_IDENTIFIER_RULE, AC_NAME_RULE

FIXTURES = Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "appc"
SOURCE = "example.aci:manifest"
FULL_ID = "sha512-" + "ab" * 64


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def problems_of(error: pytest.ExceptionInfo[ValidationError]) -> list[tuple[str | None, str]]:
    return [(p.field, p.expected) for p in error.value.problems]


# --------------------------------------------------------------------------------------------
# Fixtures


def test_image_fixture_parses() -> None:
    manifest = parse_image_manifest(fixture("image.json"), source=SOURCE)
    assert manifest.name == "example.com/reduce-worker"
    assert manifest.version == "1.0.0"
    assert manifest.name_version == "example.com/reduce-worker:1.0.0"
    assert manifest.label("os") == "linux"
    assert manifest.label("missing") is None
    assert manifest.ac_version == "0.8.11"
    assert manifest.ignored_keys == ()
    app = manifest.app
    assert app is not None
    assert app.exec == ("/usr/bin/reduce-worker", "--quiet")
    assert (app.user, app.group) == ("100", "300")
    assert [h.name for h in app.event_handlers] == ["pre-start", "post-stop"]
    assert app.ports[0].socket_activated is True
    assert app.ports[0].count == 1
    assert app.mount_points[0].read_only is False
    assert app.isolators[0] == Isolator.of("resource/cpu", {"limit": "20m"})
    assert app.isolators[3].value is True
    assert unknown_isolators(app.isolators) == ()
    assert manifest.dependencies[0].image_name == "example.com/reduce-worker-base"
    assert manifest.annotation("homepage") == "https://example.com"
    assert manifest.raw == json.loads(fixture("image.json"))


def test_pod_fixtures_parse() -> None:
    runtime = parse_pod_manifest(fixture("pod_runtime.json"), source="pod_runtime.json")
    template = parse_pod_manifest(fixture("pod_template.json"), source="pod_template.json")
    assert is_reified(runtime)
    assert not is_reified(template)
    assert [a.name for a in runtime.apps] == ["reduce-worker", "backup", "register"]
    db = runtime.volume("dbvolume")
    assert db is not None
    assert (db.kind, db.source, db.read_only, db.recursive) == (
        "host",
        "/opt/tenant1/database",
        True,
        None,
    )
    out = runtime.volume("buildoutput")
    assert out is not None
    assert (out.kind, out.mode, out.uid, out.gid) == ("empty", "0777", 0, 0)
    worker = runtime.app("reduce-worker")
    assert worker is not None and worker.app is not None
    assert worker.app.user == "0"
    assert runtime.isolators[1].value == {"net.ipv4.tcp_fin_timeout": "6"}
    assert template.ac_version == "0.3.0"
    backup = template.app("backup")
    assert backup is not None
    assert backup.image.id is None
    assert backup.image.label("version") == "latest"


def test_fixtures_round_trip() -> None:
    image = parse_image_manifest(fixture("image.json"))
    assert parse_image_manifest(image_manifest_to_json(image)) == image
    for name in ("pod_runtime.json", "pod_template.json"):
        pod = parse_pod_manifest(fixture(name))
        assert parse_pod_manifest(pod_manifest_to_json(pod)) == pod


def test_canonical_json_shape() -> None:
    image = parse_image_manifest(fixture("image.json"))
    out = image_manifest_to_json(image)
    assert list(out) == [
        "acKind",
        "acVersion",
        "name",
        "labels",
        "app",
        "dependencies",
        "pathWhitelist",
        "annotations",
    ]
    assert out["acVersion"] == SPEC_VERSION
    assert list(out["app"])[:3] == ["exec", "user", "group"]
    assert out["app"]["ports"][0] == {
        "name": "health",
        "protocol": "tcp",
        "port": 4000,
        "count": 1,
        "socketActivated": True,
    }
    assert json.loads(json.dumps(out)) == out


def test_inputs_bytes_text_and_dict_agree() -> None:
    data = fixture("image.json")
    doc = json.loads(data)
    from_bytes = parse_image_manifest(data)
    assert parse_image_manifest(data.decode()) == from_bytes
    assert parse_image_manifest(doc) == from_bytes
    assert parse_image_manifest(doc).raw is doc


def test_old_074_manifests() -> None:
    image = parse_image_manifest(
        {
            "acKind": "ImageManifest",
            "acVersion": "0.7.4",
            "name": "example.com/old",
            "app": {"exec": ["/bin/sh"], "user": "0", "group": "0", "supplementaryGids": [1, 2]},
        }
    )
    assert image.ac_version == "0.7.4"
    assert image.app is not None and image.app.supplementary_gids == (1, 2)
    assert image_manifest_to_json(image)["app"]["supplementaryGIDs"] == [1, 2]
    assert parse_image_manifest(image_manifest_to_json(image)) == image
    pod = parse_pod_manifest(
        {
            "acVersion": "0.7.4",
            "acKind": "PodManifest",
            "apps": [{"name": "old", "image": {"id": FULL_ID}}],
            "volumes": [{"name": "scratch", "kind": "empty", "mode": 493, "uid": 1, "gid": 2}],
        }
    )
    assert pod.volumes[0].mode == "0755"
    assert pod_manifest_to_json(pod)["volumes"][0]["mode"] == "0755"
    assert parse_pod_manifest(pod_manifest_to_json(pod)) == pod


def test_unknown_keys_are_recorded_not_refused() -> None:
    doc = json.loads(fixture("image.json"))
    doc["future"] = 1
    doc["app"]["criLabels"] = {}
    doc["app"]["ports"][0]["hostAddress"] = "x"
    doc["app"]["isolators"][0]["value"]["burst"] = "1"
    manifest = parse_image_manifest(doc)
    assert manifest.ignored_keys == (
        "future",
        "app.criLabels",
        "app.ports[0].hostAddress",
        "app.isolators[0].value.burst",
    )
    assert manifest == parse_image_manifest(fixture("image.json"))


def test_unknown_isolators_are_kept() -> None:
    doc = {
        "acKind": "ImageManifest",
        "acVersion": "0.8.11",
        "name": "example.com/x",
        "app": {
            "user": "0",
            "group": "0",
            "isolators": [
                {"name": "example.com/gpu", "value": {"count": 1}},
                {"name": "resource/memory", "value": {"limit": "1G"}},
                {"name": "example.com/gpu", "value": {"count": 2}},
            ],
        },
    }
    app = parse_image_manifest(doc).app
    assert app is not None
    assert len(app.isolators) == 3
    assert app.isolators[0].value == {"count": 1}
    assert not app.isolators[0].known
    assert unknown_isolators(app.isolators) == ("example.com/gpu",)


def test_json_syntax_error_has_the_line() -> None:
    with pytest.raises(ValidationError) as error:
        parse_image_manifest(b'{\n  "acKind": "ImageManifest",\n  "name": \n}', source=SOURCE)
    (problem,) = error.value.problems
    assert problem.file == SOURCE
    assert problem.line == 4
    assert problem.expected.startswith("is not valid JSON")


@pytest.mark.parametrize(
    "data",
    [b"[1, 2]", b"\xff\xfe", "NaN", b'{"acKind": NaN}', b"[" * 100_000, 42],
)
def test_not_documents(data: Any) -> None:
    with pytest.raises(ValidationError):
        parse_image_manifest(data)


# --------------------------------------------------------------------------------------------
# Bad manifests: one table, exact field and expected text


def image_doc() -> dict[str, Any]:
    return {
        "acKind": "ImageManifest",
        "acVersion": "0.8.11",
        "name": "example.com/app",
        "labels": [{"name": "version", "value": "1.0"}],
        "app": {
            "exec": ["/bin/app"],
            "user": "0",
            "group": "0",
            "ports": [{"name": "http", "protocol": "tcp", "port": 80}],
            "mountPoints": [{"name": "data", "path": "/data"}],
        },
    }


def pod_doc() -> dict[str, Any]:
    return {
        "acVersion": "0.8.11",
        "acKind": "PodManifest",
        "apps": [{"name": "web", "image": {"id": FULL_ID}}],
        "volumes": [
            {"name": "data", "kind": "host", "source": "/srv/data"},
            {"name": "scratch", "kind": "empty"},
        ],
    }


def isolators(*items: dict[str, Any]) -> dict[str, Any]:
    doc = image_doc()
    doc["app"]["isolators"] = list(items)
    return doc


def with_app(**changes: Any) -> dict[str, Any]:
    doc = image_doc()
    doc["app"].update(changes)
    return doc


def with_top(**changes: Any) -> dict[str, Any]:
    doc = image_doc()
    doc.update(changes)
    return doc


def with_pod(**changes: Any) -> dict[str, Any]:
    doc = pod_doc()
    doc.update(changes)
    return doc


CAP_RETAIN = {"name": "os/linux/capabilities-retain-set", "value": {"set": ["CAP_CHOWN"]}}
CAP_REMOVE = {"name": "os/linux/capabilities-remove-set", "value": {"set": ["CAP_KILL"]}}
ARCHS = "amd64, i386, aarch64, aarch64_be, armv6l, armv7l, armv7b, ppc64, ppc64le, s390x"
MUST_BE_ID = 'must be an image ID ("sha512-" and the hex digest)'

BAD_IMAGES: dict[str, tuple[dict[str, Any], list[tuple[str, str]]]] = {
    "bad name": (with_top(name="Example.com/App"), [("name", AC_IDENTIFIER_RULE)]),
    "strict identifier": (with_top(name="example.com//app"), [("name", AC_IDENTIFIER_RULE)]),
    "missing name": (
        {"acKind": "ImageManifest", "acVersion": "0.8.11"},
        [("name", "is required")],
    ),
    "wrong kind": (with_top(acKind="PodManifest"), [("acKind", 'must be "ImageManifest"')]),
    "bad semver": (
        with_top(acVersion="1.0"),
        [("acVersion", "must be a SemVer version like 0.8.11")],
    ),
    "major version 1": (
        with_top(acVersion="1.0.0"),
        [("acVersion", "must have major version 0: this is appc 0.8.11 (and reads 0.x manifests)")],
    ),
    "duplicate label": (
        with_top(labels=[{"name": "os", "value": "linux"}, {"name": "os", "value": "linux"}]),
        [("labels[1].name", "must be unique; labels[0].name has the same label name")],
    ),
    "label called name": (
        with_top(labels=[{"name": "name", "value": "x"}]),
        [("labels[0].name", 'must not be "name" (the name is its own field)')],
    ),
    "linux/x86_64": (
        with_top(labels=[{"name": "os", "value": "linux"}, {"name": "arch", "value": "x86_64"}]),
        [("labels[1].value", f"must be an arch for linux: {ARCHS}")],
    ),
    "unknown os": (
        with_top(labels=[{"name": "os", "value": "plan9"}]),
        [("labels[0].value", "must be a known os: darwin, freebsd, linux")],
    ),
    "bad env name": (
        with_app(environment=[{"name": "1BAD", "value": "x"}]),
        [
            (
                "app.environment[0].name",
                "must be an environment variable name (a letter or _, then letters, digits, "
                "_ . or -)",
            )
        ],
    ),
    "duplicate env": (
        with_app(environment=[{"name": "A", "value": "1"}, {"name": "A", "value": "2"}]),
        [("app.environment[1].name", "must be unique; app.environment[0].name has the same name")],
    ),
    "relative workingDirectory": (
        with_app(workingDirectory="srv"),
        [("app.workingDirectory", "must be an absolute path")],
    ),
    "missing user": (
        {**image_doc(), "app": {"exec": [], "group": "0"}},
        [("app.user", "is required")],
    ),
    "port 0": (
        with_app(ports=[{"name": "http", "protocol": "tcp", "port": 0}]),
        [("app.ports[0].port", "must be a port number from 1 to 65535")],
    ),
    "port range overflow": (
        with_app(ports=[{"name": "http", "protocol": "tcp", "port": 65535, "count": 2}]),
        [
            (
                "app.ports[0].count",
                "must keep the port range within 65535 (port 65535 + count - 1 <= 65535)",
            )
        ],
    ),
    "duplicate mountPoint": (
        with_app(mountPoints=[{"name": "data", "path": "/a"}, {"name": "data", "path": "/b"}]),
        [("app.mountPoints[1].name", "must be unique; app.mountPoints[0].name has the same name")],
    ),
    "bad mountPoint name": (
        with_app(mountPoints=[{"name": "my--data", "path": "/a"}]),
        [("app.mountPoints[0].name", AC_NAME_RULE)],
    ),
    "unknown eventHandler": (
        with_app(eventHandlers=[{"name": "post-start", "exec": ["/bin/true"]}]),
        [("app.eventHandlers[0].name", 'must be "pre-start" or "post-stop"')],
    ),
    "two pre-start handlers": (
        with_app(
            eventHandlers=[
                {"name": "pre-start", "exec": ["/bin/a"]},
                {"name": "pre-start", "exec": ["/bin/b"]},
            ]
        ),
        [
            (
                "app.eventHandlers[1].name",
                "must be unique; app.eventHandlers[0].name has the same name",
            )
        ],
    ),
    "empty handler exec": (
        with_app(eventHandlers=[{"name": "pre-start", "exec": []}]),
        [("app.eventHandlers[0].exec", "must not be empty")],
    ),
    "capabilities retain and remove": (
        isolators(CAP_RETAIN, CAP_REMOVE),
        [
            (
                "app.isolators[1].name",
                "must not be combined with os/linux/capabilities-retain-set (app.isolators[0])",
            )
        ],
    ),
    "two seccomp isolators": (
        isolators(
            {"name": "os/linux/seccomp-remove-set", "value": {"set": ["reboot"]}},
            {"name": "os/linux/seccomp-remove-set", "value": {"set": ["kexec"]}},
        ),
        [("app.isolators[1].name", "must appear at most once (app.isolators[0])")],
    ),
    "bad memory quantity": (
        isolators({"name": "resource/memory", "value": {"limit": "lots"}}),
        [("app.isolators[0].value.limit", "must be a memory quantity like 128M or 1Gi")],
    ),
    "cpu default true": (
        isolators({"name": "resource/cpu", "value": {"default": True, "limit": "1"}}),
        [("app.isolators[0].value.default", "must be false or absent for resource/cpu")],
    ),
    "bandwidth default missing": (
        isolators({"name": "resource/network-bandwidth", "value": {"limit": "10M"}}),
        [("app.isolators[0].value.default", "must be true for resource/network-bandwidth")],
    ),
    "empty capability set": (
        isolators({"name": "os/linux/capabilities-retain-set", "value": {"set": []}}),
        [("app.isolators[0].value.set", "must not be empty")],
    ),
    "lowercase errno": (
        isolators(
            {
                "name": "os/linux/seccomp-retain-set",
                "value": {"set": ["@appc.io/all"], "errno": "eperm"},
            }
        ),
        [("app.isolators[0].value.errno", "must be an errno name in capitals, like EPERM")],
    ),
    "selinux colon": (
        isolators(
            {
                "name": "os/linux/selinux-context",
                "value": {"user": "a:b", "role": "r", "type": "t", "level": "s0:c1"},
            }
        ),
        [("app.isolators[0].value.user", "must not contain ':'")],
    ),
    "oom score out of range": (
        isolators({"name": "os/linux/oom-score-adj", "value": 1001}),
        [("app.isolators[0].value", "must be an integer from -1000 to 1000")],
    ),
    "no-new-privileges not bool": (
        isolators({"name": "os/linux/no-new-privileges", "value": "yes"}),
        [("app.isolators[0].value", "must be true or false for os/linux/no-new-privileges")],
    ),
    "both gid spellings": (
        with_app(supplementaryGIDs=[1], supplementaryGids=[2]),
        [
            (
                "app.supplementaryGids",
                "must not be given together with supplementaryGIDs (the same field spelt twice)",
            )
        ],
    ),
    "negative gid": (
        with_app(supplementaryGIDs=[-1]),
        [("app.supplementaryGIDs[0]", "must be a group ID (a non-negative integer)")],
    ),
    "bad dependency imageID": (
        with_top(dependencies=[{"imageName": "example.com/base", "imageID": "sha256-abc"}]),
        [("dependencies[0].imageID", MUST_BE_ID)],
    ),
    "negative dependency size": (
        with_top(dependencies=[{"imageName": "example.com/base", "size": -1}]),
        [("dependencies[0].size", "must be a size in bytes (a non-negative integer)")],
    ),
    "relative pathWhitelist": (
        with_top(pathWhitelist=["/etc", "usr/bin"]),
        [("pathWhitelist[1]", "must be an absolute path")],
    ),
    "bad created": (
        with_top(annotations=[{"name": "created", "value": "2014-10-27 19:32:27Z"}]),
        [
            (
                "annotations[0].value",
                "must be an RFC 3339 time like 2014-10-27T19:32:27Z (annotation created)",
            )
        ],
    ),
    "bad homepage": (
        with_top(annotations=[{"name": "homepage", "value": "ftp://example.com"}]),
        [("annotations[0].value", "must be an http or https URL (annotation homepage)")],
    ),
}

BAD_PODS: dict[str, tuple[dict[str, Any], list[tuple[str, str]]]] = {
    "host volume with mode": (
        with_pod(volumes=[{"name": "data", "kind": "host", "source": "/srv", "mode": "0755"}]),
        [("volumes[0].mode", "must be absent for a host volume (only empty volumes have a mode)")],
    ),
    "empty volume with source": (
        with_pod(volumes=[{"name": "data", "kind": "empty", "source": "/srv"}]),
        [
            (
                "volumes[0].source",
                "must be absent for an empty volume (only host volumes have a source)",
            )
        ],
    ),
    "relative host source": (
        with_pod(volumes=[{"name": "data", "kind": "host", "source": "srv"}]),
        [("volumes[0].source", "must be an absolute path")],
    ),
    "unknown volume kind": (
        with_pod(volumes=[{"name": "data", "kind": "tmpfs"}]),
        [("volumes[0].kind", 'must be "host" or "empty"')],
    ),
    "duplicate volume": (
        with_pod(volumes=[{"name": "v", "kind": "empty"}, {"name": "v", "kind": "empty"}]),
        [("volumes[1].name", "must be unique; volumes[0].name has the same name")],
    ),
    "duplicate app names": (
        with_pod(
            apps=[
                {"name": "web", "image": {"id": FULL_ID}},
                {"name": "web", "image": {"id": FULL_ID}},
            ]
        ),
        [("apps[1].name", "must be unique; apps[0].name has the same name")],
    ),
    "short image id": (
        with_pod(apps=[{"name": "web", "image": {"id": "sha512-abcdef"}}]),
        [
            (
                "apps[0].image.id",
                "must be an image ID (sha512- and the 128 hex digits of the digest)",
            )
        ],
    ),
    "pod app replaces app": (
        with_pod(apps=[{"name": "web", "image": {"id": FULL_ID}, "app": {"exec": ["/x"]}}]),
        [("apps[0].app.group", "is required"), ("apps[0].app.user", "is required")],
    ),
    "missing apps": (
        {"acVersion": "0.8.11", "acKind": "PodManifest"},
        [("apps", "is required")],
    ),
    "bad hostIP": (
        with_pod(ports=[{"name": "http", "hostPort": 8080, "hostIP": "10.0.0.256"}]),
        [("ports[0].hostIP", "must be an IPv4 address like 10.0.0.1")],
    ),
    "hostPort 0": (
        with_pod(ports=[{"name": "http", "hostPort": 0}]),
        [("ports[0].hostPort", "must be a port number from 1 to 65535")],
    ),
    "sysctl numbers": (
        with_pod(isolators=[{"name": "os/unix/sysctl", "value": {"net.ipv4.ip_forward": 1}}]),
        [
            (
                "isolators[0].value.net.ipv4.ip_forward",
                "must be a string (sysctl values are strings)",
            )
        ],
    ),
}


@pytest.mark.parametrize("case", list(BAD_IMAGES))
def test_bad_image_manifests(case: str) -> None:
    doc, expected = BAD_IMAGES[case]
    with pytest.raises(ValidationError) as error:
        parse_image_manifest(copy.deepcopy(doc), source=SOURCE)
    assert problems_of(error) == expected
    assert all(p.file == SOURCE for p in error.value.problems)


@pytest.mark.parametrize("case", list(BAD_PODS))
def test_bad_pod_manifests(case: str) -> None:
    doc, expected = BAD_PODS[case]
    with pytest.raises(ValidationError) as error:
        parse_pod_manifest(copy.deepcopy(doc), source="pod.json")
    assert problems_of(error) == expected


def test_problems_show_the_value() -> None:
    with pytest.raises(ValidationError) as error:
        parse_image_manifest(with_top(name="Bad"), source=SOURCE)
    assert str(error.value) == f'{SOURCE}: name: {AC_IDENTIFIER_RULE} (got "Bad")'


def test_arch_without_os_is_accepted() -> None:
    manifest = parse_image_manifest(with_top(labels=[{"name": "arch", "value": "x86_64"}]))
    assert manifest.label("arch") == "x86_64"
    check_runs_here(manifest, host=("linux", "amd64"))


def test_image_without_app_is_valid() -> None:
    doc = image_doc()
    del doc["app"]
    assert parse_image_manifest(doc).app is None


def test_all_problems_are_reported_together() -> None:
    doc = image_doc()
    doc["name"] = "Bad Name"
    doc["labels"].append({"name": "name", "value": "x"})
    doc["app"]["workingDirectory"] = "relative"
    doc["app"]["ports"][0]["port"] = 0
    doc["pathWhitelist"] = ["etc"]
    with pytest.raises(ValidationError) as error:
        parse_image_manifest(doc, source=SOURCE)
    assert sorted(problems_of(error)) == [
        ("app.ports[0].port", "must be a port number from 1 to 65535"),
        ("app.workingDirectory", "must be an absolute path"),
        ("labels[1].name", 'must not be "name" (the name is its own field)'),
        ("name", AC_IDENTIFIER_RULE),
        ("pathWhitelist[0]", "must be an absolute path"),
    ]
    assert str(error.value).startswith(f"5 problems in {SOURCE}:")


# --------------------------------------------------------------------------------------------
# Host check


def image_for(*labels: tuple[str, str]) -> ImageManifest:
    return ImageManifest(
        name="example.com/x",
        labels=tuple(Label(name=name, value=value) for name, value in labels),
    )


@pytest.mark.parametrize(
    ("labels", "host", "runs"),
    [
        ((), ("linux", "amd64"), True),
        ((("os", "linux"),), ("linux", "aarch64"), True),
        ((("os", "linux"), ("arch", "amd64")), ("linux", "amd64"), True),
        ((("os", "linux"), ("arch", "aarch64")), ("linux", "amd64"), False),
        ((("os", "freebsd"),), ("linux", "amd64"), False),
        ((("arch", "aarch64"),), ("linux", "amd64"), True),
    ],
)
def test_check_runs_here(
    labels: tuple[tuple[str, str], ...], host: tuple[str, str], runs: bool
) -> None:
    manifest = image_for(*labels)
    if runs:
        check_runs_here(manifest, host=host)
    else:
        with pytest.raises(ImageError):
            check_runs_here(manifest, host=host)


def test_check_runs_here_message() -> None:
    manifest = image_for(("version", "1"), ("os", "linux"), ("arch", "aarch64"))
    with pytest.raises(ImageError) as error:
        check_runs_here(manifest, host=("linux", "amd64"))
    assert str(error.value) == (
        "image example.com/x:1 is for linux/aarch64, but this host is linux/amd64"
    )


def test_host_os_arch() -> None:
    assert appc_os_arch("Linux", "x86_64") == ("linux", "amd64")
    assert appc_os_arch("Linux", "i686") == ("linux", "i386")
    assert appc_os_arch("Linux", "aarch64") == ("linux", "aarch64")
    assert appc_os_arch("Linux", "armv7l") == ("linux", "armv7l")
    assert appc_os_arch("Darwin", "x86_64") == ("darwin", "x86_64")
    os_name, arch = host_os_arch()
    assert os_name and arch


# --------------------------------------------------------------------------------------------
# App strings


def test_app_strings() -> None:
    assert parse_app_string("coreos.com/etcd:v2.0.0,os=linux,arch=amd64") == (
        "coreos.com/etcd",
        {"version": "v2.0.0", "os": "linux", "arch": "amd64"},
    )
    assert parse_app_string("example.com/app") == ("example.com/app", {})
    assert parse_app_string("example.com/app,channel=alpha") == (
        "example.com/app",
        {"channel": "alpha"},
    )
    text = format_app_string("coreos.com/etcd", {"os": "linux", "version": "v2.0.0"})
    assert text == "coreos.com/etcd:v2.0.0,os=linux"
    assert parse_app_string(text) == ("coreos.com/etcd", {"version": "v2.0.0", "os": "linux"})


@pytest.mark.parametrize(
    "text",
    ["a:b:c", "a,os=linux:x", "Bad", "a,os", "a,name=b", "a:1,version=2", "a,", "a:", "a,OS=x"],
)
def test_bad_app_strings(text: str) -> None:
    with pytest.raises(ValidationError):
        parse_app_string(text)


# --------------------------------------------------------------------------------------------
# Hypothesis: valid manifests round-trip; anything else is a ValidationError

_segment = st.text("abcxyz019", min_size=1, max_size=4)
ac_names = st.lists(_segment, min_size=1, max_size=3).map("-".join)
ac_identifiers = st.builds(
    lambda first, rest: first + "".join(sep + seg for sep, seg in rest),
    _segment,
    st.lists(st.tuples(st.sampled_from("-._~/"), _segment), max_size=3),
)
texts = st.text(max_size=8)
abs_paths = st.lists(_segment, max_size=3).map(lambda parts: "/" + "/".join(parts))
json_scalars = st.one_of(st.none(), st.booleans(), st.integers(-1000, 1000), texts)
json_values = st.recursive(
    json_scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=3), st.dictionaries(texts, children, max_size=3)
    ),
    max_leaves=8,
)

KNOWN_GOOD_ISOLATORS = [
    {"name": "resource/cpu", "value": {"request": "100m", "limit": "2"}},
    {"name": "resource/memory", "value": {"limit": "512Mi"}},
    {"name": "resource/block-iops", "value": {"default": True, "limit": "1k"}},
    {"name": "os/linux/no-new-privileges", "value": True},
    {"name": "os/linux/oom-score-adj", "value": -5},
    {"name": "os/linux/cpu-shares", "value": 512},
    {"name": "os/linux/apparmor-profile", "value": {"profile": "docker-default"}},
    {"name": "os/linux/capabilities-remove-set", "value": {"set": ["CAP_KILL"]}},
]


def unique_by_name(items: list[dict[str, Any]], key: str = "name") -> list[dict[str, Any]]:
    seen: dict[str, dict[str, Any]] = {}
    for item in items:
        seen.setdefault(item[key], item)
    return list(seen.values())


labels_st = st.lists(
    st.fixed_dictionaries({"name": ac_identifiers, "value": texts}), max_size=3
).map(lambda items: [i for i in unique_by_name(items) if i["name"] not in ("name", "os")])
isolators_st = st.lists(
    st.one_of(
        st.sampled_from(KNOWN_GOOD_ISOLATORS),
        st.fixed_dictionaries(
            {"name": ac_identifiers.map("example.com/".__add__), "value": json_values}
        ),
    ),
    max_size=3,
).map(unique_by_name)
ports_st = st.lists(
    st.fixed_dictionaries(
        {
            "name": ac_names,
            "protocol": st.sampled_from(["tcp", "udp"]),
            "port": st.integers(1, 60000),
        },
        optional={"count": st.integers(1, 5000), "socketActivated": st.booleans()},
    ),
    max_size=2,
).map(unique_by_name)
apps_st = st.fixed_dictionaries(
    {"user": texts.filter(bool), "group": texts.filter(bool)},
    optional={
        "exec": st.lists(texts, max_size=3),
        "supplementaryGIDs": st.lists(st.integers(0, 70000), max_size=3),
        "eventHandlers": st.lists(
            st.fixed_dictionaries(
                {
                    "name": st.sampled_from(["pre-start", "post-stop"]),
                    "exec": st.lists(texts, min_size=1, max_size=2),
                }
            ),
            max_size=2,
        ).map(unique_by_name),
        "workingDirectory": abs_paths,
        "environment": st.lists(
            st.fixed_dictionaries(
                {
                    "name": st.from_regex(r"[A-Za-z_][A-Za-z0-9_.-]{0,5}", fullmatch=True),
                    "value": texts,
                }
            ),
            max_size=3,
        ).map(unique_by_name),
        "mountPoints": st.lists(
            st.fixed_dictionaries(
                {"name": ac_names, "path": abs_paths}, optional={"readOnly": st.booleans()}
            ),
            max_size=2,
        ).map(unique_by_name),
        "ports": ports_st,
        "isolators": isolators_st,
        "userAnnotations": st.dictionaries(texts, texts, max_size=2),
        "userLabels": st.dictionaries(texts, texts, max_size=2),
    },
)
annotations_st = st.lists(
    st.fixed_dictionaries({"name": ac_identifiers, "value": texts}), max_size=3
).map(
    lambda items: [
        i
        for i in unique_by_name(items)
        if i["name"] not in ("created", "homepage", "documentation")
    ]
)
image_docs = st.fixed_dictionaries(
    {
        "acKind": st.just("ImageManifest"),
        "acVersion": st.sampled_from(["0.8.11", "0.7.4", "0.8.0-rc1+build.5"]),
        "name": ac_identifiers,
    },
    optional={
        "labels": labels_st,
        "app": apps_st,
        "dependencies": st.lists(
            st.fixed_dictionaries(
                {"imageName": ac_identifiers},
                optional={
                    "imageID": st.just(FULL_ID),
                    "labels": labels_st,
                    "size": st.integers(0, 2**40),
                },
            ),
            max_size=2,
        ),
        "pathWhitelist": st.lists(abs_paths, max_size=3),
        "annotations": annotations_st,
    },
)
volumes_st = st.lists(
    st.one_of(
        st.fixed_dictionaries(
            {"name": ac_names, "kind": st.just("host"), "source": abs_paths},
            optional={"readOnly": st.booleans(), "recursive": st.booleans()},
        ),
        st.fixed_dictionaries(
            {"name": ac_names, "kind": st.just("empty")},
            optional={
                "readOnly": st.booleans(),
                "mode": st.sampled_from(["0755", "0700", "1777"]),
                "uid": st.integers(0, 65535),
                "gid": st.integers(0, 65535),
            },
        ),
    ),
    max_size=3,
).map(unique_by_name)
pod_docs = st.fixed_dictionaries(
    {
        "acVersion": st.just("0.8.11"),
        "acKind": st.just("PodManifest"),
        "apps": st.lists(
            st.fixed_dictionaries(
                {
                    "name": ac_names,
                    "image": st.fixed_dictionaries(
                        {"name": ac_identifiers},
                        optional={"id": st.just(FULL_ID), "labels": labels_st},
                    ),
                },
                optional={
                    "app": apps_st,
                    "readOnlyRootFS": st.booleans(),
                    "mounts": st.lists(
                        st.fixed_dictionaries({"volume": ac_names, "path": abs_paths}), max_size=2
                    ),
                    "annotations": annotations_st,
                },
            ),
            max_size=3,
        ).map(unique_by_name),
    },
    optional={
        "volumes": volumes_st,
        "isolators": isolators_st,
        "annotations": annotations_st,
        "ports": st.lists(
            st.fixed_dictionaries(
                {"name": ac_names, "hostPort": st.integers(1, 65535)},
                optional={"hostIP": st.just("127.0.0.1")},
            ),
            max_size=2,
        ),
        "userLabels": st.dictionaries(texts, texts, max_size=2),
    },
)

FAST = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(image_docs)
def test_valid_images_round_trip(doc: dict[str, Any]) -> None:
    manifest = parse_image_manifest(json.dumps(doc))
    out = image_manifest_to_json(manifest)
    assert parse_image_manifest(out) == manifest
    assert image_manifest_to_json(parse_image_manifest(json.dumps(out))) == out


@FAST
@given(pod_docs)
def test_valid_pods_round_trip(doc: dict[str, Any]) -> None:
    pod = parse_pod_manifest(json.dumps(doc).encode())
    assert is_reified(pod) == all("id" in app["image"] for app in doc["apps"])
    out = pod_manifest_to_json(pod)
    assert parse_pod_manifest(out) == pod
    assert pod_manifest_to_json(parse_pod_manifest(out)) == out


IMAGE_KEYS = ["acKind", "acVersion", "name", "labels", "app", "dependencies", "pathWhitelist"]
POD_KEYS = ["apps", "volumes", "isolators", "ports", "image", "id", "mounts", "kind", "source"]
FIELD_KEYS = ["name", "value", "user", "group", "exec", "port", "count", "mode", "set", "limit"]
any_values = st.recursive(
    st.one_of(
        json_scalars,
        st.floats(allow_nan=False),
        st.sampled_from(["ImageManifest", "PodManifest", "0.8.11", "resource/cpu", "os", "/x"]),
    ),
    lambda children: st.one_of(
        st.lists(children, max_size=3),
        st.dictionaries(
            st.sampled_from(IMAGE_KEYS + POD_KEYS + FIELD_KEYS) | texts, children, max_size=4
        ),
    ),
    max_leaves=20,
)
any_docs = st.dictionaries(st.sampled_from(IMAGE_KEYS + POD_KEYS) | texts, any_values, max_size=6)


def mutate(base: dict[str, Any], path: list[str | int], value: Any) -> dict[str, Any]:
    doc = copy.deepcopy(base)
    node: Any = doc
    for step in path[:-1]:
        node = node[step]
    node[path[-1]] = value
    return doc


@FAST
@given(any_docs)
def test_arbitrary_documents_give_a_manifest_or_a_validation_error(doc: dict[str, Any]) -> None:
    for parse in (parse_image_manifest, parse_pod_manifest):
        for data in (doc, json.dumps(doc)):
            try:
                result = parse(data)
            except ValidationError as error:
                assert error.problems
                assert all(isinstance(p, Problem) for p in error.problems)
            else:
                assert isinstance(result, ImageManifest | PodManifest)


IMAGE_PATHS: list[list[str | int]] = [
    ["name"],
    ["labels"],
    ["labels", 0],
    ["app"],
    ["app", "user"],
    ["app", "exec"],
    ["app", "ports"],
    ["app", "ports", 0],
    ["app", "ports", 0, "port"],
    ["app", "mountPoints", 0, "readOnly"],
    ["app", "isolators"],
]


@FAST
@given(st.sampled_from(IMAGE_PATHS), any_values)
def test_one_bad_value_in_a_good_image(path: list[str | int], value: Any) -> None:
    try:
        parse_image_manifest(mutate(image_doc(), path, value))
    except ValidationError as error:
        assert error.problems


POD_PATHS: list[list[str | int]] = [
    ["apps"],
    ["apps", 0],
    ["apps", 0, "image"],
    ["apps", 0, "app"],
    ["apps", 0, "mounts"],
    ["volumes", 0],
    ["volumes", 1, "mode"],
    ["isolators"],
]


@FAST
@given(st.sampled_from(POD_PATHS), any_values)
def test_one_bad_value_in_a_good_pod(path: list[str | int], value: Any) -> None:
    try:
        parse_pod_manifest(mutate(pod_doc(), path, value))
    except ValidationError as error:
        assert error.problems
