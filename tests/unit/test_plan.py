"""The planner: golden cases under tests/data/plan/, the diff, the text, the plan's JSON.

A case is a folder holding ``desired.json`` (a list of DesiredPod dicts), ``observed.json``
(the observed store, /tmp/apply-design.md §2), optional ``args.json`` (``apply_set``,
``prune``, ``now``), ``expected.json`` (``Plan.as_dict()``) and ``expected.txt`` (the text
rendering without colour). Hashes are placeholders, so a case reads as what it tests:

* in observed.json, a spec-hash annotation ``@recorded`` is the hash of that pod's own
  recorded spec, images and files (what the executor stored when it created the pod);
* in expected.json, ``@hash:<name>`` is the hash of the desired pod ``<name>``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from rktcfg.errors import InputError
from rktcfg.plan import (
    Action,
    Change,
    DesiredPod,
    Plan,
    compute_plan,
    render_text,
    resolved_spec,
    simulate,
    spec_hash,
)
from rktcfg.plan.diff import format_change, spec_changes
from rktcfg.plan.planner import ANNOTATION_HASH, hash_resolved

CASES = Path(__file__).resolve().parent.parent / "data" / "plan"
APPLY_SET = "/x/pods"
NOW = 1796398446026488348 + 10**12


def load_case(root: Path) -> tuple[list[DesiredPod], dict[str, Any], dict[str, Any]]:
    desired = [DesiredPod.from_dict(d) for d in json.loads((root / "desired.json").read_text())]
    observed = json.loads((root / "observed.json").read_text())
    for pod in observed["pods"]:
        if pod["annotations"].get(ANNOTATION_HASH) == "@recorded":
            pod["annotations"][ANNOTATION_HASH] = hash_resolved(
                {"spec": pod["spec"], "images": pod["images"] or {}, "files": pod["files"] or {}}
            )
    args_file = root / "args.json"
    args = json.loads(args_file.read_text()) if args_file.exists() else {}
    return desired, observed, {"apply_set": APPLY_SET, "prune": False, "now": NOW, **args}


def placeholders(desired: list[DesiredPod], observed: dict[str, Any]) -> dict[str, str]:
    """hash -> ``@hash:<name>`` for each desired pod."""
    return {spec_hash(pod, observed): f"@hash:{pod.name}" for pod in desired}


def with_placeholders(value: Any, names: dict[str, str]) -> Any:
    if isinstance(value, dict):
        return {k: with_placeholders(v, names) for k, v in value.items()}
    if isinstance(value, list):
        return [with_placeholders(v, names) for v in value]
    return names.get(value, value) if isinstance(value, str) else value


def plan_case(root: Path) -> tuple[Plan, list[DesiredPod], dict[str, Any], dict[str, Any]]:
    desired, observed, args = load_case(root)
    return compute_plan(desired, observed, **args), desired, observed, args


@pytest.mark.parametrize("case", sorted(p.name for p in CASES.iterdir()), ids=str)
def test_golden(case: str) -> None:
    root = CASES / case
    plan, desired, observed, args = plan_case(root)
    names = placeholders(desired, observed)
    expected = json.loads((root / "expected.json").read_text())
    assert with_placeholders(plan.as_dict(), names) == expected
    assert render_text(plan, color=False) == (root / "expected.txt").read_text()
    # every case is also idempotent: apply it (simulated), plan again, nothing to do
    after = simulate(observed, plan, desired, now=args["now"])
    again = compute_plan(desired, after, **args)
    assert {a.kind for a in again.actions} <= {"unchanged", "conflict"}
    assert again.conflicts() == plan.conflicts()


def test_the_cases_cover_the_issue() -> None:
    have = {p.name for p in CASES.iterdir()}
    assert {
        "new-pod",
        "unchanged",
        "memory-change",
        "image-tag-moved",
        "host-file-changed",
        "stopped-by-hand",
        "exited-restart-always",
        "prepared-start",
        "duplicates-collect-older",
        "prune-same-set-only",
        "unowned-conflict",
        "another-set-untouched",
        "aborted-prepare-collected",
    } <= have


# --- the diff ------------------------------------------------------------------------------


def test_memory_change_names_the_field() -> None:
    plan, *_ = plan_case(CASES / "memory-change")
    (action,) = plan.actions
    assert action.kind == "replace"
    assert action.reason == "spec changed: apps[web].isolators.memory"
    assert [format_change(c) for c in action.changes] == ["apps[web].isolators.memory: 64M → 128M"]


def test_keyed_lists_added_and_removed_entries() -> None:
    old = {"apps": [{"name": "a", "env": {"X": "1"}}, {"name": "b", "env": {}}]}
    new = {"apps": [{"name": "c", "env": {}}, {"name": "a", "env": {"X": "1", "Y": "2"}}]}
    assert spec_changes(old, new) == [
        ("apps[c]", None, {"name": "c", "env": {}}),
        ("apps[a].env.Y", None, "2"),
        ("apps[b]", {"name": "b", "env": {}}, None),
    ]


def test_order_of_named_entries_is_a_change() -> None:
    old = {"apps": [{"name": "a"}, {"name": "b"}]}
    new = {"apps": [{"name": "b"}, {"name": "a"}]}
    assert spec_changes(old, new) == [("apps", ["a", "b"], ["b", "a"])]


def test_mounts_are_keyed_by_volume_and_plain_lists_are_one_value() -> None:
    old = {"mounts": [{"volume": "v", "path": "/a", "readOnly": False}], "exec": ["/bin/a"]}
    new = {"mounts": [{"volume": "v", "path": "/a", "readOnly": True}], "exec": ["/bin/b"]}
    assert spec_changes(old, new) == [
        ("exec", ["/bin/a"], ["/bin/b"]),
        ("mounts[v].readOnly", False, True),
    ]
    twice = [{"volume": "v", "path": "/a"}, {"volume": "v", "path": "/b"}]
    moved = [{"volume": "v", "path": "/a"}, {"volume": "v", "path": "/c"}]
    assert spec_changes({"mounts": twice}, {"mounts": moved}) == [
        ("mounts[v:/c]", None, {"volume": "v", "path": "/c"}),
        ("mounts[v:/b]", {"volume": "v", "path": "/b"}, None),
    ]


def test_types_differ_even_when_python_says_equal() -> None:
    assert spec_changes({"pids": 1}, {"pids": True}) == [("pids", 1, True)]
    assert spec_changes({"a": [1]}, {"a": (1,)}) == []


def test_keys_with_dots_are_quoted() -> None:
    assert spec_changes({"labels": {}}, {"labels": {"app.kubernetes.io/name": "x"}}) == [
        ('labels["app.kubernetes.io/name"]', None, "x")
    ]


def test_image_ids_are_short_in_text_and_full_in_json() -> None:
    plan, *_ = plan_case(CASES / "image-tag-moved")
    (action,) = plan.actions
    (change,) = action.changes
    assert change.field == "image[web]"
    assert change.old == "sha512-" + "a" * 128
    assert change.new == "sha512-" + "b" * 128
    assert format_change(change) == "image[web]: sha512-aaaaaaaaaaaa… → sha512-bbbbbbbbbbbb…"
    assert json.dumps(plan.as_dict()).count("b" * 128) == 1


def test_host_file_content_change() -> None:
    plan, *_ = plan_case(CASES / "host-file-changed")
    (action,) = plan.actions
    assert [format_change(c) for c in action.changes] == ["file[/x/pods/site]: content changed"]
    missing = Change(field="file[/x/pods/site]", old="sha256:1", new=None)
    assert format_change(missing) == "file[/x/pods/site]: missing"


# --- the text --------------------------------------------------------------------------------


def test_text_has_symbols_colours_only_when_asked_and_a_summary() -> None:
    plan = Plan(
        apply_set="/x",
        actions=(
            Action(kind="create", pod="a", uuid=None, reason="new pod"),
            Action(kind="create", pod="b", uuid=None, reason="new pod"),
            Action(
                kind="replace",
                pod="c",
                uuid="12345678-aaaa-4aaa-8aaa-aaaaaaaaaaaa",
                reason="spec changed: apps[c].isolators.memory",
                changes=(Change(field="apps[c].isolators.memory", old="64M", new="128M"),),
            ),
            *(
                Action(kind="unchanged", pod=f"u{i}", uuid=f"u{i}", reason="up to date")
                for i in range(5)
            ),
        ),
    )
    text = render_text(plan, color=False)
    assert "\x1b[" not in text
    assert text.splitlines() == [
        "+ a: new pod",
        "+ b: new pod",
        "~ c (12345678): spec changed: apps[c].isolators.memory",
        "    apps[c].isolators.memory: 64M → 128M",
        *(f"= u{i}: up to date" for i in range(5)),
        "2 to create, 1 to replace, 0 to remove, 5 unchanged",
    ]
    coloured = render_text(plan, color=True)
    assert "\x1b[32m+ a: new pod\x1b[0m" in coloured
    assert coloured.count("\x1b[") > text.count("\x1b[")


def test_summary_shows_other_kinds_when_present() -> None:
    plan, *_ = plan_case(CASES / "unowned-conflict")
    assert render_text(plan).splitlines()[-1] == (
        "0 to create, 0 to replace, 0 to remove, 0 unchanged, 2 conflicts"
    )


# --- the plan's values ---------------------------------------------------------------------


def test_plan_json_round_trips_and_changed() -> None:
    plan, *_ = plan_case(CASES / "many-fields")
    data = json.loads(json.dumps(plan.as_dict()))
    assert Plan.from_dict(data) == plan
    assert plan.changed()
    unchanged, *_ = plan_case(CASES / "unchanged")
    assert not unchanged.changed()


@pytest.mark.parametrize(
    "bad",
    [
        None,
        [],
        {"actions": []},
        {"apply_set": 3, "actions": []},
        {"apply_set": "/x", "actions": [{"kind": "explode"}]},
        {"apply_set": "/x", "actions": [{"kind": "create", "pod": "a"}]},
    ],
)
def test_from_dict_refuses_what_is_not_a_plan(bad: Any) -> None:
    with pytest.raises(InputError, match="not a plan"):
        Plan.from_dict(bad)


def test_a_pod_defined_twice_is_an_error() -> None:
    pod = DesiredPod(name="web", source="/x/b.yaml", document=0, spec={"apps": []})
    again = DesiredPod(name="web", source="/x/a.yaml", document=1, spec={"apps": []})
    with pytest.raises(InputError, match=r"in /x/a.yaml\[1\] and in /x/b.yaml\[0\]"):
        compute_plan([pod, again], {"pods": []}, apply_set="/x", prune=False, now=0)


def test_spec_hash_covers_spec_images_and_files() -> None:
    pod = DesiredPod(
        name="web",
        source="/x/web.yaml",
        document=0,
        spec={"apps": [{"name": "web", "image": "i:1"}]},
        host_files=("/x/site",),
    )
    base = {"images": {"i:1": "sha512-a"}, "files": {"/x/site": "sha256:1"}}
    first = spec_hash(pod, base)
    assert first.startswith("sha256:") and len(first) == 7 + 64
    assert spec_hash(pod, {**base, "images": {"i:1": "sha512-b"}}) != first
    assert spec_hash(pod, {**base, "files": {"/x/site": "sha256:2"}}) != first
    assert spec_hash(pod, {**base, "unrelated": 1}) == first
    assert resolved_spec(pod, base) == {
        "spec": pod.spec,
        "images": {"i:1": "sha512-a"},
        "files": {"/x/site": "sha256:1"},
    }


def test_the_planner_is_pure() -> None:
    source = (Path(__file__).parents[2] / "rktcfg" / "plan" / "planner.py").read_text()
    for forbidden in ("import os", "rktcfg.store", "rktcfg.pods", "import time", "uuid4", "open("):
        assert forbidden not in source


# --- observe (real files in a temporary directory) --------------------------------------------


def _write_pod(data: Path, phase: str, uuid: str, files: dict[str, Any]) -> Path:
    root = data / "pods" / phase / uuid
    root.mkdir(parents=True)
    (root / "pod-created").write_text("")
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content if isinstance(content, str) else json.dumps(content))
    return root


def test_observe_reads_pods_images_and_files(tmp_path: Path) -> None:
    from imagehelpers import make_rootfs, manifest

    from rktcfg.image.build import build_aci
    from rktcfg.image.imports import import_aci_file
    from rktcfg.plan.observe import observe
    from rktcfg.store.images import ImageStore

    data = tmp_path / "data"
    aci = tmp_path / "hello.aci"
    image_id = build_aci(str(make_rootfs(tmp_path / "rootfs")), str(aci), manifest())
    with ImageStore(str(data)) as store:
        assert import_aci_file(store, str(aci)).record.id == image_id
    site = tmp_path / "site"
    (site / "sub").mkdir(parents=True)
    (site / "index.html").write_text("hi\n")
    web_spec = {"apps": [{"name": "web", "image": "example.com/hello:1.0"}]}
    uuid = "00000000-0000-4000-8000-000000000001"
    _write_pod(
        data,
        "run",
        uuid,
        {
            "name": "web\n",
            "pod": {"annotations": [{"name": "rktcfg.dev/apply-set", "value": "/x"}]},
            "spec.json": {"spec": web_spec, "images": {"r": "sha512-1"}, "files": {}},
            "stage1.json": {"apps": [{"name": "web", "image_id": image_id}]},
            "apps/web/status.json": {"name": "web", "state": "running", "exit_code": None},
            "stopped-by-user": "",
        },
    )
    _write_pod(data, "prepare", "00000000-0000-4000-8000-000000000002", {})
    desired = [
        DesiredPod(
            name="web",
            source="/x/web.yaml",
            document=0,
            spec={
                "apps": [
                    {"name": "web", "image": "example.com/hello:1.0"},
                    {"name": "file", "image": str(aci)},
                    {"name": "id", "image": image_id[:30]},
                    {"name": "none", "image": "example.com/missing"},
                    {"name": "url", "image": "https://example.com/x.aci"},
                ]
            },
            host_files=(str(site), str(site / "index.html"), str(tmp_path / "missing")),
        )
    ]
    observed = observe(str(data), desired)
    assert observed["images"] == {
        "example.com/hello:1.0": image_id,
        str(aci): image_id,
        image_id[:30]: image_id,
        "example.com/missing": None,
        "https://example.com/x.aci": None,
    }
    assert observed["files"][str(tmp_path / "missing")] is None
    assert observed["files"][str(site)].startswith("sha256:")
    assert observed["files"][str(site / "index.html")] != observed["files"][str(site)]
    web, aborted = observed["pods"]
    assert web["uuid"] == uuid and web["name"] == "web"
    assert web["state"] == "exited"  # nobody holds the lock
    assert web["stopped_by_user"] is True
    assert web["annotations"] == {"rktcfg.dev/apply-set": "/x"}
    assert web["spec"] == web_spec and web["images"] == {"r": "sha512-1"}
    assert web["apps"] == [
        {"name": "web", "state": "unknown", "exit_code": None, "health": None, "image_id": image_id}
    ]
    assert aborted["state"] == "aborted-prepare" and aborted["spec"] is None
    assert aborted["annotations"] == {} and aborted["name"] is None

    # a directory's hash follows its content and modes; an unchanged image file is not
    # hashed again when the last observation is passed on
    before = observed["files"][str(site)]
    (site / "sub" / "new").write_text("x")
    again = observe(str(data), desired, previous=observed)
    assert again["files"][str(site)] != before
    assert again["image_files"] == observed["image_files"]
    fake = dict(observed["image_files"])
    fake[str(aci)] = {**fake[str(aci)], "id": "sha512-cached"}
    cached = observe(str(data), desired, previous={"image_files": fake})
    assert cached["images"][str(aci)] == "sha512-cached"


def test_observe_an_empty_data_dir_creates_nothing(tmp_path: Path) -> None:
    from rktcfg.plan.observe import observe

    pod = DesiredPod(
        name="a", source="/x/a.yaml", document=0, spec={"apps": [{"name": "a", "image": "x:1"}]}
    )
    assert observe(str(tmp_path / "none"), [pod]) == {
        "pods": [],
        "images": {"x:1": None},
        "files": {},
        "image_files": {},
    }
    assert not os.path.exists(tmp_path / "none")


def test_observe_takes_image_ids_from_stage1_for_a_bare_spec(tmp_path: Path) -> None:
    from rktcfg.plan.observe import observe

    data = tmp_path / "data"
    spec = {"apps": [{"name": "web", "image": "i:1"}, {"name": "db", "image": "d:1"}]}
    _write_pod(
        data,
        "prepared",
        "00000000-0000-4000-8000-000000000003",
        {
            "spec.json": spec,
            "stage1.json": {
                "apps": [
                    {"name": "httpd", "image_id": "sha512-1"},
                    {"name": "pg", "image_id": "s2"},
                ]
            },
        },
    )
    (pod,) = observe(str(data), [])["pods"]
    assert pod["state"] == "prepared" and pod["spec"] == spec and pod["files"] is None
    assert pod["images"] == {"i:1": "sha512-1", "d:1": "s2"}


def test_observe_sees_the_lock_and_tolerates_pods_that_move_or_vanish(tmp_path: Path) -> None:
    import fcntl

    from rktcfg.plan.observe import _observe_pod, observe_pods
    from rktcfg.store.pods import Pod

    data = tmp_path / "data"
    running = _write_pod(
        data,
        "run",
        "00000000-0000-4000-8000-000000000004",
        {"stage1.json": {"apps": [{"name": "web"}]}, "apps/web/status.json": {"state": "running"}},
    )
    fd = os.open(running, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        (pod,) = observe_pods(str(data))
        assert pod["state"] == "running" and pod["apps"][0]["state"] == "running"
    finally:
        os.close(fd)
    root = str(data / "pods")
    moved = _write_pod(data, "prepared", "00000000-0000-4000-8000-000000000005", {"name": "m"})
    stale = Pod(root, "prepared", moved.name)
    os.rename(moved, data / "pods" / "run" / moved.name)  # started meanwhile
    seen = _observe_pod(stale)
    assert seen is not None and seen["state"] == "exited" and seen["name"] == "m"
    gone = Pod(root, "prepared", "00000000-0000-4000-8000-000000000006")
    assert _observe_pod(gone) is None
