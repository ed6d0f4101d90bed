"""``rktcfg export kubernetes PATH...``: the pod files' pods as Kubernetes v1 Pod YAML."""

from __future__ import annotations

from typing import Any

TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse

    from rktcfg.cli.context import Context

DESCRIPTION = """\
Print the pods that pod files define as Kubernetes v1 Pods (one YAML document each), so a
repository of pod files can move to a cluster (kubectl apply -f). What Kubernetes cannot say
(the stage1 flavor, appc isolators beyond cpu and memory, user names) is listed in warnings.

  rktcfg export kubernetes pods/ > cluster.yaml"""

_RESTART = {"never": "Never", "on-failure": "OnFailure", "always": "Always"}


def configure(parser: argparse.ArgumentParser) -> None:
    from rktcfg.cli.applyargs import configure_sources
    from rktcfg.cli.output import add_output_option

    parser.description = DESCRIPTION
    add_output_option(parser)
    parser.add_argument("kind", choices=("kubernetes",), help="what to export to")
    configure_sources(parser, prune=False)


def _seconds(text: Any) -> int:
    from rktcfg.durations import parse_duration

    return max(1, round(parse_duration(str(text)) / 1e9))


def to_kubernetes(name: str, spec: dict[str, Any], warn: list[str]) -> dict[str, Any]:
    """One canonical pod spec as a Kubernetes v1 Pod; what does not carry over goes to
    ``warn``."""
    if spec.get("stage1"):
        warn.append(f"{name}: stage1 {spec['stage1']!r} has no Kubernetes equivalent")
    containers = []
    for app in spec["apps"]:
        where = f"{name}: apps[{app['name']}]"
        container: dict[str, Any] = {"name": app["name"], "image": app["image"]}
        if app.get("exec"):
            container["command"] = list(app["exec"])
        if app.get("args"):
            container["args"] = list(app["args"])
        if app.get("env"):
            container["env"] = [{"name": k, "value": v} for k, v in sorted(app["env"].items())]
        if app.get("workingDirectory"):
            container["workingDir"] = app["workingDirectory"]
        limits = {}
        for key, value in sorted((app.get("isolators") or {}).items()):
            if key in ("cpu", "memory"):
                limits[key] = str(value)
            else:
                warn.append(f"{where}: isolator {key} has no Kubernetes equivalent")
        if limits:
            container["resources"] = {"limits": limits}
        ports = []
        for port in app.get("ports") or ():
            entry: dict[str, Any] = {
                "name": port["name"],
                "containerPort": port["port"],
                "protocol": str(port.get("protocol") or "tcp").upper(),
            }
            if port.get("hostPort"):
                entry["hostPort"] = port["hostPort"]
            if port.get("hostIP"):
                entry["hostIP"] = port["hostIP"]
            ports.append(entry)
        if ports:
            container["ports"] = ports
        read_only = {v["name"] for v in spec.get("volumes") or () if v.get("readOnly")}
        mounts = [
            {
                "name": m["volume"],
                "mountPath": m["path"],
                **({"readOnly": True} if m["readOnly"] or m["volume"] in read_only else {}),
            }
            for m in app.get("mounts") or ()
        ]
        if app.get("annotations"):
            warn.append(f"{where}: app annotations have no Kubernetes equivalent")
        if mounts:
            container["volumeMounts"] = mounts
        security: dict[str, Any] = {}
        if app.get("readOnlyRootFS"):
            security["readOnlyRootFilesystem"] = True
        for key, field in (("user", "runAsUser"), ("group", "runAsGroup")):
            value = app.get(key)
            if value is None:
                continue
            if str(value).isdigit():
                security[field] = int(value)
            else:
                warn.append(f"{where}: {key} {value!r} is a name; Kubernetes takes numbers")
        if app.get("supplementaryGroups"):
            warn.append(f"{where}: supplementaryGroups are per pod in Kubernetes; not exported")
        if security:
            container["securityContext"] = security
        check = app.get("healthCheck")
        if check:
            container["livenessProbe"] = {
                "exec": {"command": list(check["exec"])},
                "periodSeconds": _seconds(check.get("interval", "10s")),
                "timeoutSeconds": _seconds(check.get("timeout", "1s")),
                "failureThreshold": int(check.get("retries", 3)),
            }
        containers.append(container)
    pod_spec: dict[str, Any] = {
        "restartPolicy": _RESTART[spec.get("restartPolicy") or "never"],
        "containers": containers,
    }
    nets = list(spec.get("net") or [])
    if nets == ["host"]:
        pod_spec["hostNetwork"] = True
    elif nets not in ([], ["default"], ["none"]):
        warn.append(f"{name}: networks {nets} have no Kubernetes equivalent")
    if spec.get("hostname"):
        pod_spec["hostname"] = spec["hostname"]
    if spec.get("dns"):
        pod_spec["dnsConfig"] = {"nameservers": list(spec["dns"])}
    volumes = []
    for volume in spec.get("volumes") or ():
        if volume["kind"] == "host":
            volumes.append({"name": volume["name"], "hostPath": {"path": volume["source"]}})
        else:
            volumes.append({"name": volume["name"], "emptyDir": {}})
            if volume.get("mode") not in (None, "0755") or volume.get("uid") or volume.get("gid"):
                warn.append(
                    f"{name}: volumes[{volume['name']}]: mode, uid and gid are not exported"
                )
    if volumes:
        pod_spec["volumes"] = volumes
    metadata: dict[str, Any] = {"name": name}
    if spec.get("labels"):
        metadata["labels"] = dict(spec["labels"])
    if spec.get("annotations"):
        metadata["annotations"] = dict(spec["annotations"])
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": pod_spec}


def run(args: argparse.Namespace, ctx: Context) -> int:
    import yaml

    from rktcfg.cli.applyargs import load

    loaded = load(args, ctx)
    warn: list[str] = []
    documents = [to_kubernetes(pod.name, pod.spec, warn) for pod in loaded.pods]
    for line in warn:
        ctx.err.write(f"rktcfg: warning: {line}\n")
    if args.output == "json":
        import json

        ctx.out.write(json.dumps(documents, indent=2) + "\n")
    else:
        ctx.out.write(yaml.safe_dump_all(documents, sort_keys=False, default_flow_style=False))
    return 0
