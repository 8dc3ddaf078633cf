"""reStructuredText: section titles by underline (and overline) style, literal blocks kept whole."""

from __future__ import annotations

import re

from servers.documentation.chunking import markup
from servers.documentation.chunking.blocks import Block, Parsed, assign_keys, pack

_ADORN = re.compile(r"^([!-/:-@\[-`{-~])\1{2,}\s*$")
_DIRECTIVE = re.compile(r"^\s*\.\.\s+[\w:-]+::")
_CODE_DIRECTIVE = re.compile(r"^\s*\.\.\s+(code-block|code|sourcecode|doctest|literalinclude|productionlist)::")


_API = re.compile(r"^[ \t]*(\.\.)[ \t]+([\w:-]+)::[ \t]*([A-Za-z_][\w.:-]*)", re.M)


def clean_title(title: str) -> str:
    """``:mod:`!json` --- JSON`` reads as ``json — JSON``."""
    return markup.heading(title)


def api_entries(text: str) -> list[tuple[int, str]]:
    """(offset, name) of every API directive (``.. function:: name(...)``) in the text."""
    return [(m.start(1), m.group(3)) for m in _API.finditer(text) if m.group(2).lower() in markup.API_DIRECTIVES]


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" \t"))


def blocks(text: str) -> list[Block]:
    """The blocks of a reST text; heading levels follow the order in which styles first appear."""
    lines: list[tuple[int, int, str]] = []
    pos = 0
    for raw in text.splitlines(keepends=True):
        lines.append((pos, pos + len(raw), raw.rstrip("\r\n")))
        pos += len(raw)
    styles: list[tuple[str, bool]] = []
    out: list[Block] = []
    i = 0
    n = len(lines)
    para: list[int] = []

    def end_para() -> None:
        if para:
            out.append(Block("para", lines[para[0]][0], lines[para[-1]][1]))
            para.clear()

    while i < n:
        start, _end, line = lines[i]
        title_at = None
        over = False
        if (
            _ADORN.match(line)
            and i + 2 < n
            and lines[i + 1][2].strip()
            and _ADORN.match(lines[i + 2][2])
            and lines[i + 2][2].strip()[0] == line.strip()[0]
            and not para
        ):
            title_at, over = i + 1, True
        elif (
            line.strip()
            and _indent(line) == 0
            and i + 1 < n
            and _ADORN.match(lines[i + 1][2])
            and len(lines[i + 1][2].rstrip()) >= len(line.rstrip())
            and not para
        ):
            title_at = i
        if title_at is not None:
            char = lines[title_at + 1][2].strip()[0]
            style = (char, over)
            if style not in styles:
                styles.append(style)
            last = title_at + 1
            out.append(
                Block(
                    "heading",
                    start,
                    lines[last][1],
                    level=styles.index(style) + 1,
                    title=clean_title(lines[title_at][2]),
                )
            )
            i = last + 1
            continue
        if not line.strip():
            end_para()
            i += 1
            continue
        if _ADORN.match(line) and not para:  # a transition line
            i += 1
            continue
        para.append(i)
        # "Example::" introduces a literal block; a directive such as ".. note::" does not (unless it is code).
        directive = bool(_DIRECTIVE.match(line))
        literal = bool(_CODE_DIRECTIVE.match(line)) or (line.rstrip().endswith("::") and not directive)
        if literal:
            base = _indent(lines[para[0]][2])
            end_para()
            j = i + 1
            last = i
            while j < n and (not lines[j][2].strip() or _indent(lines[j][2]) > base):
                if lines[j][2].strip():
                    last = j
                j += 1
            if last > i:
                # The introducing line stays with its literal block: "Example::" explains the code.
                out[-1] = Block("code", out[-1].start, lines[last][1])
                i = last + 1
                continue
        i += 1
    end_para()
    return out


def parse(text: str, title: str, limit: int) -> Parsed:
    entries = api_entries(text)
    parsed = pack(text, blocks(text), title, limit, [at for at, _ in entries])
    assign_keys(parsed, entries)
    return parsed
