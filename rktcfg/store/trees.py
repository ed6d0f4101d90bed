"""The tree store: each image's root filesystem rendered with its dependencies, once.

Layout below the data directory::

    trees/<image-id>/rootfs     the rendered tree, shared read-only by pods (overlay lowerdir)
    trees/<image-id>/listing    one JSON line per entry (path, type, mode, owner, size, sha256
                                or symlink target), sorted by path; its SHA-256 is the tree hash
    trees/<image-id>/complete   JSON {image_id, layers, size, tree_hash}: written last; a tree
                                without it is incomplete
    trees/<image-id>.lock       flock-ed by whoever renders, repairs or removes that tree
    trees/tmp-<random>/         a render (or a removal) in progress, flock-ed by its process

Rendering, under ``<image-id>.lock``: resolve the dependencies
(:func:`rktcfg.image.deps.resolve_dependencies`), make and flock ``tmp-<random>/``, check each
layer's blob still hashes to its ID, extract the layers in
:func:`~rktcfg.image.deps.render_order` into ``tmp-<random>/rootfs`` with
:func:`rktcfg.image.tarsafe.extract` (later layers replace earlier entries; an existing symlink
is replaced, never followed, when a later layer has a directory of that name), apply the
whitelists, hash the tree, ``sync(2)``, write ``listing`` and ``complete`` (fsync-ed), then
rename the directory to ``<image-id>``. A kill at any point leaves either a complete tree or
an unlocked ``tmp-*`` that :meth:`TreeStore.sweep` removes. A second render finds the complete
tree and returns it; two processes rendering at once serialize on the lock, and the second
finds the first one's tree.

pathWhitelist, exactly:

- the rendered image's own whitelist, when non-empty, applies to the finished tree: every
  non-directory (file, symlink, device, fifo) whose path in the tree is not listed is removed;
  directories always stay, so listed files keep their parents (as the Go renderer does);
- a dependency's whitelist applies to the layers of that dependency and of what it depends
  on: a non-directory member of such a layer is extracted only if its path (as the archive
  names it) is in the whitelist of every whitelisted dependency above it on its first path
  through the graph. A hard link kept by a filter keeps its target for the time of that
  layer's extraction; a target that is itself filtered out is removed right after.

Nothing inside ``rootfs`` is chmod-ed: modes and owners are the image's. The tree directory
is 0755 and everything below ``trees/`` belongs to the user who rendered it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import tarfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from rktcfg.errors import NotFoundError, RktcfgError, StoreError
from rktcfg.fsutil import flock_fd, fsync_dir, same_file
from rktcfg.image import aci, tarsafe
from rktcfg.image.deps import Fetch, render_order, resolve_dependencies
from rktcfg.names import IMAGE_ID
from rktcfg.store.images import ImageStore

__all__ = ["TreeRecord", "TreeStore", "tree_listing"]

COMPLETE = "complete"
LISTING = "listing"
ROOTFS = "rootfs"
TREE_MODE = 0o755
_TMP_PREFIX = "tmp-"
_LOCK_SUFFIX = ".lock"
_CHUNK = 1 << 20

_TYPE_NAMES = {
    "d": "a directory",
    "f": "a file",
    "l": "a symlink",
    "c": "a character device",
    "b": "a block device",
    "p": "a fifo",
    "s": "a socket",
}


@dataclass(frozen=True, slots=True, kw_only=True)
class TreeRecord:
    """What ``trees/<id>/complete`` says about a rendered tree."""

    image_id: str
    #: Image IDs in the order their layers were applied (dependencies first, the image last).
    layers: tuple[str, ...]
    #: Bytes of regular files, each hard-linked inode counted once.
    size: int
    #: ``sha256-`` and the SHA-256 of the listing (see :func:`tree_listing`).
    tree_hash: str

    def as_dict(self) -> dict[str, object]:
        return {
            "image_id": self.image_id,
            "layers": list(self.layers),
            "size": self.size,
            "tree_hash": self.tree_hash,
        }

    @classmethod
    def from_json(cls, data: bytes) -> TreeRecord | None:
        """The record, or None if ``data`` is not a well-formed one."""
        try:
            doc = json.loads(data)
            image_id, layers = doc["image_id"], doc["layers"]
            size, tree_hash = doc["size"], doc["tree_hash"]
        except (ValueError, TypeError, KeyError):
            return None
        if not (
            isinstance(image_id, str)
            and isinstance(layers, list)
            and all(isinstance(layer, str) for layer in layers)
            and isinstance(size, int)
            and isinstance(tree_hash, str)
        ):
            return None
        return cls(image_id=image_id, layers=tuple(layers), size=size, tree_hash=tree_hash)


# --- listing and hashing -----------------------------------------------------------------


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "d"
    if stat.S_ISREG(mode):
        return "f"
    if stat.S_ISLNK(mode):
        return "l"
    if stat.S_ISCHR(mode):
        return "c"
    if stat.S_ISBLK(mode):
        return "b"
    if stat.S_ISFIFO(mode):
        return "p"
    return "s"


def _file_digest(path: str) -> str:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        return f"unreadable: {exc.strerror}"
    digest = hashlib.sha256()
    try:
        while chunk := os.read(fd, _CHUNK):
            digest.update(chunk)
    except OSError as exc:
        return f"unreadable: {exc.strerror}"
    finally:
        os.close(fd)
    return digest.hexdigest()


def _walk(rootfs: str) -> Iterable[tuple[str, str, os.stat_result]]:
    """(path in the tree, host path, lstat) of ``rootfs`` and everything below, unordered;
    symlinks are not followed."""
    yield "/", rootfs, os.lstat(rootfs)
    todo = [("", rootfs)]
    while todo:
        prefix, directory = todo.pop()
        with os.scandir(directory) as entries:
            children = [(entry.name, entry.path) for entry in entries]
        for name, host in children:
            st = os.lstat(host)
            path = f"{prefix}/{name}"
            yield path, host, st
            if stat.S_ISDIR(st.st_mode):
                todo.append((path, host))


def tree_listing(rootfs: str) -> tuple[bytes, int]:
    """The listing of a tree and its size (bytes of regular files, hard links counted once).

    One JSON line per entry, sorted by path bytes: ``[path, type, mode, uid, gid, size,
    detail]`` where type is one of ``d f l c b p s``, mode the permission bits, size that of a
    regular file (else 0), and detail the SHA-256 of a file's content, a symlink's target, a
    device's ``major,minor``, or "". Modification times are left out, so the same layers
    always give the same listing.
    """
    lines: list[tuple[bytes, bytes]] = []
    digests: dict[tuple[int, int], str] = {}
    size = 0
    for path, host, st in _walk(rootfs):
        kind = _kind(st.st_mode)
        length = 0
        detail = ""
        if kind == "f":
            length = st.st_size
            inode = (st.st_dev, st.st_ino)
            known = digests.get(inode)
            if known is None:
                size += st.st_size
                known = digests[inode] = _file_digest(host)
            detail = known
        elif kind == "l":
            detail = os.readlink(host)
        elif kind in ("c", "b"):
            detail = f"{os.major(st.st_rdev)},{os.minor(st.st_rdev)}"
        entry = [path, kind, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, length, detail]
        line = json.dumps(entry, separators=(",", ":")).encode()
        lines.append((os.fsencode(path), line))
    lines.sort()
    return b"".join(line + b"\n" for _, line in lines), size


def _listing_hash(listing: bytes) -> str:
    return "sha256-" + hashlib.sha256(listing).hexdigest()


def _entries(listing: bytes) -> dict[str, list[object]] | None:
    try:
        rows = [json.loads(line) for line in listing.splitlines()]
        return {str(row[0]): row for row in rows}
    except (ValueError, TypeError, IndexError, KeyError):
        return None


def _differences(path: str, want: list[object], got: list[object]) -> list[str]:
    if want[1] != got[1]:
        return [
            f"{path}: must be {_TYPE_NAMES.get(str(want[1]), want[1])} "
            f"(got {_TYPE_NAMES.get(str(got[1]), got[1])})"
        ]
    found: list[str] = []
    if want[2] != got[2]:
        found.append(f"{path}: mode must be {want[2]:04o} (got {got[2]:04o})")
    if want[3:5] != got[3:5]:
        found.append(f"{path}: owner must be {want[3]}:{want[4]} (got {got[3]}:{got[4]})")
    if want[1] == "l" and want[6] != got[6]:
        found.append(f"{path}: symlink target must be {want[6]} (got {got[6]})")
    elif want[5:] != got[5:]:
        found.append(f"{path}: content differs from the image")
    return found


# --- paths inside the tree ---------------------------------------------------------------


def _normal(path: str) -> str:
    return tarsafe.in_root_path(path.split("/"))


def _member_path(name: str) -> str | None:
    """The path in the tree of an ACI member name (``rootfs/etc/x`` -> ``/etc/x``)."""
    parts = [part for part in name.split("/") if part and part != "."]
    if not parts or parts[0] != ROOTFS:
        return None
    return tarsafe.in_root_path(parts[1:])


# --- locks and directories ---------------------------------------------------------------


def _lock_file(path: str, *, blocking: bool) -> int | None:
    """An fd holding an exclusive flock on the lock file ``path`` (created if missing), or None
    when another process holds it and ``blocking`` is False. Lock files may be unlinked by
    their holder: a lock taken on a file that is no longer at ``path`` is retried."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        if not flock_fd(fd, blocking=blocking):
            os.close(fd)
            return None
        if same_file(fd, path):
            return fd
        os.close(fd)


def _lock_dir(path: str, *, blocking: bool) -> int | None:
    """An fd holding an exclusive flock on the directory ``path``, or None when it is held
    elsewhere (``blocking`` False), is gone, or is no longer at ``path`` once locked."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    if not flock_fd(fd, blocking=blocking):
        os.close(fd)
        return None
    if same_file(fd, path):
        return fd
    os.close(fd)
    return None


class _TreeLock:
    """``with _TreeLock(path):`` holds ``trees/<id>.lock``; ``unlink`` removes it on release."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.fd: int | None = None
        self.unlink = False

    def __enter__(self) -> _TreeLock:
        try:
            self.fd = _lock_file(self.path, blocking=True)
        except OSError as exc:
            raise StoreError(f"cannot lock {self.path}: {exc.strerror}") from None
        return self

    def __exit__(self, *_: object) -> None:
        assert self.fd is not None
        try:
            if self.unlink:
                try:  # noqa: SIM105 - contextlib is not worth importing for this
                    os.unlink(self.path)
                except FileNotFoundError:
                    pass
        finally:
            os.close(self.fd)
            self.fd = None


def _write_synced(path: str, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)


def _discard(fd: int, path: str) -> None:
    """Delete the directory ``path`` whose flock ``fd`` holds, then let go of the lock."""
    try:
        shutil.rmtree(path, ignore_errors=True)
    finally:
        os.close(fd)


# --- layers ------------------------------------------------------------------------------


def _layer_filter(
    blob: str, filters: tuple[tuple[str, ...], ...]
) -> tuple[Callable[[str], bool] | None, set[str]]:
    """The ``keep`` callback for a layer with whitelist filters, and the paths it keeps only
    because a kept hard link needs them (to remove once the layer is extracted)."""
    if not filters:
        return None, set()
    allowed = set.intersection(*({_normal(path) for path in whitelist} for whitelist in filters))
    links: dict[str, str] = {}
    with tarfile.open(blob, "r:") as tar:
        while (member := tar.next()) is not None:
            kept = getattr(tar, "members", None)  # TarFile keeps every member otherwise
            if isinstance(kept, list):
                kept.clear()
            if member.islnk():
                name, target = _member_path(member.name), _member_path(member.linkname)
                if name is not None and target is not None:
                    links[name] = target
    extra: set[str] = set()
    for name in allowed:
        current, hops = name, 0
        while (target := links.get(current)) is not None and hops < len(links):
            if target not in allowed:
                extra.add(target)
            current, hops = target, hops + 1
    kept = allowed | extra
    return kept.__contains__, extra


def _apply_whitelist(rootfs: str, whitelist: Iterable[str]) -> int:
    """Remove every non-directory of the tree whose path is not listed; how many went."""
    listed = {_normal(path) for path in whitelist}
    doomed = [
        host
        for path, host, st in _walk(rootfs)
        if not stat.S_ISDIR(st.st_mode) and path not in listed
    ]
    for host in doomed:
        os.unlink(host)
    return len(doomed)


class TreeStore:
    """Rendered trees of one data directory, next to (and using) its image store."""

    def __init__(self, data_dir: str, images: ImageStore) -> None:
        self.root = os.path.join(data_dir, "trees")
        self.images = images
        try:
            os.makedirs(self.root, mode=0o700, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot open the tree store in {self.root}: {exc}") from None

    # --- paths -----------------------------------------------------------------------------

    def _tree(self, image_id: str) -> str:
        if not IMAGE_ID.match(image_id):
            raise NotFoundError(
                f"no tree for {image_id!r}: trees are named by full image IDs "
                "(sha512- and 128 hex digits)"
            )
        return os.path.join(self.root, image_id)

    def _lock(self, image_id: str) -> _TreeLock:
        return _TreeLock(self._tree(image_id) + _LOCK_SUFFIX)

    def rootfs(self, image_id: str) -> str:
        """Where the rendered tree of ``image_id`` is (or would be)."""
        return os.path.join(self._tree(image_id), ROOTFS)

    # --- lookup ----------------------------------------------------------------------------

    def record(self, image_id: str) -> TreeRecord | None:
        """The ``complete`` record of the tree of ``image_id``; None if there is no complete
        tree (or its record is unreadable)."""
        try:
            with open(os.path.join(self._tree(image_id), COMPLETE), "rb") as handle:
                data = handle.read(1 << 20)
        except OSError:
            return None
        record = TreeRecord.from_json(data)
        if record is None or record.image_id != image_id:
            return None
        return record

    def get(self, image_id: str) -> str | None:
        """The rootfs path of the tree of ``image_id`` if it is rendered and complete."""
        if self.record(image_id) is None:
            return None
        rootfs = self.rootfs(image_id)
        return rootfs if os.path.isdir(rootfs) else None

    def ids(self) -> list[str]:
        """Image IDs that have a complete tree."""
        try:
            names = os.listdir(self.root)
        except OSError:
            return []
        return sorted(name for name in names if IMAGE_ID.match(name) and self.get(name))

    # --- rendering -------------------------------------------------------------------------

    def render(self, image_id: str, *, fetch: Fetch | None = None) -> str:
        """Render ``image_id`` with its dependencies, once; returns the rootfs path.

        A tree that is already complete is returned as it is. ``fetch(name, labels)`` brings
        a missing dependency into the image store (see
        :func:`rktcfg.image.deps.resolve_dependencies`); without it a missing dependency is a
        NotFoundError. Records the tree's size in the image record.
        """
        found = self.get(image_id)
        if found is not None:
            return found
        with self._lock(image_id):
            found = self.get(image_id)
            if found is not None:
                return found
            self._render_locked(image_id, fetch)
        return self.rootfs(image_id)

    def _render_locked(self, image_id: str, fetch: Fetch | None) -> TreeRecord:
        """Render into a temporary directory and put it in place of whatever tree is there.
        The caller holds the tree's lock."""
        resolved = resolve_dependencies(self.images, image_id, fetch=fetch)
        order = render_order(resolved, image_id)
        manifest = next(image.manifest for image in resolved if image.id == image_id)
        fd, tmp = self._make_temp()
        installed = False
        try:
            rootfs = os.path.join(tmp, ROOTFS)
            os.mkdir(rootfs, 0o755)
            for layer_id, filters in order:
                self._apply_layer(layer_id, rootfs, filters)
            if manifest.path_whitelist:
                _apply_whitelist(rootfs, manifest.path_whitelist)
            listing, size = tree_listing(rootfs)
            record = TreeRecord(
                image_id=image_id,
                layers=tuple(layer_id for layer_id, _ in order),
                size=size,
                tree_hash=_listing_hash(listing),
            )
            # Every file of the tree on disk before the record says it is complete (rkt calls
            # syncfs(2) on the tree; sync(2) is the standard library's nearest).
            os.sync()
            _write_synced(os.path.join(tmp, LISTING), listing)
            _write_synced(
                os.path.join(tmp, COMPLETE),
                (json.dumps(record.as_dict(), sort_keys=True) + "\n").encode(),
            )
            os.chmod(tmp, TREE_MODE)
            fsync_dir(tmp)
            self._install(tmp, image_id)
            installed = True
        except OSError as exc:
            raise StoreError(f"cannot render {image_id}: {exc}") from None
        finally:
            if not installed:
                shutil.rmtree(tmp, ignore_errors=True)
            os.close(fd)
        self.images.set_tree_size(image_id, record.size)
        return record

    def _apply_layer(
        self, layer_id: str, rootfs: str, filters: tuple[tuple[str, ...], ...]
    ) -> None:
        blob = self.images.blob_path(layer_id)
        try:
            actual, _ = aci.hash_file(blob)
        except OSError as exc:
            raise StoreError(f"cannot read the blob of image {layer_id}: {exc.strerror}") from None
        if actual != layer_id:
            raise StoreError(
                f"the blob of image {layer_id} is damaged (it hashes to {actual}); "
                "remove the image and fetch it again"
            )
        keep, extra = _layer_filter(blob, filters)
        with tarfile.open(blob, "r:") as tar:
            tarsafe.extract(tar, rootfs, prefix=ROOTFS, keep=keep)
        for path in extra:
            host = tarsafe.resolve_in_root(rootfs, path, follow_final=False)
            try:
                if not stat.S_ISDIR(os.lstat(host).st_mode):
                    os.unlink(host)
            except FileNotFoundError:
                pass

    def _make_temp(self) -> tuple[int, str]:
        """A new ``tmp-<random>`` directory and an fd holding its flock."""
        for _ in range(100):
            path = os.path.join(self.root, _TMP_PREFIX + os.urandom(8).hex())
            try:
                os.mkdir(path, 0o700)
            except FileExistsError:
                continue
            fd = _lock_dir(path, blocking=True)
            if fd is not None:  # else a sweep took it before it was locked
                return fd, path
        raise StoreError(f"cannot create a temporary directory in {self.root}")

    def _install(self, tmp: str, image_id: str) -> None:
        """Rename the finished ``tmp`` to the tree's name, retiring any tree there first.

        Two renames, not one exchange: between them the tree is missing, which a reader sees
        as "not rendered" (and then waits for the lock). A kill between them leaves two
        unlocked ``tmp-*`` directories that :meth:`sweep` removes.
        """
        target = self._tree(image_id)
        retired = self._retire(target)
        try:
            os.rename(tmp, target)
            fsync_dir(self.root)
        finally:
            if retired is not None:
                _discard(*retired)

    def _retire(self, target: str) -> tuple[int, str] | None:
        """Move whatever is at ``target`` out of the way, to a locked ``tmp-*`` directory."""
        try:
            st = os.lstat(target)
        except FileNotFoundError:
            return None
        if not stat.S_ISDIR(st.st_mode):
            os.unlink(target)
            return None
        fd = _lock_dir(target, blocking=True)
        if fd is None:
            return None
        for _ in range(100):
            path = os.path.join(self.root, _TMP_PREFIX + os.urandom(8).hex())
            if not os.path.lexists(path):
                os.rename(target, path)
                fsync_dir(self.root)
                return fd, path
        os.close(fd)
        raise StoreError(f"cannot create a temporary directory in {self.root}")

    # --- removal ---------------------------------------------------------------------------

    def remove(self, image_id: str) -> None:
        """Delete the tree of ``image_id`` (nothing if there is none) and forget its size.
        The caller makes sure no pod uses it."""
        with self._lock(image_id) as lock:
            retired = self._retire(self._tree(image_id))
            if retired is not None:
                _discard(*retired)
            self.images.set_tree_size(image_id, None)
            lock.unlink = True

    def sweep(self) -> list[str]:
        """Remove what interrupted renders left: unlocked ``tmp-*`` directories, trees without
        a ``complete`` record, and lock files of trees that do not exist. Returns the paths
        removed. Renders in progress (their locks held) are left alone."""
        try:
            names = sorted(os.listdir(self.root))
        except OSError:
            return []
        removed: list[str] = []
        for name in names:
            path = os.path.join(self.root, name)
            if name.startswith(_TMP_PREFIX):
                if self._sweep_temp(path):
                    removed.append(path)
            elif IMAGE_ID.match(name):
                if not os.path.lexists(os.path.join(path, COMPLETE)) and self._sweep_tree(name):
                    removed.append(path)
            elif name.endswith(_LOCK_SUFFIX) and IMAGE_ID.match(name[: -len(_LOCK_SUFFIX)]):
                tree = path[: -len(_LOCK_SUFFIX)]
                if not os.path.lexists(tree) and self._sweep_lock(path, tree):
                    removed.append(path)
        return removed

    def _sweep_temp(self, path: str) -> bool:
        if not os.path.isdir(path) or os.path.islink(path):
            os.unlink(path)
            return True
        fd = _lock_dir(path, blocking=False)
        if fd is None:
            return False  # a render in progress
        _discard(fd, path)
        return True

    def _sweep_tree(self, image_id: str) -> bool:
        fd = _lock_file(self._tree(image_id) + _LOCK_SUFFIX, blocking=False)
        if fd is None:
            return False
        try:
            tree = self._tree(image_id)
            if os.path.lexists(os.path.join(tree, COMPLETE)):
                return False  # completed meanwhile
            retired = self._retire(tree)
            if retired is not None:
                _discard(*retired)
            self.images.set_tree_size(image_id, None)
            return True
        finally:
            os.close(fd)

    def _sweep_lock(self, path: str, tree: str) -> bool:
        fd = _lock_file(path, blocking=False)
        if fd is None:
            return False
        try:
            if os.path.lexists(tree):
                return False
            os.unlink(path)
            return True
        finally:
            os.close(fd)

    # --- verification ----------------------------------------------------------------------

    def verify(self, image_id: str, *, repair: bool) -> list[str]:
        """Re-hash the tree of ``image_id`` and the blobs it was rendered from; returns the
        problems found (empty: all is well). With ``repair`` a damaged or incomplete tree is
        rendered again (into a temporary directory, then put in its place); the problems are
        still returned, followed by ``not repaired: ...`` if that failed. A damaged blob is
        only reported (fetch the image again). No tree at all is a NotFoundError.

        Repairing replaces the tree under any pod that uses it: do it with no pod running.
        """
        tree = self._tree(image_id)
        with self._lock(image_id):
            if not os.path.lexists(tree):
                raise NotFoundError(f"no rendered tree for {image_id}")
            record = self.record(image_id)
            if record is None:
                tree_problems = [f"{tree}: incomplete render (no readable {COMPLETE} record)"]
                layers: tuple[str, ...] = (image_id,)
            else:
                tree_problems = self._check_tree(tree, record)
                layers = record.layers
            blob_problems = [p for p in (self._check_blob(layer) for layer in layers) if p]
            problems = tree_problems + blob_problems
            if repair and tree_problems:
                if blob_problems:
                    problems.append("not repaired: an image blob is damaged; fetch it again")
                else:
                    try:
                        self._render_locked(image_id, None)
                    except RktcfgError as exc:
                        problems.append(f"not repaired: {exc.message}")
        return problems

    def _check_tree(self, tree: str, record: TreeRecord) -> list[str]:
        rootfs = os.path.join(tree, ROOTFS)
        if not os.path.isdir(rootfs) or os.path.islink(rootfs):
            return [f"{rootfs}: missing"]
        actual, _ = tree_listing(rootfs)
        if _listing_hash(actual) == record.tree_hash:
            return []
        try:
            with open(os.path.join(tree, LISTING), "rb") as handle:
                stored: bytes | None = handle.read()
        except OSError:
            stored = None
        want = _entries(stored) if stored and _listing_hash(stored) == record.tree_hash else None
        got = _entries(actual)
        if want is None or got is None:
            return [f"{rootfs}: tree hash must be {record.tree_hash} (got {_listing_hash(actual)})"]
        problems: list[str] = []
        for path in sorted(set(want) | set(got), key=os.fsencode):
            if path not in got:
                problems.append(f"{path}: missing")
            elif path not in want:
                problems.append(f"{path}: not in the image")
            elif want[path] != got[path]:
                problems.extend(_differences(path, want[path], got[path]))
        return problems

    def _check_blob(self, image_id: str) -> str | None:
        blob = self.images.blob_path(image_id)
        try:
            actual, _ = aci.hash_file(blob)
        except OSError as exc:
            return f"blob of image {image_id}: cannot be read ({exc.strerror})"
        if actual != image_id:
            return f"blob of image {image_id}: damaged (it hashes to {actual})"
        return None
