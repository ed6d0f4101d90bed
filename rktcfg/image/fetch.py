"""Where images come from, and getting each into the store.

Image references (as rkt 0.14 read them):

* a path (absolute, ``./``-relative, or an existing file) or ``file://`` URL: an ACI file;
* ``oci:PATH[#REF]``: an OCI image layout directory or its tar; ``docker-archive:PATH[#REF]``:
  a ``docker save`` tar (``#REF`` picks one of several tagged images);
* ``http://`` or ``https://`` URL: an ACI download (ETag and Cache-Control are remembered;
  an interrupted download resumes);
* anything else: an appc app string ``name[:version][,label=value...]``, looked up in the
  store and otherwise found by appc meta discovery.

rktcfg cannot verify image signatures yet, so every network fetch needs
``--insecure-options=image`` (and plain http also ``http``), and says so when it is missing.

Pull policies: ``new`` (use the store when it has the image, else fetch), ``update`` (ask the
remote whether it changed; reuse when not), ``never`` (the store only).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from urllib.parse import unquote, urlsplit

from rktcfg.errors import ImageError, InputError, NotFoundError
from rktcfg.image.aci import DEFAULT_MAX_TAR_BYTES
from rktcfg.image.imports import import_aci_file, import_oci
from rktcfg.image.manifest import ImageManifest, host_os_arch, parse_app_string
from rktcfg.store.images import ImageStore, ImportResult

TYPE_CHECKING = False
if TYPE_CHECKING:
    from rktcfg.image import http

POLICIES = ("new", "update", "never")
INSECURE_OPTIONS = ("none", "image", "http", "tls", "all-fetch", "all")


class FetchOptions:
    __slots__ = ("_transport", "insecure", "max_bytes", "now", "policy", "progress", "warnings")

    def __init__(
        self,
        *,
        policy: str = "update",
        insecure: frozenset[str] = frozenset(),
        transport: http.Transport | None = None,
        progress: Callable[[str], http.Progress | None] | None = None,
        now: Callable[[], float] = time.time,
        max_bytes: int | None = None,
    ) -> None:
        if policy not in POLICIES:
            raise InputError(
                f"--pull-policy: must be one of {', '.join(POLICIES)} (got {policy!r})"
            )
        unknown = sorted(insecure - set(INSECURE_OPTIONS))
        if unknown:
            raise InputError(
                f"--insecure-options: unknown option {unknown[0]!r} "
                f"(known: {', '.join(INSECURE_OPTIONS)})"
            )
        if {"all", "all-fetch"} & insecure:
            insecure = insecure | {"image", "http", "tls"}
        self.policy = policy
        self.insecure = insecure
        self._transport = transport
        self.progress = progress
        self.now = now
        #: The largest uncompressed image accepted (a decompression bomb stops there).
        self.max_bytes = max_bytes
        #: What fetching had to drop or change, for the caller to show.
        self.warnings: list[str] = []

    @property
    def transport(self) -> http.Transport:
        """The HTTP transport (made on first use: a local fetch never imports urllib)."""
        if self._transport is None:
            from rktcfg.image import http

            self._transport = http.Transport()
        return self._transport


def classify(ref: str) -> tuple[str, str]:
    """(kind, location): ``file`` with a path, ``http`` with a URL, or ``name``."""
    if ref.startswith("file://"):
        return "file", unquote(urlsplit(ref).path)
    if ref.startswith(("oci:", "docker-archive:")):
        return "oci", ref.partition(":")[2]
    if ref.startswith(("http://", "https://")):
        return "http", ref
    if ref.startswith(("/", "./", "../")) or os.path.isfile(ref):
        return "file", ref
    return "name", ref


def fetch_image(store: ImageStore, ref: str, options: FetchOptions | None = None) -> ImportResult:
    """Bring the image ``ref`` names into the store (or find it there) by ``options.policy``."""
    opts = options or FetchOptions()
    kind, location = classify(ref)
    if kind == "file":
        return import_aci_file(store, location, max_bytes=opts.max_bytes)
    if kind == "oci":
        path, _, reference = location.partition("#")
        result, warnings = import_oci(
            store, path, reference=reference or None, origin=ref, max_bytes=opts.max_bytes
        )
        opts.warnings.extend(warnings)
        return result
    if kind == "http":
        return _fetch_url(store, location, opts, expect=None)
    return _fetch_name(store, location, opts)


def _require_insecure(url: str, opts: FetchOptions) -> None:
    if "image" not in opts.insecure:
        raise InputError(
            f"{url}: rktcfg cannot verify image signatures yet, so fetching over the network "
            "needs --insecure-options=image"
        )
    if url.startswith("http://") and "http" not in opts.insecure:
        raise InputError(f"{url}: plain http also needs --insecure-options=image,http")


def _fetch_url(
    store: ImageStore,
    url: str,
    opts: FetchOptions,
    *,
    expect: Callable[[ImageManifest], None] | None,
) -> ImportResult:
    from rktcfg.image import http

    remote = store.remote(url)
    if remote is not None:
        fresh = remote["max_age"] is not None and (
            remote["download_time"] / 1e9 + remote["max_age"] > opts.now()
        )
        if opts.policy in ("new", "never") or fresh:
            return ImportResult(store.get(remote["image_id"]), new=False)
    elif opts.policy == "never":
        raise NotFoundError(f"{url}: not in the store, and the pull policy is never")
    _require_insecure(url, opts)
    target = store.download_path(url)
    progress = opts.progress(url) if opts.progress else None
    got = http.download(
        opts.transport,
        url,
        target,
        etag=remote["etag"] if remote else None,
        progress=progress,
        max_bytes=opts.max_bytes or DEFAULT_MAX_TAR_BYTES,
    )
    if got.not_modified:
        assert remote is not None
        store.set_remote(url, remote["image_id"], remote["etag"], got.max_age)
        return ImportResult(store.get(remote["image_id"]), new=False)
    assert got.path is not None
    result = import_aci_file(store, got.path, origin=url, expect=expect, max_bytes=opts.max_bytes)
    store.set_remote(url, result.record.id, got.etag, got.max_age)
    http.finished(target)
    return result


def _fetch_name(store: ImageStore, app: str, opts: FetchOptions) -> ImportResult:
    name, labels = parse_app_string(app, source="image")
    host_os, host_arch = host_os_arch()
    labels.setdefault("os", host_os)
    labels.setdefault("arch", host_arch)
    if opts.policy in ("new", "never"):
        found = store.find(name, labels)
        if found:
            return ImportResult(found[0], new=False)
        if opts.policy == "never":
            raise NotFoundError(f"{app}: not in the store, and the pull policy is never")
    if "image" not in opts.insecure:
        raise InputError(
            f"{app}: not in the store; rktcfg cannot verify image signatures yet, so fetching "
            "it by appc discovery needs --insecure-options=image"
        )
    from rktcfg.image import discovery, http  # only now: an image in the store needs neither

    urls = discovery.discover(
        name,
        labels,
        lambda page: http.get_text(opts.transport, page),
        allow_http="http" in opts.insecure,
    )

    def expect(manifest: ImageManifest) -> None:
        if manifest.name != name:
            raise ImageError(f"discovered image is named {manifest.name}, not {name}")
        for key, value in labels.items():
            if key in ("os", "arch") and manifest.label(key) is None:
                continue  # an image without os/arch runs anywhere
            if manifest.label(key) != value:
                raise ImageError(
                    f"discovered image has {key}={manifest.label(key)}, not the {value} asked for"
                )

    errors = []
    for url in urls:
        try:
            return _fetch_url(store, url, opts, expect=expect)
        except NotFoundError as exc:
            errors.append(exc.message)
    raise NotFoundError(f"{app}: no discovered URL had the image ({'; '.join(errors)})")


def fetch_and_render(
    store: ImageStore, ref: str, options: FetchOptions | None = None
) -> ImportResult:
    """Fetch ``ref``, then its dependencies (by the same options), and render its tree.

    Rendering at fetch time is what proves an image usable: a hostile or broken archive, or a
    dependency that cannot be had, fails the fetch, and every image this call added is removed
    again, so the store is left as it was.
    """
    from rktcfg.errors import RktcfgError
    from rktcfg.image.deps import store_fetcher
    from rktcfg.store.trees import TreeStore

    opts = options or FetchOptions()
    before = {record.id for record in store.records(with_manifest=False)}
    result = fetch_image(store, ref, opts)
    trees = TreeStore(store.data_dir, store)
    try:
        trees.render(result.record.id, fetch=store_fetcher(store, opts))
    except (RktcfgError, OSError):
        for record in store.records(with_manifest=False):
            if record.id not in before:
                store.remove(record.id)
        trees.sweep()  # the failed render's lock file
        raise
    return result
