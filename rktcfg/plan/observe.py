"""Observing the stores: the one place of the planner that reads anything.

:func:`observe` reads the pod store and the image store once and returns the plain dict that
:func:`rktcfg.plan.planner.compute_plan` plans over (``/tmp/apply-design.md`` §2)::

    {"pods": [{"uuid", "name", "state", "created_at", "annotations", "spec",
               "stopped_by_user", "apps": [{"name", "state", "exit_code", "health",
               "image_id"}], "images", "files"}],
     "images": {ref: image id | None},
     "files": {host file: "sha256:..." | None},
     "image_files": {path: {"size", "mtime_ns", "id"}}}

Beyond §2, each pod carries ``images`` and ``files``, the resolved values recorded when it
was created (from ``spec.json`` when it holds a resolved spec, else the image IDs from
``stage1.json``; None when unknown), so a diff can name ``image[web]`` and ``file[...]``;
``image_files`` caches the IDs of image files by (size, mtime): pass the last observed dict
as ``previous`` (``apply --watch``) and an unchanged image file is not hashed again.

Nothing is fetched: a ref the store cannot resolve is None. Pods that vanish or move while
being read are re-read, or left out when gone. A data directory without stores reads as
empty, and nothing is created in it.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from rktcfg.errors import NotFoundError, RktcfgError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from rktcfg.plan.planner import PodDefinition
    from rktcfg.store.images import ImageStore
    from rktcfg.store.pods import Pod

CHUNK = 1 << 20
#: How often a pod that moves between phases while being read is read again.
_ATTEMPTS = 3


def observe(
    data_dir: str,
    desired: Sequence[PodDefinition],
    *,
    previous: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The observed state of ``data_dir`` for planning ``desired``."""
    refs = sorted({app["image"] for pod in desired for app in pod.spec.get("apps") or ()})
    paths = sorted({path for pod in desired for path in pod.host_files})
    cache: Mapping[str, Any] = (previous or {}).get("image_files") or {}
    image_files: dict[str, Any] = {}
    return {
        "pods": observe_pods(data_dir),
        "images": resolve_images(data_dir, refs, cache=cache, image_files=image_files),
        "files": {path: content_hash(path) for path in paths},
        "image_files": image_files,
    }


# --- pods --------------------------------------------------------------------------------


def observe_pods(data_dir: str) -> list[dict[str, Any]]:
    """Every pod of the store, in every phase, sorted by uuid."""
    if not os.path.isdir(os.path.join(data_dir, "pods")):
        return []
    from rktcfg.store.pods import PHASES, PodStore

    store = PodStore(data_dir)
    out = []
    for pod in store.pods(PHASES):
        found = _observe_pod(pod)
        if found is not None:
            out.append(found)
    return out


class _Moved(Exception):
    """The pod directory left its phase while being read."""


def _observe_pod(pod: Pod) -> dict[str, Any] | None:
    for _ in range(_ATTEMPTS):
        try:
            state = pod.state()  # finds the pod again when it moved
        except NotFoundError:
            return None
        try:
            return _read_pod(pod, state.value)
        except _Moved:
            continue
    return None


def _read(pod: Pod, name: str) -> Any:
    """A JSON file of the pod, None when it is not there (yet) or unreadable; _Moved when the
    pod directory itself is gone from its phase."""
    try:
        with open(pod.file(name), encoding="utf-8") as handle:
            return json.load(handle)
    except FileNotFoundError:
        if not os.path.isdir(pod.path):
            raise _Moved from None
        return None
    except NotADirectoryError:
        raise _Moved from None
    except (OSError, ValueError):
        return None


def _read_pod(pod: Pod, state: str) -> dict[str, Any]:
    manifest = _read(pod, "pod")
    annotations: dict[str, str] = {}
    if isinstance(manifest, dict):
        for entry in manifest.get("annotations") or ():
            if isinstance(entry, dict) and isinstance(entry.get("name"), str):
                annotations[entry["name"]] = str(entry.get("value"))
    recorded = _read(pod, "spec.json")
    spec: Any = recorded
    images: dict[str, Any] | None = None
    files: dict[str, Any] | None = None
    if isinstance(recorded, dict) and recorded.keys() == {"spec", "images", "files"}:
        spec, images, files = recorded["spec"], recorded["images"], recorded["files"]
    stage1 = _read(pod, "stage1.json")
    stage1_apps = [
        a for a in (stage1.get("apps") or [] if isinstance(stage1, dict) else []) if _named(a)
    ]
    if images is None and isinstance(spec, dict):
        images = _images_from_stage1(spec, stage1_apps)
    apps = []
    for app in stage1_apps:
        status = _read(pod, f"apps/{app['name']}/status.json")
        if not isinstance(status, dict):
            status = {}
        app_state = status.get("state", "created")
        if state != "running" and app_state == "running":
            app_state = "unknown"  # the supervisor died with it running
        apps.append(
            {
                "name": app["name"],
                "state": app_state,
                "exit_code": status.get("exit_code"),
                "health": status.get("health"),
                "image_id": app.get("image_id"),
            }
        )
    stopped = os.path.exists(pod.file("stopped-by-user"))
    created = pod.created()
    if not os.path.isdir(pod.path):
        raise _Moved
    return {
        "uuid": pod.uuid,
        "name": pod.name(),
        "state": state,
        "created_at": created,
        "annotations": annotations,
        "spec": spec if isinstance(spec, dict) else None,
        "stopped_by_user": stopped,
        "apps": apps,
        "images": images,
        "files": files,
    }


def _named(app: Any) -> bool:
    return isinstance(app, dict) and isinstance(app.get("name"), str)


def _images_from_stage1(
    spec: Mapping[str, Any], stage1_apps: list[dict[str, Any]]
) -> dict[str, Any] | None:
    """ref -> image id of a pod whose spec.json holds only the spec: the stage1 apps by
    name, else by position."""
    spec_apps = [a for a in spec.get("apps") or () if _named(a) and isinstance(a.get("image"), str)]
    ids = {a["name"]: a.get("image_id") for a in stage1_apps}
    if all(a["name"] in ids for a in spec_apps):
        return {a["image"]: ids[a["name"]] for a in spec_apps}
    if len(spec_apps) == len(stage1_apps):
        return {a["image"]: s.get("image_id") for a, s in zip(spec_apps, stage1_apps, strict=True)}
    return None


# --- images ------------------------------------------------------------------------------


def resolve_images(
    data_dir: str,
    refs: Iterable[str],
    *,
    cache: Mapping[str, Any] | None = None,
    image_files: dict[str, Any] | None = None,
) -> dict[str, str | None]:
    """Each image ref's ID as the store (or, for a file, its content) says, without fetching.

    * ``sha512-...`` (full or a unique prefix): that image if stored;
    * ``name[:version][,label=value]``: the newest stored image for this host's os/arch;
    * a path or ``file://`` URL: the ID its content gets on import (SHA-512 of the
      uncompressed tar), whether or not it is stored;
    * ``oci:`` / ``docker-archive:``: the newest image imported from that very ref;
    * ``http(s)://``: the image of the store's last download of that URL.
    """
    refs = list(refs)
    found: dict[str, str | None] = dict.fromkeys(refs)
    if not refs:
        return found
    from rktcfg.image.fetch import classify

    kinds = {ref: classify(ref) for ref in refs}
    for ref, (kind, location) in kinds.items():
        if kind == "file":
            found[ref] = _file_image_id(location, cache or {}, image_files)
    store_refs = [ref for ref in refs if kinds[ref][0] != "file"]
    if not store_refs or not os.path.exists(os.path.join(data_dir, "images", "index.sqlite")):
        return found
    from rktcfg.store.images import ImageStore

    with ImageStore(data_dir) as store:
        for ref in store_refs:
            kind, location = kinds[ref]
            try:
                found[ref] = _store_image_id(store, ref, kind, location)
            except RktcfgError:
                found[ref] = None
    return found


def _store_image_id(store: ImageStore, ref: str, kind: str, location: str) -> str | None:
    if kind == "http":
        remote = store.remote(location)
        return None if remote is None else str(remote["image_id"])
    if kind == "oci":  # fetch records the ref itself as the image's source
        imported = [r for r in store.records(with_manifest=False) if r.source == ref]
        return max(imported, key=lambda r: (r.import_time, r.id)).id if imported else None
    if ref.startswith("sha512-"):
        return store.resolve(ref).id
    from rktcfg.image.manifest import host_os_arch, parse_app_string

    name, labels = parse_app_string(ref, source="image")
    host_os, host_arch = host_os_arch()
    labels.setdefault("os", host_os)
    labels.setdefault("arch", host_arch)
    matches = store.find(name, labels)
    return matches[0].id if matches else None


def _file_image_id(
    path: str, cache: Mapping[str, Any], image_files: dict[str, Any] | None
) -> str | None:
    """The image ID of an ACI file (compressed or not), reusing ``cache`` when the file's
    size and mtime did not change."""
    from rktcfg.image import aci

    try:
        st = os.stat(path)
    except OSError:
        return None
    if not stat.S_ISREG(st.st_mode):
        return None
    key = {"size": st.st_size, "mtime_ns": st.st_mtime_ns}
    cached = cache.get(path)
    if isinstance(cached, Mapping) and all(cached.get(k) == v for k, v in key.items()):
        image_id = cached.get("id")
    else:
        try:
            with open(path, "rb") as raw, open(os.devnull, "wb") as sink:
                image_id, _ = aci.copy_hashing(aci.open_decompressed(raw), sink)
        except (OSError, RktcfgError):
            image_id = None
    if image_files is not None:
        image_files[path] = {**key, "id": image_id}
    return image_id if isinstance(image_id, str) else None


# --- host files --------------------------------------------------------------------------


def content_hash(path: str) -> str | None:
    """``sha256:<hex>`` of a file's content, or of a directory's sorted walk (relative path,
    mode, size and content hash of each entry; a symlink by its target); None if missing or
    unreadable."""
    try:
        st = os.stat(path)
        if not stat.S_ISDIR(st.st_mode):
            return "sha256:" + _file_sha256(path)
        return "sha256:" + _tree_sha256(path)
    except OSError:
        return None


def _file_sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _tree_sha256(root: str) -> str:
    entries: list[tuple[str, int, int, str]] = []
    for top, dirs, files in os.walk(root, onerror=_raise):
        for name in dirs + files:
            full = os.path.join(top, name)
            rel = os.path.relpath(full, root)
            st = os.lstat(full)
            if stat.S_ISREG(st.st_mode):
                content = _file_sha256(full)
            elif stat.S_ISLNK(st.st_mode):
                content = "link:" + os.readlink(full)
            else:
                content = ""
            entries.append((rel, st.st_mode, st.st_size if content else 0, content))
    digest = hashlib.sha256()
    for rel, mode, size, content in sorted(entries):
        digest.update(f"{rel}\0{mode:o}\0{size}\0{content}\n".encode("utf-8", "surrogateescape"))
    return digest.hexdigest()


def _raise(error: OSError) -> None:
    raise error
