"""Dependency resolution and the tree store, on real images, files, locks and processes."""

from __future__ import annotations

import json
import os
import re
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from imagehelpers import manifest

from rktcfg.errors import ImageError, NotFoundError, StoreError
from rktcfg.image import tarsafe
from rktcfg.image.build import build_aci
from rktcfg.image.deps import ResolvedImage, render_order, resolve_dependencies
from rktcfg.image.imports import import_aci_file
from rktcfg.image.manifest import ImageManifest
from rktcfg.store.images import ImageStore
from rktcfg.store.trees import TreeStore

REPO = Path(__file__).resolve().parents[2]

RENDERER = """
import sys
from rktcfg.store.images import ImageStore
from rktcfg.store.trees import TreeStore
with ImageStore(sys.argv[1]) as images:
    sys.stdout.write(TreeStore(sys.argv[1], images).render(sys.argv[2]) + "\\n")
"""


@dataclass(frozen=True)
class Symlink:
    target: str


@dataclass(frozen=True)
class HardLink:
    to: str


Files = dict[str, "bytes | Symlink | HardLink | None"]  # None: an empty directory


def make_rootfs(root: Path, files: Files) -> Path:
    root.mkdir(parents=True)
    for rel, content in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if content is None:
            path.mkdir(exist_ok=True)
        elif isinstance(content, Symlink):
            path.symlink_to(content.target)
        elif isinstance(content, HardLink):
            os.link(root / content.to, path)
        else:
            path.write_bytes(content)
    return root


def dep(name: str, version: str | None = "1.0", **extra: Any) -> dict[str, Any]:
    labels = [{"name": "version", "value": version}] if version else []
    return {"imageName": name, "labels": labels, **extra}


@dataclass
class Env:
    tmp: Path
    data: Path
    images: ImageStore
    trees: TreeStore

    def build(
        self,
        name: str,
        files: Files,
        *,
        deps: list[dict[str, Any]] | None = None,
        version: str = "1.0",
        **extra: Any,
    ) -> tuple[Path, str]:
        """Build an ACI named example.com/<name>; returns (file, image id)."""
        slug = f"{name}-{version}-{len(list(self.tmp.glob('*.aci')))}"
        root = make_rootfs(self.tmp / "src" / slug, files)
        doc = manifest(name=f"example.com/{name}", version=version, **extra)
        if deps:
            doc["dependencies"] = deps
        out = self.tmp / f"{slug}.aci"
        return out, build_aci(str(root), str(out), doc)

    def add(self, name: str, files: Files, **kwargs: Any) -> str:
        """Build and import; returns the image id."""
        path, image_id = self.build(name, files, **kwargs)
        assert import_aci_file(self.images, str(path)).record.id == image_id
        return image_id


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    data = tmp_path / "data"
    with ImageStore(str(data)) as images:
        yield Env(tmp_path, data, images, TreeStore(str(data), images))


def complete_record(trees: TreeStore, image_id: str) -> dict[str, Any]:
    record: dict[str, Any] = json.loads(Path(trees.root, image_id, "complete").read_bytes())
    return record


def tree_dir_names(trees: TreeStore) -> list[str]:
    return sorted(os.listdir(trees.root))


# --- render order (pure) -------------------------------------------------------------------


def graph(
    edges: dict[str, list[str]], whitelists: dict[str, list[str]] | None = None
) -> list[ResolvedImage]:
    lists = whitelists or {}
    return [
        ResolvedImage(
            id=name,
            manifest=ImageManifest(
                name=f"example.com/{name}", path_whitelist=tuple(lists.get(name, ()))
            ),
            dependencies=tuple(children),
        )
        for name, children in edges.items()
    ]


def test_render_order_is_depth_first_post_order_each_image_once() -> None:
    chain = graph({"a": ["b", "c"], "b": [], "c": ["d"], "d": []})
    assert [i for i, _ in render_order(chain, "a")] == ["b", "d", "c", "a"]
    diamond = graph({"a": ["b", "c"], "b": ["d"], "c": ["d"], "d": []})
    assert [i for i, _ in render_order(diamond, "a")] == ["d", "b", "c", "a"]


def test_render_order_filters_are_the_dependency_whitelists_on_the_first_path() -> None:
    images = graph(
        {"a": ["b", "c"], "b": ["d"], "c": ["d"], "d": []},
        {"a": ["/a"], "b": ["/b", "/d"], "d": ["/d"]},
    )
    assert render_order(images, "a") == [
        ("d", (("/b", "/d"), ("/d",))),
        ("b", (("/b", "/d"),)),
        ("c", ()),
        ("a", ()),  # the root's own whitelist applies to the finished tree, not as a filter
    ]


def test_render_order_refuses_a_cycle() -> None:
    with pytest.raises(
        ImageError,
        match=re.escape("dependency cycle: example.com/b -> example.com/c -> example.com/b"),
    ):
        render_order(graph({"a": ["b"], "b": ["c"], "c": ["b"]}), "a")


# --- resolution --------------------------------------------------------------------------


def test_a_chain_renders_in_overwrite_order(env: Env) -> None:
    c = env.add("c", {"etc/motd": b"c\n", "etc/from-c": b"c\n", "etc/shared-bc": b"c\n"})
    b = env.add("b", {"etc/motd": b"b\n", "etc/shared-bc": b"b\n"}, deps=[dep("example.com/c")])
    a = env.add("a", {"etc/motd": b"a\n", "bin/a": b"a\n"}, deps=[dep("example.com/b")])
    resolved = resolve_dependencies(env.images, a, fetch=None)
    assert [(r.id, r.dependencies) for r in resolved] == [(a, (b,)), (b, (c,)), (c, ())]
    rootfs = Path(env.trees.render(a))
    assert rootfs == Path(env.trees.root, a, "rootfs")
    assert (rootfs / "etc/motd").read_bytes() == b"a\n"  # the image wins over its dependencies
    assert (rootfs / "etc/shared-bc").read_bytes() == b"b\n"  # a dependency over its own
    assert (rootfs / "etc/from-c").read_bytes() == b"c\n"
    assert complete_record(env.trees, a)["layers"] == [c, b, a]
    assert env.trees.ids() == [a]


def test_labels_left_out_match_any_value_and_the_newest_import_wins(env: Env) -> None:
    env.add("base", {"v": b"1\n"}, version="1.0")
    newer = env.add("base", {"v": b"2\n"}, version="2.0")
    app = env.add("app", {"x": b"x\n"}, deps=[dep("example.com/base", version=None)])
    assert [r.id for r in resolve_dependencies(env.images, app, fetch=None)] == [app, newer]


def test_a_diamond_is_fetched_and_rendered_once(env: Env) -> None:
    d_file, d = env.build("d", {"etc/motd": b"d\n", "etc/from-d": b"d\n"})  # not imported
    b = env.add("b", {"etc/from-b": b"b\n"}, deps=[dep("example.com/d")])
    c = env.add("c", {"etc/motd": b"c\n"}, deps=[dep("example.com/d")])
    a = env.add("a", {"bin/a": b"a\n"}, deps=[dep("example.com/b"), dep("example.com/c")])
    calls: list[tuple[str, dict[str, str]]] = []

    def fetch(name: str, labels: dict[str, str]) -> str:
        calls.append((name, labels))
        return import_aci_file(env.images, str(d_file)).record.id

    rootfs = Path(env.trees.render(a, fetch=fetch))
    assert calls == [("example.com/d", {"version": "1.0"})]
    assert complete_record(env.trees, a)["layers"] == [d, b, c, a]
    assert (rootfs / "etc/motd").read_bytes() == b"c\n"
    assert {p.name for p in (rootfs / "etc").iterdir()} == {"motd", "from-d", "from-b"}


def test_a_cycle_is_an_error_naming_it(env: Env) -> None:
    a = env.add("a", {"a": b"a\n"}, deps=[dep("example.com/b")])
    env.add("b", {"b": b"b\n"}, deps=[dep("example.com/a")])
    cycle = "dependency cycle: example.com/a:1.0 -> example.com/b:1.0 -> example.com/a:1.0"
    with pytest.raises(ImageError, match=re.escape(cycle)):
        resolve_dependencies(env.images, a, fetch=None)
    with pytest.raises(ImageError, match=re.escape(cycle)):
        env.trees.render(a)
    assert env.trees.sweep() == [str(Path(env.trees.root, a + ".lock"))]
    assert tree_dir_names(env.trees) == []


def test_a_missing_dependency_names_the_chain(env: Env) -> None:
    b = env.add("b", {"b": b"b\n"}, deps=[dep("example.com/missing", "3.0")])
    a = env.add("a", {"a": b"a\n"}, deps=[dep("example.com/b")])
    chain = "example.com/a:1.0 -> example.com/b:1.0 -> example.com/missing:3.0"
    with pytest.raises(NotFoundError, match=re.escape(chain)):
        env.trees.render(a)
    assert env.trees.get(a) is None and env.trees.get(b) is None

    def fetch(name: str, labels: dict[str, str]) -> str:
        raise NotFoundError(f"{name}: discovery found nothing")

    with pytest.raises(
        NotFoundError, match=re.escape(chain + ": example.com/missing: discovery found")
    ):
        env.trees.render(a, fetch=fetch)


def test_an_image_id_or_size_that_does_not_match_is_an_error(env: Env) -> None:
    d_file, d = env.build("d", {"d": b"d\n"})
    other = env.add("other", {"o": b"o\n"})
    by_wrong_id = env.add("a", {"a": b"a\n"}, deps=[dep("example.com/d", imageID=other)])
    with pytest.raises(ImageError, match=re.escape("must be named example.com/d")):
        env.trees.render(by_wrong_id)
    absent = "sha512-" + "0" * 128
    not_fetched = env.add(
        "a", {"a": b"a\n"}, version="2.0", deps=[dep("example.com/d", imageID=absent)]
    )

    def fetch(name: str, labels: dict[str, str]) -> str:
        return import_aci_file(env.images, str(d_file)).record.id

    with pytest.raises(
        ImageError, match=re.escape(f"example.com/d:1.0: imageID must be {absent} (got {d})")
    ):
        env.trees.render(not_fetched, fetch=fetch)
    with pytest.raises(NotFoundError, match="not in the store"):
        env.trees.render(not_fetched)
    size = env.images.get(d).blob_size
    wrong_size = env.add(
        "a", {"a": b"a\n"}, version="3.0", deps=[dep("example.com/d", size=size + 1)]
    )
    with pytest.raises(ImageError, match=re.escape(f"must be {size + 1} bytes (got {size})")):
        env.trees.render(wrong_size)
    right = env.add(
        "a", {"a": b"a\n"}, version="4.0", deps=[dep("example.com/d", imageID=d, size=size)]
    )
    assert env.trees.render(right)


# --- rendering ---------------------------------------------------------------------------


def test_the_path_whitelist_of_the_image_filters_the_finished_tree(env: Env) -> None:
    base = env.add(
        "base",
        {
            "etc/keep": b"base\n",
            "etc/drop": b"drop\n",
            "etc/link": Symlink("keep"),
            "var/empty": None,
        },
    )
    app = env.add(
        "app",
        {"bin/hello": b"hello\n", "bin/other": b"other\n"},
        deps=[dep("example.com/base")],
        pathWhitelist=["/bin/hello", "/etc/keep", "/not/there"],
    )
    rootfs = Path(env.trees.render(app))
    found = sorted(str(p.relative_to(rootfs)) for p in rootfs.rglob("*"))
    # Directories stay; every file, symlink, ... not listed goes, whichever layer it came from.
    assert found == ["bin", "bin/hello", "etc", "etc/keep", "var", "var/empty"]
    assert complete_record(env.trees, app)["layers"] == [base, app]
    # The dependency rendered on its own is not filtered by the image's list.
    base_root = Path(env.trees.render(base))
    assert (base_root / "etc/drop").exists() and (base_root / "etc/link").is_symlink()


def test_a_dependency_whitelist_filters_its_own_layers_and_keeps_needed_link_targets(
    env: Env,
) -> None:
    env.add("c", {"c/keep": b"c\n", "c/drop": b"c\n"})
    env.add(
        "b",
        {
            "b/keep": b"b\n",
            "b/drop": b"b\n",
            "b/a-target": b"linked\n",
            "b/z-link": HardLink("b/a-target"),
        },
        deps=[dep("example.com/c")],
        pathWhitelist=["/b/keep", "/c/keep", "/b/z-link"],
    )
    a = env.add("a", {"a/anything": b"a\n"}, deps=[dep("example.com/b")])
    rootfs = Path(env.trees.render(a))
    files = sorted(str(p.relative_to(rootfs)) for p in rootfs.rglob("*") if not p.is_dir())
    assert files == ["a/anything", "b/keep", "b/z-link", "c/keep"]
    assert (rootfs / "b/z-link").read_bytes() == b"linked\n"


def test_a_later_directory_replaces_a_symlink_instead_of_following_it(env: Env) -> None:
    env.add("base", {"usr/lib/x": b"x\n", "lib": Symlink("usr/lib"), "opt/old": b"old\n"})
    app = env.add(
        "app",
        {"lib/y": b"y\n", "opt": Symlink("/srv")},
        deps=[dep("example.com/base")],
    )
    rootfs = Path(env.trees.render(app))
    assert (rootfs / "lib").is_dir() and not (rootfs / "lib").is_symlink()
    assert sorted(os.listdir(rootfs / "lib")) == ["y"]
    assert sorted(os.listdir(rootfs / "usr/lib")) == ["x"]  # nothing written through the link
    assert os.readlink(rootfs / "opt") == "/srv"  # and a later symlink replaces a directory


def test_rendering_twice_returns_the_tree_without_extracting_again(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    image = env.add(
        "app", {"etc/motd": b"hi\n", "etc/motd.link": HardLink("etc/motd"), "big": b"x" * 5000}
    )
    first = env.trees.render(image)
    complete = Path(env.trees.root, image, "complete")
    before = complete.stat().st_mtime_ns
    extracted: list[object] = []
    real = tarsafe.extract

    def counting(*args: Any, **kwargs: Any) -> tarsafe.ExtractReport:
        extracted.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(tarsafe, "extract", counting)
    time.sleep(0.01)
    assert env.trees.render(image) == first
    assert complete.stat().st_mtime_ns == before and extracted == []
    # The size counts the hard-linked file once, and lands in the image record.
    assert env.images.get(image).tree_size == complete_record(env.trees, image)["size"] == 5003
    assert stat.S_IMODE(Path(env.trees.root, image).stat().st_mode) == 0o755


def test_remove_deletes_the_tree_and_forgets_its_size(env: Env) -> None:
    image = env.add("app", {"etc/motd": b"hi\n"})
    env.trees.render(image)
    env.trees.remove(image)
    assert env.trees.get(image) is None and env.trees.ids() == []
    assert env.images.get(image).tree_size is None
    assert tree_dir_names(env.trees) == []
    env.trees.remove(image)  # nothing there: nothing to do
    assert Path(env.trees.render(image), "etc/motd").read_bytes() == b"hi\n"


def test_an_incomplete_tree_is_swept_and_rendered_again(env: Env) -> None:
    image = env.add("app", {"etc/motd": b"hi\n"})
    half = Path(env.trees.root, image, "rootfs", "etc")
    half.mkdir(parents=True)
    (half / "motd").write_bytes(b"h")
    assert env.trees.get(image) is None and env.trees.ids() == []
    assert Path(env.trees.render(image), "etc/motd").read_bytes() == b"hi\n"
    half.parent.joinpath("stray").write_bytes(b"")  # gone if it was replaced, not reused
    env.trees.remove(image)
    Path(env.trees.root, image, "rootfs").mkdir(parents=True)
    Path(env.trees.root, "tmp-0123456789abcdef").mkdir()
    assert sorted(Path(p).name for p in env.trees.sweep()) == [image, "tmp-0123456789abcdef"]
    assert tree_dir_names(env.trees) == [image + ".lock"]


# --- processes ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def big_aci(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("big")
    rootfs = make_rootfs(root / "rootfs", {f"data/blob{i}": os.urandom(4 << 20) for i in range(8)})
    out = root / "big.aci"
    build_aci(str(rootfs), str(out), manifest(name="example.com/big"))
    return out


def renderer(data: Path, image_id: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", RENDERER, str(data), image_id],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_concurrent_renders_end_with_one_tree(tmp_path: Path, big_aci: Path) -> None:
    data = tmp_path / "data"
    with ImageStore(str(data)) as images:
        image = import_aci_file(images, str(big_aci)).record.id
    procs = [renderer(data, image) for _ in range(2)]
    try:
        results = [p.communicate(timeout=60) for p in procs]
    finally:
        for p in procs:
            p.kill()
            p.wait()
    assert [p.returncode for p in procs] == [0, 0], results
    with ImageStore(str(data)) as images:
        trees = TreeStore(str(data), images)
        assert [out.strip() for out, _ in results] == [trees.rootfs(image)] * 2
        assert tree_dir_names(trees) == [image, image + ".lock"]
        assert trees.verify(image, repair=False) == []
        assert images.get(image).tree_size == 8 * (4 << 20)


def test_a_renderer_killed_mid_render_leaves_only_what_sweep_removes(
    tmp_path: Path, big_aci: Path
) -> None:
    data = tmp_path / "data"
    with ImageStore(str(data)) as images:
        image = import_aci_file(images, str(big_aci)).record.id
    trees_dir = data / "trees"
    interrupted = 0
    for delay in (0.0, 0.02, 0.06):
        proc = renderer(data, image)
        try:
            deadline = time.monotonic() + 30
            while proc.poll() is None and time.monotonic() < deadline:
                if any(trees_dir.glob("tmp-*/rootfs/data/*")):
                    break
                time.sleep(0.001)
            time.sleep(delay)
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.communicate()
        with ImageStore(str(data)) as images:
            trees = TreeStore(str(data), images)
            if trees.get(image) is None:
                interrupted += 1
                left = tree_dir_names(trees)
                assert any(name.startswith("tmp-") for name in left)
                removed = trees.sweep()
                assert sorted(Path(p).name for p in removed) == left
                assert tree_dir_names(trees) == []
                assert images.get(image).tree_size is None
                trees.render(image)
                assert trees.verify(image, repair=False) == []
            assert tree_dir_names(trees) == [image, image + ".lock"]
            trees.remove(image)
    assert interrupted >= 1


# --- verify ------------------------------------------------------------------------------


def test_verify_detects_damage_and_repair_restores_the_tree(env: Env) -> None:
    base = env.add("base", {"etc/motd": b"welcome\n", "etc/passwd": b"root:x:0:0\n"})
    image = env.add("app", {"bin/hello": b"hello\n"}, deps=[dep("example.com/base")])
    rootfs = Path(env.trees.render(image))
    assert env.trees.verify(image, repair=False) == []
    os.utime(rootfs / "etc/motd", (1, 1))  # times are not part of the tree hash
    assert env.trees.verify(image, repair=True) == []

    (rootfs / "etc/motd").write_bytes(b"defaced\n")
    (rootfs / "bin/hello").unlink()
    (rootfs / "etc").chmod(0o777)
    (rootfs / "etc/new").write_bytes(b"")
    expected = [
        "/bin/hello: missing",
        "/etc: mode must be 0755 (got 0777)",
        "/etc/motd: content differs from the image",
        "/etc/new: not in the image",
    ]
    assert env.trees.verify(image, repair=False) == expected
    assert (rootfs / "etc/motd").read_bytes() == b"defaced\n"  # reported, not touched
    assert env.trees.verify(image, repair=True) == expected
    assert env.trees.verify(image, repair=False) == []
    assert (rootfs / "etc/motd").read_bytes() == b"welcome\n"
    assert (rootfs / "bin/hello").read_bytes() == b"hello\n"
    assert not (rootfs / "etc/new").exists()
    assert complete_record(env.trees, image)["layers"] == [base, image]
    assert tree_dir_names(env.trees) == [image, image + ".lock"]  # the old tree is gone

    Path(env.trees.root, image, "complete").unlink()
    assert env.trees.verify(image, repair=True) == [
        f"{env.trees.root}/{image}: incomplete render (no readable complete record)"
    ]
    assert env.trees.verify(image, repair=False) == []
    with pytest.raises(NotFoundError, match="no rendered tree"):
        env.trees.verify(base, repair=True)


def test_verify_reports_a_damaged_blob_and_render_refuses_it(env: Env) -> None:
    base = env.add("base", {"etc/motd": b"welcome\n"})
    image = env.add("app", {"bin/hello": b"hello\n"}, deps=[dep("example.com/base")])
    env.trees.render(image)
    with open(env.images.blob_path(base), "r+b") as blob:
        blob.seek(1024)
        byte = blob.read(1)
        blob.seek(1024)
        blob.write(bytes([byte[0] ^ 0xFF]))
    problems = env.trees.verify(image, repair=True)
    assert len(problems) == 1 and problems[0].startswith(f"blob of image {base}: damaged")
    Path(env.trees.rootfs(image), "bin/hello").unlink()
    assert env.trees.verify(image, repair=True)[-1] == (
        "not repaired: an image blob is damaged; fetch it again"
    )
    env.trees.remove(image)
    with pytest.raises(StoreError, match=re.escape(f"the blob of image {base} is damaged")):
        env.trees.render(image)
    assert tree_dir_names(env.trees) == [image + ".lock"]
