"""From a pod file's canonical spec to the pod library's arguments (rktcfg.apply)."""

from __future__ import annotations

from typing import Any

from rktcfg.apply import pod_request
from rktcfg.plan.planner import DesiredPod
from rktcfg.pods import PodOptions


def _spec(**overrides: Any) -> dict[str, Any]:
    app = {
        "name": "web",
        "image": "example.com/httpd:1.0",
        "exec": ["/bin/httpd", "-f"],
        "args": ["-v"],
        "env": {"B": "2", "A": "1"},
        "user": "www",
        "group": None,
        "supplementaryGroups": ["wheel"],
        "workingDirectory": "/srv",
        "readOnlyRootFS": True,
        "isolators": {
            "cpu": "500m",
            "memory": "64M",
            "pids": 32,
            "os/linux/no-new-privileges": True,
        },
        "mounts": [{"volume": "site", "path": "/www", "readOnly": True}],
        "ports": [
            {"name": "http", "port": 80, "protocol": "tcp", "hostPort": 8080, "hostIP": None}
        ],
        "healthCheck": {"exec": ["/bin/true"], "interval": "5s", "timeout": "500ms", "retries": 2},
        "annotations": {"x": "y"},
    }
    spec = {
        "labels": {"tier": "front"},
        "annotations": {},
        "stage1": None,
        "restartPolicy": "always",
        "net": ["host"],
        "hostname": "web.example.com",
        "dns": [],
        "apps": [app],
        "volumes": [
            {
                "name": "scratch",
                "kind": "empty",
                "source": None,
                "readOnly": False,
                "recursive": True,
                "mode": "0700",
                "uid": 5,
                "gid": 6,
            },
            {
                "name": "site",
                "kind": "host",
                "source": "/srv/site",
                "readOnly": True,
                "recursive": True,
                "mode": None,
                "uid": None,
                "gid": None,
            },
        ],
    }
    spec.update(overrides)
    return spec


def _request(spec: dict[str, Any]) -> tuple[list[Any], PodOptions]:
    desired = DesiredPod(name="web", source="/p/web.yaml", document=0, spec=spec, host_files=())
    images, options = pod_request(
        desired, apply_set="/p", spec_hash="sha256:ab", default_flavor="default", base=PodOptions()
    )
    return images, options


def test_every_field_reaches_the_pod_library() -> None:
    (image,), options = _request(_spec())
    assert (image.ref, image.exec, image.args) == (
        "example.com/httpd:1.0",
        "/bin/httpd",
        ("-f", "-v"),
    )
    assert image.env == (("A", "1"), ("B", "2")) and image.user == "www" and image.group is None
    assert image.supplementary_groups == ("wheel",) and image.working_directory == "/srv"
    assert image.read_only_rootfs and image.name == "web"
    isolators = {i["name"]: i["value"] for i in image.pod_isolators}
    assert isolators == {
        "resource/cpu": {"limit": "500m", "request": "500m"},
        "resource/memory": {"limit": "64M", "request": "64M"},
        "rktcfg/pids": 32,
        "os/linux/no-new-privileges": True,
    }
    (mount,) = image.mounts
    assert (mount.volume, mount.target, mount.read_only) == ("site", "/www", True)
    assert image.health_check == {
        "exec": ["/bin/true"],
        "interval_s": 5.0,
        "timeout_s": 0.5,
        "retries": 2,
    }
    assert options.flavor == "default" and options.restart == "always" and options.net == "host"
    assert options.name == "web" and options.hostname == "web.example.com"
    annotations = dict(options.annotations)
    assert annotations["rktcfg.dev/apply-set"] == "/p"
    assert annotations["rktcfg.dev/spec-hash"] == "sha256:ab"
    assert (
        annotations["rktcfg.dev/source"] == "/p/web.yaml" and annotations["label/tier"] == "front"
    )
    scratch, site = options.volumes
    assert (scratch.kind, scratch.mode, scratch.uid, scratch.gid) == ("empty", 0o700, 5, 6)
    assert (site.kind, site.source, site.read_only) == ("host", "/srv/site", True)


def test_no_exec_keeps_the_images_and_the_networks_are_passed_on() -> None:
    spec = _spec(net=["default"], stage1="fly")
    spec["apps"][0]["exec"] = None
    (image,), options = _request(spec)
    assert image.exec is None and image.args == ("-v",)
    assert options.net == "default" and options.flavor == "fly"
