"""Properties of the planner (Hypothesis): idempotent, hands off what it does not own,
independent of order, and its JSON round-trips."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from rktcfg.plan import DesiredPod, Plan, compute_plan, render_text, simulate
from rktcfg.plan.planner import (
    ANNOTATION_HASH,
    ANNOTATION_NAME,
    ANNOTATION_SET,
    ANNOTATION_SOURCE,
    hash_resolved,
    resolved_spec,
)

THIS = "/x/pods"
OTHER = "/y/pods"
NAMES = ("a", "b", "c", "d")
REFS = ("i:1", "i:2")
FILES = ("/x/pods/f1", "/x/pods/f2")
IDS = ("sha512-" + "a" * 128, "sha512-" + "b" * 128, None)
HASHES = ("sha256:" + "1" * 64, "sha256:" + "2" * 64, None)
STATES = (
    "running",
    "exited",
    "prepared",
    "embryo",
    "preparing",
    "aborted-prepare",
    "exited-garbage",
    "garbage",
    "deleting",
)
LIVE_STATES = ("running", "exited", "prepared")
APP_STATES = ("running", "exited", "created", "restarting", "unknown")
NOW = 10**18


@st.composite
def specs(draw: st.DrawFn) -> dict[str, Any]:
    apps = [
        {
            "name": name,
            "image": draw(st.sampled_from(REFS)),
            "env": draw(st.sampled_from(({}, {"A": "1"}, {"A": "2", "B": "1"}))),
            "isolators": {"memory": draw(st.sampled_from(("64M", "128M")))},
        }
        for name in draw(st.lists(st.sampled_from(("web", "db")), min_size=1, unique=True))
    ]
    return {
        "restartPolicy": draw(st.sampled_from(("never", "on-failure", "always"))),
        "apps": apps,
        "volumes": [],
    }


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[list[DesiredPod], dict[str, Any], bool]:
    names = draw(st.lists(st.sampled_from(NAMES), unique=True))
    desired = [
        DesiredPod(
            name=name,
            source=f"{THIS}/{name}.yaml",
            document=0,
            spec=draw(specs()),
            host_files=tuple(draw(st.lists(st.sampled_from(FILES), unique=True))),
        )
        for name in names
    ]
    observed: dict[str, Any] = {
        "images": {ref: draw(st.sampled_from(IDS)) for ref in REFS},
        "files": {path: draw(st.sampled_from(HASHES)) for path in FILES},
    }
    pods = []
    for n in range(draw(st.integers(0, 8))):
        # weighted towards the interesting: owned pods made from a desired pod, recorded as
        # the executor records them, in a live state, several of one name
        owner = draw(st.sampled_from((THIS, THIS, THIS, OTHER, None)))
        how = (
            draw(st.sampled_from(("current", "current", "older", "other"))) if desired else "other"
        )
        if how != "other":
            pod = draw(st.sampled_from(desired))
            name: str | None = pod.name
            record = resolved_spec(pod, observed)
            if how == "older":  # made from an older version of it
                record = {**record, "spec": draw(specs())}
        else:
            name = draw(st.sampled_from((*NAMES, None)))
            record = {
                "spec": draw(st.none() | specs()),
                "images": {ref: draw(st.sampled_from(IDS)) for ref in REFS},
                "files": {},
            }
        spec = record["spec"]
        annotations = {}
        if owner is not None:
            annotations = {
                ANNOTATION_NAME: name or "x",
                ANNOTATION_SOURCE: f"{owner}/{name}.yaml",
                ANNOTATION_SET: owner,
                ANNOTATION_HASH: draw(
                    st.sampled_from((hash_resolved(record),) * 3 + ("sha256:0",))
                ),
            }
        pods.append(
            {
                "uuid": f"{n:08x}-0000-4000-8000-000000000000",
                "name": name,
                "state": draw(st.sampled_from(LIVE_STATES + STATES)),
                "created_at": draw(st.integers(0, 2)),
                "annotations": annotations,
                "spec": spec,
                "stopped_by_user": draw(st.booleans()),
                "apps": [
                    {
                        "name": app["name"],
                        "state": draw(st.sampled_from(APP_STATES)),
                        "exit_code": draw(st.sampled_from((None, 0, 1))),
                        "health": draw(st.sampled_from((None, "healthy", "unhealthy"))),
                    }
                    for app in (spec or {}).get("apps", [])
                ],
                "images": record["images"],
                "files": record["files"],
            }
        )
    observed["pods"] = pods
    return desired, observed, draw(st.booleans())


def _plan(desired: list[DesiredPod], observed: dict[str, Any], prune: bool) -> Plan:
    return compute_plan(desired, observed, apply_set=THIS, prune=prune, now=NOW)


@settings(max_examples=200, deadline=None)
@given(scenarios())
def test_applying_the_plan_then_planning_again_has_nothing_to_do(
    scenario: tuple[list[DesiredPod], dict[str, Any], bool],
) -> None:
    desired, observed, prune = scenario
    plan = _plan(desired, observed, prune)
    after = simulate(observed, plan, desired, now=NOW)
    again = _plan(desired, after, prune)
    assert {a.kind for a in again.actions} <= {"unchanged", "conflict"}, render_text(again)
    assert again.conflicts() == plan.conflicts()
    # and a third time: the simulation of a plan with nothing to do changes nothing
    assert _plan(desired, simulate(after, again, desired, now=NOW), prune) == again


@settings(max_examples=100, deadline=None)
@given(scenarios())
def test_the_planner_never_acts_on_pods_it_does_not_own(
    scenario: tuple[list[DesiredPod], dict[str, Any], bool],
) -> None:
    desired, observed, prune = scenario
    pods = {p["uuid"]: p for p in observed["pods"]}
    for action in _plan(desired, observed, prune).actions:
        if action.uuid is not None and pods[action.uuid]["annotations"].get(ANNOTATION_SET) != THIS:
            # in fact only conflicts: a pod not owned is named only when it holds a name
            assert action.kind == "conflict", action


@settings(max_examples=100, deadline=None)
@given(scenarios(), st.randoms(use_true_random=False))
def test_the_plan_does_not_depend_on_order(
    scenario: tuple[list[DesiredPod], dict[str, Any], bool], rng: Any
) -> None:
    desired, observed, prune = scenario
    plan = _plan(desired, observed, prune)
    shuffled_desired = list(desired)
    rng.shuffle(shuffled_desired)
    shuffled_pods = list(observed["pods"])
    rng.shuffle(shuffled_pods)
    assert _plan(shuffled_desired, {**observed, "pods": shuffled_pods}, prune) == plan


@settings(max_examples=100, deadline=None)
@given(scenarios())
def test_the_plan_round_trips_through_json(
    scenario: tuple[list[DesiredPod], dict[str, Any], bool],
) -> None:
    desired, observed, prune = scenario
    plan = _plan(desired, observed, prune)
    assert Plan.from_dict(plan.as_dict()) == plan
    assert Plan.from_dict(json.loads(json.dumps(plan.as_dict()))) == plan
    text = render_text(plan)
    assert text.count("\n") == len(plan.actions) + sum(len(a.changes) for a in plan.actions) + 1


@given(specs(), specs())
def test_a_replace_always_says_what_changed(old: dict[str, Any], new: dict[str, Any]) -> None:
    pod = DesiredPod(name="a", source=f"{THIS}/a.yaml", document=0, spec=new)
    observed: dict[str, Any] = {"images": dict.fromkeys(REFS, IDS[0]), "files": {}}
    record = {"spec": old, "images": {a["image"]: IDS[0] for a in old["apps"]}, "files": {}}
    observed["pods"] = [
        {
            "uuid": "00000000-0000-4000-8000-000000000000",
            "name": "a",
            "state": "running",
            "created_at": 0,
            "annotations": {ANNOTATION_SET: THIS, ANNOTATION_HASH: hash_resolved(record)},
            "spec": old,
            "stopped_by_user": False,
            "apps": [],
            "images": record["images"],
            "files": {},
        }
    ]
    (action,) = _plan([pod], observed, False).actions
    if old == new:
        assert action.kind == "unchanged"
    else:
        assert action.kind == "replace"
        assert action.changes and all(c.field != "spec-hash" for c in action.changes)
