"""HTML to Markdown-like text with the stdlib parser: headings kept, code kept whole, chrome dropped."""

from __future__ import annotations

import re
from html.parser import HTMLParser

from servers.documentation.chunking import markdown
from servers.documentation.chunking.blocks import Parsed

_SKIP = {"script", "style", "noscript", "template", "nav", "svg", "head", "button", "form"}
_BREAK = {"p", "div", "section", "article", "li", "tr", "dt", "dd", "blockquote", "table", "ul", "ol", "dl", "br"}
_HEADINGS = {f"h{i}": i for i in range(1, 7)}
_VOID = {"br", "img", "hr", "meta", "link", "input", "wbr", "source", "area", "col", "base"}


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

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _VOID:
            if tag == "br" and not self.skip_depth:
                self.parts.append("\n")
            return
        attr = dict(attrs)
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
            self.parts.append("\n\n" + "#" * self.heading + " ")
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
        if tag == "title":
            self.in_title = False
        if self.skip_depth:
            self.skip_depth -= 1
            return
        if tag in _HEADINGS:
            self.heading = None
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


def to_markdown(html: str) -> tuple[str, str]:
    """(title, text) of an HTML page."""
    conv = _Converter()
    conv.feed(html)
    conv.close()
    text = "".join(conv.parts)
    text = re.sub(r"[ \t]+\n", "\n", text)
    text = re.sub(r"\n{3,}", "\n\n", text).strip() + "\n"
    return " ".join(conv.title.split()), text


def parse(html: str, title: str, limit: int) -> Parsed:
    page_title, text = to_markdown(html)
    parsed = markdown.parse(text, "", limit)
    parsed.title = page_title or parsed.title or title
    return parsed
