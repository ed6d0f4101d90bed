"""HTTP(S) downloads for fetch: conditional requests, resumable transfers, progress.

``Transport`` is the one seam to the network (httpx's idea): it turns a URL into the URL
actually requested. The default leaves URLs alone; tests map every host to their own server
on 127.0.0.1, so no test ever reaches another address.
"""

from __future__ import annotations

import os
import re
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import IO

from rktcfg.errors import NotFoundError, RuntimeFailure

CHUNK = 1 << 20
USER_AGENT = "rktcfg"

#: (bytes so far, total or None) -> None
Progress = Callable[[int, int | None], None]


class Transport:
    """Maps a URL to the URL requested; subclass or pass ``rewrite`` to redirect."""

    def __init__(self, rewrite: Callable[[str], str] | None = None, timeout: float = 60) -> None:
        self.rewrite = rewrite or (lambda url: url)
        self.timeout = timeout

    def open(self, url: str, headers: dict[str, str]) -> IO[bytes]:
        request = urllib.request.Request(
            self.rewrite(url), headers={"User-Agent": USER_AGENT, **headers}
        )
        response: IO[bytes] = urllib.request.urlopen(request, timeout=self.timeout)
        return response


class Downloaded:
    __slots__ = ("etag", "max_age", "not_modified", "path")

    def __init__(
        self, path: str | None, etag: str | None, max_age: int | None, not_modified: bool
    ) -> None:
        self.path = path
        self.etag = etag
        self.max_age = max_age
        self.not_modified = not_modified


_MAX_AGE = re.compile(r"(?:^|,)\s*max-age\s*=\s*(\d+)", re.I)


def max_age_of(cache_control: str | None) -> int | None:
    if not cache_control or "no-store" in cache_control or "no-cache" in cache_control:
        return 0 if cache_control else None
    match = _MAX_AGE.search(cache_control)
    return int(match.group(1)) if match else None


def get_text(transport: Transport, url: str, *, limit: int = 1 << 20) -> str | None:
    """A small page (discovery), or None for a 4xx, a refused connection or a bad scheme."""
    try:
        with transport.open(url, {}) as response:
            data = response.read(limit)
    except urllib.error.HTTPError as exc:
        if 400 <= exc.code < 500:
            return None
        raise RuntimeFailure(f"{url}: HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError):
        return None
    return data.decode("utf-8", "replace")


def download(
    transport: Transport,
    url: str,
    target: str,
    *,
    etag: str | None = None,
    progress: Progress | None = None,
    max_bytes: int = 8 << 30,
) -> Downloaded:
    """Download ``url`` to ``target``, resuming a partial ``target``; ``etag`` makes the request
    conditional (a 304 answers ``not_modified`` and writes nothing)."""
    have = os.path.getsize(target) if os.path.exists(target) else 0
    headers: dict[str, str] = {}
    if etag:
        headers["If-None-Match"] = etag
    partial_etag = _read_sidecar(target)
    if have and partial_etag:
        headers["Range"] = f"bytes={have}-"
        headers["If-Range"] = partial_etag
    try:
        response = transport.open(url, headers)
    except urllib.error.HTTPError as exc:
        if exc.code == 304:
            return Downloaded(None, etag, max_age_of(exc.headers.get("Cache-Control")), True)
        if exc.code == 404:
            raise NotFoundError(f"{url}: not found (HTTP 404)") from None
        if exc.code == 416 and have:  # the partial file is already complete, or stale
            _discard(target)
            return download(transport, url, target, etag=etag, progress=progress)
        raise RuntimeFailure(f"{url}: HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise RuntimeFailure(f"{url}: cannot download: {reason}") from None
    with response:
        status = getattr(response, "status", 200)
        info = getattr(response, "headers", {})
        new_etag = info.get("ETag")
        if status != 206:
            have = 0  # the server sent the whole image
        length = info.get("Content-Length")
        total = have + int(length) if length and length.isdigit() else None
        _write_sidecar(target, new_etag)
        with open(target, "ab" if have else "wb") as out:
            done = have
            while chunk := response.read(CHUNK):
                done += len(chunk)
                if done > max_bytes:
                    raise RuntimeFailure(f"{url}: larger than the limit of {max_bytes} bytes")
                out.write(chunk)
                if progress is not None:
                    progress(done, total)
        if total is not None and done < total:
            raise RuntimeFailure(f"{url}: download ended early ({done} of {total} bytes)")
    return Downloaded(target, new_etag, max_age_of(info.get("Cache-Control")), False)


def _sidecar(target: str) -> str:
    return target + ".etag"


def _read_sidecar(target: str) -> str | None:
    try:
        with open(_sidecar(target), encoding="utf-8") as handle:
            return handle.read().strip() or None
    except OSError:
        return None


def _write_sidecar(target: str, etag: str | None) -> None:
    with open(_sidecar(target), "w", encoding="utf-8") as handle:
        handle.write(etag or "")


def _discard(target: str) -> None:
    for path in (target, _sidecar(target)):
        if os.path.exists(path):
            os.unlink(path)


def finished(target: str) -> None:
    """Forget a download once its image is in the store."""
    _discard(target)
