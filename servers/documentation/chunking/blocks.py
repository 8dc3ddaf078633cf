"""The shared model of a parsed document and the packer that turns blocks into chunks."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Literal

BlockKind = Literal["heading", "para", "code"]
_SENTENCE_END = re.compile(r"(?<=[.!?:;])\s+|\n")


@dataclass(frozen=True)
class Block:
    """A heading, a paragraph or an unsplittable code block, with its character range in the text."""

    kind: BlockKind
    start: int
    end: int
    level: int = 0
    title: str = ""
    #: An explicit anchor (an HTML id, a Markdown ``{#id}``); else one is made from the title.
    anchor: str = ""


@dataclass(frozen=True)
class Heading:
    level: int
    title: str
    slug: str
    start: int
    #: End of the section including its subsections.
    end: int


@dataclass(frozen=True)
class Chunk:
    heading_path: tuple[str, ...]
    anchor: str
    start: int
    end: int
    text: str
    #: API names defined in the chunk (``functools.lru_cache``): matched as exact keys by search.
    keys: tuple[str, ...] = ()


@dataclass
class Parsed:
    title: str
    text: str
    headings: list[Heading] = field(default_factory=list)
    chunks: list[Chunk] = field(default_factory=list)


def slugify(title: str) -> str:
    """GitHub-style anchor: lower case, punctuation dropped, spaces to dashes."""
    slug = re.sub(r"[^\w\s-]", "", title.lower(), flags=re.UNICODE)
    slug = re.sub(r"[\s_]+", "-", slug.strip())
    return re.sub(r"-{2,}", "-", slug).strip("-") or "section"


def _split_long(text: str, start: int, end: int, limit: int) -> Iterable[tuple[int, int]]:
    """Ranges of at most ``limit`` characters, cut after a sentence or line where possible."""
    pos = start
    while end - pos > limit:
        window = text[pos : pos + limit]
        cut = 0
        for m in _SENTENCE_END.finditer(window):
            if m.start() > limit // 3:
                cut = m.end()
        if cut == 0:
            space = window.rfind(" ", limit // 3)
            cut = space + 1 if space > 0 else limit
        yield pos, pos + cut
        pos += cut
    if pos < end:
        yield pos, end


def assign_keys(parsed: Parsed, entries: list[tuple[int, str]]) -> None:
    """Give each chunk the API names defined inside it; ``entries`` are (offset in the text, name)."""
    if not entries:
        return
    entries = sorted(entries)
    for i, chunk in enumerate(parsed.chunks):
        names = tuple(dict.fromkeys(n for at, n in entries if chunk.start <= at < chunk.end))
        if names:
            parsed.chunks[i] = replace(chunk, keys=names)


def pack(text: str, blocks: list[Block], title: str, limit: int, breaks: Iterable[int] = ()) -> Parsed:
    """Group blocks into chunks of about ``limit`` characters inside one section each.

    A code block is never split, even when longer than ``limit``: half a code sample answers
    nothing. A paragraph longer than ``limit`` is cut at sentence ends. A block starting at one of
    ``breaks`` (an API entry) starts a new chunk unless the current one is still short, so an
    entry's description is embedded with its name rather than with the end of the previous one.
    """
    entry_starts = sorted(breaks)
    next_break = 0
    parsed = Parsed(title=title, text=text)
    stack: list[tuple[int, str, str]] = []  # (level, title, slug)
    used: dict[str, int] = {}
    open_headings: list[tuple[int, str, str, int]] = []
    current: list[tuple[int, int]] = []

    def flush() -> None:
        if not current:
            return
        s, e = current[0][0], current[-1][1]
        body = text[s:e].strip()
        if body:
            path = tuple(t for _, t, _ in stack)
            anchor = stack[-1][2] if stack else ""
            parsed.chunks.append(Chunk(heading_path=path, anchor=anchor, start=s, end=e, text=body))
        current.clear()

    def size() -> int:
        return current[-1][1] - current[0][0] if current else 0

    for block in blocks:
        if block.kind == "heading":
            flush()
            while stack and stack[-1][0] >= block.level:
                stack.pop()
            while open_headings and open_headings[-1][0] >= block.level:
                lvl, t, sl, st = open_headings.pop()
                parsed.headings.append(Heading(lvl, t, sl, st, block.start))
            base = block.anchor or slugify(block.title)
            n = used.get(base, 0)
            used[base] = n + 1
            slug = base if n == 0 else f"{base}-{n}"
            stack.append((block.level, block.title, slug))
            open_headings.append((block.level, block.title, slug, block.start))
            continue
        while next_break < len(entry_starts) and entry_starts[next_break] < block.start:
            next_break += 1
        if next_break < len(entry_starts) and entry_starts[next_break] < block.end and size() > limit // 2:
            flush()
        length = block.end - block.start
        if block.kind == "para" and length > limit:
            for s, e in _split_long(text, block.start, block.end, limit):
                if size() and size() + (e - s) > limit:
                    flush()
                current.append((s, e))
            continue
        if size() and (block.end - current[0][0]) > limit:
            flush()
        current.append((block.start, block.end))
    flush()
    while open_headings:
        lvl, t, sl, st = open_headings.pop()
        parsed.headings.append(Heading(lvl, t, sl, st, len(text)))
    parsed.headings.sort(key=lambda h: h.start)
    if not parsed.title:
        parsed.title = parsed.headings[0].title if parsed.headings else ""
    return parsed
