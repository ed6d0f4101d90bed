"""The image store: content-addressed ACI blobs and an SQLite index.

Layout below the data directory::

    images/blobs/sha512/<hex>   uncompressed ACI tars, named by their SHA-512
    images/index.sqlite         image records (WAL; ``PRAGMA user_version`` is the schema)
    images/tmp/                 imports in progress: ``*.part`` while written, ``*.ready``
                                once verified; each is flock-ed by the importing process

An import streams the (decompressed) archive into ``tmp/<random>.part`` while hashing it,
checks the ACI layout and manifest, fsyncs, renames it to ``tmp/<hex>.ready``, then, holding
SQLite's write lock, links it to ``blobs/sha512/<hex>`` and inserts the record in the same
transaction. A kill at any point leaves no trace once the next store open sweeps ``tmp/``
(unlocked ``.part`` files are deleted; an unlocked ``.ready`` whose record never committed
takes its blob with it), or a complete image. Two processes importing the same image end with
one image: the second finds the record under the write lock and discards its copy.

Imported only by commands that use images; ``sqlite3`` costs about 3 ms.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import sqlite3
import time

from rktcfg.errors import AmbiguousError, NotFoundError, StoreError
from rktcfg.fsutil import fsync_dir, same_file

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from typing import Any, BinaryIO

SCHEMA_VERSION = 1

_MIGRATIONS: dict[int, str] = {
    1: """
    CREATE TABLE images (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        version TEXT,
        labels TEXT NOT NULL,
        manifest TEXT NOT NULL,
        blob_size INTEGER NOT NULL,
        tree_size INTEGER,
        import_time INTEGER NOT NULL,
        last_used INTEGER NOT NULL,
        source TEXT
    );
    CREATE INDEX images_name ON images (name);
    CREATE TABLE remotes (
        url TEXT PRIMARY KEY,
        image_id TEXT NOT NULL,
        etag TEXT,
        max_age INTEGER,
        download_time INTEGER NOT NULL
    );
    """,
}

_LIST_COLUMNS = (
    "id",
    "name",
    "version",
    "labels",
    "NULL AS manifest",
    "blob_size",
    "tree_size",
    "import_time",
    "last_used",
    "source",
)

#: Short IDs must carry at least this many hex digits.
MIN_SHORT_HEX = 12


class ImageRecord:
    """One stored image, as ``image list`` and the rest of rktcfg see it."""

    __slots__ = (
        "_labels",
        "blob_size",
        "id",
        "import_time",
        "last_used",
        "manifest_json",
        "name",
        "source",
        "tree_size",
        "version",
    )

    def __init__(self, row: sqlite3.Row) -> None:
        self.id: str = row["id"]
        self.name: str = row["name"]
        self.version: str | None = row["version"]
        self._labels: str = row["labels"]
        self.manifest_json: str | None = row["manifest"]
        self.blob_size: int = row["blob_size"]
        self.tree_size: int | None = row["tree_size"]
        self.import_time: int = row["import_time"]
        self.last_used: int = row["last_used"]
        self.source: str | None = row["source"]

    @property
    def labels(self) -> dict[str, str]:
        parsed: dict[str, str] = json.loads(self._labels)
        return parsed

    @property
    def name_version(self) -> str:
        return f"{self.name}:{self.version}" if self.version else self.name

    @property
    def short_id(self) -> str:
        return self.id[: len("sha512-") + MIN_SHORT_HEX]

    @property
    def size(self) -> int:
        """Blob plus rendered tree, as ``image list`` shows it."""
        return self.blob_size + (self.tree_size or 0)

    def manifest(self) -> dict[str, Any]:
        if self.manifest_json is None:
            raise ValueError("record was read without its manifest")
        data: dict[str, Any] = json.loads(self.manifest_json)
        return data

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "version": self.version,
            "labels": self.labels,
            "size": self.size,
            "blob_size": self.blob_size,
            "tree_size": self.tree_size,
            "import_time": self.import_time,
            "last_used_time": self.last_used,
            "source": self.source,
        }


class ImportResult:
    __slots__ = ("new", "record")

    def __init__(self, record: ImageRecord, new: bool) -> None:
        self.record = record
        self.new = new


def _now_ns() -> int:
    return time.time_ns()


class ImageStore:
    """The image store of one data directory. Use as a context manager, or ``close()``."""

    def __init__(self, data_dir: str, *, now: Callable[[], int] = _now_ns) -> None:
        self.data_dir = data_dir
        self.root = os.path.join(data_dir, "images")
        self.blobs = os.path.join(self.root, "blobs", "sha512")
        self.tmp = os.path.join(self.root, "tmp")
        self._now = now
        try:
            os.makedirs(self.blobs, mode=0o700, exist_ok=True)
            os.makedirs(self.tmp, mode=0o700, exist_ok=True)
            self.db = sqlite3.connect(
                os.path.join(self.root, "index.sqlite"), timeout=60, isolation_level=None
            )
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"cannot open the image store in {self.root}: {exc}") from None
        self.db.row_factory = sqlite3.Row
        try:
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=FULL")
            self._migrate()
        except sqlite3.Error as exc:
            raise StoreError(f"image index {self.root}/index.sqlite is unusable: {exc}") from None
        self.sweep()

    def __enter__(self) -> ImageStore:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        self.db.close()

    # --- schema ------------------------------------------------------------------------

    def _migrate(self) -> None:
        version = self.db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"image index schema {version} is newer than this rktcfg understands "
                f"({SCHEMA_VERSION}); upgrade rktcfg"
            )
        if version == SCHEMA_VERSION:
            return
        self.db.execute("BEGIN IMMEDIATE")
        try:
            version = self.db.execute("PRAGMA user_version").fetchone()[0]
            for step in range(version + 1, SCHEMA_VERSION + 1):
                for statement in _MIGRATIONS[step].split(";"):
                    if statement.strip():
                        self.db.execute(statement)
                self.db.execute(f"PRAGMA user_version = {step}")
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise

    # --- crash recovery ------------------------------------------------------------------

    def sweep(self) -> list[str]:
        """Remove what interrupted imports left behind; returns the paths removed."""
        try:
            names = os.listdir(self.tmp)
        except OSError:
            return []
        removed: list[str] = []
        for name in names:
            path = os.path.join(self.tmp, name)
            try:
                fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            except OSError:
                continue
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError:
                    continue  # an import in progress in another process
                if name.endswith(".ready"):
                    removed.extend(self._sweep_ready(path, name[: -len(".ready")], fd))
                with _suppress_missing():
                    os.unlink(path)
                removed.append(path)
            finally:
                os.close(fd)
        return removed

    def _sweep_ready(self, path: str, hexdigest: str, fd: int) -> list[str]:
        image_id = "sha512-" + hexdigest
        blob = os.path.join(self.blobs, hexdigest)
        self.db.execute("BEGIN IMMEDIATE")
        try:
            known = self.db.execute("SELECT 1 FROM images WHERE id = ?", (image_id,)).fetchone()
            if not known and same_file(fd, blob):
                os.unlink(blob)
                return [blob]
            return []
        finally:
            self.db.execute("COMMIT")

    # --- import -----------------------------------------------------------------------

    def import_archive(
        self,
        source: BinaryIO,
        *,
        what: str,
        origin: str | None = None,
        validate: Callable[[str], dict[str, Any]],
        max_bytes: int | None = None,
    ) -> ImportResult:
        """Import an (optionally compressed) ACI stream.

        ``validate(tar_path)`` checks the uncompressed tar in place and returns the image
        manifest as decoded JSON; it raises on a bad image, which leaves the store unchanged.
        """
        from rktcfg.image import aci

        fd, part = self._temp_file()
        try:
            with os.fdopen(os.dup(fd), "wb") as out:
                reader = aci.open_decompressed(source)
                image_id, size = aci.copy_hashing(
                    reader, out, max_bytes=max_bytes or aci.DEFAULT_MAX_TAR_BYTES
                )
                out.flush()
                os.fsync(out.fileno())
            manifest = validate(part)
            hexdigest = image_id[len("sha512-") :]
            ready = os.path.join(self.tmp, hexdigest + ".ready")
            os.rename(part, ready)
            part = ready
            fsync_dir(self.tmp)
            return self._commit(image_id, size, manifest, part, origin)
        finally:
            with _suppress_missing():
                os.unlink(part)
            os.close(fd)

    def _temp_file(self) -> tuple[int, str]:
        for _ in range(100):
            path = os.path.join(self.tmp, os.urandom(8).hex() + ".part")
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            except FileExistsError:
                continue
            fcntl.flock(fd, fcntl.LOCK_EX)
            # Another store's sweep may have taken the file for a leftover between the
            # create and the lock, and unlinked it: then the path is not ours, try another.
            if same_file(fd, path):
                return fd, path
            os.close(fd)
        raise StoreError(f"cannot create a temporary file in {self.tmp}")

    def _commit(
        self, image_id: str, size: int, manifest: dict[str, Any], ready: str, origin: str | None
    ) -> ImportResult:
        blob = self.blob_path(image_id)
        labels = {
            str(label.get("name")): str(label.get("value"))
            for label in manifest.get("labels") or []
            if isinstance(label, dict)
        }
        now = self._now()
        self.db.execute("BEGIN IMMEDIATE")
        try:
            if self._row(image_id) is not None:
                self.db.execute("UPDATE images SET last_used = ? WHERE id = ?", (now, image_id))
                self.db.execute("COMMIT")
                return ImportResult(self.get(image_id), new=False)
            try:
                os.link(ready, blob)
            except FileExistsError:  # left by an import killed before its commit
                os.unlink(blob)
                os.link(ready, blob)
            fsync_dir(self.blobs)
            self.db.execute(
                "INSERT INTO images (id, name, version, labels, manifest, blob_size, tree_size,"
                " import_time, last_used, source) VALUES (?, ?, ?, ?, ?, ?, NULL, ?, ?, ?)",
                (
                    image_id,
                    manifest["name"],
                    labels.get("version"),
                    json.dumps(labels, sort_keys=True),
                    json.dumps(manifest),
                    size,
                    now,
                    now,
                    origin,
                ),
            )
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        return ImportResult(self.get(image_id), new=True)

    # --- lookup ---------------------------------------------------------------------------

    def blob_path(self, image_id: str) -> str:
        return os.path.join(self.blobs, image_id[len("sha512-") :])

    def _row(self, image_id: str) -> sqlite3.Row | None:
        row: sqlite3.Row | None = self.db.execute(
            "SELECT * FROM images WHERE id = ?", (image_id,)
        ).fetchone()
        return row

    def get(self, image_id: str) -> ImageRecord:
        row = self._row(image_id)
        if row is None:
            raise NotFoundError(f"no image {image_id}")
        return ImageRecord(row)

    def records(self, *, with_manifest: bool = True) -> list[ImageRecord]:
        """Every image; ``with_manifest=False`` skips reading the manifests (for listings)."""
        columns = "*" if with_manifest else ", ".join(_LIST_COLUMNS)
        rows = self.db.execute(f"SELECT {columns} FROM images ORDER BY id")
        return [ImageRecord(r) for r in rows]

    def find(self, name: str, labels: dict[str, str] | None = None) -> list[ImageRecord]:
        """Images named ``name`` whose labels include every given label."""
        wanted = labels or {}
        rows = self.db.execute(
            "SELECT * FROM images WHERE name = ? ORDER BY import_time DESC", (name,)
        )
        found = [ImageRecord(r) for r in rows]
        return [r for r in found if all(r.labels.get(k) == v for k, v in wanted.items())]

    def resolve(self, ref: str) -> ImageRecord:
        """An image by full or short ID (``sha512-`` + 12 or more hex), or ``name[:version]``."""
        if ref.startswith("sha512-"):
            hexpart = ref[len("sha512-") :]
            if len(hexpart) < MIN_SHORT_HEX or any(c not in "0123456789abcdef" for c in hexpart):
                raise NotFoundError(
                    f"{ref!r} is not an image ID (sha512- and at least {MIN_SHORT_HEX} hex digits)"
                )
            rows = self.db.execute(
                "SELECT * FROM images WHERE id >= ? AND id < ? ORDER BY id LIMIT 6",
                (ref, ref + "g"),
            ).fetchall()
            matches = [ImageRecord(r) for r in rows]
        else:
            name, _, version = ref.partition(":")
            matches = self.find(name, {"version": version} if version else None)
        if not matches:
            raise NotFoundError(f"no image matches {ref!r}")
        if len(matches) > 1:
            shown = ", ".join(f"{m.short_id} ({m.name_version})" for m in matches[:5])
            raise AmbiguousError(f"{ref!r} is ambiguous: {len(matches)} images match: {shown}")
        return matches[0]

    # --- remote sources (HTTP caching) ------------------------------------------------------

    def remote(self, url: str) -> dict[str, Any] | None:
        """What the last download of ``url`` gave: image_id, etag, max_age, download_time."""
        row = self.db.execute("SELECT * FROM remotes WHERE url = ?", (url,)).fetchone()
        if row is None or self._row(row["image_id"]) is None:
            return None
        return dict(row)

    def set_remote(self, url: str, image_id: str, etag: str | None, max_age: int | None) -> None:
        self.db.execute(
            "INSERT OR REPLACE INTO remotes (url, image_id, etag, max_age, download_time)"
            " VALUES (?, ?, ?, ?, ?)",
            (url, image_id, etag, max_age, self._now()),
        )

    def download_path(self, url: str) -> str:
        """Where a download of ``url`` is kept while incomplete (so it can be resumed)."""
        import hashlib

        directory = os.path.join(self.root, "downloads")
        os.makedirs(directory, mode=0o700, exist_ok=True)
        return os.path.join(directory, hashlib.sha256(url.encode()).hexdigest())

    def touch(self, image_id: str) -> None:
        self.db.execute("UPDATE images SET last_used = ? WHERE id = ?", (self._now(), image_id))

    def set_tree_size(self, image_id: str, size: int | None) -> None:
        self.db.execute("UPDATE images SET tree_size = ? WHERE id = ?", (size, image_id))

    # --- removal ----------------------------------------------------------------------------

    def remove(self, image_id: str) -> None:
        """Delete an image's record and blob (the record first, so a crash leaves no record
        pointing at nothing; the orphan blob is removed on the next ``remove`` or ``verify``)."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            if self._row(image_id) is None:
                raise NotFoundError(f"no image {image_id}")
            self.db.execute("DELETE FROM images WHERE id = ?", (image_id,))
            self.db.execute("DELETE FROM remotes WHERE image_id = ?", (image_id,))
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        with _suppress_missing():
            os.unlink(self.blob_path(image_id))

    def gc(self, *, grace_ns: int, in_use: set[str]) -> tuple[list[str], list[str]]:
        """Remove images not used for ``grace_ns`` and not in ``in_use``, and blobs no record
        names. Returns (image IDs removed, orphan blob paths removed)."""
        cutoff = self._now() - grace_ns
        stale = [
            row[0]
            for row in self.db.execute("SELECT id FROM images WHERE last_used < ?", (cutoff,))
            if row[0] not in in_use
        ]
        for image_id in stale:
            self.remove(image_id)
        # Under the write lock: an import links its blob and commits its record while holding
        # it, so a blob seen here without a record really is an orphan.
        self.db.execute("BEGIN IMMEDIATE")
        try:
            orphans = list(self.orphan_blobs())
            for path in orphans:
                with _suppress_missing():
                    os.unlink(path)
        finally:
            self.db.execute("COMMIT")
        return stale, orphans

    def orphan_blobs(self) -> Iterator[str]:
        """Blob files that no record names."""
        known = {row[0] for row in self.db.execute("SELECT id FROM images")}
        for name in os.listdir(self.blobs):
            if "sha512-" + name not in known:
                yield os.path.join(self.blobs, name)


class _suppress_missing:
    """``contextlib.suppress(FileNotFoundError)`` without importing contextlib."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: object, value: object, tb: object) -> bool:
        return isinstance(value, OSError) and value.errno == errno.ENOENT
