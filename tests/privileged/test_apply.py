"""Declarative apply, end to end as root: the examples, plan and diff, replace, prune, saved
plans, stopped-by-hand pods, delete, watch, and the generated unit and Kubernetes export."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from podhelpers import RKTCFG, collect_everything, rktcfg

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples" / "pods"


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("image") / "busybox.aci"
    subprocess.run(
        [str(REPO / "examples/images/busybox/build"), str(out), RKTCFG],
        check=True,
        capture_output=True,
    )
    return out


@pytest.fixture
def data(tmp_path: Path, image: Path) -> Iterator[str]:
    directory = str(tmp_path / "data")
    rktcfg(directory, "fetch", str(image))
    yield directory
    _, left = collect_everything(directory)
    assert left == []


def listed(data: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = json.loads(rktcfg(data, "list", "-o", "json").stdout)
    return found


def by_name(data: str, name: str) -> list[dict[str, Any]]:
    return [p for p in listed(data) if p["name"] == name]


def plan_json(data: str, *args: str) -> dict[str, Any]:
    found: dict[str, Any] = json.loads(rktcfg(data, "plan", *args, "-o", "json").stdout)
    return found


def actions(plan: dict[str, Any]) -> dict[str, str]:
    return {a["pod"]: a["kind"] for a in plan["actions"]}


def logs(data: str, name: str) -> str:
    return rktcfg(data, "logs", name).stdout


def fetch(url: str, timeout: float = 20) -> str:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return str(response.read().decode())
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def copy_examples(tmp_path: Path, *names: str) -> Path:
    pods = tmp_path / "pods"
    pods.mkdir()
    for name in names:
        source = EXAMPLES / name
        if source.is_dir():
            shutil.copytree(source, pods / name)
        else:
            shutil.copy(source, pods / name)
    return pods


# --- the examples -----------------------------------------------------------------------------


def test_hello_applies_once_then_says_no_changes(data: str) -> None:
    result = rktcfg(data, "apply", str(EXAMPLES / "hello.yaml"), "--wait=30s")
    assert "create" in result.stdout and "1 created" in result.stdout, result.stdout
    deadline = time.monotonic() + 20
    while by_name(data, "hello")[0]["state"] != "exited" and time.monotonic() < deadline:
        time.sleep(0.1)
    assert "hello from a pod file" in logs(data, "hello")
    again = rktcfg(data, "apply", str(EXAMPLES / "hello.yaml"))
    assert again.stdout.strip() == "no changes"
    assert len(by_name(data, "hello")) == 1
    detailed = rktcfg(
        data, "plan", str(EXAMPLES / "hello.yaml"), "--detailed-exitcode", check=False
    )
    assert detailed.returncode == 0 and "= hello" in detailed.stdout, detailed.stdout


def test_web_serves_the_repository_and_is_healthy(data: str, tmp_path: Path) -> None:
    pods = copy_examples(tmp_path, "web.yaml", "site")
    rktcfg(data, "apply", str(pods / "web.yaml"), "--wait=60s")
    assert "hello from examples/pods/web.yaml" in fetch("http://127.0.0.1:18080/")
    status = json.loads(rktcfg(data, "status", "web", "-o", "json").stdout)
    assert status["apps"][0]["health"] == "healthy"
    assert status["apps"][0]["limits"]["memory_limit_bytes"] == 32 * 2**20
    assert status["apply_set"] == str(pods)
    assert (
        rktcfg(data, "plan", str(pods / "web.yaml"), "--detailed-exitcode", check=False).returncode
        == 0
    )

    # a field change: replaced, the diff names the field, the page is served again
    text = (pods / "web.yaml").read_text().replace("memory: 32Mi", "memory: 48Mi")
    (pods / "web.yaml").write_text(text)
    plan = rktcfg(data, "plan", str(pods / "web.yaml"), "--detailed-exitcode", check=False)
    assert plan.returncode == 2, plan.stdout
    assert "~ web" in plan.stdout and "apps[httpd].isolators.memory" in plan.stdout, plan.stdout
    old = by_name(data, "web")[0]["uuid"]
    rktcfg(data, "apply", str(pods / "web.yaml"), "--wait=60s")
    (new,) = [p for p in by_name(data, "web")]
    assert new["uuid"] != old and new["state"] == "running"
    assert "hello" in fetch("http://127.0.0.1:18080/")

    # the content of a read-only host volume counts: editing the site replaces the pod
    (pods / "site" / "index.html").write_text("<h1>edited</h1>\n")
    plan = rktcfg(data, "plan", str(pods / "web.yaml"), "-o", "json")
    (action,) = json.loads(plan.stdout)["actions"]
    assert action["kind"] == "replace"
    assert any(c["field"].startswith("file[") for c in action["changes"]), action
    rktcfg(data, "apply", str(pods / "web.yaml"), "--wait=60s")
    assert "edited" in fetch("http://127.0.0.1:18080/")
    rktcfg(data, "delete", str(pods / "web.yaml"))
    assert by_name(data, "web") == []


def test_multi_app_template_and_kubernetes_examples(data: str) -> None:
    rktcfg(data, "apply", str(EXAMPLES / "multi-app.yaml"), "--wait=30s")
    deadline = time.monotonic() + 20
    while "UTC" not in logs(data, "multi-app") and time.monotonic() < deadline:
        time.sleep(0.3)
    assert "UTC" in logs(data, "multi-app")  # the reader prints what the writer wrote
    template = str(EXAMPLES / "templated.yaml.j2")
    rktcfg(data, "apply", template, "--var", "greetings=hi,salut", "--wait=30s")
    status = json.loads(rktcfg(data, "status", "templated", "-o", "json").stdout)
    assert [a["name"] for a in status["apps"]] == ["say-hi", "say-salut"]
    rktcfg(data, "apply", str(EXAMPLES / "k8s-pod.yaml"), "--wait=30s")
    deadline = time.monotonic() + 20
    while "GREETING=hi" not in logs(data, "k8s-pod") and time.monotonic() < deadline:
        time.sleep(0.2)
    assert "hello from a Kubernetes pod" in logs(data, "k8s-pod")
    sets = {p["name"]: p["apply_set"] for p in listed(data)}
    assert sets["k8s-pod"] == str(EXAMPLES)
    table = rktcfg(data, "list").stdout.splitlines()
    assert table[0].split()[:3] == ["UUID", "NAME", "SET"]


# --- ownership and prune ----------------------------------------------------------------------


POD = """apiVersion: rktcfg/v1
kind: Pod
metadata: {{name: {name}}}
spec:
  restartPolicy: {policy}
  apps:
    - name: main
      image: example.com/busybox:1.35
      exec: [/bin/sleep, "300"]
"""


def write_pod(directory: Path, name: str, policy: str = "on-failure") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.yaml"
    path.write_text(POD.format(name=name, policy=policy))
    return path


def test_prune_removes_only_this_sets_pods(data: str, tmp_path: Path) -> None:
    pods = tmp_path / "pods"
    write_pod(pods, "alpha")
    beta = write_pod(pods, "beta")
    other = write_pod(tmp_path / "other", "gamma")
    rktcfg(data, "apply", str(pods), "--wait=30s")
    rktcfg(data, "apply", str(other), "--wait=30s")  # another apply set
    rktcfg(data, "run", "-d", "--name", "manual", "example.com/busybox", "--exec", "/bin/sleep")
    beta.unlink()
    plan = plan_json(data, str(pods), "--prune")
    assert actions(plan) == {"alpha": "unchanged", "beta": "remove"}
    # --prune on a single file without --set would prune its siblings: refused
    refused = rktcfg(data, "apply", str(pods / "alpha.yaml"), "--prune", check=False)
    assert refused.returncode == 2 and "--set" in refused.stderr
    rktcfg(data, "apply", str(pods), "--prune")
    names = {p["name"] for p in listed(data)}
    assert names == {"alpha", "gamma", "manual"}

    # a pod of that name not made by this set is a conflict, never touched
    write_pod(pods, "manual")
    result = rktcfg(data, "apply", str(pods), check=False)
    assert result.returncode == 1 and "manual" in result.stderr
    assert len(by_name(data, "manual")) == 1


def test_stopped_by_hand_is_reported_not_restarted(data: str, tmp_path: Path) -> None:
    pods = tmp_path / "pods"
    write_pod(pods, "calm", policy="on-failure")
    write_pod(pods, "eager", policy="always")
    rktcfg(data, "apply", str(pods), "--wait=30s")
    for name in ("calm", "eager"):
        rktcfg(data, "stop", name)
    deadline = time.monotonic() + 20
    while any(p["state"] == "running" for p in listed(data)) and time.monotonic() < deadline:
        time.sleep(0.1)
    plan = plan_json(data, str(pods))
    kinds = actions(plan)
    assert kinds == {"calm": "unchanged", "eager": "replace"}, plan
    reason = next(a["reason"] for a in plan["actions"] if a["pod"] == "calm")
    assert "stopped by hand" in reason


def test_saved_plan_is_refused_once_anything_moved(data: str, tmp_path: Path) -> None:
    pods = tmp_path / "pods"
    path = write_pod(pods, "saved")
    saved = tmp_path / "plan.json"
    rktcfg(data, "plan", str(pods), "--out", str(saved))
    rktcfg(data, "apply", str(saved), "--wait=30s")
    assert by_name(data, "saved")[0]["state"] == "running"
    rktcfg(data, "plan", str(pods), "--out", str(saved))  # nothing to do
    path.write_text(path.read_text().replace('"300"', '"301"'))
    refused = rktcfg(data, "apply", str(saved), check=False)
    assert refused.returncode == 2 and "changed since the plan was made" in refused.stderr
    rktcfg(data, "plan", str(pods), "--out", str(saved))
    rktcfg(data, "stop", "saved")  # the store moves
    deadline = time.monotonic() + 20
    while by_name(data, "saved")[0]["state"] == "running" and time.monotonic() < deadline:
        time.sleep(0.1)
    refused = rktcfg(data, "apply", str(saved), check=False)
    assert refused.returncode == 2 and "changed since the plan was made" in refused.stderr


def test_watch_reconciles_on_file_changes_until_sigterm(data: str, tmp_path: Path) -> None:
    pods = tmp_path / "pods"
    write_pod(pods, "first")
    watcher = subprocess.Popen(
        [RKTCFG, "--dir", data, "apply", "--watch", str(pods), "--interval", "30s", "--prune"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while not by_name(data, "first") and time.monotonic() < deadline:
            time.sleep(0.2)
        write_pod(pods, "second")
        while not by_name(data, "second") and time.monotonic() < deadline:
            time.sleep(0.2)
        (pods / "first.yaml").unlink()
        while by_name(data, "first") and time.monotonic() < deadline:
            time.sleep(0.2)
        names = {p["name"] for p in listed(data)}
    finally:
        watcher.send_signal(signal.SIGTERM)
        out, err = watcher.communicate(timeout=30)
    assert names == {"second"}, (out, err)
    assert watcher.returncode == 0, err
    assert "create first" in out and "create second" in out and "remove first" in out, out


def test_generate_systemd_and_export_kubernetes(data: str, tmp_path: Path) -> None:
    unit = rktcfg(data, "generate", "systemd", str(EXAMPLES)).stdout
    assert "KillMode=process" in unit and "Delegate=yes" in unit
    exec_start = next(line for line in unit.splitlines() if line.startswith("ExecStart="))
    assert f"apply --watch {EXAMPLES}" in exec_start and "--prune" in exec_start
    exported = rktcfg(data, "export", "kubernetes", str(EXAMPLES / "web.yaml")).stdout
    (pod,) = list(yaml.safe_load_all(exported))
    assert pod["apiVersion"] == "v1" and pod["kind"] == "Pod"
    container = pod["spec"]["containers"][0]
    assert container["resources"]["limits"] == {"cpu": "250m", "memory": "32Mi"}
    assert "hostNetwork" not in pod["spec"] and pod["spec"]["restartPolicy"] == "Always"
    assert container["ports"] == [
        {"name": "http", "containerPort": 8080, "protocol": "TCP", "hostPort": 18080}
    ]
    # and it reads back as the same pod
    back = tmp_path / "back.yaml"
    back.write_text(exported)
    ours = plan_json(data, str(EXAMPLES / "web.yaml"))
    theirs = plan_json(data, str(back))
    assert [a["kind"] for a in ours["actions"]] == [a["kind"] for a in theirs["actions"]]
    assert os.path.exists(back)


# --- from the review: what must not happen ------------------------------------------------------


def test_review_regressions(data: str, tmp_path: Path) -> None:
    pods = tmp_path / "pods"
    write_pod(pods, "kept")
    rktcfg(data, "apply", str(pods), "--wait=30s")
    uuid = by_name(data, "kept")[0]["uuid"]

    # a file caught empty (half-written) is an error, never a prune of its pod
    (pods / "kept.yaml").write_text("")
    result = rktcfg(data, "apply", str(pods), "--prune", check=False)
    assert result.returncode == 2 and "holds no pod" in result.stderr
    assert [p["uuid"] for p in by_name(data, "kept")] == [uuid]
    write_pod(pods, "kept")

    # --detailed-exitcode: an error is 1, not 2 (which means "changes")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "x.yaml").write_text("apiVersion: rktcfg/v1\nkind: Pod\nspec: 3\n")
    bad = rktcfg(data, "plan", str(tmp_path / "bad"), "--detailed-exitcode", check=False)
    assert bad.returncode == 1, bad.stderr

    # a saved plan notices a file that appeared in a directory since
    saved = tmp_path / "plan.json"
    rktcfg(data, "plan", str(pods), "--prune", "--out", str(saved))
    write_pod(pods, "newcomer")
    refused = rktcfg(data, "apply", str(saved), check=False)
    assert refused.returncode == 2 and "appeared since the plan was made" in refused.stderr
    (pods / "newcomer.yaml").unlink()

    # --wait fails for a pod whose app failed
    failing = pods / "failing.yaml"
    failing.write_text(
        POD.format(name="failing", policy="never").replace('[/bin/sleep, "300"]', "[/bin/false]")
    )
    result = rktcfg(data, "apply", str(pods), "--wait=20s", check=False)
    assert result.returncode == 1 and "failing" in result.stderr, result.stderr
    failing.unlink()

    # delete PATH removes only the pods that file made
    rktcfg(data, "run", "-d", "--name", "bystander", "example.com/busybox", "--exec", "/bin/sleep")
    write_pod(tmp_path / "elsewhere", "bystander")
    result = rktcfg(data, "delete", str(tmp_path / "elsewhere" / "bystander.yaml"), check=False)
    assert result.returncode == 1 and "not made from" in result.stderr
    assert len(by_name(data, "bystander")) == 1
    rktcfg(data, "delete", str(pods / "kept.yaml"))
    assert by_name(data, "kept") == []
