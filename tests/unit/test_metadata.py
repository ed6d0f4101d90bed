"""The appc metadata service (rktcfg.stage1.metadata), served on 127.0.0.1 from a thread.

Each test runs the service in a background thread with its own selector loop, the way the
supervisor runs it: ``key.data(key, mask)`` for every ready key and ``expire`` every turn.
The loop's clock can be pushed forward (``skew``) to expire connections without waiting.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.client
import json
import os
import selectors
import socket
import stat
import subprocess
import sys
import threading
import time
import urllib.parse
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from rktcfg.stage1 import metadata
from rktcfg.stage1.metadata import (
    HMAC_KEY_FILE,
    IDLE_TIMEOUT,
    KEY_BYTES,
    MAX_CONNECTIONS,
    MAX_REQUEST,
    MetadataService,
    load_or_create_key,
    new_token,
    uuid_bytes,
)

FAST = 0.1  # every answer must come back within this many seconds
JSON = "application/json"
TEXT = "text/plain; charset=us-ascii"
FORM = {"Content-Type": "application/x-www-form-urlencoded"}

POD_ANNOTATIONS = [{"name": "example.com/team", "value": "infra"}]
IMAGE_MANIFEST = {
    "acKind": "ImageManifest",
    "acVersion": "0.8.11",
    "name": "example.com/web",
    "annotations": [
        {"name": "authors", "value": "image authors"},
        {"name": "example.com/tier", "value": "image"},
        {"name": "homepage", "value": "https://example.com"},
    ],
}
WEB_ANNOTATIONS = [
    {"name": "example.com/tier", "value": "pod"},
    {"name": "example.com/extra", "value": "pod only"},
]
WEB_ID = "sha512-" + "ab" * 32
DB_ID = "sha512-" + "cd" * 32


def write_pod(root: Path) -> Path:
    pod_dir = root / str(uuid.uuid4())
    (pod_dir / "apps" / "web").mkdir(parents=True)
    (pod_dir / "apps" / "db").mkdir(parents=True)
    pod = {
        "acKind": "PodManifest",
        "acVersion": "0.8.11",
        "apps": [
            {
                "name": "web",
                "image": {"id": WEB_ID, "name": "example.com/web"},
                "app": {"exec": ["/bin/web"], "user": "0", "group": "0"},
                "annotations": WEB_ANNOTATIONS,
            },
            {"name": "db", "image": {"id": DB_ID, "name": "example.com/db"}},
        ],
        "annotations": POD_ANNOTATIONS,
    }
    (pod_dir / "pod").write_text(json.dumps(pod, indent=2) + "\n")
    # Written with odd spacing on purpose: it must be served byte for byte.
    (pod_dir / "apps" / "web" / "manifest").write_text(json.dumps(IMAGE_MANIFEST, indent=3))
    (pod_dir / "apps" / "db" / "manifest").write_text('{"acKind": "ImageManifest"}')
    return pod_dir


class Reply:
    def __init__(self, status: int, headers: http.client.HTTPMessage, body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    @property
    def ctype(self) -> str | None:
        return self.headers.get("Content-Type")

    def json(self) -> object:
        return json.loads(self.body)


class Served:
    """A running service and a client for it."""

    def __init__(self, pod_dir: Path, key: bytes) -> None:
        self.pod_dir = pod_dir
        self.uuid = pod_dir.name
        self.key = key
        self.token = new_token()
        self.service = MetadataService(str(pod_dir), token=self.token, key=key)
        self.selector = selectors.DefaultSelector()
        self.url = self.service.start(self.selector)
        parsed = urllib.parse.urlsplit(self.url)
        assert parsed.hostname is not None and parsed.port is not None
        self.host, self.port = parsed.hostname, parsed.port
        self.base = f"{parsed.path}/acMetadata/v1"
        self.skew = 0.0
        self.turns = 0
        self.errors: list[BaseException] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        try:
            while not self._stop.is_set():
                for key, mask in self.selector.select(0.01):
                    assert callable(key.data)
                    key.data(key, mask)
                self.service.expire(time.monotonic() + self.skew)
                self.turns += 1
        except BaseException as exc:  # the callbacks must never raise
            self.errors.append(exc)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.service.close()
        self.selector.close()

    def wait_turns(self, count: int = 3) -> None:
        target = self.turns + count
        deadline = time.monotonic() + 2
        while self.turns < target and time.monotonic() < deadline:
            time.sleep(0.005)

    def request(
        self,
        method: str,
        path: str,
        body: bytes | str | None = None,
        headers: dict[str, str] | None = None,
        *,
        base: str | None = None,
    ) -> Reply:
        start = time.monotonic()
        conn = http.client.HTTPConnection(self.host, self.port, timeout=2)
        try:
            conn.request(method, (self.base if base is None else base) + path, body, headers or {})
            response = conn.getresponse()
            reply = Reply(response.status, response.headers, response.read())
        finally:
            conn.close()
        elapsed = time.monotonic() - start
        assert elapsed < FAST, f"{method} {path}: answered in {elapsed * 1000:.1f} ms"
        assert reply.headers["Connection"] == "close"
        assert int(reply.headers["Content-Length"]) == len(reply.body) or method == "HEAD"
        return reply

    def get(self, path: str) -> Reply:
        return self.request("GET", path)

    def post(self, path: str, fields: dict[str, str | bytes]) -> Reply:
        return self.request("POST", path, urllib.parse.urlencode(fields), FORM)

    def raw(self, data: bytes, *, timeout: float = 2) -> bytes:
        """Send ``data`` as it is and read the whole answer."""
        with socket.create_connection((self.host, self.port), timeout=timeout) as sock:
            sock.sendall(data)
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks)


@pytest.fixture
def key() -> bytes:
    return os.urandom(KEY_BYTES)


@pytest.fixture
def served(tmp_path: Path, key: bytes) -> Iterator[Served]:
    running = Served(write_pod(tmp_path), key)
    yield running
    running.stop()
    assert running.errors == []


def expected_signature(key: bytes, pod_uuid: str, content: bytes) -> str:
    digest = hmac.new(key, uuid.UUID(pod_uuid).bytes + content, hashlib.sha512).digest()
    return base64.b64encode(digest).decode("ascii")


# --- endpoints --------------------------------------------------------------------------------


def test_url_is_host_port_token(served: Served) -> None:
    assert served.url == f"http://127.0.0.1:{served.port}/{served.token}"
    assert served.token not in served.uuid and served.uuid not in served.url


def test_pod_annotations(served: Served) -> None:
    reply = served.get("/pod/annotations")
    assert (reply.status, reply.ctype) == (200, JSON)
    assert reply.json() == POD_ANNOTATIONS


def test_pod_annotations_absent_is_empty_list(served: Served) -> None:
    pod = json.loads((served.pod_dir / "pod").read_text())
    del pod["annotations"]
    (served.pod_dir / "pod").write_text(json.dumps(pod))
    reply = served.get("/pod/annotations")
    assert (reply.status, reply.ctype, reply.json()) == (200, JSON, [])


def test_pod_manifest_served_as_stored(served: Served) -> None:
    reply = served.get("/pod/manifest")
    assert (reply.status, reply.ctype) == (200, JSON)
    assert reply.body == (served.pod_dir / "pod").read_bytes()


def test_pod_uuid(served: Served) -> None:
    reply = served.get("/pod/uuid")
    assert (reply.status, reply.ctype) == (200, TEXT)
    assert reply.body == served.uuid.encode()


def test_app_image_manifest_served_as_stored(served: Served) -> None:
    reply = served.get("/apps/web/image/manifest")
    assert (reply.status, reply.ctype) == (200, JSON)
    assert reply.body == (served.pod_dir / "apps" / "web" / "manifest").read_bytes()


def test_app_image_id(served: Served) -> None:
    for app, image_id in (("web", WEB_ID), ("db", DB_ID)):
        reply = served.get(f"/apps/{app}/image/id")
        assert (reply.status, reply.ctype, reply.body) == (200, TEXT, image_id.encode())


def test_app_annotations_merge_pod_values_win(served: Served) -> None:
    reply = served.get("/apps/web/annotations")
    assert (reply.status, reply.ctype) == (200, JSON)
    assert reply.json() == [
        {"name": "authors", "value": "image authors"},
        {"name": "example.com/tier", "value": "pod"},  # the pod's value, in the image's place
        {"name": "homepage", "value": "https://example.com"},
        {"name": "example.com/extra", "value": "pod only"},
    ]


def test_app_annotations_none_anywhere(served: Served) -> None:
    reply = served.get("/apps/db/annotations")
    assert (reply.status, reply.ctype, reply.json()) == (200, JSON, [])


def test_files_are_read_on_each_request(served: Served) -> None:
    manifest = served.pod_dir / "apps" / "web" / "manifest"
    manifest.write_text('{"annotations": [{"name": "new", "value": "1"}]}')
    reply = served.get("/apps/web/annotations")
    assert reply.json() == [
        {"name": "new", "value": "1"},
        {"name": "example.com/tier", "value": "pod"},
        {"name": "example.com/extra", "value": "pod only"},
    ]


@pytest.mark.parametrize(
    "path",
    [
        "/apps/nope/annotations",
        "/apps/nope/image/manifest",
        "/apps/nope/image/id",
        "/apps/../image/id",
        "/apps/%2e%2e/image/id",
        "/apps/web%2fx/image/id",
        "/apps/WEB/image/id",
        "/apps//image/id",
    ],
)
def test_unknown_app_is_404(served: Served, path: str) -> None:
    assert served.get(path).status == 404


@pytest.mark.parametrize(
    "path",
    ["", "/", "/pod", "/pod/", "/pod/uuid/", "/pod//uuid", "/apps/web", "/apps/web/image", "/x"],
)
def test_unknown_path_is_404(served: Served, path: str) -> None:
    reply = served.get(path)
    assert (reply.status, reply.ctype) == (404, TEXT)


def test_percent_escapes_in_the_path_are_decoded(served: Served) -> None:
    assert served.get("/pod/%75uid").body == served.uuid.encode()


def test_query_string_is_ignored(served: Served) -> None:
    assert served.get("/pod/uuid?x=1").body == served.uuid.encode()


def test_head_answers_headers_only(served: Served) -> None:
    reply = served.request("HEAD", "/pod/manifest")
    assert (reply.status, reply.ctype, reply.body) == (200, JSON, b"")
    assert int(reply.headers["Content-Length"]) == len((served.pod_dir / "pod").read_bytes())


def test_missing_pod_manifest_is_500(served: Served) -> None:
    (served.pod_dir / "pod").unlink()
    assert served.get("/pod/manifest").status == 500
    assert served.get("/apps/web/image/id").status == 500
    assert served.get("/pod/uuid").status == 200  # from the directory name alone


def test_large_answer_is_written_whole(served: Served) -> None:
    """An answer larger than the socket buffers goes out over several loop turns."""
    big = {"annotations": [{"name": f"n{i}", "value": "v" * 1000} for i in range(4000)]}
    (served.pod_dir / "apps" / "web" / "manifest").write_text(json.dumps(big))
    conn = http.client.HTTPConnection(served.host, served.port, timeout=5)
    conn.request("GET", served.base + "/apps/web/image/manifest")
    response = conn.getresponse()
    assert response.read() == (served.pod_dir / "apps" / "web" / "manifest").read_bytes()
    conn.close()


# --- hmac -------------------------------------------------------------------------------------


def test_sign_is_hmac_sha512_of_uuid_and_content(served: Served) -> None:
    reply = served.post("/pod/hmac/sign", {"content": "hello world"})
    assert (reply.status, reply.ctype) == (200, TEXT)
    assert reply.body.decode() == expected_signature(served.key, served.uuid, b"hello world")


def test_sign_verify_round_trip(served: Served) -> None:
    content = b"\x00binary \xff& content=+%"
    signature = served.post("/pod/hmac/sign", {"content": content}).body
    assert signature.decode() == expected_signature(served.key, served.uuid, content)
    fields = {"content": content, "uuid": served.uuid, "signature": signature}
    assert served.post("/pod/hmac/verify", fields).status == 200
    assert served.post("/pod/hmac/verify", fields | {"uuid": str(uuid.uuid4())}).status == 403
    assert served.post("/pod/hmac/verify", fields | {"content": b"other"}).status == 403
    wrong = base64.b64encode(b"\x00" * 64)
    assert served.post("/pod/hmac/verify", fields | {"signature": wrong}).status == 403


def test_sign_empty_content(served: Served) -> None:
    reply = served.post("/pod/hmac/sign", {"content": ""})
    assert reply.body.decode() == expected_signature(served.key, served.uuid, b"")


def test_verify_what_another_pod_of_the_data_dir_signed(served: Served) -> None:
    other = str(uuid.uuid4())
    fields = {
        "content": "from the other pod",
        "uuid": other,
        "signature": expected_signature(served.key, other, b"from the other pod"),
    }
    assert served.post("/pod/hmac/verify", fields).status == 200


@pytest.mark.parametrize("missing", ["content", "uuid", "signature"])
def test_verify_missing_field_is_400(served: Served, missing: str) -> None:
    fields: dict[str, str | bytes] = {"content": "c", "uuid": served.uuid, "signature": "AAAA"}
    del fields[missing]
    reply = served.post("/pod/hmac/verify", fields)
    assert (reply.status, reply.ctype) == (400, TEXT)
    assert missing.encode() in reply.body


@pytest.mark.parametrize(
    "field, value", [("uuid", "not-a-uuid"), ("signature", "not base64!"), ("signature", "AAA")]
)
def test_verify_malformed_field_is_400(served: Served, field: str, value: str) -> None:
    fields = {"content": "c", "uuid": served.uuid, "signature": "AAAA"} | {field: value}
    assert served.post("/pod/hmac/verify", fields).status == 400


def test_sign_without_content_is_400(served: Served) -> None:
    assert served.post("/pod/hmac/sign", {"other": "x"}).status == 400


def test_sign_bad_escape_is_400(served: Served) -> None:
    assert served.request("POST", "/pod/hmac/sign", "content=%zz", FORM).status == 400


def test_sign_body_must_be_a_form(served: Served) -> None:
    headers = {"Content-Type": "application/json"}
    assert served.request("POST", "/pod/hmac/sign", '{"content": "x"}', headers).status == 415


def test_form_content_type_parameters_and_case(served: Served) -> None:
    headers = {"Content-Type": "Application/X-WWW-Form-Urlencoded; charset=utf-8"}
    reply = served.request("POST", "/pod/hmac/sign", "content=x", headers)
    assert reply.body.decode() == expected_signature(served.key, served.uuid, b"x")


# --- errors -----------------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["other", "shorter", "longer", "missing", "uuid"])
def test_wrong_token_is_404(served: Served, how: str) -> None:
    token = {
        "other": new_token(),
        "shorter": served.token[:-1],
        "longer": served.token + "x",
        "missing": "",
        "uuid": served.uuid,
    }[how]
    for method, path in (("GET", "/pod/uuid"), ("POST", "/pod/hmac/sign"), ("DELETE", "/pod")):
        reply = served.request(method, path, "content=x", FORM, base=f"/{token}/acMetadata/v1")
        assert (reply.status, reply.ctype) == (404, TEXT)
        assert served.uuid.encode() not in reply.body


@pytest.mark.parametrize(
    "method, path, allow",
    [
        ("POST", "/pod/uuid", "GET, HEAD"),
        ("PUT", "/pod/manifest", "GET, HEAD"),
        ("DELETE", "/apps/web/annotations", "GET, HEAD"),
        ("GET", "/pod/hmac/sign", "POST"),
        ("HEAD", "/pod/hmac/verify", "POST"),
        ("OPTIONS", "/apps/web/image/id", "GET, HEAD"),
    ],
)
def test_wrong_method_is_405_with_allow(served: Served, method: str, path: str, allow: str) -> None:
    reply = served.request(method, path)
    assert reply.status == 405
    assert reply.headers["Allow"] == allow


def test_oversized_body_is_413(served: Served) -> None:
    body = "content=" + "x" * MAX_REQUEST
    reply = served.request("POST", "/pod/hmac/sign", body, FORM)
    assert reply.status == 413


def test_oversized_head_is_413(served: Served) -> None:
    answer = served.raw(b"GET / HTTP/1.1\r\nX-Filler: " + b"x" * (MAX_REQUEST + 10))
    assert answer.startswith(b"HTTP/1.1 413 ")


def test_announced_oversized_body_is_413_at_once(served: Served) -> None:
    """The answer does not wait for a body it would refuse."""
    request = (
        f"POST {served.base}/pod/hmac/sign HTTP/1.1\r\nHost: x\r\n"
        f"Content-Type: application/x-www-form-urlencoded\r\n"
        f"Content-Length: {10 * MAX_REQUEST}\r\n\r\ncontent="
    ).encode()
    start = time.monotonic()
    with socket.create_connection((served.host, served.port), timeout=2) as sock:
        sock.sendall(request)
        answer = sock.recv(65536)
    assert answer.startswith(b"HTTP/1.1 413 ")
    assert time.monotonic() - start < FAST


@pytest.mark.parametrize(
    "request_bytes, status",
    [
        (b"GARBAGE\r\n\r\n", 400),
        (b"GET /pod/uuid\r\n\r\n", 400),
        (b"GET  /x HTTP/1.1\r\nHost: x\r\n\r\n", 400),
        (b"GET /x HTTP/1.1\r\n\r\n", 400),  # HTTP/1.1 without Host
        (b"GET /x HTTP/1.1\r\nHost: x\r\nBad Header: y\r\n\r\n", 400),
        (b"GET /x HTTP/1.1\r\nHost: x\r\nNoColon\r\n\r\n", 400),
        (b"GET /x HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n", 400),
        (b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n", 400),
        (b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 400),
        (b"GET /x HTTP/2.0\r\nHost: x\r\n\r\n", 505),
        (b"GET /x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n", 501),
        (b"GET /%ff HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    ],
)
def test_malformed_request(served: Served, request_bytes: bytes, status: int) -> None:
    answer = served.raw(request_bytes)
    assert answer.startswith(f"HTTP/1.1 {status} ".encode()), answer
    assert b"\r\nConnection: close\r\n" in answer


def test_http_1_0_without_host(served: Served) -> None:
    answer = served.raw(f"GET {served.base}/pod/uuid HTTP/1.0\r\n\r\n".encode())
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
    assert f"Content-Type: {TEXT}".encode() in head
    assert body == served.uuid.encode()


def test_bare_lf_lines_and_absolute_form(served: Served) -> None:
    target = f"http://127.0.0.1:{served.port}{served.base}/pod/uuid"
    answer = served.raw(f"GET {target} HTTP/1.1\nHost: x\n\n".encode())
    assert answer.startswith(b"HTTP/1.1 200 ") and answer.endswith(served.uuid.encode())


def test_expect_100_continue(served: Served) -> None:
    head = (
        f"POST {served.base}/pod/hmac/sign HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
        "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 9\r\n\r\n"
    )
    with socket.create_connection((served.host, served.port), timeout=2) as sock:
        sock.sendall(head.encode())
        assert sock.recv(100) == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(b"content=x")
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 200 ")
    assert answer.endswith(expected_signature(served.key, served.uuid, b"x").encode())


def test_request_in_many_small_pieces(served: Served) -> None:
    request = f"GET {served.base}/pod/uuid HTTP/1.1\r\nHost: x\r\n\r\n".encode()
    with socket.create_connection((served.host, served.port), timeout=2) as sock:
        for i in range(len(request)):
            sock.sendall(request[i : i + 1])
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    assert answer.endswith(served.uuid.encode())


def test_client_that_goes_away_does_not_hurt(served: Served) -> None:
    for data in (b"", b"GET /", f"GET {served.base}/pod/manifest HTTP/1.0\r\n\r\n".encode()):
        with socket.create_connection((served.host, served.port), timeout=2) as sock:
            sock.sendall(data)
            sock.setsockopt(
                socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
            )
    assert served.get("/pod/uuid").status == 200


# --- connections and time ---------------------------------------------------------------------


def test_slowloris_is_expired_without_blocking_others(served: Served) -> None:
    slow = socket.create_connection((served.host, served.port), timeout=2)
    try:
        slow.sendall(f"GET {served.base}/pod/uuid HTTP/1.1\r\nHost: x\r\n".encode())
        for _ in range(20):  # the half-sent request blocks nobody
            slow.sendall(b"X-Slow: 1\r\n")
            assert served.get("/pod/uuid").status == 200
        served.wait_turns()
        assert served.service.connections == 1
        served.skew = IDLE_TIMEOUT + 0.5  # trickling bytes did not extend its deadline
        slow.settimeout(1)
        assert slow.recv(100) == b""  # closed, no answer
    finally:
        slow.close()
        served.skew = 0.0
    served.wait_turns()
    assert served.service.connections == 0
    assert served.get("/pod/uuid").status == 200


def test_expire_deadline(tmp_path: Path, key: bytes) -> None:
    """Without a thread: a connection lives IDLE_TIMEOUT seconds from its accept."""
    service = MetadataService(str(write_pod(tmp_path)), token=new_token(), key=key)
    selector = selectors.DefaultSelector()
    url = service.start(selector)
    port = int(url.split(":")[2].split("/")[0])
    try:
        client = socket.create_connection(("127.0.0.1", port))
        accepted = time.monotonic()
        for event_key, mask in selector.select(1):
            event_key.data(event_key, mask)
        assert service.connections == 1
        assert all(callable(k.data) for k in selector.get_map().values())
        service.expire(accepted + IDLE_TIMEOUT - 0.5)
        assert service.connections == 1
        service.expire(time.monotonic() + IDLE_TIMEOUT + 0.01)
        assert service.connections == 0
        client.settimeout(1)
        assert client.recv(10) == b""
        client.close()
    finally:
        service.close()
        assert selector.get_map() == {}
        selector.close()


def test_too_many_connections_evict_the_oldest(served: Served) -> None:
    idle = [socket.create_connection((served.host, served.port)) for _ in range(MAX_CONNECTIONS)]
    try:
        served.wait_turns()
        assert served.get("/pod/uuid").status == 200
        idle[0].settimeout(1)
        assert idle[0].recv(10) == b""
        served.wait_turns()
        assert served.service.connections <= MAX_CONNECTIONS
    finally:
        for sock in idle:
            sock.close()


def test_concurrent_clients(served: Served) -> None:
    results: list[int] = []

    def client() -> None:
        for _ in range(10):
            results.append(served.get("/apps/web/annotations").status)

    threads = [threading.Thread(target=client) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [200] * 80


def test_close_releases_everything(tmp_path: Path, key: bytes) -> None:
    service = MetadataService(str(write_pod(tmp_path)), token=new_token(), key=key)
    selector = selectors.DefaultSelector()
    url = service.start(selector)
    port = int(url.split(":")[2].split("/")[0])
    with pytest.raises(RuntimeError):
        service.start(selector)
    service.close()
    service.close()
    assert selector.get_map() == {}
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=1)
    selector.close()


# --- construction, key and token -----------------------------------------------------------------


def test_constructor_checks_token_key_and_pod_dir(tmp_path: Path, key: bytes) -> None:
    pod_dir = str(write_pod(tmp_path))
    for token in ("", "short", "x" * 21, new_token() + "/", new_token() + " "):
        with pytest.raises(ValueError, match="token"):
            MetadataService(pod_dir, token=token, key=key)
    with pytest.raises(ValueError, match="key"):
        MetadataService(pod_dir, token=new_token(), key=b"k" * 31)
    with pytest.raises(ValueError, match="uuid"):
        MetadataService(str(tmp_path), token=new_token(), key=key)


def test_new_token_has_at_least_128_bits() -> None:
    tokens = {new_token() for _ in range(100)}
    assert len(tokens) == 100
    for token in tokens:
        assert len(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))) * 8 >= 128
        assert urllib.parse.quote(token, safe="") == token


@pytest.mark.parametrize(
    "text",
    [
        "12345678-1234-5678-1234-567812345678",
        "12345678123456781234567812345678",
        "{12345678-1234-5678-1234-567812345678}",
        "urn:uuid:12345678-1234-5678-1234-567812345678",
        "ABCDEF78-1234-5678-1234-567812345678",
    ],
)
def test_uuid_bytes_reads_what_uuid_reads(text: str) -> None:
    assert uuid_bytes(text) == uuid.UUID(text).bytes


@pytest.mark.parametrize("text", ["", "1234", "g" * 32, "12345678-1234-5678-1234-5678123456789"])
def test_uuid_bytes_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        uuid_bytes(text)


def test_key_is_created_0600_and_reused(tmp_path: Path) -> None:
    old = os.umask(0)  # the file mode must not depend on the umask
    try:
        key = load_or_create_key(str(tmp_path))
    finally:
        os.umask(old)
    path = tmp_path / HMAC_KEY_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_ISREG(path.stat().st_mode)
    assert path.read_bytes() == key and len(key) == KEY_BYTES
    assert load_or_create_key(str(tmp_path)) == key
    assert sorted(p.name for p in tmp_path.iterdir()) == [HMAC_KEY_FILE]  # no leftovers
    other = tmp_path / "other"
    other.mkdir()
    assert load_or_create_key(str(other)) != key


def test_key_created_once_under_a_race(tmp_path: Path) -> None:
    keys: list[bytes] = []
    barrier = threading.Barrier(8)

    def load() -> None:
        barrier.wait()
        keys.append(load_or_create_key(str(tmp_path)))

    threads = [threading.Thread(target=load) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(keys) == 8 and len(set(keys)) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == [HMAC_KEY_FILE]


def test_key_file_that_others_can_read_is_refused(tmp_path: Path) -> None:
    load_or_create_key(str(tmp_path))
    (tmp_path / HMAC_KEY_FILE).chmod(0o644)
    with pytest.raises(ValueError, match=r"owner only \(got mode 0644\)"):
        load_or_create_key(str(tmp_path))


def test_key_file_of_the_wrong_size_is_refused(tmp_path: Path) -> None:
    path = tmp_path / HMAC_KEY_FILE
    path.write_bytes(b"short")
    path.chmod(0o600)
    with pytest.raises(ValueError, match=r"must hold 64 bytes \(got 5\)"):
        load_or_create_key(str(tmp_path))


def test_key_file_symlink_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    target.write_bytes(os.urandom(KEY_BYTES))
    target.chmod(0o600)
    (tmp_path / HMAC_KEY_FILE).symlink_to(target)
    with pytest.raises(ValueError, match="symbolic link"):
        load_or_create_key(str(tmp_path))


def test_percent_decode() -> None:
    assert metadata.percent_decode(b"a%20b+c%2B", plus=True) == b"a b c+"
    assert metadata.percent_decode(b"a+b") == b"a+b"
    assert metadata.percent_decode(b"%C3%a9%00") == b"\xc3\xa9\x00"
    for bad in (b"%", b"%2", b"%zz", b"%+f", b"% 1"):
        with pytest.raises(ValueError, match="bad escape"):
            metadata.percent_decode(bad)


def test_imports_stay_small() -> None:
    """The supervisor imports this module: the standard library and rktcfg.stage1 only, and
    no HTTP, mail, URL or random-number packages."""
    code = (
        "import sys, rktcfg; before = set(sys.modules); import rktcfg.stage1.metadata; "
        "print(' '.join(sorted(set(sys.modules) - before)))"
    )
    shown = subprocess.run(
        [sys.executable, "-I", "-c", code], capture_output=True, text=True, check=True
    )
    added = shown.stdout.split()
    ours = [m for m in added if m.startswith("rktcfg")]
    assert ours == ["rktcfg.stage1", "rktcfg.stage1.metadata"]
    heavy = ("http", "email", "urllib", "uuid", "secrets", "random", "ssl", "asyncio")
    assert [m for m in added if m.split(".")[0] in heavy] == []
