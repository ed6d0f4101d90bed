"""The appc metadata service, as each pod's supervisor serves it to the pod's apps.

The apps find it at ``$AC_METADATA_URL`` (``http://HOST:PORT/TOKEN``, see
:meth:`MetadataService.start`); every endpoint is below ``$AC_METADATA_URL/acMetadata/v1``::

    GET  /pod/annotations              application/json   the pod manifest's annotations
    GET  /pod/manifest                 application/json   the reified pod manifest, as stored
    GET  /pod/uuid                     text/plain         the pod's UUID
    GET  /apps/<app>/annotations       application/json   image annotations, pod app's win
    GET  /apps/<app>/image/manifest    application/json   the image manifest, as stored
    GET  /apps/<app>/image/id          text/plain         the pod manifest's image id
    POST /pod/hmac/sign                text/plain         base64 HMAC-SHA512(uuid || content)
    POST /pod/hmac/verify              200 if the signature is right, 403 if not

(text/plain is ``text/plain; charset=us-ascii``.) The POST bodies are forms
(``application/x-www-form-urlencoded``): ``content`` for ``sign``; ``content``, ``uuid``
and ``signature`` for ``verify``. The signature is made with a key shared by every pod of a
data directory (:func:`load_or_create_key`) over the 16 bytes of the pod's UUID followed by
the content's bytes, as rkt does, so a pod can check what another pod signed.

Answers: a wrong token or an unknown path or app is 404 (the token is checked first, in
constant time, so a wrong token learns nothing else); a known path with the wrong method is
405 with ``Allow``; a malformed request, form or field is 400; a POST body that is not a
form is 415; a request (head and body) over :data:`MAX_REQUEST` is 413; ``Transfer-Encoding``
is 501. GET endpoints also answer HEAD. Every answer is HTTP/1.1 with ``Content-Length`` and
``Connection: close``; error answers carry a one-line text/plain reason.

The data comes from the pod directory (whose base name is the pod UUID), read afresh on
each request: ``pod`` (the pod manifest) and ``apps/<app>/manifest`` (the image manifest).

How it runs: inside the supervisor's single-threaded ``selectors`` loop. Every socket it
registers has ``data=`` a callable taking ``(key, mask)``, which the loop calls when the
socket is ready; the callbacks never block and never raise. A connection reads one request,
gets one answer and is closed; the loop calls :meth:`MetadataService.expire` each turn,
which closes a connection that has not sent a whole request within :data:`IDLE_TIMEOUT` of
being accepted (trickling bytes does not extend it, so a slowloris client gets 5 s, not
forever), or that made no progress for that long while it is answered. At most
:data:`MAX_CONNECTIONS` are open; a new one beyond that evicts the oldest.

Standard library only, and a small part of it: the supervisor imports this module.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import selectors
import socket
import stat
import time
from collections.abc import Callable

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

#: The HMAC key's file in the data directory.
HMAC_KEY_FILE = "mds-hmac.key"
#: The key's length in bytes (SHA-512's output size, as in rkt).
KEY_BYTES = 64
#: The most a request (request line, headers and body) may take.
MAX_REQUEST = 64 * 1024
#: Seconds a connection may take to send its request, or stall while it is answered.
IDLE_TIMEOUT = 5.0
#: Seconds to wait for the client's end after the answer (so unread input causes no RST).
LINGER_TIMEOUT = 2.0
#: Bytes read and dropped after the answer before giving up on a clean close.
MAX_DRAIN = 1 << 20
#: Connections open at once; a new one beyond that closes the oldest.
MAX_CONNECTIONS = 64

API = "acMetadata/v1"
JSON = "application/json"
TEXT = "text/plain; charset=us-ascii"
FORM = "application/x-www-form-urlencoded"

_AC_NAME = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")
_TOKEN = re.compile(r"[A-Za-z0-9._~-]{22,}")  # at least 22 base64 characters: >= 128 bits
_HEX = b"0123456789abcdefABCDEF"
_HTTP_TOKEN = re.compile(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_VERSION = re.compile(rb"HTTP/([0-9])\.([0-9])")
_REASONS = {
    100: "Continue",
    200: "OK",
    400: "Bad Request",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    413: "Content Too Large",
    415: "Unsupported Media Type",
    500: "Internal Server Error",
    501: "Not Implemented",
    505: "HTTP Version Not Supported",
}
_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_GET: tuple[str, ...] = ("GET", "HEAD")
_POST: tuple[str, ...] = ("POST",)


# --- the key and the token --------------------------------------------------------------------


def load_or_create_key(data_dir: str) -> bytes:
    """The data directory's HMAC key (:data:`KEY_BYTES` random bytes in
    ``<data_dir>/mds-hmac.key``, mode 0600), made on first use.

    Creation is atomic and race-free: the key is written to a private temporary file
    (``O_EXCL``) and hard-linked into place, so every pod of the data directory, even two
    started at once, gets the same whole key. Raises ValueError for a key file that is not
    a regular file of :data:`KEY_BYTES` bytes or that others may read, OSError when the
    directory is unusable.
    """
    path = os.path.join(data_dir, HMAC_KEY_FILE)
    for _ in range(3):
        key = _read_key(path)
        if key is not None:
            return key
        key = os.urandom(KEY_BYTES)
        if _publish_key(path, key):
            return key
    raise ValueError(f"{path}: must be a key file (got one that keeps vanishing)")


def _read_key(path: str) -> bytes | None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if os.path.islink(path):
            raise ValueError(f"{path}: must be a regular file (got a symbolic link)") from exc
        raise
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise ValueError(f"{path}: must be a regular file (got mode {info.st_mode:o})")
        mode = stat.S_IMODE(info.st_mode)
        if mode & 0o077:
            raise ValueError(f"{path}: must be readable by its owner only (got mode {mode:04o})")
        key = handle.read(KEY_BYTES + 1)
    if len(key) != KEY_BYTES:
        raise ValueError(f"{path}: must hold {KEY_BYTES} bytes (got {len(key)})")
    return key


def _publish_key(path: str, key: bytes) -> bool:
    """Put ``key`` at ``path`` unless a key is there already; False if one was."""
    directory = os.path.dirname(path) or "."
    tmp = os.path.join(directory, f".{HMAC_KEY_FILE}.{os.getpid()}.{os.urandom(6).hex()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        try:
            os.fchmod(fd, 0o600)  # exactly 0600, whatever the umask
            view = memoryview(key)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(tmp, path)  # never replaces: the first key published wins
        except FileExistsError:
            return False
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return True


def new_token() -> str:
    """A fresh secret for the URL path: 192 random bits, URL-safe base64 (32 characters)."""
    return base64.urlsafe_b64encode(os.urandom(24)).rstrip(b"=").decode("ascii")


def uuid_bytes(text: str) -> bytes:
    """The 16 bytes of a UUID written the ways :class:`uuid.UUID` reads it (hex digits with
    or without hyphens, braces or a ``urn:uuid:`` prefix). Raises ValueError otherwise."""
    digits = text.replace("urn:", "").replace("uuid:", "").strip("{}").replace("-", "")
    if len(digits) != 32 or not all(c in _HEX.decode() for c in digits):
        raise ValueError(f"uuid: must be a UUID (got {text!r})")
    return bytes.fromhex(digits)


def percent_decode(data: bytes, *, plus: bool = False) -> bytes:
    """Undo %XX escapes (and, in a form, ``+`` for a space), byte for byte. Raises ValueError
    for a ``%`` not followed by two hex digits."""
    if plus:
        data = data.replace(b"+", b" ")
    if b"%" not in data:
        return data
    head, *rest = data.split(b"%")
    out = bytearray(head)
    for piece in rest:
        escape = piece[:2]
        if len(escape) != 2 or not all(c in _HEX for c in escape):
            raise ValueError(f"bad escape %{escape.decode('latin-1')}")
        out.append(int(escape, 16))
        out += piece[2:]
    return bytes(out)


def _same(a: bytes, b: bytes) -> bool:
    """Constant-time equality (hmac.compare_digest without importing OpenSSL)."""
    if len(a) != len(b):
        return False
    diff = 0
    for x, y in zip(a, b, strict=True):
        diff |= x ^ y
    return diff == 0


def sign(key: bytes, pod_uuid: bytes, content: bytes) -> bytes:
    """HMAC-SHA512 of the pod UUID's 16 bytes followed by ``content``."""
    import hashlib  # only here: OpenSSL costs the supervisor ~4 MiB, paid by pods that sign
    import hmac

    return hmac.new(key, pod_uuid + content, hashlib.sha512).digest()


# --- HTTP -------------------------------------------------------------------------------------


class _Answer:
    __slots__ = ("allow", "body", "ctype", "status")

    def __init__(
        self, status: int, body: bytes = b"", ctype: str = TEXT, allow: tuple[str, ...] = ()
    ) -> None:
        self.status = status
        self.body = body
        self.ctype = ctype
        self.allow = allow


def _error(status: int, reason: str, allow: tuple[str, ...] = ()) -> _Answer:
    return _Answer(status, reason.encode("ascii", "backslashreplace") + b"\n", TEXT, allow)


def _json(value: object) -> _Answer:
    return _Answer(200, json.dumps(value).encode("ascii"), JSON)


def _http_date(now: float) -> str:
    t = time.gmtime(now)
    return (
        f"{_DAYS[t.tm_wday]}, {t.tm_mday:02d} {_MONTHS[t.tm_mon - 1]} {t.tm_year} "
        f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} GMT"
    )


def _render(answer: _Answer, head_only: bool) -> bytes:
    lines = [
        f"HTTP/1.1 {answer.status} {_REASONS.get(answer.status, 'Unknown')}",
        f"Date: {_http_date(time.time())}",
        f"Content-Type: {answer.ctype}",
        f"Content-Length: {len(answer.body)}",
        "Cache-Control: no-store",
        "Connection: close",
    ]
    if answer.allow:
        lines.append(f"Allow: {', '.join(answer.allow)}")
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("ascii")
    return head if head_only else head + answer.body


class _Request:
    __slots__ = ("body", "head_end", "headers", "length", "method", "target", "version")

    def __init__(self) -> None:
        self.method = ""
        self.target = ""
        self.version = (1, 0)
        self.headers: dict[str, str] = {}
        self.head_end = 0
        self.length = 0
        self.body = b""


def _head_end(buf: bytes | bytearray) -> int:
    """The offset just past the blank line ending the head, or -1 (bare LF lines allowed)."""
    crlf = buf.find(b"\r\n\r\n")
    lf = buf.find(b"\n\n")
    ends = [i + n for i, n in ((crlf, 4), (lf, 2)) if i >= 0]
    return min(ends) if ends else -1


def _parse_head(buf: bytes | bytearray, end: int) -> _Request | _Answer:
    """The request line and headers in ``buf[:end]``, or the error answer."""
    start = 0
    while buf[start : start + 2] == b"\r\n" or buf[start : start + 1] == b"\n":
        start += 2 if buf[start : start + 1] == b"\r" else 1  # empty lines before the request
    lines = bytes(buf[start:end]).split(b"\n")
    lines = [line[:-1] if line.endswith(b"\r") else line for line in lines]
    while lines and not lines[-1]:
        lines.pop()
    if not lines:
        return _error(400, "empty request")
    parts = lines[0].split(b" ")
    if len(parts) != 3 or not _HTTP_TOKEN.fullmatch(parts[0]) or not parts[1]:
        return _error(400, "malformed request line")
    version = _VERSION.fullmatch(parts[2])
    if version is None:
        return _error(400, "malformed HTTP version")
    if version.group(1) != b"1":
        return _error(505, "only HTTP/1.0 and HTTP/1.1 are served")
    request = _Request()
    request.method = parts[0].decode("ascii")
    request.target = parts[1].decode("latin-1")
    request.version = (1, int(version.group(2)))
    request.head_end = end
    for line in lines[1:]:
        name, colon, value = line.partition(b":")
        if not colon or not _HTTP_TOKEN.fullmatch(name):
            return _error(400, "malformed header line")
        key = name.decode("ascii").lower()
        text = value.strip(b" \t").decode("latin-1")
        if key in request.headers:
            if key in ("host", "content-length", "content-type"):
                if request.headers[key] != text:
                    return _error(400, f"conflicting {key} headers")
                continue
            text = f"{request.headers[key]}, {text}"
        request.headers[key] = text
    if request.version >= (1, 1) and "host" not in request.headers:
        return _error(400, "an HTTP/1.1 request needs a Host header")
    if "transfer-encoding" in request.headers:
        return _error(501, "Transfer-Encoding is not supported: send a Content-Length")
    length = request.headers.get("content-length", "0")
    if not length.isascii() or not length.isdigit():
        return _error(400, "Content-Length must be a decimal number")
    request.length = int(length)
    return request


def _form(request: _Request) -> dict[str, bytes] | _Answer:
    """The POST body's fields (the first of each name), as raw bytes."""
    ctype = request.headers.get("content-type", FORM).partition(";")[0].strip().lower()
    if ctype != FORM:
        return _error(415, f"the body must be {FORM}")
    fields: dict[str, bytes] = {}
    try:
        for pair in request.body.split(b"&"):
            if pair:
                name, _, value = pair.partition(b"=")
                key = percent_decode(name, plus=True).decode("latin-1")
                fields.setdefault(key, percent_decode(value, plus=True))
    except ValueError as exc:
        return _error(400, f"malformed form: {exc}")
    return fields


# --- the service ------------------------------------------------------------------------------


class MetadataService:
    """One pod's metadata service: a listening socket and its connections in a selector."""

    def __init__(
        self, pod_dir: str, *, token: str, key: bytes, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        if not _TOKEN.fullmatch(token):
            raise ValueError(
                "token: must be at least 22 URL-safe characters (128 bits), like new_token()"
            )
        if len(key) < 32:
            raise ValueError(f"key: must be at least 32 bytes (got {len(key)})")
        self.pod_dir = os.path.abspath(pod_dir)
        self.uuid = os.path.basename(self.pod_dir)
        self._uuid_bytes = uuid_bytes(self.uuid)
        self._token = token.encode("ascii")
        self._key = key
        self.host = host
        self.port = port
        self.url = ""
        self._selector: selectors.BaseSelector | None = None
        self._listener: socket.socket | None = None
        self._connections: dict[int, _Connection] = {}  # by id(), oldest first

    def start(self, selector: selectors.BaseSelector) -> str:
        """Listen (non-blocking) and register in ``selector``; return ``AC_METADATA_URL``."""
        if self._listener is not None:
            raise RuntimeError("the metadata service is already started")
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        listener = socket.socket(family, socket.SOCK_STREAM)
        try:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind((self.host, self.port))
            listener.listen(MAX_CONNECTIONS)
            listener.setblocking(False)
            selector.register(listener, selectors.EVENT_READ, self._on_accept)
        except BaseException:
            listener.close()
            raise
        self._selector = selector
        self._listener = listener
        self.port = listener.getsockname()[1]
        host = f"[{self.host}]" if family == socket.AF_INET6 else self.host
        self.url = f"http://{host}:{self.port}/{self._token.decode('ascii')}"
        return self.url

    def expire(self, now: float) -> None:
        """Close the connections past their deadline; ``now`` is :func:`time.monotonic`."""
        for connection in list(self._connections.values()):
            if now > connection.deadline:
                connection.close()

    def close(self) -> None:
        """Stop listening and drop every connection (idempotent)."""
        for connection in list(self._connections.values()):
            connection.close()
        if self._listener is not None and self._selector is not None:
            with contextlib.suppress(KeyError, ValueError):
                self._selector.unregister(self._listener)
            self._listener.close()
        self._listener = None

    @property
    def connections(self) -> int:
        """How many connections are open."""
        return len(self._connections)

    # --- the selector's callbacks -------------------------------------------------------------

    def _on_accept(self, key: selectors.SelectorKey, mask: int) -> None:
        listener, selector = self._listener, self._selector
        if listener is None or selector is None:
            return
        for _ in range(MAX_CONNECTIONS):
            try:
                sock, _ = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # ECONNABORTED, EMFILE...: try again next turn
                return
            try:
                sock.setblocking(False)
                if len(self._connections) >= MAX_CONNECTIONS:
                    next(iter(self._connections.values())).close()
                connection = _Connection(self, sock, selector)
                selector.register(sock, selectors.EVENT_READ, connection.on_event)
            except Exception:
                sock.close()
                continue
            self._connections[id(connection)] = connection

    def _forget(self, connection: _Connection) -> None:
        self._connections.pop(id(connection), None)

    # --- answers ------------------------------------------------------------------------------

    def answer(self, request: _Request) -> _Answer:
        """The answer to a whole request (never raises)."""
        try:
            return self._route(request)
        except Exception as exc:
            return _error(500, f"{type(exc).__name__}: {exc}")

    def _route(self, request: _Request) -> _Answer:
        path = request.target.partition("?")[0].partition("#")[0]
        if path.startswith(("http://", "https://")):  # absolute-form
            path = "/" + path.split("/", 3)[3] if path.count("/") >= 3 else "/"
        try:
            raw = path.encode("latin-1").split(b"/")
            segments = [percent_decode(s).decode("utf-8") for s in raw]
        except ValueError:
            return _error(400, "malformed path")
        if (
            len(segments) < 2
            or segments[0]
            or not _same(segments[1].encode("utf-8", "replace"), self._token)
        ):
            return _error(404, "not found")
        if "/".join(segments[2:4]) != API:
            return _error(404, "not found")
        route = segments[4:]
        method = request.method
        handler: Callable[[], _Answer]
        match route:
            case ["pod", "annotations"]:
                allow, handler = _GET, self._pod_annotations
            case ["pod", "manifest"]:
                allow, handler = _GET, self._pod_manifest
            case ["pod", "uuid"]:
                allow, handler = _GET, lambda: _Answer(200, self.uuid.encode("ascii"))
            case ["pod", "hmac", "sign"]:
                allow, handler = _POST, lambda: self._sign(request)
            case ["pod", "hmac", "verify"]:
                allow, handler = _POST, lambda: self._verify(request)
            case ["apps", app, "annotations"]:
                allow, handler = _GET, lambda: self._app_annotations(app)
            case ["apps", app, "image", "manifest"]:
                allow, handler = _GET, lambda: self._image_manifest(app)
            case ["apps", app, "image", "id"]:
                allow, handler = _GET, lambda: self._image_id(app)
            case _:
                return _error(404, "not found")
        if method not in allow:
            return _error(405, f"{method} is not allowed here (allowed: {', '.join(allow)})", allow)
        return handler()

    def _read(self, *parts: str) -> bytes:
        with open(os.path.join(self.pod_dir, *parts), "rb") as handle:
            return handle.read()

    def _pod(self) -> dict[str, Any]:
        pod = json.loads(self._read("pod"))
        if not isinstance(pod, dict):
            raise ValueError("pod: must be a JSON object")
        return pod

    def _app(self, name: str) -> dict[str, Any] | None:
        if not _AC_NAME.fullmatch(name):
            return None
        for app in self._pod().get("apps") or ():
            if isinstance(app, dict) and app.get("name") == name:
                return app
        return None

    def _pod_annotations(self) -> _Answer:
        annotations = self._pod().get("annotations")
        return _json(annotations if isinstance(annotations, list) else [])

    def _pod_manifest(self) -> _Answer:
        return _Answer(200, self._read("pod"), JSON)

    def _app_annotations(self, name: str) -> _Answer:
        app = self._app(name)
        if app is None:
            return _error(404, f"no app {name!r} in the pod")
        image = json.loads(self._read("apps", name, "manifest"))
        merged: dict[str, object] = {}
        for source in (image, app):
            annotations = source.get("annotations") if isinstance(source, dict) else None
            for item in annotations if isinstance(annotations, list) else ():
                if isinstance(item, dict) and isinstance(item.get("name"), str):
                    merged[item["name"]] = item.get("value")
        return _json([{"name": k, "value": v} for k, v in merged.items()])

    def _image_manifest(self, name: str) -> _Answer:
        if self._app(name) is None:
            return _error(404, f"no app {name!r} in the pod")
        return _Answer(200, self._read("apps", name, "manifest"), JSON)

    def _image_id(self, name: str) -> _Answer:
        app = self._app(name)
        if app is None:
            return _error(404, f"no app {name!r} in the pod")
        image = app.get("image")
        image_id = image.get("id") if isinstance(image, dict) else None
        if not isinstance(image_id, str) or not image_id:
            return _error(404, f"app {name!r} has no image id")
        return _Answer(200, image_id.encode("ascii"))

    def _sign(self, request: _Request) -> _Answer:
        fields = _form(request)
        if isinstance(fields, _Answer):
            return fields
        if "content" not in fields:
            return _error(400, "content: required")
        digest = sign(self._key, self._uuid_bytes, fields["content"])
        return _Answer(200, base64.b64encode(digest))

    def _verify(self, request: _Request) -> _Answer:
        fields = _form(request)
        if isinstance(fields, _Answer):
            return fields
        missing = [name for name in ("content", "uuid", "signature") if name not in fields]
        if missing:
            return _error(400, f"{', '.join(missing)}: required")
        try:
            pod_uuid = uuid_bytes(fields["uuid"].decode("latin-1"))
        except ValueError:
            return _error(400, "uuid: must be a UUID")
        try:
            signature = base64.b64decode(fields["signature"], validate=True)
        except ValueError:
            return _error(400, "signature: must be base64")
        if not _same(signature, sign(self._key, pod_uuid, fields["content"])):
            return _error(403, "signature does not match")
        return _Answer(200)


class _Connection:
    """One client: read a request, write the answer, wait for the client's end, close."""

    __slots__ = ("buf", "continued", "deadline", "drained", "out", "selector", "service", "sock")

    def __init__(
        self, service: MetadataService, sock: socket.socket, selector: selectors.BaseSelector
    ) -> None:
        self.service = service
        self.sock = sock
        self.selector = selector
        self.buf = bytearray()  # the request so far
        self.out: memoryview | None = None  # the answer still to send
        self.drained: int | None = None  # bytes read after the answer was sent
        self.continued = False  # sent "100 Continue"
        self.deadline = time.monotonic() + IDLE_TIMEOUT

    def on_event(self, key: selectors.SelectorKey, mask: int) -> None:
        try:
            if self.out is not None:
                self._write()
            elif self.drained is not None:
                self._drain()
            else:
                self._read()
        except Exception:  # a reset, or a bug: never let it reach the supervisor's loop
            self.close()

    def close(self) -> None:
        self.service._forget(self)
        with contextlib.suppress(KeyError, ValueError, OSError):
            self.selector.unregister(self.sock)
        self.sock.close()

    def _read(self) -> None:
        try:
            chunk = self.sock.recv(MAX_REQUEST + 1)
        except (BlockingIOError, InterruptedError):
            return
        if not chunk:
            self.close()
            return
        self.buf += chunk
        answer, head_only = self._complete()
        if answer is not None:
            self._respond(_render(answer, head_only))

    def _complete(self) -> tuple[_Answer | None, bool]:
        """The answer once the request is whole (or cannot be), and whether it is to HEAD."""
        end = _head_end(self.buf)
        if end < 0:
            too_large = len(self.buf) > MAX_REQUEST
            return (_error(413, "request too large") if too_large else None), False
        request = _parse_head(self.buf, end)
        if isinstance(request, _Answer):
            return request, False
        head_only = request.method == "HEAD"
        need = end + request.length
        if need > MAX_REQUEST:
            return _error(413, f"request too large (at most {MAX_REQUEST} bytes)"), head_only
        if len(self.buf) < need:
            expect = request.headers.get("expect", "").lower()
            if expect == "100-continue" and request.version >= (1, 1) and not self.continued:
                self.continued = True  # 25 bytes into an empty send buffer: never partial
                with contextlib.suppress(BlockingIOError, InterruptedError):
                    self.sock.send(b"HTTP/1.1 100 Continue\r\n\r\n")
            return None, False
        request.body = bytes(self.buf[end:need])
        return self.service.answer(request), head_only

    def _respond(self, data: bytes) -> None:
        self.buf = bytearray()
        self.out = memoryview(data)
        self._write()  # most answers fit in the send buffer: no loop turn needed

    def _write(self) -> None:
        out = self.out
        assert out is not None
        while out:
            try:
                sent = self.sock.send(out)
            except (BlockingIOError, InterruptedError):
                break
            out = out[sent:]
            self.deadline = time.monotonic() + IDLE_TIMEOUT
        if out:
            self.out = out
            self._want(selectors.EVENT_WRITE)
            return
        # Answered. Half-close and read what the client still sends until it closes, so
        # that unread input does not turn our close into a reset that loses the answer.
        self.out = None
        self.drained = 0
        self.deadline = time.monotonic() + LINGER_TIMEOUT
        self.sock.shutdown(socket.SHUT_WR)
        self._want(selectors.EVENT_READ)

    def _want(self, events: int) -> None:
        if self.selector.get_key(self.sock).events != events:
            self.selector.modify(self.sock, events, self.on_event)

    def _drain(self) -> None:
        try:
            chunk = self.sock.recv(MAX_REQUEST)
        except (BlockingIOError, InterruptedError):
            return
        assert self.drained is not None
        self.drained += len(chunk)
        if not chunk or self.drained > MAX_DRAIN:
            self.close()
