"""Markdown: ATX and setext headings, fenced code kept whole."""

from __future__ import annotations

import re

from servers.documentation.chunking import markup
from servers.documentation.chunking.blocks import Block, Parsed, pack

_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_ATX = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(.*?))?[ \t#]*$")
_SETEXT = re.compile(r"^ {0,3}(=+|-+)[ \t]*$")
_ANCHOR = re.compile(r"\s*\{#([\w:.-]+)\}\s*$")


def _heading(start: int, end: int, level: int, raw: str) -> Block:
    """A heading block; a trailing ``{#id}`` (Markdown extra, and our HTML conversion) is its anchor."""
    m = _ANCHOR.search(raw)
    anchor = m.group(1) if m else ""
    return Block(
        "heading", start, end, level=level, title=markup.heading(raw[: m.start()] if m else raw), anchor=anchor
    )


def _lines(text: str) -> list[tuple[int, int, str]]:
    out = []
    pos = 0
    for line in text.splitlines(keepends=True):
        out.append((pos, pos + len(line), line.rstrip("\r\n")))
        pos += len(line)
    return out


def blocks(text: str) -> list[Block]:
    """The blocks of a Markdown text, in order."""
    out: list[Block] = []
    para: list[tuple[int, int, str]] = []
    fence: tuple[str, int, int] | None = None  # (char, length, start)

    def end_para() -> None:
        if para:
            out.append(Block("para", para[0][0], para[-1][1]))
            para.clear()

    for start, end, line in _lines(text):
        if fence is not None:
            m = _FENCE.match(line)
            if m and m.group(1)[0] == fence[0] and len(m.group(1)) >= fence[1] and not line.strip()[len(m.group(1)) :]:
                out.append(Block("code", fence[2], end))
                fence = None
            continue
        m = _FENCE.match(line)
        if m:
            end_para()
            fence = (m.group(1)[0], len(m.group(1)), start)
            continue
        h = _ATX.match(line)
        if h:
            end_para()
            out.append(_heading(start, end, len(h.group(1)), (h.group(2) or "").strip()))
            continue
        s = _SETEXT.match(line)
        if s and para and len(para) == 1 and para[0][2].strip():
            p_start, _, p_line = para.pop()
            out.append(_heading(p_start, end, 1 if s.group(1)[0] == "=" else 2, p_line.strip()))
            continue
        if not line.strip():
            end_para()
            continue
        para.append((start, end, line))
    end_para()
    if fence is not None:  # an unclosed fence runs to the end of the document, still whole
        out.append(Block("code", fence[2], len(text)))
    return out


def parse(text: str, title: str, limit: int, breaks: list[int] | None = None) -> Parsed:
    return pack(text, blocks(text), title, limit, breaks or ())
