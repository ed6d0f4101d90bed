"""Fetching over HTTP and by appc discovery, against a real HTTP server on 127.0.0.1.

Every URL, whatever host it names, is sent to the test's own server by the Transport's
rewrite, so these tests never contact another address.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from imagehelpers import make_rootfs, manifest, read_all

from rktcfg.errors import ImageError, InputError, NotFoundError, RuntimeFailure
from rktcfg.image import discovery
from rktcfg.image.build import build_aci
from rktcfg.image.fetch import FetchOptions, fetch_image
from rktcfg.image.http import Transport
from rktcfg.store.images import ImageStore

FIXTURES = Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "appc" / "discovery"


class Server:
    """Routes: path -> (body, headers). Records every request's path and headers."""

    def __init__(self) -> None:
        self.routes: dict[str, tuple[bytes, dict[str, str]]] = {}
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.cut_after: dict[str, int] = {}  # path -> bytes to send before dropping, once
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_: Any) -> None:
                return

            def do_GET(self) -> None:
                headers = {k: v for k, v in self.headers.items()}
                server.requests.append((self.path, headers))
                route = server.routes.get(self.path)
                if route is None:
                    self.send_error(404)
                    return
                body, extra = route
                etag = extra.get("ETag")
                if etag and self.headers.get("If-None-Match") == etag:
                    self.send_response(304)
                    for key, value in extra.items():
                        self.send_header(key, value)
                    self.end_headers()
                    return
                start = 0
                wanted = self.headers.get("Range")
                if wanted and (
                    not self.headers.get("If-Range") or self.headers["If-Range"] == etag
                ):
                    start = int(wanted.removeprefix("bytes=").rstrip("-"))
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                else:
                    self.send_response(200)
                for key, value in extra.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body) - start))
                self.end_headers()
                cut = server.cut_after.pop(self.path, None)
                self.wfile.write(body[start:] if cut is None else body[start : start + cut])

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def transport(self) -> Transport:
        def rewrite(url: str) -> str:
            parts = urlsplit(url)
            query = f"?{parts.query}" if parts.query else ""
            return f"http://127.0.0.1:{self.port}/{parts.netloc}{parts.path}{query}"

        return Transport(rewrite, timeout=10)

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server() -> Iterator[Server]:
    running = Server()
    yield running
    running.close()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ImageStore]:
    with ImageStore(str(tmp_path / "data")) as opened:
        yield opened


def _aci(tmp_path: Path, name: str = "example.com/hello", version: str = "1.0") -> bytes:
    rootfs = make_rootfs(tmp_path / f"rootfs-{name.replace('/', '_')}-{version}")
    out = tmp_path / f"{name.replace('/', '_')}-{version}.aci"
    build_aci(str(rootfs), str(out), manifest(name=name, version=version))
    return out.read_bytes()


def _id(data: bytes) -> str:
    return "sha512-" + hashlib.sha512(data).hexdigest()


def test_network_fetch_needs_insecure_options(server: Server, store: ImageStore) -> None:
    opts = FetchOptions(transport=server.transport())
    with pytest.raises(InputError, match="needs --insecure-options=image"):
        fetch_image(store, "https://example.com/hello.aci", opts)
    opts = FetchOptions(transport=server.transport(), insecure=frozenset({"image"}))
    with pytest.raises(InputError, match="plain http also needs"):
        fetch_image(store, "http://example.com/hello.aci", opts)
    assert server.requests == []  # refused before any request


def test_http_fetch_with_etag_cache_control_and_policies(
    tmp_path: Path, server: Server, store: ImageStore
) -> None:
    body = _aci(tmp_path)
    url = "https://images.example.com/hello-1.0.aci"
    server.routes["/images.example.com/hello-1.0.aci"] = (body, {"ETag": '"v1"'})
    opts = FetchOptions(transport=server.transport(), insecure=frozenset({"image"}))
    first = fetch_image(store, url, opts)
    assert first.new and first.record.id == _id(body) and first.record.source == url
    second = fetch_image(store, url, opts)  # update: a conditional request, answered 304
    assert not second.new and second.record.id == first.record.id
    assert server.requests[-1][1].get("If-None-Match") == '"v1"'
    count = len(server.requests)
    fetch_image(store, url, FetchOptions(transport=server.transport(), policy="new"))
    fetch_image(store, url, FetchOptions(transport=server.transport(), policy="never"))
    assert len(server.requests) == count  # new and never use the store
    with pytest.raises(NotFoundError, match="pull policy is never"):
        fetch_image(
            store,
            "https://images.example.com/other.aci",
            FetchOptions(transport=server.transport(), policy="never"),
        )


def test_cache_control_max_age_skips_the_request(
    tmp_path: Path, server: Server, store: ImageStore
) -> None:
    body = _aci(tmp_path)
    server.routes["/cdn.example.com/h.aci"] = (body, {"Cache-Control": "public, max-age=3600"})
    opts = FetchOptions(transport=server.transport(), insecure=frozenset({"image"}))
    fetch_image(store, "https://cdn.example.com/h.aci", opts)
    fetch_image(store, "https://cdn.example.com/h.aci", opts)
    assert len(server.requests) == 1
    later = FetchOptions(
        transport=server.transport(), insecure=frozenset({"image"}), now=lambda: 4e9
    )
    fetch_image(store, "https://cdn.example.com/h.aci", later)  # stale: asks again
    assert len(server.requests) == 2


def test_interrupted_download_resumes(tmp_path: Path, server: Server, store: ImageStore) -> None:
    body = _aci(tmp_path)
    path = "/dl.example.com/big.aci"
    server.routes[path] = (body, {"ETag": '"big"'})
    server.cut_after[path] = len(body) // 2
    opts = FetchOptions(transport=server.transport(), insecure=frozenset({"image"}))
    with pytest.raises(RuntimeFailure, match=r"ended early|cannot download"):
        fetch_image(store, "https://dl.example.com/big.aci", opts)
    assert store.records() == []
    result = fetch_image(store, "https://dl.example.com/big.aci", opts)
    assert result.record.id == _id(body)
    resumed = server.requests[-1][1]
    assert resumed.get("Range") == f"bytes={len(body) // 2}-" and resumed.get("If-Range") == '"big"'


def test_discovery_walks_up_the_name_and_checks_the_image(
    tmp_path: Path, server: Server, store: ImageStore
) -> None:
    body = _aci(tmp_path, "example.com/tools/hello", "2.0")
    template = "https://storage.example.com/{name}-{version}-{os}-{arch}.{ext}"
    page = f'<html><head><meta name="ac-discovery" content="example.com {template}"></head></html>'
    server.routes["/example.com?ac-discovery=1"] = (page.encode(), {})
    from rktcfg.image.manifest import host_os_arch

    os_, arch = host_os_arch()
    server.routes[f"/storage.example.com/example.com/tools/hello-2.0-{os_}-{arch}.aci"] = (body, {})
    opts = FetchOptions(transport=server.transport(), insecure=frozenset({"image"}))
    result = fetch_image(store, "example.com/tools/hello:2.0", opts)
    assert result.record.name_version == "example.com/tools/hello:2.0"
    tried = [p for p, _ in server.requests]
    assert tried[0] == "/example.com/tools/hello?ac-discovery=1"  # 404, then the parents
    assert "/example.com?ac-discovery=1" in tried
    again = fetch_image(store, "example.com/tools/hello:2.0", FetchOptions(policy="new"))
    assert again.record.id == result.record.id and not again.new

    # A server that answers with another image: refused, and the store is unchanged.
    other = _aci(tmp_path, "example.com/evil", "3.0")
    server.routes[f"/storage.example.com/example.com/tools/hello-3.0-{os_}-{arch}.aci"] = (
        other,
        {},
    )
    with pytest.raises(ImageError, match=r"named example\.com/evil, not example\.com/tools/hello"):
        fetch_image(store, "example.com/tools/hello:3.0", opts)
    assert [r.name_version for r in store.records()] == ["example.com/tools/hello:2.0"]


def test_discovery_without_insecure_image_is_refused(store: ImageStore) -> None:
    with pytest.raises(InputError, match="appc discovery needs --insecure-options=image"):
        fetch_image(
            store,
            "example.com/absent:1.0",
            FetchOptions(transport=Transport(lambda url: "http://127.0.0.1:9/unused")),
        )


@pytest.mark.parametrize(
    ("fixture", "urls"),
    [
        ("meta01.html", ["https://storage.example.com/example.com/app-1.0-linux-amd64.aci"]),
        ("meta02.html", ["https://storage.example.com/example.com/app-1.0-linux-amd64.aci"]),
        ("meta03.html", []),
        (
            "meta04.html",
            ["https://another.storage.example.com/example.com/app-1.0-linux-amd64.aci"],
        ),
        (
            "meta05.html",
            [
                "https://storage.example.com/example.com/app-1.0-linux-amd64.aci",
                "https://storage.example.com/example.com/app-1.0.aci",
            ],
        ),
        (
            "meta06.html",
            [
                "https://storage.example.com/example.com/app-1.0-linux-amd64.aci",
                "https://storage.example.com/example.com/app-1.0.aci",
            ],
        ),
    ],
)
def test_discovery_pages(fixture: str, urls: list[str]) -> None:
    html = (FIXTURES / fixture).read_text()
    labels = {"version": "1.0", "os": "linux", "arch": "amd64"}
    assert discovery.endpoints(html, "example.com/app", labels, allow_http=False) == urls


def test_discovery_templates() -> None:
    assert discovery.fill_template("https://x/{name}-{version}.{ext}", "a/b", {}, "aci") == (
        "https://x/a/b-latest.aci"
    )
    assert discovery.fill_template("https://x/{name}-{channel}.{ext}", "a", {}, "aci") is None
    assert (
        discovery.fill_template("https://x/{name}-{channel}.{ext}", "a", {"channel": "beta"}, "aci")
        == "https://x/a-beta.aci"
    )
    page = '<meta name="ac-discovery" content="other.org https://other.org/{name}.{ext}">'
    assert discovery.endpoints(page, "example.com/app", {}, allow_http=True) == []


def test_a_diamond_of_dependencies_is_fetched_over_http_once_each(
    tmp_path: Path, server: Server, store: ImageStore
) -> None:
    from rktcfg.image.fetch import fetch_and_render
    from rktcfg.store.trees import TreeStore

    template = "https://storage.example.com/{name}-{version}.{ext}"
    page = f'<meta name="ac-discovery" content="example.com {template}">'
    server.routes["/example.com?ac-discovery=1"] = (page.encode(), {})
    graph = {"a": ["b", "c"], "b": ["d"], "c": ["d"], "d": []}
    for name, deps in graph.items():
        rootfs = make_rootfs(tmp_path / f"rootfs-{name}", payload=name.encode())
        (rootfs / f"from-{name}").write_text(name)
        doc = manifest(name=f"example.com/{name}")
        doc["dependencies"] = [
            {"imageName": f"example.com/{dep}", "labels": [{"name": "version", "value": "1.0"}]}
            for dep in deps
        ]
        out = tmp_path / f"{name}.aci"
        build_aci(str(rootfs), str(out), doc)
        server.routes[f"/storage.example.com/example.com/{name}-1.0.aci"] = (out.read_bytes(), {})
    opts = FetchOptions(transport=server.transport(), insecure=frozenset({"image"}), policy="new")
    result = fetch_and_render(store, "example.com/a:1.0", opts)
    downloads = [p for p, _ in server.requests if p.endswith(".aci")]
    assert sorted(downloads) == sorted(
        f"/storage.example.com/example.com/{n}-1.0.aci" for n in graph
    )  # d once, although two paths lead to it
    trees = TreeStore(store.data_dir, store)
    record = trees.record(result.record.id)
    assert record is not None and len(record.layers) == 4
    rootfs = Path(trees.rootfs(result.record.id))
    assert sorted(p.name for p in rootfs.glob("from-*")) == ["from-a", "from-b", "from-c", "from-d"]
    assert (rootfs / "bin" / "hello").read_bytes() == b"a"  # the image itself is applied last
    assert {r.name for r in store.records()} == {f"example.com/{n}" for n in graph}


def test_max_size_stops_a_decompression_bomb(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import gzip

    from rktcfg.cli.main import main

    rootfs = make_rootfs(tmp_path / "rootfs")
    (rootfs / "zeros").write_bytes(bytes(16 << 20))
    build_aci(str(rootfs), str(tmp_path / "bomb.aci"), manifest(name="example.com/bomb"))
    bomb = tmp_path / "bomb.aci.gz"
    bomb.write_bytes(gzip.compress((tmp_path / "bomb.aci").read_bytes()))
    assert bomb.stat().st_size < 100_000
    data = tmp_path / "data"
    code = main(["--dir", str(data), "fetch", "--max-size", "1Mi", str(bomb)])
    err = capsys.readouterr().err
    assert code == 2 and "larger than the limit of 1048576 bytes" in err
    with ImageStore(str(data)) as opened:
        assert opened.records() == []
        assert os.listdir(opened.tmp) == [] and os.listdir(opened.blobs) == []
    code = main(["--dir", str(data), "fetch", "--max-size", "lots", str(bomb)])
    assert code == 2 and "--max-size" in capsys.readouterr().err


def test_progress_bar_only_on_a_terminal(tmp_path: Path, server: Server) -> None:
    import pty
    import subprocess
    import sys

    body = _aci(tmp_path)
    server.routes["/127.0.0.1/h.aci"] = (body, {})
    server.routes["/127.0.0.1/h.aci?again"] = (body, {})
    # The command line reaches the test server directly: its address is 127.0.0.1.
    url = f"http://127.0.0.1:{server.port}/127.0.0.1/h.aci"
    rktcfg = str(Path(sys.executable).parent / "rktcfg")
    env = {**os.environ, "COLUMNS": "100"}
    argv = [rktcfg, "--dir", str(tmp_path / "data"), "fetch", "--insecure-options=image,http"]
    plain = subprocess.run([*argv, url], capture_output=True, text=True, env=env, check=True)
    assert plain.stdout.strip() == _id(body) and plain.stderr == ""
    primary, secondary = pty.openpty()
    shown = subprocess.run(
        [*argv, "--pull-policy", "update", "--no-render", url + "?again"],
        stdout=subprocess.PIPE,
        stderr=secondary,
        env=env,
        check=False,
        timeout=60,
    )
    os.close(secondary)
    drawn = read_all(primary)
    assert shown.returncode == 0, drawn
    assert shown.stdout.decode().strip() == _id(body)  # the ID on stdout, the bar on the tty
    assert b"h.aci" in drawn and b"\x1b[" in drawn
