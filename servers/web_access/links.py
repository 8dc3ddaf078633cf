"""A page's links (absolute, normalised, deduplicated, internal or external) and sitemap parsing.

URL normalisation, used for deduplication and as crawl keys: scheme and host lower-cased, the
host IDNA-encoded, default ports dropped, dot segments removed, an empty path made "/",
percent-escapes upper-cased and unreserved characters decoded, other unsafe characters escaped,
the fragment dropped. The query is kept as written, order included, because servers may read
parameter order; sorting it could merge different pages. Only http(s) links are kept; links
with a user name (user@host) are dropped, as the fetcher would refuse them.

"Internal" means the same origin (scheme, host and port) as the page: the crawl boundary.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import quote, urljoin, urlsplit, urlunsplit

import idna

_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_ESCAPE = re.compile(r"%([0-9a-fA-F]{2})")
_PATH_SAFE = "/:@!$&'()*+,;=-._~%"
_QUERY_SAFE = _PATH_SAFE + "?"
MAX_SITEMAP_BYTES = 50 * 1024 * 1024  # the sitemaps.org limit for one uncompressed file
MAX_ANCHOR_CHARS = 200


def _normalise_escapes(part: str, safe: str) -> str:
    def fix(match: re.Match[str]) -> str:
        char = chr(int(match.group(1), 16))
        return char if char in _UNRESERVED else "%" + match.group(1).upper()

    return quote(_ESCAPE.sub(fix, part), safe=safe)


def _remove_dot_segments(path: str) -> str:
    out: list[str] = []
    segments = path.split("/")
    for i, segment in enumerate(segments):
        last = i == len(segments) - 1
        if segment == ".":
            if last:
                out.append("")
        elif segment == "..":
            if len(out) > 1:
                out.pop()
            if last:
                out.append("")
        else:
            out.append(segment)
    result = "/".join(out)
    return result if result.startswith("/") else "/" + result


def normalize_url(url: str, base: str | None = None) -> str | None:
    """The normal form of ``url`` (resolved against ``base``), or None if it is not a fetchable http(s) link."""
    url = url.strip()
    if base is not None:
        try:
            url = urljoin(base, url)
        except ValueError:
            return None
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname or parts.username is not None or "@" in parts.netloc:
        return None
    host = parts.hostname.lower()
    if not host.isascii():
        try:
            host = idna.encode(host, uts46=True).decode("ascii")
        except idna.IDNAError:
            return None
    if ":" in host:
        host = f"[{host}]"
    if port is not None and port != (443 if scheme == "https" else 80):
        host = f"{host}:{port}"
    path = _normalise_escapes(_remove_dot_segments(parts.path or "/"), _PATH_SAFE)
    query = _normalise_escapes(parts.query, _QUERY_SAFE) if parts.query else ""
    return urlunsplit((scheme, host, path, query, ""))


def origin(url: str) -> tuple[str, str, int]:
    """(scheme, host, port) of an http(s) URL, the port made explicit."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    return scheme, (parts.hostname or "").lower(), parts.port or (443 if scheme == "https" else 80)


# Slotted: one is made per distinct anchor of a page, and a crawl parses many pages.
@dataclass(frozen=True, slots=True)
class Link:
    url: str
    text: str
    internal: bool
    nofollow: bool = False


@dataclass
class LinkList:
    links: list[Link]
    total: int
    truncated: bool
    internal_count: int
    external_count: int


def _parse(html: str) -> Any:
    # lxml is only needed once a page's links are asked for.
    import lxml.html

    try:
        return lxml.html.document_fromstring(html)
    except Exception:  # lxml raises ParserError on empty input
        return None


def extract_links(html: str, page_url: str, *, limit: int = 200, which: Literal["all", "internal", "external"] = "all") -> LinkList:  # fmt: skip
    """The page's distinct http(s) links in document order (first anchor text kept), at most ``limit``."""
    tree = _parse(html)
    page_url = normalize_url(page_url) or page_url
    if tree is None:
        return LinkList([], 0, False, 0, 0)
    base = page_url
    for el in tree.iter("base"):
        href = el.get("href")
        if href:
            base = normalize_url(href, page_url) or page_url
            break
    home = origin(page_url)
    seen: dict[str, int] = {}
    found: list[Link] = []
    for el in tree.iter("a", "area"):
        href = el.get("href")
        if not href:
            continue
        url = normalize_url(href, base)
        if url is None:
            continue
        text = " ".join((el.text_content() if el.tag == "a" else el.get("alt", "")).split())[:MAX_ANCHOR_CHARS]
        nofollow = "nofollow" in (el.get("rel") or "").lower().split()
        if url in seen:
            index = seen[url]
            if not found[index].text and text:
                found[index] = Link(url, text, found[index].internal, found[index].nofollow)
            continue
        seen[url] = len(found)
        found.append(Link(url, text, origin(url) == home, nofollow))
    internal = sum(1 for link in found if link.internal)
    chosen = [link for link in found if which == "all" or link.internal == (which == "internal")]
    return LinkList(chosen[:limit], len(chosen), len(chosen) > limit, internal, len(found) - internal)


@dataclass(frozen=True)
class SitemapEntry:
    loc: str
    lastmod: str | None = None


@dataclass
class Sitemap:
    kind: Literal["urlset", "sitemapindex", "text"]
    entries: list[SitemapEntry] = field(default_factory=list)
    total: int = 0
    truncated: bool = False


def _local(tag: Any) -> str:
    return str(tag).rsplit("}", 1)[-1].lower() if isinstance(tag, str) else ""


def parse_sitemap(body: bytes, *, limit: int = 10_000) -> Sitemap:
    """Entries of a sitemap (urlset), a sitemap index, or a plain-text list of URLs, at most ``limit``.

    Gzip bodies are decompressed up to 50 MB; entities and network access are off in the XML parser.
    """
    # lxml is only needed for sitemaps; imported here.
    from lxml import etree

    if body[:2] == b"\x1f\x8b":
        try:
            body = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(body, MAX_SITEMAP_BYTES)
        except zlib.error:
            return Sitemap("text")
    body = body[:MAX_SITEMAP_BYTES]
    stripped = body.lstrip()
    if not stripped.startswith(b"<"):
        urls = []
        for line in stripped.decode("utf-8", errors="replace").splitlines():
            url = normalize_url(line)
            if url is not None:
                urls.append(SitemapEntry(url))
        return Sitemap("text", urls[:limit], len(urls), len(urls) > limit)
    parser = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False, recover=True)
    try:
        root = etree.fromstring(stripped, parser=parser)
    except etree.XMLSyntaxError:
        root = None
    if root is None:
        return Sitemap("urlset")
    kind: Literal["urlset", "sitemapindex"] = "sitemapindex" if _local(root.tag) == "sitemapindex" else "urlset"
    item = "sitemap" if kind == "sitemapindex" else "url"
    entries: list[SitemapEntry] = []
    total = 0
    for el in root:
        if _local(el.tag) != item:
            continue
        loc = lastmod = None
        for child in el:
            name = _local(child.tag)
            if name == "loc" and child.text:
                loc = normalize_url(child.text)
            elif name == "lastmod" and child.text:
                lastmod = child.text.strip()
        if loc is None:
            continue
        total += 1
        if len(entries) < limit:
            entries.append(SitemapEntry(loc, lastmod))
    return Sitemap(kind, entries, total, total > limit)
