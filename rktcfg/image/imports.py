"""Importing image files into the store: ACI archives (plain, gzip, bzip2, xz).

The one path by which an image enters the store; ``fetch`` and ``image build`` end here.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from rktcfg.errors import ImageError, NotFoundError
from rktcfg.image import aci
from rktcfg.image.manifest import ImageManifest, check_runs_here, parse_image_manifest
from rktcfg.store.images import ImageStore, ImportResult


def validate_aci_tar(
    tar_path: str, *, what: str, expect: Callable[[ImageManifest], None] | None = None
) -> dict[str, Any]:
    """Check an uncompressed ACI in place: layout, manifest, os/arch, and ``expect`` (which
    raises if the image is not the one asked for). Returns the manifest JSON."""
    raw = aci.read_layout(tar_path, what=what)
    manifest = parse_image_manifest(raw, source=f"{what}:manifest")
    check_runs_here(manifest)
    if expect is not None:
        expect(manifest)
    return manifest.raw


def import_aci_file(
    store: ImageStore,
    path: str,
    *,
    origin: str | None = None,
    expect: Callable[[ImageManifest], None] | None = None,
    max_bytes: int | None = None,
) -> ImportResult:
    """Import the ACI at ``path``; an existing identical image is reused, not duplicated.
    Nothing changes in the store unless the image is valid (and ``expect`` accepts it)."""
    try:
        handle = open(path, "rb")  # noqa: SIM115 - closed below, after the import
    except FileNotFoundError:
        raise NotFoundError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ImageError(f"{path}: is a directory, not an image file") from None
    except OSError as exc:
        raise ImageError(f"{path}: cannot read: {exc.strerror}") from None
    with handle:
        what = os.path.basename(path)
        try:
            return store.import_archive(
                handle,
                what=what,
                origin=origin or "file://" + os.path.abspath(path),
                validate=lambda tar_path: validate_aci_tar(tar_path, what=what, expect=expect),
                max_bytes=max_bytes,
            )
        except ImageError as exc:
            if exc.message.startswith(what):
                raise
            raise type(exc)(f"{what}: {exc.message}") from None


def import_oci(
    store: ImageStore,
    source: str,
    *,
    reference: str | None = None,
    origin: str | None = None,
    max_bytes: int | None = None,
) -> tuple[ImportResult, tuple[str, ...]]:
    """Convert an OCI layout (directory or tar) or docker-save tar and import the result.

    The conversion is reproducible, so the same input always gives the same image ID.
    Returns the import result and the conversion's warnings (labels that could not be kept).
    """
    import tempfile

    from rktcfg.image.oci import convert_oci

    what = os.path.basename(source.rstrip("/")) or source
    with tempfile.TemporaryDirectory(dir=store.root, prefix="oci-") as work:
        converted = os.path.join(work, "image.aci")
        with open(converted, "wb") as output:
            conversion = convert_oci(
                source,
                output,
                reference=reference,
                work_dir=work,
                max_bytes=max_bytes or aci.DEFAULT_MAX_TAR_BYTES,
            )
        with open(converted, "rb") as handle:
            result = store.import_archive(
                handle,
                what=what,
                origin=origin or source,
                validate=lambda tar_path: validate_aci_tar(tar_path, what=what),
                max_bytes=max_bytes,
            )
    return result, conversion.warnings
