"""OCI images to ACIs: layouts, layout tars and docker-save tars built here, converted, checked.

Every input is made in the test with tarfile, json, gzip and hashlib. Each conversion also
checks that the work directory is left empty and that the ACI passes the ACI validator.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import importlib.util
import io
import json
import os
import random
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

import rktcfg.image.imports
from rktcfg.errors import ArchiveError, ImageError, RktcfgError
from rktcfg.image.manifest import host_os_arch, parse_image_manifest
from rktcfg.image.oci import (
    MANIFEST_DIGEST_ANNOTATION,
    OciConversion,
    ac_identifier,
    ac_name,
    convert_oci,
    oci_platform,
)
from rktcfg.store.images import ImageStore

HOST_OS, HOST_ARCH = host_os_arch()
OCI_OS, OCI_ARCH, OCI_VARIANT = oci_platform(HOST_OS, HOST_ARCH)
OTHER_ARCH = "s390x" if OCI_ARCH != "s390x" else "amd64"
MTIME = 1_600_000_000

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"
LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
REF_NAME = "org.opencontainers.image.ref.name"


# --- building inputs -------------------------------------------------------------------------


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def entry(
    name: str,
    data: bytes | None = b"",
    *,
    kind: bytes = tarfile.REGTYPE,
    mode: int = 0o644,
    uid: int = 0,
    gid: int = 0,
    linkname: str = "",
    pax: dict[str, str] | None = None,
) -> tuple[tarfile.TarInfo, bytes | None]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = mode
    info.uid, info.gid = uid, gid
    info.mtime = MTIME
    info.linkname = linkname
    info.uname, info.gname = "someone", "somegroup"
    if pax:
        info.pax_headers = pax
    if kind == tarfile.REGTYPE and data is not None:
        info.size = len(data)
    return info, data if kind == tarfile.REGTYPE else None


def d(name: str, mode: int = 0o755, **kw: Any) -> tuple[tarfile.TarInfo, bytes | None]:
    return entry(name, None, kind=tarfile.DIRTYPE, mode=mode, **kw)


def f(name: str, data: bytes = b"", **kw: Any) -> tuple[tarfile.TarInfo, bytes | None]:
    return entry(name, data, **kw)


def sym(name: str, target: str) -> tuple[tarfile.TarInfo, bytes | None]:
    return entry(name, None, kind=tarfile.SYMTYPE, mode=0o777, linkname=target)


def hard(name: str, target: str) -> tuple[tarfile.TarInfo, bytes | None]:
    return entry(name, None, kind=tarfile.LNKTYPE, linkname=target)


def layer(*members: tuple[tarfile.TarInfo, bytes | None]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


@dataclass
class Blobs:
    """Content-addressed blobs of one layout."""

    store: dict[str, bytes] = field(default_factory=dict)

    def put(self, data: bytes, media_type: str, **extra: Any) -> dict[str, Any]:
        digest = sha256(data)
        self.store[digest] = data
        return {"mediaType": media_type, "digest": digest, "size": len(data), **extra}

    def image(
        self,
        layers: list[bytes],
        config: dict[str, Any] | None = None,
        *,
        arch: str = OCI_ARCH,
        compress: bool = True,
        docker: bool = False,
        created: str | None = "2024-01-02T03:04:05Z",
        **descriptor: Any,
    ) -> dict[str, Any]:
        """A manifest (and its config and layers) in the blobs; returns its descriptor."""
        layer_type = DOCKER_LAYER if docker else LAYER_GZIP if compress else LAYER_TAR
        layer_descs = [
            self.put(gzip.compress(t, mtime=0) if compress else t, layer_type) for t in layers
        ]
        doc: dict[str, Any] = {
            "architecture": arch,
            "os": "linux",
            "config": config or {},
            "rootfs": {"type": "layers", "diff_ids": [sha256(t) for t in layers]},
        }
        if arch == OCI_ARCH and OCI_VARIANT:
            doc["variant"] = OCI_VARIANT
        if created is not None:
            doc["created"] = created
        config_desc = self.put(json.dumps(doc).encode(), DOCKER_CONFIG if docker else OCI_CONFIG)
        manifest_type = DOCKER_MANIFEST if docker else OCI_MANIFEST
        manifest = {
            "schemaVersion": 2,
            "mediaType": manifest_type,
            "config": config_desc,
            "layers": layer_descs,
        }
        return self.put(json.dumps(manifest).encode(), manifest_type, **descriptor)

    def index(self, manifests: list[dict[str, Any]], **descriptor: Any) -> dict[str, Any]:
        doc = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests}
        return self.put(json.dumps(doc).encode(), OCI_INDEX, **descriptor)

    def layout_files(self, manifests: list[dict[str, Any]]) -> dict[str, bytes]:
        files = {
            "oci-layout": b'{"imageLayoutVersion": "1.0.0"}',
            "index.json": json.dumps(
                {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests}
            ).encode(),
        }
        for digest, data in self.store.items():
            files["blobs/" + digest.replace(":", "/")] = data
        return files


def platform(arch: str = OCI_ARCH) -> dict[str, Any]:
    found: dict[str, Any] = {"os": "linux", "architecture": arch}
    if arch == OCI_ARCH and OCI_VARIANT:
        found["variant"] = OCI_VARIANT
    return found


def write_dir(path: Path, files: dict[str, bytes]) -> Path:
    for name, data in files.items():
        target = path / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    return path


def write_tar(path: Path, files: dict[str, bytes], *, links: dict[str, str] | None = None) -> Path:
    with tarfile.open(path, "w:gz" if path.name.endswith(".gz") else "w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type = tarfile.SYMTYPE
            info.linkname = target
            tar.addfile(info)
    return path


def simple_layout(tmp_path: Path, *layers: bytes, **image: Any) -> tuple[Path, dict[str, Any]]:
    blobs = Blobs()
    desc = blobs.image(list(layers), **image)
    desc["annotations"] = {REF_NAME: "example.com/app:1.0"}
    return write_dir(tmp_path / "layout", blobs.layout_files([desc])), desc


# --- converting and reading the result ----------------------------------------------------------


@dataclass
class Aci:
    result: OciConversion
    data: bytes
    path: Path

    def members(self) -> dict[str, tarfile.TarInfo]:
        with tarfile.open(fileobj=io.BytesIO(self.data)) as tar:
            return {m.name: m for m in tar.getmembers()}

    def names(self) -> list[str]:
        with tarfile.open(fileobj=io.BytesIO(self.data)) as tar:
            return tar.getnames()

    def read(self, name: str) -> bytes:
        with tarfile.open(fileobj=io.BytesIO(self.data)) as tar:
            handle = tar.extractfile(name)
            assert handle is not None
            return handle.read()

    def app(self) -> dict[str, Any]:
        app: dict[str, Any] = self.result.manifest["app"]
        return app

    def annotations(self) -> dict[str, str]:
        return {a["name"]: a["value"] for a in self.result.manifest.get("annotations", [])}

    def labels(self) -> dict[str, str]:
        return {a["name"]: a["value"] for a in self.result.manifest.get("labels", [])}


def convert(tmp_path: Path, source: Path, **kw: Any) -> Aci:
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    out = io.BytesIO()
    result = convert_oci(str(source), out, work_dir=str(work), **kw)
    assert os.listdir(work) == []
    path = tmp_path / f"out-{len(list(tmp_path.glob('out-*')))}.aci"
    path.write_bytes(out.getvalue())
    manifest = rktcfg.image.imports.validate_aci_tar(str(path), what="x")
    assert manifest == result.manifest
    return Aci(result=result, data=out.getvalue(), path=path)


BASE = layer(
    d("./"),
    d("bin/"),
    f("bin/hello", b"#!/bin/sh\necho hello\n", mode=0o755),
    d("etc/"),
    f("etc/motd", b"welcome\n"),
)


# --- inputs -----------------------------------------------------------------------------------


def test_layout_directory(tmp_path: Path) -> None:
    layout, desc = simple_layout(tmp_path, BASE, config={"Cmd": ["/bin/hello"]})
    aci = convert(tmp_path, layout)
    assert aci.names() == [
        "manifest",
        "rootfs",
        "rootfs/bin",
        "rootfs/bin/hello",
        "rootfs/etc",
        "rootfs/etc/motd",
    ]
    assert aci.read("rootfs/bin/hello") == b"#!/bin/sh\necho hello\n"
    manifest = aci.result.manifest
    assert manifest["name"] == "example.com/app"
    assert aci.labels() == {"version": "1.0", "os": HOST_OS, "arch": HOST_ARCH}
    assert aci.app() == {"exec": ["/bin/hello"], "user": "0", "group": "0"}
    assert aci.result.source_digest == desc["digest"]
    assert aci.annotations()[MANIFEST_DIGEST_ANNOTATION] == desc["digest"]
    assert aci.annotations()["created"] == "2024-01-02T03:04:05Z"
    assert aci.result.warnings == ()
    members = aci.members()
    assert members["manifest"].mtime == MTIME
    assert all(m.uname == "" and m.gname == "" for m in members.values())
    assert aci.read("manifest") == (json.dumps(manifest, indent=4) + "\n").encode()


@pytest.mark.parametrize("suffix", [".tar", ".tar.gz"])
def test_layout_tar_gives_the_same_aci_as_the_directory(tmp_path: Path, suffix: str) -> None:
    blobs = Blobs()
    desc = blobs.image([BASE], annotations={REF_NAME: "example.com/app:1.0"})
    files = blobs.layout_files([desc])
    from_dir = convert(tmp_path, write_dir(tmp_path / "layout", files))
    from_tar = convert(tmp_path, write_tar(tmp_path / f"layout{suffix}", files))
    assert from_tar.data == from_dir.data


def test_conversion_is_byte_identical_every_time(tmp_path: Path) -> None:
    layout, _ = simple_layout(
        tmp_path, BASE, layer(f("etc/motd", b"changed\n"), f("z", b"z")), config={"Cmd": ["/x"]}
    )
    first = convert(tmp_path, layout)
    second = convert(tmp_path, layout)
    assert first.data == second.data
    assert hashlib.sha512(first.data).digest() == hashlib.sha512(second.data).digest()


def docker_save_files(
    layers: list[bytes], tags: list[str], config: dict[str, Any] | None = None
) -> dict[str, bytes]:
    """The pre-25 ``docker save`` layout: <config>.json, <id>/layer.tar, manifest.json."""
    doc = {
        "architecture": OCI_ARCH,
        "os": "linux",
        "config": config or {},
        "rootfs": {"type": "layers", "diff_ids": [sha256(t) for t in layers]},
    }
    if OCI_VARIANT:
        doc["variant"] = OCI_VARIANT
    config_bytes = json.dumps(doc).encode()
    config_name = hashlib.sha256(config_bytes).hexdigest() + ".json"
    files = {config_name: config_bytes}
    paths = []
    for number, data in enumerate(layers):
        layer_id = hashlib.sha256(b"layer%d" % number).hexdigest()
        files[f"{layer_id}/VERSION"] = b"1.0"
        files[f"{layer_id}/json"] = b"{}"
        files[f"{layer_id}/layer.tar"] = data
        paths.append(f"{layer_id}/layer.tar")
    files["manifest.json"] = json.dumps(
        [{"Config": config_name, "RepoTags": tags, "Layers": paths}]
    ).encode()
    files["repositories"] = b"{}"
    return files


def test_docker_save_with_only_manifest_json(tmp_path: Path) -> None:
    top = layer(f("etc/motd", b"top\n"))
    files = docker_save_files([BASE, top], ["busybox:1.36"], {"Entrypoint": ["/bin/hello"]})
    # older docker writes a repeated layer as a symlink to the first copy
    path = tmp_path / "saved.tar"
    layer_dirs = sorted({n.split("/")[0] for n in files if n.endswith("/layer.tar")})
    with tarfile.open(path, "w") as tar:
        for name, data in files.items():
            if name == f"{layer_dirs[1]}/layer.tar":
                info = tarfile.TarInfo(name)
                info.type = tarfile.SYMTYPE
                info.linkname = "../moved/layer.tar"
                tar.addfile(info)
                name = "moved/layer.tar"
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    aci = convert(tmp_path, path)
    assert aci.result.manifest["name"] == "docker.io/library/busybox"
    assert aci.labels()["version"] == "1.36"
    config_name = next(n for n in files if n.endswith(".json") and "/" not in n and n[0] != "m")
    assert aci.result.source_digest == "sha256:" + config_name.removesuffix(".json")
    assert MANIFEST_DIGEST_ANNOTATION not in aci.annotations()
    assert aci.read("rootfs/etc/motd") == b"top\n"
    assert aci.app()["exec"] == ["/bin/hello"]


def test_docker_save_with_index_json(tmp_path: Path) -> None:
    """Docker 25+: an OCI layout, plus manifest.json naming the same blobs."""
    blobs = Blobs()
    desc = blobs.image(
        [BASE],
        compress=False,
        annotations={
            "io.containerd.image.name": "docker.io/library/busybox:1.36",
            REF_NAME: "1.36",
        },
    )
    manifest = json.loads(blobs.store[desc["digest"]])
    files = blobs.layout_files([desc])
    files["manifest.json"] = json.dumps(
        [
            {
                "Config": "blobs/" + manifest["config"]["digest"].replace(":", "/"),
                "RepoTags": ["busybox:1.36"],
                "Layers": ["blobs/" + m["digest"].replace(":", "/") for m in manifest["layers"]],
            }
        ]
    ).encode()
    files["repositories"] = b"{}"
    path = write_tar(tmp_path / "saved.tar", files)
    aci = convert(tmp_path, path)
    assert aci.result.source_digest == desc["digest"]  # index.json was preferred
    assert aci.result.manifest["name"] == "docker.io/library/busybox"
    assert aci.labels()["version"] == "1.36"
    by_tag = convert(tmp_path, path, reference="busybox:1.36")
    assert by_tag.data == aci.data


def test_docker_save_reference_among_several_images(tmp_path: Path) -> None:
    one = docker_save_files([BASE], ["example.com/one:1"])
    two = docker_save_files([layer(f("two", b"2"))], ["example.com/two:2", "example.com/two:b"])
    entries = json.loads(one.pop("manifest.json")) + json.loads(two.pop("manifest.json"))
    files = {**one, **two, "manifest.json": json.dumps(entries).encode()}
    path = write_tar(tmp_path / "saved.tar", files)
    with pytest.raises(ImageError) as caught:
        convert(tmp_path, path)
    assert "example.com/one:1, example.com/two:2, example.com/two:b" in str(caught.value)
    aci = convert(tmp_path, path, reference="example.com/two:b")
    assert aci.result.manifest["name"] == "example.com/two"
    assert aci.labels()["version"] == "b"
    assert aci.read("rootfs/two") == b"2"


# --- choosing the image -----------------------------------------------------------------------


def test_multi_platform_index_picks_this_hosts_image(tmp_path: Path) -> None:
    blobs = Blobs()
    other = blobs.image(
        [layer(f("which", b"other"))], arch=OTHER_ARCH, platform=platform(OTHER_ARCH)
    )
    mine = blobs.image([layer(f("which", b"mine"))], platform=platform())
    attestation = blobs.image(
        [layer(f("which", b"attestation"))],
        platform={"os": "unknown", "architecture": "unknown"},
        annotations={"vnd.docker.reference.type": "attestation-manifest"},
    )
    nested = blobs.index([other, mine, attestation], annotations={REF_NAME: "example.com/multi:2"})
    layout = write_dir(tmp_path / "layout", blobs.layout_files([nested]))
    aci = convert(tmp_path, layout)
    assert aci.read("rootfs/which") == b"mine"
    assert aci.result.source_digest == mine["digest"]
    assert aci.result.manifest["name"] == "example.com/multi"
    assert aci.labels()["version"] == "2"


def test_index_with_only_other_platforms_names_them(tmp_path: Path) -> None:
    blobs = Blobs()
    first = blobs.image([BASE], arch=OTHER_ARCH, platform=platform(OTHER_ARCH))
    second = blobs.image(
        [BASE], arch="arm", platform={"os": "linux", "architecture": "arm", "variant": "v5"}
    )
    layout = write_dir(tmp_path / "layout", blobs.layout_files([first, second]))
    with pytest.raises(ImageError) as caught:
        convert(tmp_path, layout, name="example.com/x")
    message = str(caught.value)
    assert f"linux/{OTHER_ARCH}" in message and "linux/arm/v5" in message
    assert f"no image for linux/{OCI_ARCH}" in message


def test_reference_selects_among_tagged_images(tmp_path: Path) -> None:
    blobs = Blobs()
    one = blobs.image([layer(f("v", b"1"))], annotations={REF_NAME: "example.com/app:1"})
    two = blobs.image([layer(f("v", b"2"))], annotations={REF_NAME: "example.com/app:2"})
    layout = write_dir(tmp_path / "layout", blobs.layout_files([one, two]))
    with pytest.raises(ImageError) as caught:
        convert(tmp_path, layout)
    assert "choose one with a reference: example.com/app:1, example.com/app:2" in str(caught.value)
    with pytest.raises(ImageError) as caught:
        convert(tmp_path, layout, reference="example.com/app:3")
    assert "'example.com/app:3'" in str(caught.value)
    assert "example.com/app:1, example.com/app:2" in str(caught.value)
    aci = convert(tmp_path, layout, reference="example.com/app:2")
    assert aci.read("rootfs/v") == b"2"
    assert aci.labels()["version"] == "2"


def test_a_name_is_needed_when_no_reference_gives_one(tmp_path: Path) -> None:
    blobs = Blobs()
    desc = blobs.image([BASE], annotations={REF_NAME: "stable"})
    layout = write_dir(tmp_path / "layout", blobs.layout_files([desc]))
    with pytest.raises(ImageError, match="give a name"):
        convert(tmp_path, layout)
    aci = convert(tmp_path, layout, name="example.com/stable")
    assert aci.result.manifest["name"] == "example.com/stable"
    assert aci.labels()["version"] == "stable"
    with pytest.raises(ImageError, match="AC Identifier"):
        convert(tmp_path, layout, name="Not_Valid")


def test_image_names_are_mapped_to_ac_identifiers(tmp_path: Path) -> None:
    assert ac_identifier("docker.io/library/busybox") == "docker.io/library/busybox"
    assert ac_identifier("Registry.Example.COM:5000/My_Team/app__x") == (
        "registry.example.com-5000/my_team/app_x"
    )
    assert ac_identifier("a/-b c+d") == "a/b-c-d"
    assert ac_identifier("---") is None
    assert ac_name("/var/lib/My_Data") == "var-lib-my-data"
    layout, _ = simple_layout(tmp_path, BASE)
    index = json.loads((layout / "index.json").read_bytes())
    index["manifests"][0]["annotations"][REF_NAME] = "localhost:5000/Team__A/App:v1.2"
    (layout / "index.json").write_text(json.dumps(index))
    aci = convert(tmp_path, layout)
    assert aci.result.manifest["name"] == "localhost-5000/team_a/app"
    assert aci.labels()["version"] == "v1.2"


# --- layers -----------------------------------------------------------------------------------


def test_whiteouts_and_opaque_directories(tmp_path: Path) -> None:
    lower = layer(
        d("etc/"),
        f("etc/passwd", b"root\n"),
        f("etc/old", b"old\n"),
        f("etc/motd", b"lower motd\n"),
        d("opt/"),
        f("opt/lower", b"lower\n"),
        d("opt/sub/"),
        f("opt/sub/deep", b"deep\n"),
        d("cache/"),
        f("cache/a", b"a"),
    )
    upper = layer(
        f("etc/.wh.old"),
        f("etc/motd", b"upper motd\n"),
        f("etc/.wh.motd"),  # affects lower layers only: this layer's motd stays
        f("opt/before", b"before the marker\n"),
        f("opt/.wh..wh..opq"),
        f("opt/after", b"after the marker\n"),
        f(".wh.cache"),
        f(".wh.nothing-there"),
    )
    layout, _ = simple_layout(tmp_path, lower, upper)
    aci = convert(tmp_path, layout)
    assert aci.names() == [
        "manifest",
        "rootfs",
        "rootfs/etc",
        "rootfs/etc/motd",
        "rootfs/etc/passwd",
        "rootfs/opt",
        "rootfs/opt/after",
        "rootfs/opt/before",
    ]
    assert aci.read("rootfs/etc/motd") == b"upper motd\n"
    assert aci.read("rootfs/opt/before") == b"before the marker\n"
    assert not any(".wh." in name for name in aci.names())


def test_replacing_files_and_directories_across_layers(tmp_path: Path) -> None:
    lower = layer(
        f("x", b"was a file"),
        d("y/"),
        f("y/child", b"child"),
        d("keep/", mode=0o755, uid=1),
        f("keep/child", b"kept"),
    )
    upper = layer(
        d("x/"),
        f("x/inner", b"inner"),
        f("y", b"now a file"),
        d("keep/", mode=0o700, uid=2),
    )
    layout, _ = simple_layout(tmp_path, lower, upper)
    aci = convert(tmp_path, layout)
    members = aci.members()
    assert members["rootfs/x"].isdir()
    assert aci.read("rootfs/x/inner") == b"inner"
    assert members["rootfs/y"].isreg() and aci.read("rootfs/y") == b"now a file"
    assert "rootfs/y/child" not in members
    assert members["rootfs/keep"].mode == 0o700 and members["rootfs/keep"].uid == 2
    assert aci.read("rootfs/keep/child") == b"kept"


def test_parent_symlinks_are_followed_inside_the_tree(tmp_path: Path) -> None:
    lower = layer(d("usr/"), d("usr/lib/"), sym("lib", "usr/lib"), sym("abs", "/usr"))
    upper = layer(f("lib/libc.so", b"libc"), f("abs/lib/libm.so", b"libm"))
    layout, _ = simple_layout(tmp_path, lower, upper)
    aci = convert(tmp_path, layout)
    assert aci.read("rootfs/usr/lib/libc.so") == b"libc"
    assert aci.read("rootfs/usr/lib/libm.so") == b"libm"
    assert aci.members()["rootfs/lib"].issym()
    assert aci.members()["rootfs/lib"].linkname == "usr/lib"


def test_hard_links(tmp_path: Path) -> None:
    lower = layer(
        d("bin/"),
        f("bin/busybox", b"busybox binary", mode=0o755),
        hard("bin/sh", "bin/busybox"),
        hard("bin/ash", "./bin/sh"),  # a link to a link shares the same content
        f("z-target", b"z data"),
        hard("a-link", "z-target"),  # sorts before its target
    )
    aci = convert(tmp_path, simple_layout(tmp_path, lower)[0])
    members = aci.members()
    assert members["rootfs/bin/ash"].isreg()
    assert aci.read("rootfs/bin/ash") == b"busybox binary"
    assert members["rootfs/bin/busybox"].islnk()
    assert members["rootfs/bin/busybox"].linkname == "rootfs/bin/ash"
    assert members["rootfs/bin/sh"].linkname == "rootfs/bin/ash"
    assert members["rootfs/a-link"].isreg() and members["rootfs/z-target"].islnk()
    assert members["rootfs/z-target"].linkname == "rootfs/a-link"


def test_hard_link_whose_target_goes_away_keeps_the_data(tmp_path: Path) -> None:
    """Documented choice: the link is materialised, as the inode would survive on disk."""
    lower = layer(
        d("bin/"),
        f("bin/busybox", b"busybox binary", mode=0o4755),
        hard("bin/sh", "bin/busybox"),
        f("lib-a", b"old a"),
        hard("lib-b", "lib-a"),
    )
    upper = layer(f("bin/.wh.busybox"), f("lib-a", b"new a"))
    tmp = tmp_path / "two"
    tmp.mkdir()
    aci = convert(tmp, simple_layout(tmp, lower, upper)[0])
    members = aci.members()
    assert "rootfs/bin/busybox" not in members
    assert members["rootfs/bin/sh"].isreg() and members["rootfs/bin/sh"].mode == 0o4755
    assert aci.read("rootfs/bin/sh") == b"busybox binary"
    assert aci.read("rootfs/lib-a") == b"new a"
    assert members["rootfs/lib-b"].isreg() and aci.read("rootfs/lib-b") == b"old a"


def test_hard_link_to_a_missing_target_is_refused(tmp_path: Path) -> None:
    layout, _ = simple_layout(tmp_path, BASE, layer(hard("etc/link", "etc/nothing")))
    with pytest.raises(ArchiveError, match=r"etc/link: hard link target etc/nothing does not"):
        convert(tmp_path, layout)


def test_owners_modes_devices_and_xattrs_are_kept(tmp_path: Path) -> None:
    capability = "\x01\x00\x00\x02\x00\x20\x00\x00"
    device = entry("dev/null", None, kind=tarfile.CHRTYPE, mode=0o666)
    device[0].devmajor, device[0].devminor = 1, 3
    content = layer(
        d("dev/"),
        device,
        entry("dev/fifo", None, kind=tarfile.FIFOTYPE, mode=0o600),
        d("home/user/", mode=0o700, uid=1000, gid=1000),
        f("home/user/tool", b"tool", mode=0o4755, uid=1000, gid=1000),
        f("ping", b"ping", mode=0o755, pax={"SCHILY.xattr.security.capability": capability}),
    )
    aci = convert(tmp_path, simple_layout(tmp_path, content)[0])
    members = aci.members()
    tool = members["rootfs/home/user/tool"]
    assert (tool.mode, tool.uid, tool.gid) == (0o4755, 1000, 1000)
    assert (tool.uname, tool.gname) == ("", "")
    assert members["rootfs/home/user"].uid == 1000 and members["rootfs/home/user"].mode == 0o700
    assert "rootfs/home" in members and members["rootfs/home"].mode == 0o755  # implicit
    null = members["rootfs/dev/null"]
    assert null.ischr() and (null.devmajor, null.devminor, null.mode) == (1, 3, 0o666)
    assert members["rootfs/dev/fifo"].isfifo()
    assert members["rootfs/ping"].pax_headers["SCHILY.xattr.security.capability"] == capability


def test_uncompressed_layers(tmp_path: Path) -> None:
    layout, _ = simple_layout(tmp_path, BASE, compress=False)
    assert convert(tmp_path, layout).read("rootfs/etc/motd") == b"welcome\n"


@pytest.mark.skipif(importlib.util.find_spec("zstandard") is not None, reason="zstandard present")
def test_zstd_layers_need_the_zstandard_module(tmp_path: Path) -> None:
    blobs = Blobs()
    desc = blobs.image([BASE], annotations={REF_NAME: "example.com/app:1"})
    manifest = json.loads(blobs.store[desc["digest"]])
    fake = b"\x28\xb5\x2f\xfd" + b"not really zstd"
    manifest["layers"][0] = blobs.put(fake, LAYER_ZSTD)
    desc = blobs.put(json.dumps(manifest).encode(), OCI_MANIFEST)
    layout = write_dir(tmp_path / "layout", blobs.layout_files([desc]))
    with pytest.raises(ImageError, match="zstandard"):
        convert(tmp_path, layout, name="example.com/app")


# --- refusals ---------------------------------------------------------------------------------


def test_a_damaged_blob_is_refused(tmp_path: Path) -> None:
    layout, desc = simple_layout(tmp_path, BASE)
    manifest = json.loads((layout / "blobs" / desc["digest"].replace(":", "/")).read_bytes())
    blob = layout / "blobs" / manifest["layers"][0]["digest"].replace(":", "/")
    data = bytearray(blob.read_bytes())
    data[-5] ^= 0xFF  # the gzip trailer: same size, different content
    blob.write_bytes(bytes(data))
    with pytest.raises(ArchiveError) as caught:
        convert(tmp_path, layout)
    assert f"blob {manifest['layers'][0]['digest']} does not match its digest" in str(caught.value)
    blob.write_bytes(bytes(data) + b"more")
    with pytest.raises(ArchiveError, match="bytes, but its descriptor says"):
        convert(tmp_path, layout)
    config = layout / "blobs" / manifest["config"]["digest"].replace(":", "/")
    config.write_bytes(config.read_bytes().replace(b'"os"', b'"OS"'))
    with pytest.raises(ArchiveError, match=manifest["config"]["digest"]):
        convert(tmp_path, layout)


def test_a_layer_that_does_not_match_its_diff_id_is_refused(tmp_path: Path) -> None:
    blobs = Blobs()
    desc = blobs.image([BASE])
    manifest = json.loads(blobs.store[desc["digest"]])
    other = gzip.compress(layer(f("evil", b"x")), mtime=0)
    manifest["layers"][0] = blobs.put(other, LAYER_GZIP)  # a valid blob, the wrong content
    desc = blobs.put(json.dumps(manifest).encode(), OCI_MANIFEST)
    layout = write_dir(tmp_path / "layout", blobs.layout_files([desc]))
    with pytest.raises(ArchiveError, match="but the config's diff_id is"):
        convert(tmp_path, layout, name="example.com/app")


def test_dot_dot_in_a_layer_is_refused(tmp_path: Path) -> None:
    layout, _ = simple_layout(tmp_path, layer(f("etc/../../escape", b"x")))
    with pytest.raises(ArchiveError, match=r"layer 1 .*etc/\.\./\.\./escape.*'\.\.'"):
        convert(tmp_path, layout)
    layout2, _ = simple_layout(tmp_path / "b", BASE, layer(hard("link", "../etc/motd")))
    with pytest.raises(ArchiveError, match=r"hard link target has a '\.\.' component"):
        convert(tmp_path, layout2)


def test_the_size_limit_is_checked_while_decompressing(tmp_path: Path) -> None:
    big = layer(f("big", b"\0" * 200_000))
    layout, _ = simple_layout(tmp_path, BASE, big)
    with pytest.raises(ArchiveError, match="more than the limit of 100000 bytes"):
        convert(tmp_path, layout, max_bytes=100_000)


def test_not_an_image(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(ImageError, match=r"no index\.json or manifest\.json"):
        convert(tmp_path, tmp_path / "empty")


# --- the manifest -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("user", "expected"),
    [
        ("", ("0", "0")),
        ("nobody", ("nobody", "0")),
        ("1000", ("1000", "0")),
        ("app:staff", ("app", "staff")),
        ("1000:1000", ("1000", "1000")),
    ],
)
def test_user_and_group(tmp_path: Path, user: str, expected: tuple[str, str]) -> None:
    layout, _ = simple_layout(tmp_path, BASE, config={"User": user})
    app = convert(tmp_path, layout).app()
    assert (app["user"], app["group"]) == expected


def test_config_maps_to_the_app(tmp_path: Path) -> None:
    config = {
        "Entrypoint": ["/bin/tini", "--"],
        "Cmd": ["/bin/hello", "world"],
        "Env": ["PATH=/usr/bin:/bin", "EMPTY=", "A=b=c", "bad name=x", "NOEQUALS", "PATH=/bin"],
        "WorkingDir": "/srv",
        "User": "www:www",
        "ExposedPorts": {"8080/tcp": {}, "53/udp": {}, "443": {}, "bogus/tcp": {}},
        "Volumes": {"/data": {}, "/var/lib/My_DB": {}, "/data/": {}, "relative": {}},
        "Labels": {
            "org.opencontainers.image.title": "hello",
            "Maintainer": "someone",
            "com.Example_Label": "v",
            "Com.Example Thing": "t",
            "!!!": "cannot be mapped",
            "homepage": "not a url",
            "created": "clashes with ours",
        },
    }
    layout, desc = simple_layout(tmp_path, BASE, config=config)
    aci = convert(tmp_path, layout)
    app = aci.app()
    assert app["exec"] == ["/bin/tini", "--", "/bin/hello", "world"]
    assert app["environment"] == [
        {"name": "PATH", "value": "/bin"},
        {"name": "EMPTY", "value": ""},
        {"name": "A", "value": "b=c"},
    ]
    assert app["workingDirectory"] == "/srv"
    assert (app["user"], app["group"]) == ("www", "www")
    assert app["ports"] == [
        {"name": "53-udp", "protocol": "udp", "port": 53, "count": 1, "socketActivated": False},
        {"name": "443-tcp", "protocol": "tcp", "port": 443, "count": 1, "socketActivated": False},
        {
            "name": "8080-tcp",
            "protocol": "tcp",
            "port": 8080,
            "count": 1,
            "socketActivated": False,
        },
    ]
    assert app["mountPoints"] == [
        {"name": "volume-data", "path": "/data"},
        {"name": "volume-data-2", "path": "/data/"},
        {"name": "volume-var-lib-my-db", "path": "/var/lib/My_DB"},
    ]
    annotations = aci.annotations()
    assert annotations["org.opencontainers.image.title"] == "hello"
    assert annotations["maintainer"] == "someone"
    assert annotations["com.example_label"] == "v"
    assert annotations["com.example-thing"] == "t"
    assert annotations["created"] == "2024-01-02T03:04:05Z"
    assert annotations[MANIFEST_DIGEST_ANNOTATION] == desc["digest"]
    assert "homepage" not in annotations
    warnings = "\n".join(aci.result.warnings)
    for dropped in ("'!!!'", "'homepage'", "'created'", "'bad name=x'", "'NOEQUALS'"):
        assert dropped in warnings
    assert "'bogus/tcp'" in warnings and "'relative'" in warnings
    parse_image_manifest(aci.result.manifest)


def test_an_empty_config_gives_an_app_without_exec(tmp_path: Path) -> None:
    layout, _ = simple_layout(tmp_path, BASE, created="yesterday")
    aci = convert(tmp_path, layout)
    assert aci.app() == {"user": "0", "group": "0"}
    assert "created" not in aci.annotations()
    assert any("'yesterday'" in w for w in aci.result.warnings)


# --- the store ----------------------------------------------------------------------------------


def test_the_aci_imports_into_the_store(tmp_path: Path) -> None:
    layout, _ = simple_layout(tmp_path, BASE, layer(f("etc/motd", b"new\n")))
    aci = convert(tmp_path, layout)
    with ImageStore(str(tmp_path / "data")) as store, open(aci.path, "rb") as handle:
        imported = store.import_archive(
            handle,
            what="x",
            validate=lambda p: rktcfg.image.imports.validate_aci_tar(p, what="x"),
        )
        assert imported.new
        assert imported.record.name == "example.com/app"
        assert imported.record.version == "1.0"
        assert imported.record.id == "sha512-" + hashlib.sha512(aci.data).hexdigest()
        assert store.resolve("example.com/app:1.0").id == imported.record.id


def test_a_damaged_archive_gives_an_image_error_or_an_image(tmp_path: Path) -> None:
    """Random byte flips and truncations of a layout tar: never another exception."""
    blobs = Blobs()
    desc = blobs.image([BASE], annotations={REF_NAME: "example.com/app:1"})
    data = write_tar(tmp_path / "layout.tar", blobs.layout_files([desc])).read_bytes()
    rng = random.Random(7)
    work = tmp_path / "work"
    work.mkdir()
    for _ in range(80):
        damaged = bytearray(data)
        for _ in range(rng.randint(1, 4)):
            damaged[rng.randrange(len(damaged))] = rng.randrange(256)
        if rng.random() < 0.25:
            damaged = damaged[: rng.randrange(len(damaged))]
        path = tmp_path / "damaged.tar"
        path.write_bytes(bytes(damaged))
        with contextlib.suppress(RktcfgError):
            convert_oci(str(path), io.BytesIO(), work_dir=str(work))
        assert os.listdir(work) == []


def test_fetch_oci_and_docker_archive_references(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from rktcfg.cli.main import main

    data = str(tmp_path / "data")
    layout, _ = simple_layout(tmp_path, BASE, layer(f("etc/motd", b"oci\n")))
    assert main(["--dir", data, "fetch", f"oci:{layout}"]) == 0
    first = capsys.readouterr().out.strip()
    assert main(["--dir", data, "fetch", f"oci:{layout}#example.com/app:1.0"]) == 0
    assert capsys.readouterr().out.strip() == first  # reproducible: the same image again
    files = docker_save_files([BASE], ["busybox:1.36"], {"Entrypoint": ["/bin/hello"]})
    archive = write_tar(tmp_path / "saved.tar", files)
    assert main(["--dir", data, "fetch", f"docker-archive:{archive}"]) == 0
    capsys.readouterr()
    assert main(["--dir", data, "image", "list", "--no-legend", "--fields", "name"]) == 0
    names = sorted(capsys.readouterr().out.split())
    assert names == ["docker.io/library/busybox:1.36", "example.com/app:1.0"]
    assert main(["--dir", data, "fetch", f"oci:{tmp_path / 'missing'}"]) == 2
    assert "missing" in capsys.readouterr().err
