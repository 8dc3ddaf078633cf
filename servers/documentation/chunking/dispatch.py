"""Which parser reads which file."""

from __future__ import annotations

from typing import Literal

from servers.documentation.chunking import html, markdown, python_src, rst, text
from servers.documentation.chunking.blocks import Parsed

Kind = Literal["markdown", "rst", "text", "html", "python"]
KINDS: tuple[Kind, ...] = ("markdown", "rst", "text", "html", "python")

_BY_SUFFIX: dict[str, Kind] = {
    ".md": "markdown",
    ".markdown": "markdown",
    ".mdx": "markdown",
    ".rst": "rst",
    ".rest": "rst",
    ".rst.txt": "rst",  # Sphinx ships its sources as page.rst.txt
    ".txt": "text",
    ".text": "text",
    ".html": "html",
    ".htm": "html",
    ".py": "python",
    ".pyi": "python",
}


def kind_for_path(path: str) -> Kind | None:
    """The parser for a file name, or None when no parser reads it."""
    lower = path.lower()
    for suffix in sorted(_BY_SUFFIX, key=len, reverse=True):
        if lower.endswith(suffix):
            return _BY_SUFFIX[suffix]
    return None


def _module_name(path: str) -> str:
    name = path[:-4] if path.endswith(".pyi") else path[:-3] if path.endswith(".py") else path
    name = name.replace("/", ".")
    return name[: -len(".__init__")] if name.endswith(".__init__") else name


def parse(kind: Kind, content: str, path: str, limit: int) -> Parsed:
    """Parse ``content`` (already decoded) as ``kind``; ``path`` names the file in titles."""
    stem = path.rsplit("/", 1)[-1]
    if kind in ("markdown", "rst"):
        parsed: Parsed = (markdown if kind == "markdown" else rst).parse(content, "", limit)
        parsed.title = parsed.title or stem
        return parsed
    if kind == "html":
        return html.parse(content, stem, limit)
    if kind == "python":
        return python_src.parse(content, _module_name(path), limit)
    parsed = text.parse(content, stem, limit)
    parsed.title = stem
    return parsed
