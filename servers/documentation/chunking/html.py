"""HTML to Markdown-like text with the stdlib parser: headings kept, code kept whole, chrome dropped."""

from __future__ import annotations

import re
from html.parser import HTMLParser

from servers.documentation.chunking import markdown
from servers.documentation.chunking.blocks import Parsed, assign_keys

_SKIP = {"script", "style", "noscript", "template", "nav", "svg", "head", "button", "form"}
_BREAK = {"p", "div", "section", "article", "li", "tr", "dt", "dd", "blockquote", "table", "ul", "ol", "dl", "br"}
_HEADINGS = {f"h{i}": i for i in range(1, 7)}
_VOID = {"br", "img", "hr", "meta", "link", "input", "wbr", "source", "area", "col", "base"}
_ID_OK = re.compile(r"^[\w:.-]{1,200}$")
#: Marks where a definition term with an id (an API entry) starts; removed again, its offset recorded.
_ENTRY = re.compile(r"\x00([^\x00]*)\x00")


class _Converter(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.skip_depth = 0
        self.pre_depth = 0
        self.heading: int | None = None
        self.title = ""
        self.in_title = False
        self.skip_stack: list[str] = []
        #: Open elements with their ids: a heading's anchor is its own id or its nearest section's.
        self.open: list[tuple[str, str]] = []
        self.used_ids: set[str] = set()
        self.heading_id = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _VOID:
            if tag == "br" and not self.skip_depth:
                self.parts.append("\n")
            return
        attr = dict(attrs)
        ident = attr.get("id") or (attr.get("name") if tag == "a" else None) or ""
        ident = ident if _ID_OK.match(ident) else ""
        self.open.append((tag, ident))
        if self.heading is not None and ident and not self.heading_id:
            self.heading_id = ident  # <h2><a id="x"></a>Title</h2>
        classes = (attr.get("class") or "").split()
        if tag == "title":
            self.in_title = True
        if (
            self.skip_depth
            or tag in _SKIP
            or "headerlink" in classes
            or attr.get("role") == "navigation"
            or "sphinxsidebar" in classes
            or "related" in classes
            or "footer" in classes
        ):
            self.skip_depth += 1
            return
        if tag in _HEADINGS:
            self.heading = _HEADINGS[tag]
            self.heading_id = ident or next(
                (i for _, i in reversed(self.open[:-1]) if i and i not in self.used_ids), ""
            )
            self.parts.append("\n\n" + "#" * self.heading + " ")
        elif tag == "dt" and ident:
            self.parts.append(f"\n\x00{ident}\x00")
        elif tag == "pre":
            self.pre_depth += 1
            self.parts.append("\n\n```\n")
        elif tag in _BREAK:
            self.parts.append("\n\n" if tag in ("p", "blockquote", "table") else "\n")
            if tag == "li":
                self.parts.append("- ")

    def handle_endtag(self, tag: str) -> None:
        if tag in _VOID:
            return
        for i in range(len(self.open) - 1, -1, -1):  # tolerant of unclosed elements
            if self.open[i][0] == tag:
                del self.open[i:]
                break
        if tag == "title":
            self.in_title = False
        if self.skip_depth:
            self.skip_depth -= 1
            return
        if tag in _HEADINGS:
            self.heading = None
            if self.heading_id:
                self.used_ids.add(self.heading_id)
                self.parts.append(f" {{#{self.heading_id}}}")
            self.parts.append("\n\n")
        elif tag == "pre" and self.pre_depth:
            self.pre_depth -= 1
            self.parts.append("\n```\n\n")
        elif tag in _BREAK:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if self.in_title:
            self.title += data
        if self.skip_depth:
            return
        if self.pre_depth:
            self.parts.append(data.replace("```", "` ` `"))
        elif self.heading is not None:
            self.parts.append(re.sub(r"\s+", " ", data))
        else:
            self.parts.append(re.sub(r"\s+", " ", data))


def _entries(text: str) -> tuple[str, list[tuple[int, str]]]:
    """The text without entry marks, and (offset, id) of each mark."""
    out: list[str] = []
    entries: list[tuple[int, str]] = []
    pos = size = 0
    for m in _ENTRY.finditer(text):
        out.append(text[pos : m.start()])
        size += m.start() - pos
        entries.append((size, m.group(1)))
        pos = m.end()
    out.append(text[pos:])
    return "".join(out), entries


def convert(html: str) -> tuple[str, str, list[tuple[int, str]]]:
    """(title, Markdown-like text, (offset, id) of each definition term with an id) of an HTML page."""
    conv = _Converter()
    conv.feed(html.replace("\x00", ""))
    conv.close()
    text = "".join(conv.parts)
    text = re.sub(r"[ \t]+\n", "\n", text)
    text = re.sub(r"\n(?:[ \t]*\n)+\x00", "\n\n\x00", text)
    text = re.sub(r"\n{3,}", "\n\n", text).strip() + "\n"
    text, entries = _entries(text)
    return " ".join(conv.title.split()), text, entries


def to_markdown(html: str) -> tuple[str, str]:
    """(title, text) of an HTML page; headings carry their element's id as ``{#id}``."""
    title, text, _ = convert(html)
    return title, text


def parse(html: str, title: str, limit: int) -> Parsed:
    page_title, text, entries = convert(html)
    parsed = markdown.parse(text, "", limit, [at for at, _ in entries])
    parsed.title = page_title or parsed.title or title
    assign_keys(parsed, entries)
    return parsed
