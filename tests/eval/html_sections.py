"""The sections of a DocBook- or Sphinx-style HTML page (the PostgreSQL manual, the Python docs): every
``<div id=...>`` or ``<section id=...>`` whose first heading comes before any nested section, with its heading
text and all its text (subsections included).

Used by the question validator and to author questions; independent of the server's own HTML parser, so the
evaluation does not grade the parser with itself.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from html.parser import HTMLParser

HEADINGS = {"h1", "h2", "h3", "h4", "h5", "h6"}
SKIPPED = {"script", "style"}
CONTAINERS = {"div", "section"}


@dataclass
class HtmlSection:
    anchor: str
    heading: str = ""
    parts: list[str] = field(default_factory=list)

    @property
    def text(self) -> str:
        return " ".join("".join(self.parts).split())


class _Sections(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.sections: list[HtmlSection] = []
        # One entry per open div or section element: the section it opened, or None.
        self._divs: list[HtmlSection | None] = []
        self._heading: list[str] | None = None
        self._heading_for: HtmlSection | None = None
        self._skip = 0

    def _open(self) -> list[HtmlSection]:
        return [s for s in self._divs if s is not None]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in SKIPPED:
            self._skip += 1
        elif tag in CONTAINERS:
            anchor = dict(attrs).get("id")
            section = HtmlSection(anchor) if anchor else None
            if section is not None:
                self.sections.append(section)
            self._divs.append(section)
        elif tag in HEADINGS and self._heading is None:
            open_sections = self._open()
            if open_sections and not open_sections[-1].heading:
                self._heading, self._heading_for = [], open_sections[-1]
        elif tag in {"p", "br", "li", "dt", "dd", "tr", "pre"}:
            self._text(" ")

    def handle_endtag(self, tag: str) -> None:
        if tag in SKIPPED:
            self._skip = max(0, self._skip - 1)
        elif tag in CONTAINERS and self._divs:
            self._divs.pop()
        elif tag in HEADINGS and self._heading is not None and self._heading_for is not None:
            self._heading_for.heading = " ".join("".join(self._heading).split())
            self._heading, self._heading_for = None, None
        self._text(" ")

    def handle_data(self, data: str) -> None:
        if self._skip:
            return
        if self._heading is not None:
            self._heading.append(data)
        self._text(data)

    def _text(self, data: str) -> None:
        for s in self._open():
            s.parts.append(data)


def sections(html: str) -> list[HtmlSection]:
    """The page's sections that have a heading, in document order."""
    parser = _Sections()
    parser.feed(html)
    parser.close()
    return [s for s in parser.sections if s.heading]


WORD = re.compile(r"[a-z0-9_]+")


def words(text: str) -> list[str]:
    """Lower-case word tokens (punctuation and markup dropped), the unit of the copy check."""
    return WORD.findall(text.lower())


def shared_run(question: str, text: str, n: int = 5) -> str | None:
    """The first run of ``n`` consecutive words of ``question`` that also occurs in ``text``, if any."""
    q, t = words(question), words(text)
    grams = {tuple(t[i : i + n]) for i in range(len(t) - n + 1)}
    for i in range(len(q) - n + 1):
        if tuple(q[i : i + n]) in grams:
            return " ".join(q[i : i + n])
    return None
