"""The image store, import, build and the image commands, on real files and processes."""

from __future__ import annotations

import bz2
import gzip
import hashlib
import io
import json
import lzma
import os
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path
from typing import Any

import pytest
from imagehelpers import HOST_OS, make_rootfs, manifest

from rktcfg.cli.main import main
from rktcfg.errors import AmbiguousError, ArchiveError, ImageError, NotFoundError, ValidationError
from rktcfg.image.build import build_aci
from rktcfg.image.imports import import_aci_file
from rktcfg.store.images import ImageStore


@pytest.fixture
def aci(tmp_path: Path) -> Path:
    rootfs = make_rootfs(tmp_path / "rootfs")
    out = tmp_path / "hello.aci"
    build_aci(str(rootfs), str(out), manifest())
    return out


@pytest.fixture
def store(tmp_path: Path) -> ImageStore:
    with ImageStore(str(tmp_path / "data")) as opened:
        yield opened  # type: ignore[misc]


def store_contents(data: Path) -> tuple[list[str], list[str], list[str]]:
    images = data / "images"
    with ImageStore(str(data)) as s:
        ids = [r.id for r in s.records()]
    return ids, sorted(os.listdir(images / "blobs" / "sha512")), sorted(os.listdir(images / "tmp"))


def sha512_id(data: bytes) -> str:
    return "sha512-" + hashlib.sha512(data).hexdigest()


# --- build -------------------------------------------------------------------------------


def test_build_is_deterministic_and_the_id_is_the_tar_hash(tmp_path: Path) -> None:
    rootfs = make_rootfs(tmp_path / "rootfs")
    first = build_aci(str(rootfs), str(tmp_path / "a.aci"), manifest(), source_date_epoch=10)
    os.utime(rootfs / "etc" / "motd", (time.time() + 100, time.time() + 100))
    second = build_aci(str(rootfs), str(tmp_path / "b.aci"), manifest(), source_date_epoch=10)
    a, b = (tmp_path / "a.aci").read_bytes(), (tmp_path / "b.aci").read_bytes()
    assert a == b and first == second == sha512_id(a)
    with tarfile.open(tmp_path / "a.aci") as tar:
        members = {m.name: m for m in tar.getmembers()}
    assert list(members)[:2] == ["manifest", "rootfs"]
    assert all(m.mtime <= 10 and m.uid == 0 and m.uname == "" for m in members.values())
    assert members["rootfs/bin/hello"].mode == 0o4755
    assert members["rootfs/etc/motd.link"].islnk()
    assert members["rootfs/etc/motd.link"].linkname == "rootfs/etc/motd"
    assert members["rootfs/etc/localtime"].linkname == "/usr/share/zoneinfo/UTC"


def test_build_refuses_an_invalid_manifest_and_writes_nothing(tmp_path: Path) -> None:
    rootfs = make_rootfs(tmp_path / "rootfs")
    with pytest.raises(ValidationError, match="name: must be an AC Identifier"):
        build_aci(str(rootfs), str(tmp_path / "x.aci"), manifest(name="Not Valid"))
    assert not list(tmp_path.glob("x.aci*"))


# --- import ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "compress",
    [
        lambda b: b,
        gzip.compress,
        bz2.compress,
        lzma.compress,
    ],
    ids=["tar", "gzip", "bzip2", "xz"],
)
def test_import_detects_compression_by_content(
    tmp_path: Path, aci: Path, store: ImageStore, compress: Any
) -> None:
    raw = aci.read_bytes()
    target = tmp_path / "image.bin"  # no telling extension
    target.write_bytes(compress(raw))
    result = import_aci_file(store, str(target))
    assert result.new and result.record.id == sha512_id(raw)
    assert result.record.name_version == "example.com/hello:1.0"
    assert result.record.blob_size == len(raw)
    assert Path(store.blob_path(result.record.id)).read_bytes() == raw
    again = import_aci_file(store, str(aci))
    assert not again.new and again.record.id == result.record.id
    assert len(store.records()) == 1


def _tar(entries: dict[str, bytes | None]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, data in entries.items():
            info = tarfile.TarInfo(name)
            if data is None:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


GOOD_MANIFEST = json.dumps(manifest()).encode()


@pytest.mark.parametrize(
    ("content", "error", "message"),
    [
        (
            _tar({"manifest": GOOD_MANIFEST, "rootfs": None, "etc": None}),
            ImageError,
            "top-level entry 'etc'",
        ),
        (_tar({"rootfs": None}), ImageError, "has no manifest"),
        (_tar({"manifest": GOOD_MANIFEST}), ImageError, "has no rootfs/"),
        (
            _tar({"manifest": GOOD_MANIFEST, "rootfs": None, "./manifest": b"{}"}),
            ImageError,
            "duplicate entry 'manifest'",
        ),
        (_tar({"manifest": b"{not json", "rootfs": None}), ValidationError, "is not valid JSON"),
        (
            _tar({"manifest": json.dumps(manifest(name="UPPER")).encode(), "rootfs": None}),
            ValidationError,
            "name: must be an AC Identifier",
        ),
        (
            _tar(
                {
                    "manifest": json.dumps(
                        {
                            **manifest(),
                            "labels": [
                                {"name": "os", "value": "linux"},
                                {"name": "arch", "value": "s390x"},
                            ],
                        }
                    ).encode(),
                    "rootfs": None,
                }
            ),
            ImageError,
            "this host is",
        ),
        (
            gzip.compress(_tar({"manifest": GOOD_MANIFEST, "rootfs": None}))[:-30],
            ArchiveError,
            "truncated or corrupt",
        ),
        (b"#!/bin/sh\necho not an image\n" * 40, ImageError, "not an image archive"),
    ],
    ids=[
        "extra-top-level",
        "no-manifest",
        "no-rootfs",
        "duplicate",
        "bad-json",
        "bad-name",
        "wrong-arch",
        "truncated-gzip",
        "not-an-archive",
    ],
)
def test_bad_images_leave_the_store_unchanged(
    tmp_path: Path, aci: Path, content: bytes, error: type[Exception], message: str
) -> None:
    data = tmp_path / "data"
    with ImageStore(str(data)) as s:
        import_aci_file(s, str(aci))
    before = store_contents(data)
    bad = tmp_path / "bad.aci"
    bad.write_bytes(content)
    with ImageStore(str(data)) as s, pytest.raises(error, match=message) as caught:
        import_aci_file(s, str(bad))
    assert str(caught.value).startswith("bad.aci")
    assert store_contents(data) == before


def test_missing_file_and_directory(tmp_path: Path, store: ImageStore) -> None:
    with pytest.raises(NotFoundError, match="no such file"):
        import_aci_file(store, str(tmp_path / "missing.aci"))
    with pytest.raises(ImageError, match="is a directory"):
        import_aci_file(store, str(tmp_path))


def test_resolve_by_short_id_and_name(tmp_path: Path, store: ImageStore) -> None:
    ids = []
    for version in ("1.0", "2.0"):
        rootfs = make_rootfs(tmp_path / f"rootfs-{version}", payload=version.encode())
        out = tmp_path / f"{version}.aci"
        build_aci(str(rootfs), str(out), manifest(version=version))
        ids.append(import_aci_file(store, str(out)).record.id)
    assert store.resolve(ids[0]).id == ids[0]
    assert store.resolve(ids[1][:19]).id == ids[1]  # sha512- and 12 hex
    assert store.resolve("example.com/hello:2.0").id == ids[1]
    with pytest.raises(NotFoundError, match="at least 12 hex"):
        store.resolve(ids[0][:15])
    with pytest.raises(AmbiguousError) as caught:
        store.resolve("example.com/hello")
    assert "2 images match" in str(caught.value)
    assert "example.com/hello:1.0" in str(caught.value) and "example.com/hello:2.0" in str(
        caught.value
    )
    with pytest.raises(NotFoundError, match=r"no image matches 'example\.com/other'"):
        store.resolve("example.com/other")


# --- crashes and concurrency -----------------------------------------------------------------


def test_sweep_removes_what_interrupted_imports_left(tmp_path: Path, aci: Path) -> None:
    data = tmp_path / "data"
    raw = aci.read_bytes()
    hexdigest = hashlib.sha512(raw).hexdigest()
    with ImageStore(str(data)) as s:
        tmp, blobs = Path(s.tmp), Path(s.blobs)
    (tmp / "0123456789abcdef.part").write_bytes(raw[:1000])  # killed while writing
    (tmp / f"{hexdigest}.ready").write_bytes(raw)  # killed after linking, before commit
    os.link(tmp / f"{hexdigest}.ready", blobs / hexdigest)
    assert store_contents(data) == ([], [], [])


def test_sweep_keeps_blobs_whose_record_committed(tmp_path: Path, aci: Path) -> None:
    data = tmp_path / "data"
    with ImageStore(str(data)) as s:
        record = import_aci_file(s, str(aci)).record
        hexdigest = record.id[len("sha512-") :]
        os.link(s.blob_path(record.id), Path(s.tmp) / f"{hexdigest}.ready")  # killed after commit
    assert store_contents(data) == ([record.id], [hexdigest], [])


IMPORTER = """
import sys
from rktcfg.image.imports import import_aci_file
from rktcfg.store.images import ImageStore
with ImageStore(sys.argv[1]) as store:
    print(import_aci_file(store, sys.argv[2]).record.id, flush=True)
"""


def _big_aci(tmp_path: Path) -> Path:
    rootfs = tmp_path / "big-rootfs"
    (rootfs / "data").mkdir(parents=True)
    for i in range(8):
        (rootfs / "data" / f"blob{i}").write_bytes(os.urandom(4 << 20))
    out = tmp_path / "big.aci"
    build_aci(str(rootfs), str(out), manifest(name="example.com/big"))
    return out


def test_kill_at_any_point_leaves_nothing_or_a_complete_image(tmp_path: Path) -> None:
    big = _big_aci(tmp_path)
    expected = sha512_id(big.read_bytes())
    outcomes = set()
    for delay in (0.05, 0.15, 0.3, 0.5, 0.8, 1.2):
        data = tmp_path / f"data-{delay}"
        proc = subprocess.Popen([sys.executable, "-c", IMPORTER, str(data), str(big)])
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        if not data.joinpath("images").exists():
            outcomes.add("nothing")
            continue
        ids, blobs, tmp = store_contents(data)  # opening the store sweeps
        assert tmp == []
        if ids:
            assert ids == [expected] and blobs == [expected[len("sha512-") :]]
            blob = data / "images" / "blobs" / "sha512" / blobs[0]
            assert sha512_id(blob.read_bytes()) == expected
            outcomes.add("complete")
        else:
            assert blobs == []
            outcomes.add("nothing")
    assert outcomes  # each run ended in one of the two allowed states


def test_concurrent_imports_of_one_image_end_with_one_image(tmp_path: Path) -> None:
    big = _big_aci(tmp_path)
    data = tmp_path / "data"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", IMPORTER, str(data), str(big)],
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    outputs = [p.communicate(timeout=120)[0].strip() for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert len(set(outputs)) == 1
    ids, blobs, tmp = store_contents(data)
    assert ids == outputs[:1] and len(blobs) == 1 and tmp == []


# --- commands -------------------------------------------------------------------------------


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_image_commands(tmp_path: Path, aci: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = str(tmp_path / "data")
    code, out, _ = run(capsys, "--dir", data, "fetch", str(aci))
    image_id = out.strip()
    assert code == 0 and image_id == sha512_id(aci.read_bytes())

    code, out, _ = run(capsys, "--dir", data, "image", "list")
    header, row = out.splitlines()
    assert header.split() == ["ID", "NAME", "SIZE", "IMPORT", "TIME", "LAST", "USED"]
    assert row.split()[:2] == [image_id[:19], "example.com/hello:1.0"]
    assert row.split()[2].endswith("KiB")
    code, out, _ = run(
        capsys, "--dir", data, "image", "list", "--full", "--no-legend", "--fields", "id,size"
    )
    full_id, full_size = out.split()
    code, out, _ = run(capsys, "--dir", data, "image", "list", "-o", "json")
    (entry,) = json.loads(out)
    assert entry["id"] == full_id == image_id and entry["size"] == int(full_size)
    # fetch rendered the tree: SIZE is the blob plus the tree (the rootfs files, counted once)
    assert entry["blob_size"] == aci.stat().st_size
    assert entry["tree_size"] == len(b"hello\n") + len(b"welcome\n")
    assert entry["size"] == entry["blob_size"] + entry["tree_size"]
    code, _, err = run(capsys, "--dir", data, "image", "list", "--fields", "id,colour")
    assert code == 2 and "unknown field 'colour'" in err

    code, out, _ = run(capsys, "--dir", data, "image", "cat-manifest", "example.com/hello")
    assert json.loads(out)["name"] == "example.com/hello"

    exported = tmp_path / "exported.aci"
    assert run(capsys, "--dir", data, "image", "export", image_id[:20], str(exported))[0] == 0
    assert exported.read_bytes() == aci.read_bytes()
    code, _, err = run(capsys, "--dir", data, "image", "export", image_id, str(exported))
    assert code == 2 and "exists (try --overwrite)" in err

    rootfs = tmp_path / "extracted"
    assert (
        run(capsys, "--dir", data, "image", "extract", "--rootfs-only", image_id, str(rootfs))[0]
        == 0
    )
    assert (rootfs / "bin" / "hello").stat().st_mode & 0o7777 == 0o4755
    assert os.readlink(rootfs / "etc" / "localtime") == "/usr/share/zoneinfo/UTC"
    assert (rootfs / "etc" / "motd").stat().st_ino == (rootfs / "etc" / "motd.link").stat().st_ino
    whole = tmp_path / "whole"
    assert run(capsys, "--dir", data, "image", "extract", image_id, str(whole))[0] == 0
    assert sorted(os.listdir(whole)) == ["manifest", "rootfs"]
    code, _, err = run(capsys, "--dir", data, "image", "extract", image_id, "/")
    assert code == 2 and "refusing" in err

    code, out, err = run(capsys, "--dir", data, "image", "rm", image_id, "example.com/nope")
    assert code == 2
    assert "1 image(s) successfully removed" in out and "no image matches" in err
    assert run(capsys, "--dir", data, "image", "list", "--no-legend")[1] == ""


def test_image_build_command(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    rootfs = make_rootfs(tmp_path / "rootfs")
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    argv = [
        "image",
        "build",
        str(rootfs),
        str(tmp_path / "a.aci"),
        "--name",
        "example.com/a",
        "--label",
        "version=3",
        "--exec",
        "/bin/hello --loud",
        "--env",
        "K=V",
        "--port",
        "http:tcp:8080",
        "--mount",
        "data:/var/data",
        "--isolator",
        'resource/memory={"limit": "64Mi"}',
        "--dependency",
        "example.com/base:1.0,os=linux",
        "--annotation",
        "authors=me",
    ]
    code, out, _ = run(capsys, *argv)
    assert code == 0 and out.strip() == sha512_id((tmp_path / "a.aci").read_bytes())
    code, again, _ = run(capsys, *argv[:3], str(tmp_path / "b.aci"), *argv[4:])
    assert again == out
    with tarfile.open(tmp_path / "a.aci") as tar:
        handle = tar.extractfile("manifest")
        assert handle is not None
        doc = json.loads(handle.read())
    assert doc["app"]["exec"] == ["/bin/hello", "--loud"]
    assert (
        doc["app"]["ports"]
        == [{"name": "http", "protocol": "tcp", "port": 8080, "count": 1, "socketActivated": False}]
        or doc["app"]["ports"][0]["port"] == 8080
    )
    assert doc["dependencies"][0]["imageName"] == "example.com/base"
    assert {"name": "os", "value": HOST_OS} in doc["labels"]
    code, _, err = run(capsys, "image", "build", str(rootfs), str(tmp_path / "c.aci"))
    assert code == 2 and "needs --name" in err
    code, _, err = run(
        capsys,
        "image",
        "build",
        str(rootfs),
        str(tmp_path / "c.aci"),
        "--name",
        "example.com/c",
        "--port",
        "http",
    )
    assert code == 2 and "NAME:PROTOCOL:PORT" in err


def test_render_verify_and_gc_commands(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = str(tmp_path / "data")
    base_root = make_rootfs(tmp_path / "base-rootfs", payload=b"base\n")
    (base_root / "etc" / "base-only").write_text("from the base\n")
    build_aci(str(base_root), str(tmp_path / "base.aci"), manifest(name="example.com/base"))
    app_root = make_rootfs(tmp_path / "app-rootfs", payload=b"app\n")
    app = manifest(
        name="example.com/app",
        dependencies=[
            {"imageName": "example.com/base", "labels": [{"name": "version", "value": "1.0"}]}
        ],
    )
    build_aci(str(app_root), str(tmp_path / "app.aci"), app)
    for name in ("base.aci", "app.aci"):  # image render below does the rendering
        assert run(capsys, "--dir", data, "fetch", "--no-render", str(tmp_path / name))[0] == 0

    out = tmp_path / "rendered"
    assert (
        run(capsys, "--dir", data, "image", "render", "--rootfs-only", "example.com/app", str(out))[
            0
        ]
        == 0
    )
    assert (out / "bin" / "hello").read_bytes() == b"app\n"  # the image over its dependency
    assert (out / "etc" / "base-only").read_text() == "from the base\n"
    assert (out / "bin" / "hello").stat().st_mode & 0o7777 == 0o4755
    code, out_text, _ = run(capsys, "--dir", data, "image", "list", "-o", "json")
    sizes = {e["name"]: e["tree_size"] for e in json.loads(out_text)}
    assert sizes["example.com/app"] and sizes["example.com/base"] is None

    code, text, _ = run(capsys, "--dir", data, "image", "verify", "example.com/app")
    assert code == 0 and text.split()[1:] == ["example.com/app:1.0", "ok"]
    tree = tmp_path / "data" / "trees"
    (image_tree,) = [p for p in tree.iterdir() if p.is_dir() and p.name.startswith("sha512-")]
    (image_tree / "rootfs" / "etc" / "motd").write_text("tampered\n")
    code, text, _ = run(capsys, "--dir", data, "image", "verify", "--no-repair", "example.com/app")
    assert code == 1 and "DAMAGED" in text and "/etc/motd" in text
    code, text, _ = run(capsys, "--dir", data, "image", "verify", "example.com/app")
    assert code == 0 and "repaired" in text
    assert (image_tree / "rootfs" / "etc" / "motd").read_text() == "welcome\n"

    code, text, _ = run(capsys, "--dir", data, "image", "gc", "--grace-period", "1h")
    assert code == 0 and "0 image(s), 1 tree(s)" in text
    code, text, _ = run(capsys, "--dir", data, "image", "gc", "--grace-period", "0")
    assert code == 0 and "2 image(s)" in text
    assert run(capsys, "--dir", data, "image", "list", "--no-legend")[1] == ""
    code, _, err = run(capsys, "--dir", data, "image", "gc", "--grace-period", "soon")
    assert code == 2 and "must be a duration" in err


def _hostile_aci(path: Path, sentinel: Path) -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in (("manifest", GOOD_MANIFEST),):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        root = tarfile.TarInfo("rootfs")
        root.type = tarfile.DIRTYPE
        tar.addfile(root)
        link = tarfile.TarInfo("rootfs/escape")
        link.type = tarfile.SYMTYPE
        link.linkname = str(sentinel)
        tar.addfile(link)
        payload = b"written through the symlink\n"
        through = tarfile.TarInfo("rootfs/escape/planted")
        through.size = len(payload)
        tar.addfile(through, io.BytesIO(payload))
        shadow = tarfile.TarInfo("rootfs/shadow")
        shadow.type = tarfile.LNKTYPE
        shadow.linkname = "/etc/shadow"
        tar.addfile(shadow)
    path.write_bytes(buffer.getvalue())


def test_a_hostile_image_fails_to_fetch_and_leaves_everything_as_it_was(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sentinel = tmp_path / "sentinel"
    sentinel.mkdir()
    (sentinel / "keep").write_text("untouched\n")
    hostile = tmp_path / "hostile.aci"
    _hostile_aci(hostile, sentinel)
    data = tmp_path / "data"
    code, out, err = run(capsys, "--dir", str(data), "fetch", str(hostile))
    assert code == 2 and out == ""
    assert "hard link target /etc/shadow is outside the extracted tree" in err
    assert sorted(os.listdir(sentinel)) == ["keep"]
    assert store_contents(data) == ([], [], [])
    trees = data / "trees"
    assert not trees.exists() or not [p for p in trees.iterdir() if p.name.startswith("sha512-")]


def test_a_missing_dependency_fails_the_fetch_and_removes_the_image(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rootfs = make_rootfs(tmp_path / "rootfs")
    app = manifest(name="example.com/app", dependencies=[{"imageName": "example.com/absent"}])
    build_aci(str(rootfs), str(tmp_path / "app.aci"), app)
    data = tmp_path / "data"
    code, _, err = run(capsys, "--dir", str(data), "fetch", str(tmp_path / "app.aci"))
    assert code == 2 and "example.com/absent" in err
    assert store_contents(data) == ([], [], [])
