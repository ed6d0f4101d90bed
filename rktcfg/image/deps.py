"""appc image dependencies: find every image an image depends on, and the order to render them.

:func:`resolve_dependencies` walks ``dependencies[]`` depth-first from one image in the store
and returns each image it reaches exactly once (a diamond A->B,C; B->D; C->D reaches D once and
fetches it at most once). A dependency is found, in this order:

1. by ``imageID`` when the manifest gives one: a stored image whose ID is that ID (a unique
   prefix of 12 or more hex digits is accepted, as the spec allows truncated IDs);
2. by ``imageName`` and ``labels`` in the store. Labels left out match any value (no ``os``/
   ``arch`` means "runs anywhere", no ``version`` means "latest"); when several images match,
   the most recently imported one is used (what rkt's store lookup does);
3. by ``fetch(name, labels)``, which brings the image into the store and returns its ID.
   Without a fetcher a missing dependency is a :class:`~rktcfg.errors.NotFoundError` naming
   the chain (``example.com/a:1.0 -> example.com/b:1.0 -> example.com/c``).

Whatever found it, the image must carry the dependency's name and labels, hash to its
``imageID`` when given, and be ``size`` bytes long when that is given; anything else is an
:class:`~rktcfg.errors.ImageError` naming the chain. So is a cycle (``a -> b -> a``).

:func:`render_order` is pure: the images in appc overwrite order, each once, with the
``pathWhitelist`` filters its files pass through. See its docstring for what "once" means.

No I/O of its own: the store and the ``fetch`` callable do all of it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from rktcfg.errors import AmbiguousError, ImageError, NotFoundError
from rktcfg.image.manifest import Dependency, ImageManifest, parse_image_manifest

TYPE_CHECKING = False
if TYPE_CHECKING:
    from rktcfg.image.fetch import FetchOptions
    from rktcfg.store.images import ImageRecord, ImageStore

__all__ = [
    "MAX_DEPTH",
    "Fetch",
    "ResolvedImage",
    "render_order",
    "resolve_dependencies",
    "store_fetcher",
]

#: ``fetch(image_name, labels) -> image id``: bring a dependency into the store.
Fetch = Callable[[str, dict[str, str]], str]

#: A dependency chain longer than this is refused (it is almost certainly generated garbage).
MAX_DEPTH = 64


@dataclass(frozen=True, slots=True, kw_only=True)
class ResolvedImage:
    """One image of a dependency graph."""

    id: str
    manifest: ImageManifest
    #: IDs of its direct dependencies, in manifest order.
    dependencies: tuple[str, ...]


def store_fetcher(store: ImageStore, options: FetchOptions | None = None) -> Fetch:
    """The ``fetch`` callable that uses :func:`rktcfg.image.fetch.fetch_image` (store first by
    pull policy, then appc discovery), for callers that may go to the network."""

    def fetch(name: str, labels: dict[str, str]) -> str:
        from rktcfg.image.fetch import fetch_image
        from rktcfg.image.manifest import format_app_string

        return fetch_image(store, format_app_string(name, labels), options).record.id

    return fetch


def _labels(dependency: Dependency) -> dict[str, str]:
    return {label.name: label.value for label in dependency.labels}


def _describe(dependency: Dependency) -> str:
    """A dependency as the user wrote it: ``example.com/c`` plus its version and other labels."""
    labels = _labels(dependency)
    text = dependency.image_name
    version = labels.pop("version", None)
    if version is not None:
        text += ":" + version
    if labels:
        text += "," + ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
    return text


class _Resolver:
    def __init__(self, store: ImageStore, fetch: Fetch | None) -> None:
        self.store = store
        self.fetch = fetch
        self.images: dict[str, ResolvedImage] = {}
        # (name, imageID, sorted labels) -> image id: each distinct dependency is looked up
        # (and fetched) once, however many images name it.
        self.found: dict[tuple[str, str | None, tuple[tuple[str, str], ...]], str] = {}

    def manifest(self, record: ImageRecord) -> ImageManifest:
        return parse_image_manifest(record.manifest(), source=f"{record.short_id}:manifest")

    def visit(self, image_id: str, chain: list[str], on_path: list[str]) -> None:
        """Resolve ``image_id`` and, depth-first, what it depends on. ``on_path`` holds the IDs
        from the top image down to this one's parent, ``chain`` their names for messages."""
        if image_id in on_path:
            start = on_path.index(image_id)
            cycle = " -> ".join([*chain[start:], chain[start]])
            raise ImageError(f"dependency cycle: {cycle}")
        if image_id in self.images:
            return
        record = self.store.get(image_id)
        manifest = self.manifest(record)
        here = [*chain, manifest.name_version]
        if len(here) > MAX_DEPTH:
            raise ImageError(
                f"{' -> '.join(here[:3])} -> ...: dependency chain is longer than {MAX_DEPTH}"
            )
        path = [*on_path, image_id]
        ids = tuple(self.find(dependency, here) for dependency in manifest.dependencies)
        self.images[image_id] = ResolvedImage(id=image_id, manifest=manifest, dependencies=ids)
        for dependency_id in ids:
            self.visit(dependency_id, here, path)

    def find(self, dependency: Dependency, chain: list[str]) -> str:
        labels = _labels(dependency)
        key = (dependency.image_name, dependency.image_id, tuple(sorted(labels.items())))
        known = self.found.get(key)
        if known is not None:
            return known
        where = " -> ".join([*chain, _describe(dependency)])
        record = self.lookup(dependency, labels, where)
        self.check(dependency, labels, record, where)
        self.found[key] = record.id
        return record.id

    def lookup(self, dependency: Dependency, labels: dict[str, str], where: str) -> ImageRecord:
        """The stored image that satisfies ``dependency``, fetching it if need be."""
        if dependency.image_id is not None:
            try:
                return self.store.resolve(dependency.image_id)
            except AmbiguousError as exc:
                raise ImageError(f"{where}: imageID {exc.message}") from None
            except NotFoundError:
                pass
        else:
            matches = self.store.find(dependency.image_name, labels)
            if matches:
                return matches[0]  # the most recently imported
        if self.fetch is None:
            raise NotFoundError(f"{where}: dependency is not in the store (fetching is off)")
        try:
            fetched = self.fetch(dependency.image_name, labels)
        except (NotFoundError, ImageError) as exc:
            raise type(exc)(f"{where}: {exc.message}") from None
        try:
            return self.store.get(fetched)
        except NotFoundError:
            raise NotFoundError(
                f"{where}: the fetched image {fetched} is not in the store"
            ) from None

    def check(
        self, dependency: Dependency, labels: dict[str, str], record: ImageRecord, where: str
    ) -> None:
        if dependency.image_id is not None and not record.id.startswith(dependency.image_id):
            raise ImageError(f"{where}: imageID must be {dependency.image_id} (got {record.id})")
        if record.name != dependency.image_name:
            raise ImageError(
                f"{where}: image {record.short_id} must be named {dependency.image_name} "
                f"(got {record.name})"
            )
        for name, value in sorted(labels.items()):
            if record.labels.get(name) != value:
                got = record.labels.get(name)
                raise ImageError(
                    f"{where}: image {record.short_id} must have label {name}={value} "
                    f"(got {'none' if got is None else f'{name}={got}'})"
                )
        if dependency.size is not None and record.blob_size != dependency.size:
            raise ImageError(
                f"{where}: image {record.short_id} must be {dependency.size} bytes "
                f"(got {record.blob_size})"
            )


def resolve_dependencies(
    store: ImageStore, image_id: str, *, fetch: Fetch | None
) -> list[ResolvedImage]:
    """The image ``image_id`` and everything it depends on, each exactly once: the image first,
    then its dependencies in depth-first pre-order (manifest order).

    ``fetch(name, labels)`` brings a missing dependency into the store and returns its ID;
    with None a missing dependency is a NotFoundError naming the chain. A dependency that does
    not match what was asked for (imageID, name, labels, size), or a cycle, is an ImageError.
    """
    resolver = _Resolver(store, fetch)
    resolver.visit(image_id, [], [])
    return list(resolver.images.values())


def render_order(
    resolved: list[ResolvedImage], root_id: str
) -> list[tuple[str, tuple[tuple[str, ...], ...]]]:
    """The images of ``resolved`` in appc overwrite order, each once, with their filters.

    Order: dependencies depth-first in list order, then the image itself (post-order). appc
    applies a shared dependency once per path through the graph (A->[B,C], B->[D], C->[D]
    gives D, B, D, C, A); rktcfg applies each image **once, at its first position** in that
    order -- D, B, C, A -- so a diamond is fetched and rendered once (rkt #1752). The one
    difference: C's files still overwrite D's, but a file that B has and D also has is B's
    here, where the per-path order would let the second D overwrite it.

    Filters: each entry carries the ``pathWhitelist`` of every *dependency* image on the path
    from the root down to that entry's first position, the entry's own included (empty
    whitelists left out). A non-directory of that layer is extracted only if its path is in
    every one of them; ``()`` means no filtering. The whitelist of ``root_id`` itself is not a
    layer filter: it applies to the finished tree (see :mod:`rktcfg.store.trees`).

    Pure. ``resolved`` must hold ``root_id`` and everything reachable from it; a cycle (which
    :func:`resolve_dependencies` never returns) is an ImageError.
    """
    by_id = {image.id: image for image in resolved}
    if root_id not in by_id:
        raise NotFoundError(f"{root_id} is not among the resolved images")
    order: list[tuple[str, tuple[tuple[str, ...], ...]]] = []
    done: set[str] = set()
    on_path: list[str] = []

    def visit(image_id: str, filters: tuple[tuple[str, ...], ...]) -> None:
        if image_id in on_path:
            names = [by_id[i].manifest.name_version for i in on_path[on_path.index(image_id) :]]
            cycle = " -> ".join([*names, by_id[image_id].manifest.name_version])
            raise ImageError(f"dependency cycle: {cycle}")
        if image_id in done:
            return
        image = by_id.get(image_id)
        if image is None:
            raise NotFoundError(f"{image_id} is not among the resolved images")
        whitelist = image.manifest.path_whitelist
        if image_id != root_id and whitelist:
            filters = (*filters, whitelist)
        on_path.append(image_id)
        for dependency_id in image.dependencies:
            visit(dependency_id, filters)
        on_path.pop()
        done.add(image_id)
        order.append((image_id, filters if image_id != root_id else ()))

    visit(root_id, ())
    return order
