"""The planner: desired pods against the observed stores, as a frozen list of actions. Pure.

No file system, clock, process or id generation here: ``observed`` is the plain dict that
:func:`rktcfg.plan.observe.observe` built (``/tmp/apply-design.md`` §2), ``now`` is a
parameter, and :func:`simulate` names the pods it invents deterministically.

Change detection (kubelet's): a pod's *resolved spec* is ``{"spec": canonical spec,
"images": {ref: image id}, "files": {host file: content hash}}``; its ``spec_hash`` is the
SHA-256 of that document as canonical JSON. The executor stores both when it creates a pod
(``spec.json`` = :func:`resolved_spec`, annotation ``rktcfg.dev/spec-hash`` =
:func:`spec_hash`); a pod is replaced when the hash of the desired pod differs from the one
recorded, and the plan says which fields differ.

Rules, for each pod name (one group per name, so the plan costs O(pods)):

* Pods are *owned* when their ``rktcfg.dev/apply-set`` annotation is this apply set. Others
  (made by hand, or by another set) are never acted on: one holding a desired name (in any
  state but the marked-for-deletion ones) makes a ``conflict``; otherwise they are not
  mentioned at all.
* Owned pods in ``aborted-prepare``, ``exited-garbage`` or ``garbage`` are collected;
  ``deleting`` ones are left to whoever deletes them.
* Of the other owned pods of one name the newest (``created_at``, then uuid) is the pod; the
  rest are collected as duplicates. Then: none -> ``create``; being prepared by another
  process -> ``unchanged``; hash differs -> ``replace`` (with the field diff); prepared ->
  ``start``; running -> ``unchanged`` "up to date"; exited -> ``replace`` under restartPolicy
  always (even when stopped by hand), ``unchanged`` "stopped by hand; not restarted" when
  stopped by hand, ``replace`` under on-failure when an app failed, else ``unchanged``.
* With ``prune``, owned pods whose name is not desired are removed (dead ones collected).
  Without it they are not mentioned.
* ``stop`` is never planned here (``delete`` and the executor use it); ``remove``,
  ``collect`` and ``replace`` stop a running pod first.

Actions are sorted by (pod name, kind in :data:`KINDS` order, uuid): for one pod the executor
meets conflicts, then collects, stops, removes, replaces, creates, starts.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from rktcfg.errors import InputError
from rktcfg.names import ANNOTATION_HASH, ANNOTATION_NAME, ANNOTATION_SET, ANNOTATION_SOURCE
from rktcfg.plan import diff

#: Every action kind, in the order the actions for one pod are listed and executed.
KINDS = ("conflict", "collect", "stop", "remove", "replace", "create", "start", "unchanged")
_RANK = {kind: i for i, kind in enumerate(KINDS)}

#: Owned pods in these states are collected.
DEAD_STATES = frozenset({"aborted-prepare", "exited-garbage", "garbage"})
#: Someone else holds these pods' locks to create them; they are left alone.
BUSY_STATES = frozenset({"embryo", "preparing"})
#: Marked for deletion: they no longer hold their name.
RELEASED_STATES = frozenset({"exited-garbage", "garbage", "deleting"})

#: How many field names a "spec changed: ..." reason lists before "and N more".
_REASON_FIELDS = 3


# --- values ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class DesiredPod:
    """One pod as a pod file defines it (the output of ``rktcfg.spec.load``)."""

    name: str
    #: absolute path of the file that defined it (for a ``.j2``, the template)
    source: str
    #: index of the YAML document in that file (0-based)
    document: int
    #: the canonical spec (``/tmp/apply-design.md`` §1)
    spec: dict[str, Any]
    #: absolute source paths of host volumes mounted read-only (their content is hashed)
    host_files: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "source": self.source,
            "document": self.document,
            "spec": self.spec,
            "host_files": list(self.host_files),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DesiredPod:
        return cls(
            name=data["name"],
            source=data["source"],
            document=data.get("document", 0),
            spec=data["spec"],
            host_files=tuple(data.get("host_files", ())),
        )


class PodDefinition(Protocol):
    """What the planner reads of a desired pod: :class:`DesiredPod`, or any value with the
    same attributes (``rktcfg.spec``'s)."""

    @property
    def name(self) -> str: ...
    @property
    def source(self) -> str: ...
    @property
    def document(self) -> int: ...
    @property
    def spec(self) -> dict[str, Any]: ...
    @property
    def host_files(self) -> tuple[str, ...]: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class Change:
    """One changed field: ``apps[web].isolators.memory``, ``image[web]``, ``file[/x/site]``."""

    field: str
    old: Any
    new: Any

    def as_dict(self) -> dict[str, Any]:
        return {"field": self.field, "old": self.old, "new": self.new}


@dataclass(frozen=True, slots=True, kw_only=True)
class Action:
    """One thing to do (or, for ``unchanged`` and ``conflict``, not to do) about one pod."""

    kind: str
    #: the pod name
    pod: str
    #: the existing pod acted on (None for create)
    uuid: str | None
    #: one line saying why: "new pod", "spec changed: apps[web].exec", "up to date", ...
    reason: str
    changes: tuple[Change, ...] = ()
    #: the desired pod's hash (actions about a desired pod; None for collect and remove)
    spec_hash: str | None = None
    #: the desired pod's source file (same)
    source: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "pod": self.pod,
            "uuid": self.uuid,
            "reason": self.reason,
            "changes": [c.as_dict() for c in self.changes],
            "spec_hash": self.spec_hash,
            "source": self.source,
        }

    def sort_key(self) -> tuple[str, int, str]:
        return (self.pod, _RANK[self.kind], self.uuid or "")


@dataclass(frozen=True, slots=True, kw_only=True)
class Plan:
    actions: tuple[Action, ...]
    apply_set: str

    def changed(self) -> bool:
        """Whether anything but ``unchanged`` is in the plan (a conflict counts)."""
        return any(a.kind != "unchanged" for a in self.actions)

    def counts(self) -> dict[str, int]:
        """Actions per kind, every kind present."""
        counts = dict.fromkeys(KINDS, 0)
        for action in self.actions:
            counts[action.kind] += 1
        return counts

    def conflicts(self) -> tuple[Action, ...]:
        return tuple(a for a in self.actions if a.kind == "conflict")

    def as_dict(self) -> dict[str, Any]:
        return {"apply_set": self.apply_set, "actions": [a.as_dict() for a in self.actions]}

    @classmethod
    def from_dict(cls, data: Any) -> Plan:
        """A plan from :meth:`as_dict`'s JSON (a saved plan is user input: InputError when
        it is not one)."""
        try:
            actions = tuple(_action_from_dict(a) for a in data["actions"])
            apply_set = data["apply_set"]
            if not isinstance(apply_set, str):
                raise TypeError("apply_set is not a string")
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"not a plan: {exc}") from None
        return cls(actions=actions, apply_set=apply_set)


def _action_from_dict(data: Mapping[str, Any]) -> Action:
    if data["kind"] not in _RANK:
        raise ValueError(f"unknown action kind {data['kind']!r}")
    for key in ("pod", "reason"):
        if not isinstance(data[key], str):
            raise TypeError(f"action {key} is not a string")
    return Action(
        kind=data["kind"],
        pod=data["pod"],
        uuid=data["uuid"],
        reason=data["reason"],
        changes=tuple(
            Change(field=c["field"], old=c["old"], new=c["new"]) for c in data["changes"]
        ),
        spec_hash=data["spec_hash"],
        source=data["source"],
    )


# --- hashing -----------------------------------------------------------------------------


def canonical_json(value: Any) -> bytes:
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode()


def resolved_spec(pod: PodDefinition, observed: Mapping[str, Any]) -> dict[str, Any]:
    """What the hash covers and the executor stores as ``spec.json``: the canonical spec,
    each app image's resolved ID and each host file's content hash (None: not there)."""
    images = observed.get("images") or {}
    files = observed.get("files") or {}
    refs = [app["image"] for app in pod.spec.get("apps") or ()]
    return {
        "spec": pod.spec,
        "images": {ref: images.get(ref) for ref in refs},
        "files": {path: files.get(path) for path in pod.host_files},
    }


def hash_resolved(resolved: Mapping[str, Any]) -> str:
    """``sha256:<hex>`` of a resolved spec (:func:`resolved_spec`) as canonical JSON."""
    return "sha256:" + hashlib.sha256(canonical_json(resolved)).hexdigest()


def spec_hash(pod: PodDefinition, observed: Mapping[str, Any]) -> str:
    """The hash of the fully resolved desired pod: spec, image IDs, host file contents."""
    return hash_resolved(resolved_spec(pod, observed))


def ownership_annotations(pod: PodDefinition, *, apply_set: str, hash: str) -> dict[str, str]:
    """The annotations that make a created pod this apply set's."""
    return {
        ANNOTATION_NAME: pod.name,
        ANNOTATION_SOURCE: pod.source,
        ANNOTATION_SET: apply_set,
        ANNOTATION_HASH: hash,
    }


# --- planning ----------------------------------------------------------------------------


def _annotations(pod: Mapping[str, Any]) -> Mapping[str, Any]:
    found = pod.get("annotations")
    return found if isinstance(found, Mapping) else {}


def _pod_name(pod: Mapping[str, Any]) -> str | None:
    name = pod.get("name") or _annotations(pod).get(ANNOTATION_NAME)
    return name if isinstance(name, str) else None


def _owner(pod: Mapping[str, Any]) -> str | None:
    owner = _annotations(pod).get(ANNOTATION_SET)
    return owner if isinstance(owner, str) else None


def _age_key(pod: Mapping[str, Any]) -> tuple[int, str]:
    created = pod.get("created_at")
    return (created if isinstance(created, int) else 0, str(pod.get("uuid")))


def compute_plan(
    desired: Sequence[PodDefinition],
    observed: Mapping[str, Any],
    *,
    apply_set: str,
    prune: bool,
    now: int,
) -> Plan:
    """What to do so that the store matches ``desired`` (see the module docstring).

    ``now`` (ns) is accepted for rules that need the time; none does yet, so a plan made
    twice over the same store reads the same."""
    del now
    wanted: dict[str, PodDefinition] = {}
    for pod in desired:
        other = wanted.get(pod.name)
        if other is not None:
            first, second = sorted(
                [f"{other.source}[{other.document}]", f"{pod.source}[{pod.document}]"]
            )
            raise InputError(f"pod {pod.name!r} is defined twice: in {first} and in {second}")
        wanted[pod.name] = pod
    by_name: dict[str, list[Mapping[str, Any]]] = {}
    for found in observed.get("pods") or ():
        name = _pod_name(found)
        if name is not None and (name in wanted or _owner(found) == apply_set):
            by_name.setdefault(name, []).append(found)
    actions: list[Action] = []
    for name in wanted.keys() | by_name.keys():
        actions.extend(
            _plan_name(
                name, wanted.get(name), by_name.get(name, []), observed, apply_set, prune=prune
            )
        )
    actions.sort(key=Action.sort_key)
    return Plan(actions=tuple(actions), apply_set=apply_set)


def _plan_name(
    name: str,
    want: PodDefinition | None,
    pods: list[Mapping[str, Any]],
    observed: Mapping[str, Any],
    apply_set: str,
    *,
    prune: bool,
) -> Iterable[Action]:
    owned = [p for p in pods if _owner(p) == apply_set]
    if want is None:
        if prune:
            yield from _prune(name, owned)
        return
    desired_hash = spec_hash(want, observed)

    def act(kind: str, pod: Mapping[str, Any] | None, reason: str, **extra: Any) -> Action:
        return Action(
            kind=kind,
            pod=name,
            uuid=None if pod is None else pod["uuid"],
            reason=reason,
            spec_hash=desired_hash,
            source=want.source,
            **extra,
        )

    for pod in owned:
        if pod.get("state") in DEAD_STATES:
            yield _collect(name, pod, _dead_reason(pod))
    live = sorted(
        (p for p in owned if p.get("state") not in DEAD_STATES and p.get("state") != "deleting"),
        key=_age_key,
        reverse=True,
    )
    foreign = sorted(
        (p for p in pods if _owner(p) != apply_set and p.get("state") not in RELEASED_STATES),
        key=_age_key,
    )
    if foreign:
        for pod in foreign:
            yield act("conflict", pod, _foreign_reason(pod))
        for pod in live:
            yield act(
                "unchanged", pod, f"left as is: the name is also held by {foreign[0]['uuid']}"
            )
        return
    if not live:
        yield act("create", None, "new pod")
        return
    primary, duplicates = live[0], live[1:]
    for pod in duplicates:
        if pod.get("state") not in BUSY_STATES:
            yield _collect(name, pod, f"duplicate of {primary['uuid']}")
    yield _plan_pod(act, want, primary, observed, desired_hash)


def _plan_pod(
    act: Callable[..., Action],
    want: PodDefinition,
    pod: Mapping[str, Any],
    observed: Mapping[str, Any],
    desired_hash: str,
) -> Action:
    state = pod.get("state")
    recorded = _annotations(pod).get(ANNOTATION_HASH)
    if state in BUSY_STATES:
        return act("unchanged", pod, "being prepared by another process")
    if recorded != desired_hash:
        changes = _changes(want, pod, observed, recorded, desired_hash)
        return act("replace", pod, _changed_reason(changes), changes=changes)
    if state == "prepared":
        return act("start", pod, "prepared, not started")
    if state == "running":
        unhealthy = [a["name"] for a in _apps(pod) if a.get("health") == "unhealthy"]
        if unhealthy:
            return act("unchanged", pod, f"up to date (unhealthy: {', '.join(unhealthy)})")
        return act("unchanged", pod, "up to date")
    policy = want.spec.get("restartPolicy") or "never"
    if policy == "always":
        return act("replace", pod, "exited; restartPolicy always")
    if pod.get("stopped_by_user"):
        return act("unchanged", pod, f"stopped by hand; not restarted (restartPolicy {policy})")
    failure = _failure(pod)
    if failure is None:
        return act("unchanged", pod, "exited (completed)")
    if policy == "on-failure":
        return act("replace", pod, f"exited ({failure}); restartPolicy on-failure")
    return act("unchanged", pod, f"exited ({failure}); restartPolicy {policy}")


def _apps(pod: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [a for a in pod.get("apps") or () if isinstance(a, Mapping)]


def _failure(pod: Mapping[str, Any]) -> str | None:
    """How the first failing app of an exited pod failed; None when all exited with 0."""
    for app in _apps(pod):
        state, code = app.get("state"), app.get("exit_code")
        if state == "exited" and code not in (0, None):
            return f"app {app.get('name')} exited with code {code}"
        if state in ("created", "restarting"):
            return f"app {app.get('name')} never finished starting"
        if state not in ("exited", None):
            return f"app {app.get('name')} was {state} when the pod stopped"
    return None


def _changes(
    want: PodDefinition,
    pod: Mapping[str, Any],
    observed: Mapping[str, Any],
    recorded: Any,
    desired_hash: str,
) -> tuple[Change, ...]:
    old_spec = pod.get("spec")
    found: list[diff.FieldChange] = []
    if isinstance(old_spec, Mapping):
        found = diff.spec_changes(old_spec, want.spec)
        found += diff.image_changes(
            old_spec, want.spec, pod.get("images"), observed.get("images") or {}
        )
        found += diff.file_changes(want.host_files, pod.get("files"), observed.get("files") or {})
    if not found:
        found = [("spec-hash", recorded, desired_hash)]
    return tuple(Change(field=f, old=o, new=n) for f, o, n in found)


def _changed_reason(changes: tuple[Change, ...]) -> str:
    if len(changes) == 1 and changes[0].field == "spec-hash":
        if changes[0].old is None:
            return "spec changed: no spec hash recorded"
        return "spec hash changed"
    fields = [c.field for c in changes[:_REASON_FIELDS]]
    more = len(changes) - len(fields)
    return "spec changed: " + ", ".join(fields) + (f" and {more} more" if more else "")


def _collect(name: str, pod: Mapping[str, Any], reason: str) -> Action:
    return Action(kind="collect", pod=name, uuid=pod["uuid"], reason=reason)


def _dead_reason(pod: Mapping[str, Any]) -> str:
    if pod.get("state") == "aborted-prepare":
        return "aborted prepare"
    return f"marked as garbage ({pod.get('state')})"


def _foreign_reason(pod: Mapping[str, Any]) -> str:
    owner = _owner(pod)
    made = "created by hand" if owner is None else f"created by set {owner}"
    return f"exists ({pod.get('state')}) and is not managed by this apply set ({made})"


def _prune(name: str, owned: list[Mapping[str, Any]]) -> Iterable[Action]:
    for pod in owned:
        state = pod.get("state")
        if state in DEAD_STATES:
            yield _collect(name, pod, _dead_reason(pod))
        elif state not in BUSY_STATES and state != "deleting":
            yield Action(
                kind="remove", pod=name, uuid=pod["uuid"], reason="definition removed (prune)"
            )


# --- simulation --------------------------------------------------------------------------


def simulate(
    observed: Mapping[str, Any],
    plan: Plan,
    desired: Sequence[PodDefinition],
    *,
    now: int,
) -> dict[str, Any]:
    """The observed state after ``plan`` ran and every pod it started is running (a dry run;
    the idempotency tests plan again over it). New pods get uuids derived from their name
    and hash, and ``created_at`` later than any pod's and not before ``now``."""
    wanted = {pod.name: pod for pod in desired}
    pods: dict[str, dict[str, Any]] = {str(p["uuid"]): dict(p) for p in observed.get("pods") or ()}
    latest = max([now - 1, *(_age_key(p)[0] for p in pods.values())])
    for action in plan.actions:
        current = pods.get(action.uuid) if action.uuid is not None else None
        if action.kind in ("remove", "collect"):
            pods.pop(str(action.uuid), None)
        elif action.kind == "stop" and current is not None:
            current.update(
                state="exited",
                stopped_by_user=True,
                apps=[{**a, "state": "exited", "exit_code": 0} for a in _apps(current)],
            )
        elif action.kind == "start" and current is not None:
            current.update(state="running", apps=_running_apps(current.get("spec")))
        elif action.kind in ("create", "replace"):
            if action.uuid is not None:
                pods.pop(action.uuid, None)
            want = wanted[action.pod]
            latest += 1
            new_uuid = _simulated_uuid(want.name, action.spec_hash or "", pods)
            resolved = resolved_spec(want, observed)
            pods[new_uuid] = {
                "uuid": new_uuid,
                "name": want.name,
                "state": "running",
                "created_at": latest,
                "annotations": ownership_annotations(
                    want, apply_set=plan.apply_set, hash=hash_resolved(resolved)
                ),
                "spec": want.spec,
                "stopped_by_user": False,
                "apps": _running_apps(want.spec),
                "images": resolved["images"],
                "files": resolved["files"],
            }
    return {**observed, "pods": [pods[u] for u in sorted(pods)]}


def _running_apps(spec: Any) -> list[dict[str, Any]]:
    apps = spec.get("apps") if isinstance(spec, Mapping) else None
    return [
        {"name": app.get("name"), "state": "running", "exit_code": None, "health": None}
        for app in apps or ()
    ]


def _simulated_uuid(name: str, hash: str, taken: Mapping[str, Any]) -> str:
    seed = f"{name}\0{hash}".encode()
    for n in range(1000):
        hexdigest = hashlib.sha256(seed + str(n).encode()).hexdigest()
        candidate = (
            f"{hexdigest[:8]}-{hexdigest[8:12]}-4{hexdigest[13:16]}-"
            f"8{hexdigest[17:20]}-{hexdigest[20:32]}"
        )
        if candidate not in taken:
            return candidate
    raise AssertionError("no simulated uuid left")  # pragma: no cover
