"""Convert an OCI image into an ACI, so that it enters the store like any other image.

Three inputs are read, all through :func:`convert_oci`:

- an OCI image layout directory (``oci-layout``, ``index.json``, ``blobs/<alg>/<hex>``);
- a tar of such a layout (optionally gzip, bzip2 or xz compressed);
- the tar ``docker save`` writes: ``manifest.json`` (``Config``, ``RepoTags``, ``Layers``)
  with one directory per layer, or, from Docker 25 on, an OCI layout next to it. When
  ``index.json`` is present it is preferred, else ``manifest.json`` is read.

Choosing the image: an index (nested indexes followed) gives the image manifests for this
host's platform (``linux/amd64``, ``linux/arm64``, ``linux/arm/v7``, ...); entries without a
platform are candidates too, and their config is checked against the host afterwards. Several
candidates need a ``reference``, matched against the ``org.opencontainers.image.ref.name`` and
``io.containerd.image.name`` annotations (for ``manifest.json``: the ``RepoTags``), literally
or after Docker's normalisation (``busybox:1.36`` is ``docker.io/library/busybox:1.36``).
Every blob is checked against its descriptor's size and digest (sha256 or sha512) before it
is used, and every layer, once decompressed, against the config's ``rootfs.diff_ids``.

Layers are tar, tar+gzip, or tar+zstd when the ``zstandard`` module is installed. They are
decompressed into a private directory under ``work_dir`` and applied *at the tar level*,
never extracted, so owners, setuid bits, device nodes and xattrs survive without root:

1. the headers of each layer, in order, are applied to an in-memory tree with OCI semantics:
   the layer's whiteouts first (``.wh.<name>`` removes a lower layer's ``<name>``,
   ``.wh..wh..opq`` empties its directory of lower-layer entries; markers are never output),
   then its entries (a later entry replaces an earlier one; a directory over a directory
   keeps the children and takes the new attributes). Parent directories that are symlinks
   in the tree are followed within the tree, as extraction would;
2. the ACI is written: ``manifest``, then ``rootfs`` and ``rootfs/<path>`` for every surviving
   path in the byte order of its encoded name, each copying the providing member's header
   (mode, uid, gid, mtime, link name, device numbers, ``SCHILY.xattr.*`` pax records, with
   empty user and group names) and data.

Hard links: the target must exist, and not be a directory, when the link is applied. A link
shares its target's content the way a file system inode does: if the target is later replaced
or whited out, the link keeps the original data, so the ACI carries that data under the
surviving name (materialised; no error). Of each set of surviving names that share content,
the first in output order carries the data and the rest are hard links to it.

Names: member names lose ``./``, leading ``/`` and doubled slashes; any ``..`` component is an
:class:`~rktcfg.errors.ArchiveError`. The image name comes from the ``name`` argument, or from
the image's reference: Docker-normalised, lowercased, every character outside
``[a-z0-9-._~/]`` replaced by ``-`` (a registry port's ``:``, a space; ``_`` is an AC
Identifier character and stays), each run of separators shortened to its first character
(``a__b`` is ``a_b``, ``a/-b`` is ``a/b``), separators at either end dropped
(:func:`ac_identifier`). The tag becomes the ``version`` label (``latest`` if none). Label
names become annotation names by the same rule; a label that maps to nothing, to a name
already taken or to a value the annotation does not allow is dropped, with a warning.

The same input converts to byte-identical ACIs, so to the same image ID.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib
import io
import json
import os
import re
import shutil
import stat
import tarfile
import tempfile
import zlib
from dataclasses import dataclass
from typing import IO, Any, BinaryIO, Protocol

from rktcfg.errors import ArchiveError, ImageError, NotFoundError, RuntimeFailure, ValidationError
from rktcfg.image.manifest import (
    ENV_NAME,
    SPEC_VERSION,
    host_os_arch,
    image_manifest_to_json,
    parse_image_manifest,
)
from rktcfg.image.tarsafe import DEFAULT_MAX_MEMBERS
from rktcfg.names import AC_IDENTIFIER, AC_IDENTIFIER_RULE, AC_NAME
from rktcfg.rootpath import MAX_LINK_HOPS

__all__ = [
    "CONFIG_DIGEST_ANNOTATION",
    "DEFAULT_MAX_BYTES",
    "MANIFEST_DIGEST_ANNOTATION",
    "OciConversion",
    "ac_identifier",
    "ac_name",
    "convert_oci",
    "oci_platform",
]

#: Refuse images whose layers hold more than this, uncompressed, all together.
DEFAULT_MAX_BYTES = 8 << 30
#: The annotation that records the OCI manifest the ACI was made from.
MANIFEST_DIGEST_ANNOTATION = "rktcfg.dev/oci-manifest-digest"
#: The annotation that records the OCI image config (Docker's image ID).
CONFIG_DIGEST_ANNOTATION = "rktcfg.dev/oci-config-digest"

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
_INDEX_TYPES = frozenset({OCI_INDEX, DOCKER_LIST})
_MANIFEST_TYPES = frozenset({OCI_MANIFEST, DOCKER_MANIFEST})
_CONFIG_TYPES = frozenset({OCI_CONFIG, DOCKER_CONFIG})
#: Layer media types and the compression each one means.
_LAYER_TYPES = {
    "application/vnd.oci.image.layer.v1.tar": "tar",
    "application/vnd.oci.image.layer.v1.tar+gzip": "gzip",
    "application/vnd.oci.image.layer.v1.tar+zstd": "zstd",
    "application/vnd.oci.image.layer.nondistributable.v1.tar": "tar",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip": "gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd": "zstd",
    "application/vnd.docker.image.rootfs.diff.tar": "tar",
    "application/vnd.docker.image.rootfs.diff.tar.gzip": "gzip",
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip": "gzip",
}
_REF_NAME = "org.opencontainers.image.ref.name"
_CONTAINERD_NAME = "io.containerd.image.name"
_DOCKER_REFERENCE_TYPE = "vnd.docker.reference.type"  # buildx attestations: not an image

_DIGEST = re.compile(r"^(sha256:[0-9a-f]{64}|sha512:[0-9a-f]{128})$")
_BLOB_PATH = re.compile(r"^blobs/(sha256|sha512)/([0-9a-f]{64}|[0-9a-f]{128})$")
_DOCKER_CONFIG_PATH = re.compile(r"^(?:.*/)?([0-9a-f]{64})\.json$")
_PAX_TIME = re.compile(r"^-?[0-9]+(\.[0-9]+)?$")
_IDENTIFIER_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-._~/")
_IDENTIFIER_SEPARATORS = "-._~/"

_CHUNK = 1 << 20
_MAX_JSON = 4 << 20  # index, manifest and config documents are read into memory
_MAX_INDEX_DEPTH = 8
_WHITEOUT = ".wh."
_OPAQUE = ".wh..wh..opq"
_GZIP_MAGIC = b"\x1f\x8b"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_READ_ERRORS = (tarfile.TarError, OSError, EOFError, zlib.error, UnicodeError)

#: appc arch (``host_os_arch``) -> OCI architecture and variant.
_APPC_TO_OCI: dict[str, tuple[str, str | None]] = {
    "amd64": ("amd64", None),
    "aarch64": ("arm64", None),
    "i386": ("386", None),
    "armv7l": ("arm", "v7"),
    "armv6l": ("arm", "v6"),
    "ppc64": ("ppc64", None),
    "ppc64le": ("ppc64le", None),
    "s390x": ("s390x", None),
}


@dataclass(frozen=True, slots=True, kw_only=True)
class OciConversion:
    """What :func:`convert_oci` wrote: the appc manifest, what it dropped, and its source."""

    manifest: dict[str, Any]  # the appc image manifest written
    warnings: tuple[str, ...]
    source_digest: str  # the OCI manifest digest (for a manifest.json-only docker save: config)


# --- names ----------------------------------------------------------------------------------------


def ac_identifier(text: str) -> str | None:
    """`text` made an AC Identifier deterministically, or None if nothing is left of it.

    Lowercased; characters outside ``[a-z0-9-._~/]`` become ``-``; a run of separators is
    shortened to its first character; separators at either end are dropped. So
    ``Docker.io/My App`` becomes ``docker.io/my-app``, ``my__app`` becomes ``my_app`` and
    ``localhost:5000/x`` becomes ``localhost-5000/x``.
    """
    chars = "".join(c if c in _IDENTIFIER_CHARS else "-" for c in text.lower())
    shortened = re.sub(r"([-._~/])[-._~/]+", r"\1", chars).strip(_IDENTIFIER_SEPARATORS)
    return shortened if AC_IDENTIFIER.fullmatch(shortened) else None


def ac_name(text: str) -> str | None:
    """`text` made an AC Name: lowercased, other characters ``-``, runs and ends trimmed."""
    chars = "".join(c if c.isascii() and c.isalnum() else "-" for c in text.lower())
    shortened = re.sub(r"-+", "-", chars).strip("-")
    return shortened if AC_NAME.fullmatch(shortened) else None


def _parse_reference(text: str) -> tuple[str, str | None, str | None]:
    """(repository, tag, digest) of an image reference, normalised as Docker does:
    ``busybox:1.36`` is ``("docker.io/library/busybox", "1.36", None)``."""
    rest, _, digest = text.partition("@")
    tag: str | None = None
    slash, colon = rest.rfind("/"), rest.rfind(":")
    if colon > slash:
        rest, tag = rest[:colon], rest[colon + 1 :]
    first, sep, remainder = rest.partition("/")
    if not sep or ("." not in first and ":" not in first and first != "localhost"):
        domain, path = "docker.io", rest
    else:
        domain, path = first, remainder
    if domain == "index.docker.io":
        domain = "docker.io"
    if domain == "docker.io" and "/" not in path:
        path = "library/" + path
    return f"{domain}/{path}", tag or None, digest or None


def _is_full_reference(text: str) -> bool:
    """Whether a ref.name annotation names a repository (``a/b:1``), not just a tag (``1``)."""
    return any(c in text for c in "/:@")


def _canonical_reference(text: str) -> tuple[str, str | None, str | None]:
    repository, tag, digest = _parse_reference(text)
    return repository, tag or (None if digest else "latest"), digest


def _reference_matches(reference: str, refs: tuple[str, ...]) -> bool:
    wanted = _canonical_reference(reference)
    return any(
        ref == reference or (_is_full_reference(ref) and _canonical_reference(ref) == wanted)
        for ref in refs
    )


def oci_platform(appc_os: str, appc_arch: str) -> tuple[str, str, str | None]:
    """The OCI (os, architecture, variant) of an appc os/arch; ImageError if there is none."""
    found = _APPC_TO_OCI.get(appc_arch)
    if found is None:
        raise ImageError(f"this host's arch {appc_arch} has no OCI platform name")
    return appc_os, found[0], found[1]


def _show_platform(platform: dict[str, Any] | None) -> str:
    if platform is None:
        return "(no platform)"
    parts = [str(platform.get("os") or "?"), str(platform.get("architecture") or "?")]
    if platform.get("variant"):
        parts.append(str(platform["variant"]))
    return "/".join(parts)


def _platform_matches(platform: dict[str, Any], host: tuple[str, str, str | None]) -> bool:
    host_os, host_arch, host_variant = host
    if platform.get("os") != host_os or platform.get("architecture") != host_arch:
        return False
    variant = platform.get("variant")
    return host_arch != "arm" or not variant or variant == host_variant


def _show(name: str) -> str:
    """A member name fit for a one-line message."""
    text = name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return text.replace("\n", "\\n")


def _short(digest: str) -> str:
    algorithm, _, hexdigest = digest.partition(":")
    return f"{algorithm}:{hexdigest[:12]}"


# --- reading the source ---------------------------------------------------------------------------


def _source_name(text: str) -> str | None:
    """A path inside the source, ``..`` resolved; None if it climbs out."""
    stack: list[str] = []
    for part in text.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if not stack:
                return None
            stack.pop()
        else:
            stack.append(part)
    return "/".join(stack)


class _Source:
    """The files of a layout or docker-save archive, read-only, by relative name."""

    def __init__(self, label: str) -> None:
        self.label = label

    def size(self, name: str) -> int | None:
        """The size of regular file `name`, or None if there is none."""
        raise NotImplementedError

    def open(self, name: str) -> IO[bytes]:
        raise NotImplementedError

    def close(self) -> None:
        return None

    def read(self, name: str, what: str) -> bytes:
        """A small file, whole (``_MAX_JSON`` at most)."""
        size = self.size(name)
        if size is None:
            raise ImageError(f"{self.label}: {what}: no file {name}")
        if size > _MAX_JSON:
            raise ImageError(f"{self.label}: {what}: {name} is larger than {_MAX_JSON} bytes")
        try:
            with self.open(name) as handle:
                return handle.read(_MAX_JSON + 1)
        except _READ_ERRORS as exc:
            raise ArchiveError(f"{self.label}: cannot read {name}: {exc}") from None


class _DirSource(_Source):
    def __init__(self, label: str, root: str) -> None:
        super().__init__(label)
        self.root = root

    def size(self, name: str) -> int | None:
        try:
            st = os.stat(os.path.join(self.root, name))
        except OSError:
            return None
        return st.st_size if stat.S_ISREG(st.st_mode) else None

    def open(self, name: str) -> IO[bytes]:
        return open(os.path.join(self.root, name), "rb")


class _TarSource(_Source):
    def __init__(self, label: str, path: str) -> None:
        super().__init__(label)
        try:
            self.tar = tarfile.open(path, "r:*")  # noqa: SIM115 - closed by close()
        except _READ_ERRORS as exc:
            raise ArchiveError(f"{label}: not a readable tar archive: {exc}") from None
        self.members: dict[str, tarfile.TarInfo] = {}
        try:
            for member in self.tar:
                name = _source_name(member.name)
                if name:
                    self.members[name] = member
        except _READ_ERRORS as exc:
            self.tar.close()
            raise ArchiveError(f"{label}: truncated or corrupt archive: {exc}") from None

    def _regular(self, name: str) -> tarfile.TarInfo | None:
        """The regular member `name` stands for, following symlinks and hard links."""
        for _ in range(MAX_LINK_HOPS):
            member = self.members.get(name)
            if member is None:
                return None
            if member.isreg():
                return member
            if member.issym():
                target = _source_name(name.rpartition("/")[0] + "/" + member.linkname)
            elif member.islnk():
                target = _source_name(member.linkname)
            else:
                return None
            if not target:
                return None
            name = target
        raise ArchiveError(f"{self.label}: {name}: too many levels of links")

    def size(self, name: str) -> int | None:
        member = self._regular(name)
        return None if member is None else member.size

    def open(self, name: str) -> IO[bytes]:
        member = self._regular(name)
        handle = None if member is None else self.tar.extractfile(member)
        if handle is None:
            raise ArchiveError(f"{self.label}: {name}: not a regular file")
        return handle

    def close(self) -> None:
        self.tar.close()


def _open_source(source: str) -> _Source:
    try:
        st = os.stat(source)
    except FileNotFoundError:
        raise NotFoundError(f"{source}: no such file or directory") from None
    except OSError as exc:
        raise ImageError(f"{source}: cannot read: {exc.strerror}") from None
    if stat.S_ISDIR(st.st_mode):
        return _DirSource(source, source)
    return _TarSource(source, source)


def _json_object(data: bytes, where: str) -> dict[str, Any]:
    try:
        doc = json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise ImageError(f"{where}: not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise ImageError(f"{where}: must be a JSON object")
    return doc


def _hash_name(digest: str) -> str:
    return digest.partition(":")[0]


class _Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


class _HashingReader:
    """Reads a stream while counting and hashing it (``algorithm`` None: counting only)."""

    def __init__(self, raw: _Readable, algorithm: str | None) -> None:
        self.raw = raw
        self.hash = hashlib.new(algorithm) if algorithm else None
        self.size = 0

    def read(self, size: int = -1, /) -> bytes:
        data = self.raw.read(size)
        self.size += len(data)
        if self.hash is not None:
            self.hash.update(data)
        return data

    def seek(self, offset: int, /) -> int:
        raise OSError("a layer stream cannot seek")

    def drain(self) -> None:
        while self.read(_CHUNK):
            pass

    def digest(self) -> str:
        assert self.hash is not None
        return f"{self.hash.name}:{self.hash.hexdigest()}"


@dataclass(frozen=True, slots=True, kw_only=True)
class _Descriptor:
    media_type: str | None
    digest: str
    size: int
    platform: dict[str, Any] | None
    annotations: dict[str, str]
    urls: tuple[str, ...]

    @property
    def path(self) -> str:
        algorithm, _, hexdigest = self.digest.partition(":")
        return f"blobs/{algorithm}/{hexdigest}"


def _descriptor(value: object, where: str) -> _Descriptor:
    if not isinstance(value, dict):
        raise ImageError(f"{where}: a descriptor must be a JSON object")
    digest = value.get("digest")
    if not isinstance(digest, str) or not _DIGEST.fullmatch(digest):
        raise ImageError(
            f"{where}: digest must be sha256:<64 hex> or sha512:<128 hex> (got {digest!r})"
        )
    size = value.get("size")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise ImageError(f"{where}: size must be a non-negative integer (got {size!r})")
    media_type = value.get("mediaType")
    platform = value.get("platform")
    annotations = value.get("annotations") or {}
    urls = value.get("urls") or []
    if media_type is not None and not isinstance(media_type, str):
        raise ImageError(f"{where}: mediaType must be a string")
    if platform is not None and not isinstance(platform, dict):
        raise ImageError(f"{where}: platform must be a JSON object")
    if not isinstance(annotations, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in annotations.items()
    ):
        raise ImageError(f"{where}: annotations must map strings to strings")
    if not isinstance(urls, list) or not all(isinstance(u, str) for u in urls):
        raise ImageError(f"{where}: urls must be a list of strings")
    return _Descriptor(
        media_type=media_type,
        digest=digest,
        size=size,
        platform=platform,
        annotations=annotations,
        urls=tuple(urls),
    )


def _check_blob(label: str, digest: str, expected_size: int | None, reader: _HashingReader) -> None:
    if expected_size is not None and reader.size != expected_size:
        raise ArchiveError(
            f"{label}: blob {digest} is {reader.size} bytes, but its descriptor says "
            f"{expected_size}"
        )
    got = reader.digest()
    if got != digest:
        raise ArchiveError(f"{label}: blob {digest} does not match its digest (it hashes to {got})")


def _read_blob(source: _Source, desc: _Descriptor, what: str) -> bytes:
    """A small blob, whole, once its size and digest are checked."""
    size = source.size(desc.path)
    if size is None:
        raise ImageError(f"{source.label}: {what} {desc.digest} is missing (no {desc.path})")
    if size != desc.size:
        raise ArchiveError(
            f"{source.label}: blob {desc.digest} is {size} bytes, but its descriptor says "
            f"{desc.size}"
        )
    data = source.read(desc.path, what)
    reader = _HashingReader(io.BytesIO(data), _hash_name(desc.digest))
    reader.drain()
    _check_blob(source.label, desc.digest, desc.size, reader)
    return data


# --- choosing the image ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class _LayerRef:
    """Where one layer is and how to check it."""

    path: str
    digest: str | None  # of the blob as stored; None when the name does not say (docker save)
    size: int | None
    compression: str  # "tar", "gzip", "zstd", or "sniff" (by magic bytes)
    urls: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class _Image:
    config: bytes
    config_digest: str
    manifest_digest: str | None
    layers: tuple[_LayerRef, ...]
    refs: tuple[str, ...]  # what the image is called, most specific first


@dataclass(frozen=True, slots=True, kw_only=True)
class _Candidate:
    desc: _Descriptor
    refs: tuple[str, ...]


def _descriptor_refs(desc: _Descriptor) -> tuple[str, ...]:
    return tuple(
        desc.annotations[key] for key in (_CONTAINERD_NAME, _REF_NAME) if desc.annotations.get(key)
    )


def _collect(
    source: _Source,
    index: dict[str, Any],
    where: str,
    inherited: tuple[str, ...],
    depth: int,
    found: list[_Candidate],
) -> None:
    """Every image manifest an index lists, nested indexes followed."""
    manifests = index.get("manifests")
    if not isinstance(manifests, list):
        raise ImageError(f"{where}: manifests must be a list")
    for number, item in enumerate(manifests):
        desc = _descriptor(item, f"{where}: manifests[{number}]")
        if desc.annotations.get(_DOCKER_REFERENCE_TYPE):
            continue
        refs = _descriptor_refs(desc) or inherited
        media_type = desc.media_type
        if media_type is None:  # required, but guessable from the document
            doc = _json_object(
                _read_blob(source, desc, "manifest"), f"{source.label}: {desc.digest}"
            )
            media_type = doc.get("mediaType") or (
                OCI_INDEX if "manifests" in doc else OCI_MANIFEST if "config" in doc else None
            )
        if media_type in _INDEX_TYPES:
            if depth >= _MAX_INDEX_DEPTH:
                raise ImageError(f"{where}: indexes are nested more than {_MAX_INDEX_DEPTH} deep")
            sub = _json_object(
                _read_blob(source, desc, "index"), f"{source.label}: index {desc.digest}"
            )
            _collect(source, sub, f"{source.label}: index {desc.digest}", refs, depth + 1, found)
        elif media_type in _MANIFEST_TYPES:
            found.append(_Candidate(desc=desc, refs=refs))
        # other media types (artifacts, schema 1, ...) are not images: skipped


def _show_refs(candidates: list[_Candidate]) -> str:
    shown = sorted({c.refs[0] if c.refs else c.desc.digest for c in candidates})
    return ", ".join(shown) if shown else "none"


def _select_oci(
    source: _Source, reference: str | None, host: tuple[str, str, str | None]
) -> _Image:
    label = source.label
    layout_size = source.size("oci-layout")
    if layout_size is not None:
        layout = _json_object(source.read("oci-layout", "oci-layout"), f"{label}: oci-layout")
        version = layout.get("imageLayoutVersion")
        if not isinstance(version, str) or not version.startswith("1."):
            raise ImageError(
                f"{label}: oci-layout: imageLayoutVersion must be 1.x (got {version!r})"
            )
    index = _json_object(source.read("index.json", "index.json"), f"{label}: index.json")
    candidates: list[_Candidate] = []
    _collect(source, index, f"{label}: index.json", (), 0, candidates)
    if not candidates:
        raise ImageError(f"{label}: the index lists no image manifests")
    want = _show_platform({"os": host[0], "architecture": host[1], "variant": host[2]})
    matching = [
        c for c in candidates if c.desc.platform is None or _platform_matches(c.desc.platform, host)
    ]
    if not matching:
        found = ", ".join(sorted({_show_platform(c.desc.platform) for c in candidates}))
        raise ImageError(f"{label}: no image for {want} in the index (it has {found})")
    chosen = matching
    if reference is not None:
        chosen = [c for c in matching if _reference_matches(reference, c.refs)]
        if not chosen:
            raise ImageError(
                f"{label}: no image for {want} has the reference {reference!r} "
                f"(references: {_show_refs(matching)})"
            )
    if len({c.desc.digest for c in chosen}) > 1:
        raise ImageError(
            f"{label}: {len(chosen)} images for {want}; choose one with a reference: "
            f"{_show_refs(chosen)}"
        )
    desc = chosen[0].desc
    refs: list[str] = [reference] if reference is not None else []
    for candidate in chosen:
        refs.extend(r for r in candidate.refs if r not in refs)
    manifest = _json_object(
        _read_blob(source, desc, "manifest"), f"{label}: manifest {desc.digest}"
    )
    return _image_from_manifest(source, desc.digest, manifest, tuple(refs))


def _image_from_manifest(
    source: _Source, digest: str, manifest: dict[str, Any], refs: tuple[str, ...]
) -> _Image:
    where = f"{source.label}: manifest {digest}"
    if manifest.get("schemaVersion") != 2:
        raise ImageError(
            f"{where}: schemaVersion must be 2 (got {manifest.get('schemaVersion')!r})"
        )
    media_type = manifest.get("mediaType")
    if media_type is not None and media_type not in _MANIFEST_TYPES:
        raise ImageError(f"{where}: not an image manifest (mediaType {media_type!r})")
    config = _descriptor(manifest.get("config"), f"{where}: config")
    if config.media_type not in _CONFIG_TYPES:
        raise ImageError(
            f"{where}: not a container image (config media type {config.media_type!r})"
        )
    layers_json = manifest.get("layers")
    if not isinstance(layers_json, list):
        raise ImageError(f"{where}: layers must be a list")
    layers: list[_LayerRef] = []
    for number, item in enumerate(layers_json):
        desc = _descriptor(item, f"{where}: layers[{number}]")
        compression = _LAYER_TYPES.get(desc.media_type or "")
        if compression is None:
            raise ImageError(
                f"{where}: layers[{number}]: unsupported layer media type {desc.media_type!r}"
            )
        layers.append(
            _LayerRef(
                path=desc.path,
                digest=desc.digest,
                size=desc.size,
                compression=compression,
                urls=desc.urls,
            )
        )
    return _Image(
        config=_read_blob(source, config, "config"),
        config_digest=config.digest,
        manifest_digest=digest,
        layers=tuple(layers),
        refs=refs,
    )


def _select_docker(source: _Source, reference: str | None) -> _Image:
    """The image of a ``docker save`` tar that has only ``manifest.json``."""
    label = source.label
    where = f"{label}: manifest.json"
    try:
        entries = json.loads(source.read("manifest.json", "manifest.json"))
    except (ValueError, RecursionError) as exc:
        raise ImageError(f"{where}: not valid JSON: {exc}") from None
    if not isinstance(entries, list) or not entries:
        raise ImageError(f"{where}: must be a non-empty list of images")
    tagged: list[tuple[int, dict[str, Any], tuple[str, ...]]] = []
    for number, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise ImageError(f"{where}: [{number}] must be a JSON object")
        tags = entry.get("RepoTags") or []
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            raise ImageError(f"{where}: [{number}].RepoTags must be a list of strings")
        tagged.append((number, entry, tuple(tags)))

    def shown(items: list[tuple[int, dict[str, Any], tuple[str, ...]]]) -> str:
        names = sorted({t for _, _, tags in items for t in tags})
        untagged = sum(1 for _, _, tags in items if not tags)
        if untagged:
            names.append(f"{untagged} untagged")
        return ", ".join(names) if names else "none"

    chosen = tagged
    if reference is not None:
        chosen = [t for t in tagged if _reference_matches(reference, t[2])]
        if not chosen:
            raise ImageError(
                f"{label}: no image has the reference {reference!r} (RepoTags: {shown(tagged)})"
            )
    if len(chosen) > 1:
        raise ImageError(
            f"{label}: {len(chosen)} images; choose one with a reference: {shown(chosen)}"
        )
    number, entry, tags = chosen[0]
    config_path = entry.get("Config")
    layer_paths = entry.get("Layers")
    if not isinstance(config_path, str):
        raise ImageError(f"{where}: [{number}].Config must be a path")
    if not isinstance(layer_paths, list) or not all(isinstance(p, str) for p in layer_paths):
        raise ImageError(f"{where}: [{number}].Layers must be a list of paths")
    config_name = _source_name(config_path)
    if not config_name:
        raise ArchiveError(f"{where}: [{number}].Config {config_path!r} is outside the archive")
    config = source.read(config_name, "config")
    config_digest = "sha256:" + hashlib.sha256(config).hexdigest()
    named = _BLOB_PATH.fullmatch(config_name)
    expected = f"{named.group(1)}:{named.group(2)}" if named else None
    plain = _DOCKER_CONFIG_PATH.fullmatch(config_name)
    if plain is not None:
        expected = "sha256:" + plain.group(1)
    if expected is not None:
        reader = _HashingReader(io.BytesIO(config), _hash_name(expected))
        reader.drain()
        _check_blob(label, expected, None, reader)
        config_digest = expected
    layers: list[_LayerRef] = []
    for index, path in enumerate(layer_paths):
        name = _source_name(path)
        if not name:
            raise ArchiveError(
                f"{where}: [{number}].Layers[{index}] {path!r} is outside the archive"
            )
        blob = _BLOB_PATH.fullmatch(name)
        digest = f"{blob.group(1)}:{blob.group(2)}" if blob else None
        layers.append(_LayerRef(path=name, digest=digest, size=None, compression="sniff"))
    refs = [reference] if reference is not None else []
    refs.extend(t for t in tags if t not in refs)
    return _Image(
        config=config,
        config_digest=config_digest,
        manifest_digest=None,
        layers=tuple(layers),
        refs=tuple(refs),
    )


# --- the config -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class _Config:
    doc: dict[str, Any]  # config["config"], or empty
    created: str | None
    diff_ids: tuple[str, ...]


def _parse_config(label: str, image: _Image, host: tuple[str, str, str | None]) -> _Config:
    where = f"{label}: config {image.config_digest}"
    doc = _json_object(image.config, where)
    image_os, arch, variant = doc.get("os"), doc.get("architecture"), doc.get("variant")
    platform = {"os": image_os, "architecture": arch, "variant": variant}
    if not _platform_matches(platform, host):
        want = _show_platform({"os": host[0], "architecture": host[1], "variant": host[2]})
        raise ImageError(f"{where}: the image is for {_show_platform(platform)}, not {want}")
    rootfs = doc.get("rootfs")
    if not isinstance(rootfs, dict) or rootfs.get("type") != "layers":
        raise ImageError(f'{where}: rootfs must be {{"type": "layers", "diff_ids": [...]}}')
    diff_ids = rootfs.get("diff_ids") or []
    if not isinstance(diff_ids, list) or not all(
        isinstance(d, str) and _DIGEST.fullmatch(d) for d in diff_ids
    ):
        raise ImageError(f"{where}: rootfs.diff_ids must be a list of sha256/sha512 digests")
    if len(diff_ids) != len(image.layers):
        raise ImageError(
            f"{where}: {len(diff_ids)} diff_ids for {len(image.layers)} layers in the manifest"
        )
    config = doc.get("config") or {}
    if not isinstance(config, dict):
        raise ImageError(f"{where}: config must be a JSON object")
    created = doc.get("created")
    return _Config(
        doc=config,
        created=created if isinstance(created, str) else None,
        diff_ids=tuple(diff_ids),
    )


def _strings(config: dict[str, Any], key: str, where: str) -> list[str]:
    value = config.get(key)
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ImageError(f"{where}: config.{key} must be a list of strings")
    return list(value)


def _string_keys(config: dict[str, Any], key: str, where: str) -> list[str]:
    value = config.get(key)
    if value is None:
        return []
    if not isinstance(value, dict):
        raise ImageError(f"{where}: config.{key} must be a JSON object")
    return sorted(value)


def _annotation_ok(name: str, value: str) -> bool:
    """Whether the appc manifest rules accept this annotation (``created`` must be RFC 3339,
    ``homepage`` and ``documentation`` http URLs)."""
    doc = {
        "acKind": "ImageManifest",
        "acVersion": SPEC_VERSION,
        "name": "x",
        "annotations": [{"name": name, "value": value}],
    }
    try:
        parse_image_manifest(doc)
    except ValidationError:
        return False
    return True


def _app(config: dict[str, Any], where: str, warnings: list[str]) -> dict[str, Any]:
    """The appc ``app`` of an OCI config's ``config`` section."""
    user, _, group = str(config.get("User") or "").partition(":")
    app: dict[str, Any] = {}
    argv = _strings(config, "Entrypoint", where) + _strings(config, "Cmd", where)
    if argv:
        app["exec"] = argv
    app["user"] = user or "0"
    app["group"] = group or "0"
    working_dir = config.get("WorkingDir")
    if isinstance(working_dir, str) and working_dir:
        if working_dir.startswith("/"):
            app["workingDirectory"] = working_dir
        else:
            warnings.append(f"dropped WorkingDir {working_dir!r}: not an absolute path")
    environment: dict[str, str] = {}
    for item in _strings(config, "Env", where):
        key, sep, value = item.partition("=")
        if not sep or not ENV_NAME.fullmatch(key):
            warnings.append(f"dropped Env entry {item!r}: not NAME=value with a valid name")
            continue
        environment[key] = value
    if environment:
        app["environment"] = [{"name": k, "value": v} for k, v in environment.items()]
    mount_points: list[dict[str, Any]] = []
    used: set[str] = set()
    for path in _string_keys(config, "Volumes", where):
        if not path.startswith("/"):
            warnings.append(f"dropped volume {path!r}: not an absolute path")
            continue
        base = "volume-" + (ac_name(path) or "root")
        volume, suffix = base, 1
        while volume in used:
            suffix += 1
            volume = f"{base}-{suffix}"
        used.add(volume)
        mount_points.append({"name": volume, "path": path})
    if mount_points:
        app["mountPoints"] = mount_points
    ports: list[tuple[int, str, str]] = []
    seen_ports: set[str] = set()
    for key in _string_keys(config, "ExposedPorts", where):
        number, _, protocol = key.partition("/")
        protocol = (protocol or "tcp").lower()
        proto_name = ac_name(protocol)
        port = int(number) if number.isascii() and number.isdigit() else 0
        if not 1 <= port <= 65535 or proto_name is None:
            warnings.append(f"dropped exposed port {key!r}: not <port>/<protocol>")
            continue
        port_name = f"{port}-{proto_name}"
        if port_name not in seen_ports:
            seen_ports.add(port_name)
            ports.append((port, protocol, port_name))
    if ports:
        app["ports"] = [
            {"name": n, "protocol": proto, "port": port} for port, proto, n in sorted(ports)
        ]
    return app


def _annotations(
    config: _Config, image: _Image, warnings: list[str], where: str
) -> list[dict[str, str]]:
    annotations: dict[str, str] = {}
    if config.created is not None:
        if _annotation_ok("created", config.created):
            annotations["created"] = config.created
        else:
            warnings.append(f"dropped created {config.created!r}: not an RFC 3339 time")
    if image.manifest_digest is not None:
        annotations[MANIFEST_DIGEST_ANNOTATION] = image.manifest_digest
    annotations[CONFIG_DIGEST_ANNOTATION] = image.config_digest
    labels = config.doc.get("Labels") or {}
    if not isinstance(labels, dict):
        raise ImageError(f"{where}: config.Labels must be a JSON object")
    for key in sorted(labels):
        value = labels[key]
        name = ac_identifier(key)
        if not isinstance(value, str):
            warnings.append(f"dropped label {key!r}: its value is not a string")
        elif name is None:
            warnings.append(f"dropped label {key!r}: cannot be made an AC Identifier")
        elif name in annotations:
            warnings.append(f"dropped label {key!r}: annotation {name!r} is already set")
        elif not _annotation_ok(name, value):
            warnings.append(f"dropped label {key!r}: not a valid value for annotation {name!r}")
        else:
            annotations[name] = value
    return [{"name": k, "value": v} for k, v in annotations.items()]


def _image_name(label: str, image: _Image, name: str | None) -> tuple[str, str]:
    """(name, version label) of the ACI."""
    full = next((r for r in image.refs if _is_full_reference(r)), None)
    tag_only = next((r for r in image.refs if not _is_full_reference(r)), None)
    tag = _parse_reference(full)[1] if full is not None else tag_only
    version = tag or "latest"
    if name is not None:
        return name, version
    if full is None:
        raise ImageError(
            f"{label}: cannot derive an image name (no reference like example.com/app:1.0 "
            "names the image); give a name"
        )
    derived = ac_identifier(_parse_reference(full)[0])
    if derived is None:
        raise ImageError(f"{label}: cannot make an image name of {full!r}; give a name")
    return derived, version


# --- layers ---------------------------------------------------------------------------------------


class _Budget:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0


def _decompressor(kind: str, reader: _HashingReader, where: str) -> _Readable:
    if kind == "gzip":
        return gzip.GzipFile(fileobj=reader, mode="rb")
    if kind == "zstd":
        try:
            zstandard: Any = importlib.import_module("zstandard")
        except ImportError:
            raise ImageError(
                f"{where}: the layer is zstd-compressed; install the zstandard module to read it"
            ) from None
        stream: _Readable = zstandard.ZstdDecompressor().stream_reader(
            reader, read_across_frames=True
        )
        return stream
    return reader


def _unpack_layer(
    source: _Source, ref: _LayerRef, diff_id: str, dest: str, budget: _Budget, where: str
) -> None:
    """Decompress one layer to `dest`, checking its blob digest and size and its diff_id."""
    label = source.label
    size = source.size(ref.path)
    if size is None:
        hint = f" (a foreign layer, from {ref.urls[0]})" if ref.urls else ""
        raise ImageError(f"{where}: the blob is missing from the layout{hint}: no {ref.path}")
    if ref.size is not None and size != ref.size:
        raise ArchiveError(
            f"{label}: blob {ref.digest} is {size} bytes, but its descriptor says {ref.size}"
        )
    try:
        raw = source.open(ref.path)
    except OSError as exc:
        raise ImageError(f"{where}: cannot read {ref.path}: {exc.strerror}") from None
    with raw:
        kind = ref.compression
        readable: _Readable = raw
        if kind == "sniff":
            head = raw.read(4)
            readable = _Prepended(head, raw)
            kind = "gzip" if head[:2] == _GZIP_MAGIC else "zstd" if head == _ZSTD_MAGIC else "tar"
        reader = _HashingReader(readable, _hash_name(ref.digest) if ref.digest else None)
        stream = _decompressor(kind, reader, where)
        uncompressed = hashlib.new(_hash_name(diff_id))
        try:
            out = open(dest, "wb")  # noqa: SIM115 - closed below
        except OSError as exc:
            raise RuntimeFailure(f"cannot write {dest}: {exc.strerror}") from None
        with out:
            while True:
                try:
                    chunk = stream.read(_CHUNK)
                except (OSError, EOFError, zlib.error, ValueError) as exc:
                    if ref.digest is not None:  # a damaged blob: say so, rather than why
                        reader.drain()
                        _check_blob(label, ref.digest, ref.size, reader)
                    raise ArchiveError(f"{where}: cannot decompress the layer: {exc}") from None
                if not chunk:
                    break
                budget.used += len(chunk)
                if budget.used > budget.limit:
                    raise ArchiveError(
                        f"{where}: the layers hold more than the limit of {budget.limit} bytes "
                        "uncompressed"
                    )
                uncompressed.update(chunk)
                try:
                    out.write(chunk)
                except OSError as exc:
                    raise RuntimeFailure(f"cannot write {dest}: {exc.strerror}") from None
            reader.drain()
    if ref.digest is not None:
        _check_blob(label, ref.digest, ref.size, reader)
    got = f"{uncompressed.name}:{uncompressed.hexdigest()}"
    if got != diff_id:
        raise ArchiveError(
            f"{where}: the uncompressed layer hashes to {got}, but the config's diff_id is "
            f"{diff_id}"
        )


class _Prepended:
    """A reader that yields `head`, then the rest of `raw`."""

    def __init__(self, head: bytes, raw: _Readable) -> None:
        self.head = head
        self.raw = raw

    def read(self, size: int = -1, /) -> bytes:
        if self.head:
            if size < 0:
                data, self.head = self.head + self.raw.read(), b""
                return data
            data, self.head = self.head[:size], self.head[size:]
            return data
        return self.raw.read(size)


@dataclass(slots=True)
class _Layer:
    where: str  # "<source>: layer <n> (<digest>)", for messages
    path: str
    tar: tarfile.TarFile | None = None  # None: the layer is empty


# --- pass 1: the tree -----------------------------------------------------------------------------


@dataclass(eq=False, slots=True)
class _Node:
    """One path of the final tree: which layer member provides it."""

    info: tarfile.TarInfo | None  # None: a directory no layer has an entry for
    layer: int  # index into the layers of `info`; -1 for implicit directories
    children: dict[str, _Node] | None  # a directory's entries; None for everything else
    data: _Node | None = None  # a hard link: the node whose content it shares


def _parts(name: str, where: str, what: str = "name") -> list[str]:
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise ArchiveError(f"{where}: {_show(name)}: {what} has a '..' component")
    return parts


def _kind(info: tarfile.TarInfo) -> str:
    if info.isdir():
        return "directory"
    if info.isreg():
        return "file"
    if info.issym():
        return "symlink"
    if info.islnk():
        return "hard link"
    return "special file"


class _Tree:
    def __init__(self, layers: list[_Layer], warnings: list[str]) -> None:
        self.layers = layers
        self.root = _Node(info=None, layer=-1, children={})
        self.warnings = warnings
        self.members = 0

    def apply(self, index: int) -> None:
        layer = self.layers[index]
        if layer.tar is None:
            return
        size = os.path.getsize(layer.path)
        members: list[tuple[list[str], tarfile.TarInfo]] = []
        tar = layer.tar
        try:
            for member in tar:
                self.members += 1
                if self.members > DEFAULT_MAX_MEMBERS:
                    raise ArchiveError(
                        f"{layer.where}: the layers have more than {DEFAULT_MAX_MEMBERS} members"
                    )
                if (
                    member.isreg()
                    and not member.issparse()
                    and member.offset_data + member.size > size
                ):
                    raise ArchiveError(
                        f"{layer.where}: truncated: data of {_show(member.name)} ends early"
                    )
                members.append((_parts(member.name, layer.where), member))
        except _READ_ERRORS as exc:
            raise ArchiveError(f"{layer.where}: truncated or corrupt layer: {exc}") from None
        finally:
            kept = getattr(tar, "members", None)  # the nodes keep what survives
            if isinstance(kept, list):
                kept.clear()
        for parts, member in members:  # whiteouts hide lower layers only: apply them first
            if parts and parts[-1].startswith(_WHITEOUT):
                self._whiteout(layer, parts, member)
        for parts, member in members:
            if not parts or not parts[-1].startswith(_WHITEOUT):
                self._add(index, layer, parts, member)

    def _walk(self, parts: list[str], *, create: bool, where: str) -> _Node | None:
        """The directory node at `parts`, symlinks in the tree followed (within the tree).
        Missing directories are created (implicit) when `create`, else None is returned."""
        stack = [self.root]
        names: list[str] = []
        todo = list(reversed(parts))
        hops = 0
        while todo:
            part = todo.pop()
            if part in ("", "."):
                continue
            if part == "..":
                if len(stack) > 1:
                    stack.pop()
                    names.pop()
                continue
            current = stack[-1]
            assert current.children is not None
            child = current.children.get(part)
            if child is None:
                if not create:
                    return None
                child = _Node(info=None, layer=-1, children={})
                current.children[part] = child
            elif child.children is None:
                origin = child.data or child
                if origin.info is not None and origin.info.issym():
                    hops += 1
                    if hops > MAX_LINK_HOPS:
                        raise ArchiveError(f"{where}: too many levels of symbolic links")
                    target = origin.info.linkname
                    if target.startswith("/"):
                        del stack[1:]
                        names.clear()
                    todo.extend(reversed(target.split("/")))
                    continue
                if not create:
                    return None
                raise ArchiveError(f"{where}: {_show('/'.join([*names, part]))} is not a directory")
            stack.append(child)
            names.append(part)
        return stack[-1]

    def _whiteout(self, layer: _Layer, parts: list[str], member: tarfile.TarInfo) -> None:
        where = f"{layer.where}: {_show(member.name)}"
        base = parts[-1]
        if base != _OPAQUE and base.startswith(_WHITEOUT + _WHITEOUT):
            return  # aufs bookkeeping (.wh..wh.plnk and the like): never part of the tree
        victim = base[len(_WHITEOUT) :]
        if victim in ("", "."):
            self.warnings.append(f"ignored whiteout {where}: it names nothing")
            return
        if victim == "..":
            raise ArchiveError(f"{where}: a whiteout of '..' is not allowed")
        parent = self._walk(parts[:-1], create=False, where=where)
        if parent is None or parent.children is None:
            return  # nothing below to hide
        if base == _OPAQUE:
            parent.children.clear()
        else:
            parent.children.pop(victim, None)

    def _add(self, index: int, layer: _Layer, parts: list[str], member: tarfile.TarInfo) -> None:
        where = f"{layer.where}: {_show(member.name)}"
        if not (
            member.isreg()
            or member.isdir()
            or member.issym()
            or member.islnk()
            or member.isdev()
            or member.isfifo()
        ):
            self.warnings.append(f"skipped {where}: unsupported member type {member.type!r}")
            return
        if not parts:
            if not member.isdir():
                raise ArchiveError(f"{where}: a {_kind(member)} cannot replace the root directory")
            self.root.info, self.root.layer = member, index
            return
        target = self._link_target(member, where) if member.islnk() else None
        parent = self._walk(parts[:-1], create=True, where=where)
        assert parent is not None and parent.children is not None
        name = parts[-1]
        old = parent.children.get(name)
        if member.isdir():
            if old is not None and old.children is not None:
                old.info, old.layer = member, index  # keeps the children
            else:
                parent.children[name] = _Node(info=member, layer=index, children={})
        else:
            parent.children[name] = _Node(info=member, layer=index, children=None, data=target)

    def _link_target(self, member: tarfile.TarInfo, where: str) -> _Node:
        parts = _parts(member.linkname, where, "hard link target")
        missing = ArchiveError(f"{where}: hard link target {_show(member.linkname)} does not exist")
        if not parts:
            raise ArchiveError(f"{where}: a hard link cannot point at the root directory")
        parent = self._walk(parts[:-1], create=False, where=where)
        if parent is None or parent.children is None:
            raise missing
        node = parent.children.get(parts[-1])
        if node is None:
            raise missing
        if node.children is not None:
            raise ArchiveError(f"{where}: hard link target {_show(member.linkname)} is a directory")
        return node.data or node

    def entries(self) -> list[tuple[str, _Node]]:
        """Every path but the root, in the byte order of its encoded name."""
        found: list[tuple[bytes, str, _Node]] = []
        todo: list[tuple[str, _Node]] = [("", self.root)]
        while todo:
            prefix, node = todo.pop()
            assert node.children is not None
            for name, child in node.children.items():
                path = prefix + name
                found.append((path.encode("utf-8", "surrogateescape"), path, child))
                if child.children is not None:
                    todo.append((path + "/", child))
        found.sort(key=lambda item: item[0])
        return [(path, node) for _, path, node in found]


# --- pass 2: the ACI ------------------------------------------------------------------------------


def _header(name: str, info: tarfile.TarInfo | None, kind: bytes) -> tarfile.TarInfo:
    """A fresh header named `name`, with the attributes of `info` (a directory's defaults
    when None): pax records other than xattrs and the exact mtime are not carried over."""
    out = tarfile.TarInfo(name)
    out.type = kind
    out.uname = out.gname = ""
    if info is None:
        out.mode, out.mtime = 0o755, 0
        return out
    out.mode = info.mode & 0o7777
    out.uid, out.gid = info.uid, info.gid
    out.mtime = int(info.mtime)
    pax = {
        key: value
        for key, value in info.pax_headers.items()
        if key.startswith(("SCHILY.xattr.", "LIBARCHIVE.xattr."))
    }
    mtime = info.pax_headers.get("mtime")
    if mtime is not None and _PAX_TIME.fullmatch(mtime):
        pax["mtime"] = mtime
    out.pax_headers = pax
    if kind == tarfile.SYMTYPE:
        out.linkname = info.linkname
    elif kind in (tarfile.CHRTYPE, tarfile.BLKTYPE):
        out.devmajor, out.devminor = info.devmajor, info.devminor
    return out


def _type_of(info: tarfile.TarInfo) -> bytes:
    if info.isreg():
        return tarfile.REGTYPE
    if info.issym():
        return tarfile.SYMTYPE
    if info.ischr():
        return tarfile.CHRTYPE
    if info.isblk():
        return tarfile.BLKTYPE
    return tarfile.FIFOTYPE


class _DataReader:
    """A member's data; a short or failing read is an ArchiveError naming the member."""

    def __init__(self, handle: IO[bytes], size: int, where: str) -> None:
        self.handle = handle
        self.left = size
        self.where = where

    def read(self, size: int = -1, /) -> bytes:
        want = self.left if size < 0 else min(size, self.left)
        try:
            data = self.handle.read(want)
        except _READ_ERRORS as exc:
            raise ArchiveError(f"{self.where}: cannot read the data: {exc}") from None
        if len(data) < want:
            raise ArchiveError(f"{self.where}: truncated: the data ends early")
        self.left -= len(data)
        return data


def _write_aci(
    output: BinaryIO,
    manifest: bytes,
    tree: _Tree,
    entries: list[tuple[str, _Node]],
) -> None:
    root = tree.root
    headers: list[tuple[str, _Node, tarfile.TarInfo]] = [
        ("", root, _header("rootfs", root.info, tarfile.DIRTYPE))
    ]
    first: dict[_Node, str] = {}  # content (inode) -> the name that carries it
    for path, node in entries:
        arcname = "rootfs/" + path
        if node.children is not None:
            headers.append((path, node, _header(arcname, node.info, tarfile.DIRTYPE)))
            continue
        origin = node.data or node
        assert origin.info is not None and node.info is not None
        if origin in first:
            link = _header(arcname, node.info, tarfile.LNKTYPE)
            link.linkname = first[origin]
            headers.append((path, node, link))
        else:
            first[origin] = arcname
            header = _header(arcname, origin.info, _type_of(origin.info))
            if origin.info.isreg():
                header.size = origin.info.size
            headers.append((path, origin, header))
    mtime = max(int(header.mtime) for _, _, header in headers)
    with tarfile.open(fileobj=output, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("manifest")
        info.size = len(manifest)
        info.mode = 0o644
        info.mtime = mtime
        info.uname = info.gname = ""
        tar.addfile(info, io.BytesIO(manifest))
        for _, node, header in headers:
            if header.type != tarfile.REGTYPE:
                tar.addfile(header)
                continue
            assert node.info is not None
            layer = tree.layers[node.layer]
            assert layer.tar is not None
            where = f"{layer.where}: {_show(node.info.name)}"
            try:
                handle = layer.tar.extractfile(node.info)
            except _READ_ERRORS as exc:
                raise ArchiveError(f"{where}: cannot read the data: {exc}") from None
            assert handle is not None
            with handle:
                tar.addfile(header, _DataReader(handle, header.size, where))


# --- the conversion -------------------------------------------------------------------------------


def convert_oci(
    source: str,
    output: BinaryIO,
    *,
    name: str | None = None,
    reference: str | None = None,
    work_dir: str,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> OciConversion:
    """source: an OCI layout dir, a tar of one, or a docker-save tar. Writes an uncompressed ACI
    tar to output.

    ``name`` (an AC Identifier) names the ACI; without it the name is derived from the image's
    reference (see the module docstring). ``reference`` picks one of several images for this
    platform. Layers are decompressed into a temporary directory under ``work_dir``, deleted
    before returning; more than ``max_bytes`` of uncompressed layers is an ArchiveError. On an
    error, what was written to ``output`` is not an image: the caller discards it.
    """
    if name is not None and not AC_IDENTIFIER.fullmatch(name):
        raise ImageError(f"image name: {AC_IDENTIFIER_RULE} (got {name!r})")
    host_os, host_arch = host_os_arch()
    host = oci_platform(host_os, host_arch)
    src = _open_source(source)
    try:
        if src.size("index.json") is not None:
            image = _select_oci(src, reference, host)
        elif src.size("manifest.json") is not None:
            image = _select_docker(src, reference)
        else:
            raise ImageError(
                f"{source}: not an OCI image layout or docker-save archive "
                "(no index.json or manifest.json)"
            )
        config = _parse_config(src.label, image, host)
        image_name, version = _image_name(src.label, image, name)
        warnings: list[str] = []
        where = f"{src.label}: config {image.config_digest}"
        app = _app(config.doc, where, warnings)
        annotations = _annotations(config, image, warnings, where)
        try:
            scratch = tempfile.mkdtemp(prefix="oci-", dir=work_dir)
        except OSError as exc:
            raise RuntimeFailure(f"{work_dir}: cannot make a temporary directory: {exc}") from None
        layers: list[_Layer] = []
        try:
            budget = _Budget(max_bytes)
            for number, (ref, diff_id) in enumerate(
                zip(image.layers, config.diff_ids, strict=True), 1
            ):
                shown = _short(ref.digest or diff_id)
                layer = _Layer(
                    where=f"{src.label}: layer {number} ({shown})",
                    path=os.path.join(scratch, f"layer-{number}.tar"),
                )
                layers.append(layer)
                _unpack_layer(src, ref, diff_id, layer.path, budget, layer.where)
                if os.path.getsize(layer.path):
                    try:
                        layer.tar = tarfile.open(layer.path, "r:")  # noqa: SIM115 - below
                    except _READ_ERRORS as exc:
                        raise ArchiveError(f"{layer.where}: not a tar archive: {exc}") from None
            tree = _Tree(layers, warnings)
            for index in range(len(layers)):
                tree.apply(index)
            doc: dict[str, Any] = {
                "acKind": "ImageManifest",
                "acVersion": SPEC_VERSION,
                "name": image_name,
                "labels": [
                    {"name": "version", "value": version},
                    {"name": "os", "value": host_os},
                    {"name": "arch", "value": host_arch},
                ],
                "app": app,
                "annotations": annotations,
            }
            try:
                parsed = parse_image_manifest(doc, source=f"{src.label}: converted manifest")
            except ValidationError as exc:
                raise ImageError(f"{src.label}: the converted manifest is invalid: {exc}") from None
            manifest = image_manifest_to_json(parsed)
            manifest_bytes = (json.dumps(manifest, indent=4) + "\n").encode()
            _write_aci(output, manifest_bytes, tree, tree.entries())
            return OciConversion(
                manifest=manifest,
                warnings=tuple(warnings),
                source_digest=image.manifest_digest or image.config_digest,
            )
        finally:
            for layer in layers:
                if layer.tar is not None:
                    layer.tar.close()
            shutil.rmtree(scratch, ignore_errors=True)
    finally:
        src.close()
