"""What ``plan``, ``apply`` and ``delete`` share: reading pod files, observing, planning, and
saved plans (``plan --out FILE``, then ``apply FILE``)."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from typing import Any

TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse

    from rktcfg.cli.context import Context

#: The key that marks a saved plan file, and its format version.
SAVED_PLAN_KEY = "rktcfgPlan"
SAVED_PLAN_VERSION = 1


def configure_sources(parser: argparse.ArgumentParser, *, prune: bool = True) -> None:
    parser.add_argument(
        "paths", nargs="*", metavar="PATH", help="pod files or directories of pod files"
    )
    parser.add_argument(
        "-R", "--recursive", action="store_true", help="also read the directories' subdirectories"
    )
    parser.add_argument(
        "--var", action="append", default=[], metavar="K=V", help="a variable for *.j2 templates"
    )
    parser.add_argument(
        "--vars-file",
        action="append",
        default=[],
        metavar="FILE",
        help="variables for *.j2 templates (YAML or TOML)",
    )
    parser.add_argument(
        "--validate",
        choices=("strict", "warn"),
        default="strict",
        help="fields outside the Kubernetes subset: an error (strict) or a warning",
    )
    parser.add_argument(
        "--set",
        dest="apply_set",
        metavar="NAME",
        help="the apply set (default: the directory applied, or the file's directory)",
    )
    if prune:
        parser.add_argument(
            "--prune",
            action="store_true",
            help="remove pods of this apply set whose definition is gone",
        )


def variables(args: argparse.Namespace) -> dict[str, str]:
    from rktcfg.errors import UsageError

    out = {}
    for text in args.var:
        key, sep, value = text.partition("=")
        if not sep or not key:
            raise UsageError(f"--var {text!r}: expected K=V")
        out[key] = value
    return out


@dataclass
class Planned:
    loaded: Any
    apply_set: str
    observed: dict[str, Any]
    plan: Any
    prune: bool


def load(args: argparse.Namespace, ctx: Context) -> Any:
    from rktcfg.errors import UsageError
    from rktcfg.spec import load as load_pods

    if not args.paths:
        raise UsageError("give at least one pod file or directory")
    loaded = load_pods(
        args.paths,
        recursive=args.recursive,
        variables=variables(args),
        vars_files=tuple(args.vars_file),
        validate=args.validate,
        environ=ctx.environ,
    )
    for note in loaded.notes:
        ctx.err.write(f"rktcfg: note: {note}\n")
    return loaded


def plan(
    args: argparse.Namespace, ctx: Context, *, previous: dict[str, Any] | None = None
) -> Planned:
    """Load, observe and plan. ``previous``: the last plan's observation (``--watch``), so
    that image files whose size and mtime are unchanged are not hashed again."""
    import time

    from rktcfg.errors import UsageError
    from rktcfg.plan.observe import observe
    from rktcfg.plan.planner import compute_plan

    prune = bool(getattr(args, "prune", False))
    files = [p for p in args.paths if not os.path.isdir(p)]
    if prune and args.apply_set is None and files:
        raise UsageError(
            f"--prune with a file ({files[0]}) needs --set NAME: without it the set is the "
            "file's directory, and its sibling files' pods would be pruned"
        )
    loaded = load(args, ctx)
    apply_set = args.apply_set or loaded.apply_set
    observed = observe(ctx.data_dir(), loaded.pods, previous=previous)
    computed = compute_plan(
        loaded.pods, observed, apply_set=apply_set, prune=prune, now=time.time_ns()
    )
    return Planned(loaded, apply_set, observed, computed, prune)


# --- saved plans --------------------------------------------------------------------------------


def _file_hash(path: str) -> str | None:
    try:
        with open(path, "rb") as handle:
            return "sha256:" + hashlib.sha256(handle.read()).hexdigest()
    except OSError:
        return None


def fingerprint(observed: dict[str, Any]) -> str:
    """What of the observed stores a saved plan depends on: each pod's uuid, name, state,
    spec hash and owner, the images the pod files name, and the host files they mount."""
    pods = sorted(
        (
            p["uuid"],
            p.get("name"),
            p.get("state"),
            (p.get("annotations") or {}).get("rktcfg.dev/spec-hash"),
            (p.get("annotations") or {}).get("rktcfg.dev/apply-set"),
        )
        for p in observed.get("pods", [])
    )
    data = {"pods": pods, "images": observed.get("images"), "files": observed.get("files")}
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def listing(paths: list[str], recursive: bool) -> list[str]:
    """The files below ``paths`` (directories listed, files as given): a saved plan notices
    a file added to, or put back in, a directory it read."""
    from rktcfg.cli.watch import signature

    return sorted({entry[0] for entry in signature(paths, recursive)})


def save(planned: Planned, path: str, args: argparse.Namespace) -> None:
    from rktcfg.fsutil import AtomicFile

    paths = [os.path.abspath(p) for p in args.paths]
    document = {
        SAVED_PLAN_KEY: SAVED_PLAN_VERSION,
        "apply_set": planned.apply_set,
        "prune": planned.prune,
        "paths": paths,
        "recursive": bool(args.recursive),
        "listing": listing(paths, bool(args.recursive)),
        "sources": {source: _file_hash(source) for source in planned.loaded.sources},
        "store": fingerprint(planned.observed),
        "desired": [d.as_dict() for d in planned.loaded.pods],
        "plan": planned.plan.as_dict(),
    }
    with AtomicFile(path) as handle:
        handle.write(json.dumps(document, indent=2, sort_keys=True).encode() + b"\n")


def read_saved_plan(path: str) -> dict[str, Any] | None:
    """The document of the saved plan at ``path``; None when it is not one (a pod file)."""
    if not path.endswith(".json") or not os.path.isfile(path):
        return None
    try:
        with open(path, encoding="utf-8") as handle:
            document = json.load(handle)
    except (OSError, ValueError, TypeError):
        return None
    return document if isinstance(document, dict) and SAVED_PLAN_KEY in document else None


def load_saved(path: str, document: dict[str, Any], ctx: Context) -> Planned:
    """The saved plan ``document`` (read from ``path``), refused (one line saying what
    changed) when its sources or the stores are no longer what they were when it was
    made."""
    from rktcfg.errors import InputError
    from rktcfg.plan.observe import observe
    from rktcfg.plan.planner import DesiredPod, Plan
    from rktcfg.spec.model import Loaded

    if document.get(SAVED_PLAN_KEY) != SAVED_PLAN_VERSION:
        raise InputError(f"{path}: not a saved plan of this rktcfg version")
    for source, digest in sorted(document["sources"].items()):
        if _file_hash(source) != digest:
            raise InputError(
                f"{path}: {source} changed since the plan was made; run rktcfg plan again"
            )
    now = listing(document["paths"], document["recursive"])
    for moved in sorted(set(now) ^ set(document["listing"])):
        what = "appeared" if moved in now else "is gone"
        raise InputError(
            f"{path}: {moved} {what} since the plan was made (the sources changed); "
            "run rktcfg plan again"
        )
    desired = tuple(DesiredPod.from_dict(d) for d in document["desired"])
    observed = observe(ctx.data_dir(), desired)
    if fingerprint(observed) != document["store"]:
        raise InputError(
            f"{path}: the pods or images changed since the plan was made; run rktcfg plan again"
        )
    loaded = Loaded(pods=desired, notes=(), sources=(), apply_set=document["apply_set"])
    return Planned(
        loaded, document["apply_set"], observed, Plan.from_dict(document["plan"]), document["prune"]
    )
