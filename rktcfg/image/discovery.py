"""appc meta discovery: from an image name and labels to the URLs of its ACI.

``GET https://{name}?ac-discovery=1`` returns HTML with ``<meta name="ac-discovery"
content="PREFIX TEMPLATE">`` tags; a tag applies when the image name starts with PREFIX, and
its template is filled with ``{name}``, ``{version}`` (default ``latest``), ``{os}``,
``{arch}``, any other requested label, and ``{ext}``. A template with a placeholder left
unfilled is skipped. Without a matching tag (or on a 4xx) the parent path is tried next.

Parsing and filling are pure; ``discover`` does the HTTP through a given fetcher.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from html.parser import HTMLParser

from rktcfg.errors import NotFoundError

_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")


class _MetaParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag != "meta":
            return
        values = {k: v or "" for k, v in attrs}
        name, content = values.get("name", ""), values.get("content", "")
        if name.startswith("ac-") and content:
            self.tags.append((name, content))


def parse_meta(html: str) -> list[tuple[str, str, str]]:
    """(meta name, prefix, URL) for every ``ac-*`` meta tag, in document order."""
    parser = _MetaParser()
    parser.feed(html)
    parser.close()
    found = []
    for name, content in parser.tags:
        prefix, _, url = content.strip().partition(" ")
        if url.strip():
            found.append((name, prefix, url.strip()))
    return found


def fill_template(template: str, name: str, labels: Mapping[str, str], ext: str) -> str | None:
    """The template with every placeholder filled, or None if one has no value."""
    values = {"name": name, "ext": ext, "version": "latest", **labels}
    missing = False

    def substitute(match: re.Match[str]) -> str:
        nonlocal missing
        key = match.group(1)
        if key not in values:
            missing = True
            return match.group(0)
        return values[key]

    filled = _PLACEHOLDER.sub(substitute, template)
    return None if missing else filled


def endpoints(html: str, name: str, labels: Mapping[str, str], *, allow_http: bool) -> list[str]:
    """ACI URLs offered by one discovery page for ``name``, https ones first."""
    urls = []
    for meta, prefix, template in parse_meta(html):
        if meta != "ac-discovery" or not name.startswith(prefix):
            continue
        url = fill_template(template, name, labels, "aci")
        if url is None:
            continue
        if url.startswith("https://") or (allow_http and url.startswith("http://")):
            urls.append(url)
    return sorted(urls, key=lambda u: not u.startswith("https://"))


def discover(
    name: str,
    labels: Mapping[str, str],
    get_page: Callable[[str], str | None],
    *,
    allow_http: bool,
) -> list[str]:
    """ACI URLs for ``name``, trying ``name``, then each parent path.

    ``get_page(url)`` returns the page text, or None for a 4xx or unreachable page.
    """
    path = name
    tried = []
    while path:
        schemes = ("https", "http") if allow_http else ("https",)
        for scheme in schemes:
            page_url = f"{scheme}://{path}?ac-discovery=1"
            tried.append(page_url)
            html = get_page(page_url)
            if html is None:
                continue
            found = endpoints(html, name, labels, allow_http=allow_http)
            if found:
                return found
        path = path.rpartition("/")[0]
    raise NotFoundError(f"{name}: appc discovery found no image (tried {', '.join(tried)})")
