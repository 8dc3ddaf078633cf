"""Plain text: paragraphs only; the file name is the title."""

from __future__ import annotations

import re

from servers.documentation.chunking.blocks import Block, Parsed, pack

_PARA = re.compile(r"\S(?:.*?)(?=\n[ \t]*\n|\Z)", re.S)


def blocks(text: str) -> list[Block]:
    return [Block("para", m.start(), m.end()) for m in _PARA.finditer(text)]


def parse(text: str, title: str, limit: int) -> Parsed:
    return pack(text, blocks(text), title, limit)
