"""Turn a fetched body into something a model can read: Markdown, text, pretty JSON, PDF text.

HTML goes through trafilatura first (main content, headings, lists, code, tables kept); when it
finds nothing, readability-lxml picks the main block and markdownify converts it; when that is
empty too, the page's visible text is returned. Binary bodies come back as a one-line description,
never as decoded garbage. ``page`` slices a stored document for paging.
"""

from __future__ import annotations

import codecs
import io
import json
import re
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

from common.errors import InvalidInput
from common.logging import get_logger

log = get_logger(__name__)

Mode = Literal["markdown", "text", "html"]
Kind = Literal["html", "json", "text", "pdf", "binary"]

HTML_TYPES = ("text/html", "application/xhtml+xml")
TEXT_TYPES = (
    "application/xml",
    "application/javascript",
    "application/x-javascript",
    "application/ecmascript",
    "application/x-yaml",
    "application/yaml",
    "application/toml",
    "application/x-sh",
    "application/sql",
    "application/csv",
    "application/rss+xml",
    "application/atom+xml",
)
_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([a-zA-Z0-9_.:-]+)""", re.IGNORECASE)
_BLOCK_TAGS = (
    "p", "div", "section", "article", "header", "footer", "main", "aside", "nav", "li", "ul", "ol", "dl", "dt", "dd",
    "h1", "h2", "h3", "h4", "h5", "h6", "pre", "blockquote", "table", "tr", "br", "hr", "form", "figure", "figcaption",
)  # fmt: skip
_CELL_TAGS = ("td", "th")
_INVISIBLE_TAGS = ("script", "style", "noscript", "template", "head", "svg", "iframe", "object")
#: What trafilatura keeps of every page: Markdown with tables and emphasis, no images or comments, recall first.
_TRAFILATURA_OPTIONS: dict[str, Any] = {
    "output_format": "markdown",
    "include_tables": True,
    "include_formatting": True,
    "include_images": False,
    "include_comments": False,
    "favor_recall": True,
}


@dataclass
class Extracted:
    """Readable content of one body: what it was (``kind``), what was made of it and by what."""

    kind: Kind
    format: Literal["markdown", "text", "html", "json", "description"]
    content: str
    title: str | None = None
    extractor: str = "raw"  # trafilatura | readability | visible-text | raw | json | pypdf | none
    notes: list[str] = field(default_factory=list)


def mime_type(content_type: str | None) -> str:
    """The bare, lower-case media type of a Content-Type header ('' when missing)."""
    return (content_type or "").split(";", 1)[0].strip().lower()


def _charset(content_type: str | None) -> str | None:
    for param in (content_type or "").split(";")[1:]:
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset" and value.strip():
            return value.strip().strip("\"'")
    return None


def _usable_codec(name: str | None) -> str | None:
    if not name:
        return None
    try:
        return codecs.lookup(name).name
    except LookupError:
        return None


def decode_text(body: bytes, content_type: str | None = None) -> str:
    """Decode with the header's charset, a BOM, an HTML meta charset, or UTF-8 (bad bytes replaced)."""
    if body.startswith(codecs.BOM_UTF8):
        return body[3:].decode("utf-8", errors="replace")
    if body.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return body.decode("utf-16", errors="replace")
    codec = _usable_codec(_charset(content_type))
    if codec is None:
        found = _META_CHARSET.search(body[:4096])
        codec = _usable_codec(found.group(1).decode("ascii", errors="ignore") if found else None)
    return body.decode(codec or "utf-8", errors="replace")


def _looks_textual(body: bytes) -> bool:
    sample = body[:4096]
    if not sample:
        return True
    if b"\0" in sample:
        return False
    try:
        text = sample.decode("utf-8")
    except UnicodeDecodeError as exc:
        # A multi-byte character cut at the sample's end is still text.
        if exc.start < len(sample) - 4:
            return False
        text = sample[: exc.start].decode("utf-8")
    controls = sum(1 for c in text if ord(c) < 32 and c not in "\t\n\r\f")
    return controls <= len(text) // 100


def sniff_kind(content_type: str | None, body: bytes) -> Kind:
    """What a body is, from its Content-Type and, when that is missing or generic, its first bytes."""
    mime = mime_type(content_type)
    head = body[:512].lstrip().lower()
    if mime == "application/pdf" or body.startswith(b"%PDF-"):
        return "pdf"
    if mime in HTML_TYPES:
        return "html"
    if mime == "application/json" or mime.endswith("+json"):
        return "json"
    if mime.startswith("text/") or mime in TEXT_TYPES or mime.endswith("+xml"):
        return "text"
    if mime in ("", "application/octet-stream", "binary/octet-stream") and _looks_textual(body):
        if head.startswith((b"<!doctype html", b"<html")):
            return "html"
        if head.startswith((b"{", b"[")):
            return "json"
        return "text"
    return "binary"


def _parse_html(html: str) -> Any:
    # lxml is only needed once a page is extracted, not at server start-up.
    import lxml.html

    try:
        return lxml.html.document_fromstring(html)
    except Exception:  # lxml raises ParserError on empty or hopeless input
        return None


def html_title(html: str) -> str | None:
    """The page's <title> (whitespace collapsed), else its first <h1>."""
    tree = _parse_html(html)
    if tree is None:
        return None
    for path in ("//title", "//h1"):
        for el in tree.xpath(path):
            title = " ".join(el.text_content().split())
            if title:
                return title[:300]
    return None


def visible_text(html: str) -> str:
    """All visible text of a page, one block per line, scripts and styles dropped."""
    tree = _parse_html(html)
    if tree is None:
        return ""
    for el in list(tree.iter(*_INVISIBLE_TAGS)):
        el.drop_tree()
    for el in tree.iter(*_CELL_TAGS):
        el.tail = " " + (el.tail or "")
    for el in tree.iter(*_BLOCK_TAGS):
        el.tail = "\n" + (el.tail or "")
        if el.tag != "br":
            el.text = "\n" + (el.text or "")
    lines = (" ".join(line.split()) for line in tree.text_content().splitlines())
    text = "\n".join(line for line in lines if line)
    return text.strip()


def _with_trafilatura(html: str, url: str | None, include_links: bool) -> str | None:
    # trafilatura is heavy; imported on first extraction only.
    import trafilatura

    out = trafilatura.extract(html, url=url, include_links=include_links, **_TRAFILATURA_OPTIONS)
    return out.strip() if out and out.strip() else None


def _with_readability(html: str, url: str | None, include_links: bool) -> str | None:
    # readability and markdownify are only needed when trafilatura found nothing.
    import markdownify
    import readability

    try:
        summary = readability.Document(html, url=url).summary(html_partial=True)
    except Exception as exc:  # readability raises Unparseable (and lxml errors) on odd pages
        log.info("web_access.readability_failed", error=type(exc).__name__)
        return None
    strip = [] if include_links else ["a"]
    markdown = markdownify.markdownify(summary, heading_style="ATX", bullets="-", strip=[*strip, "img"])
    markdown = re.sub(r"\n{3,}", "\n\n", markdown).strip()
    return markdown or None


def html_to_markdown(html: str, url: str | None = None, include_links: bool = True) -> tuple[str, str]:
    """(Markdown of the main content, which extractor made it); visible text when both extractors fail."""
    markdown = _with_trafilatura(html, url, include_links)
    if markdown:
        return markdown, "trafilatura"
    markdown = _with_readability(html, url, include_links)
    if markdown:
        return markdown, "readability"
    text = visible_text(html)
    return text, ("visible-text" if text else "none")


def _trafilatura_title(html: str) -> str | None:
    import trafilatura  # heavy; see _with_trafilatura

    meta = trafilatura.extract_metadata(html)
    title = getattr(meta, "title", None) if meta is not None else None
    return str(title) if title else None


def pdf_text(body: bytes, max_pages: int = 50) -> tuple[str, str | None, int, int]:
    """(text of the first ``max_pages`` pages, document title, pages read, pages in the file)."""
    # pypdf is only needed for PDFs.
    import pypdf

    reader = pypdf.PdfReader(io.BytesIO(body))
    if reader.is_encrypted and not reader.decrypt(""):
        raise ValueError("the PDF is encrypted")
    total = len(reader.pages)
    pieces = []
    for number in range(min(total, max_pages)):
        page_text = (reader.pages[number].extract_text() or "").strip()
        pieces.append(f"<!-- page {number + 1} -->\n{page_text}" if total > 1 else page_text)
    title = None
    if reader.metadata is not None and reader.metadata.title:
        title = str(reader.metadata.title).strip() or None
    return "\n\n".join(pieces).strip(), title, min(total, max_pages), total


def describe_binary(content_type: str | None, size: int, truncated: bool = False) -> str:
    """A one-line description of a body that is not shown as text."""
    mime = mime_type(content_type) or "unknown type"
    more = " or more (cut at the size ceiling)" if truncated else ""
    return f"Binary content ({mime}, {size:,} bytes{more}) is not shown as text."


def extract(
    body: bytes,
    content_type: str | None,
    *,
    url: str | None = None,
    mode: Mode = "markdown",
    include_links: bool = True,
    max_pdf_pages: int = 50,
    truncated: bool = False,
) -> Extracted:
    """Readable content of a fetched body in ``mode``; binaries give a description, never garbage."""
    kind = sniff_kind(content_type, body)
    notes = ["The body was cut at the size ceiling; the end of the document is missing."] if truncated else []
    if kind == "pdf":
        try:
            text, title, read, total = pdf_text(body, max_pdf_pages)
        except Exception as exc:  # pypdf raises many types on damaged or cut files
            log.info("web_access.pdf_unreadable", error=type(exc).__name__)
            why = "it was cut at the size ceiling" if truncated else "it is damaged or encrypted"
            notes.append(f"The PDF could not be read: {why}.")
            return Extracted("pdf", "description", describe_binary(content_type or "application/pdf", len(body), truncated), notes=notes, extractor="none")  # fmt: skip
        if read < total:
            notes.append(f"Only the first {read} of {total} pages were read.")
        if not text:
            notes.append("The PDF has no text layer (it may be scanned images).")
        return Extracted("pdf", "text", text, title=title, extractor="pypdf", notes=notes)
    if kind == "binary":
        return Extracted("binary", "description", describe_binary(content_type, len(body), truncated), extractor="none", notes=notes)  # fmt: skip
    text = decode_text(body, content_type)
    if kind == "json":
        try:
            pretty = json.dumps(json.loads(text), indent=2, ensure_ascii=False)
        except ValueError:
            notes.append("The body is not valid JSON; it is shown as it came.")
            return Extracted("json", "text", text, notes=notes)
        return Extracted("json", "json", pretty, extractor="json", notes=notes)
    if kind == "text":
        return Extracted("text", "text", text, notes=notes)
    if mode == "html":
        return Extracted("html", "html", text, title=html_title(text), notes=notes)
    if mode == "text":
        return Extracted("html", "text", visible_text(text), title=html_title(text), extractor="visible-text", notes=notes)  # fmt: skip
    markdown, extractor = html_to_markdown(text, url, include_links)
    title = _trafilatura_title(text) or html_title(text)
    if not markdown:
        notes.append("No readable text was found on the page; try mode='html' to see its markup.")
    return Extracted("html", "markdown", markdown, title=title, extractor=extractor, notes=notes)


class Piece(NamedTuple):
    piece: str
    total_chars: int
    truncated: bool
    next_start: int | None


def page(text: str, start: int = 0, max_chars: int = 20_000) -> Piece:
    """The slice of ``text`` from ``start`` of at most ``max_chars`` characters, ended at a line or word
    break when one lies in the slice's last fifth; ``next_start`` continues exactly where it ended."""
    total = len(text)
    if start < 0 or max_chars <= 0:
        raise InvalidInput("start must be 0 or more and max_chars 1 or more.")
    if start > total or (start == total and total > 0):
        raise InvalidInput(f"start {start} is past the end of the document ({total} characters); use a smaller start.")
    end = min(start + max_chars, total)
    if end < total:
        window_floor = start + (max_chars * 4) // 5
        for sep in ("\n\n", "\n", " "):
            cut = text.rfind(sep, window_floor, end)
            if cut != -1:
                end = cut + len(sep)
                break
    truncated = end < total
    return Piece(text[start:end], total, truncated, end if truncated else None)
