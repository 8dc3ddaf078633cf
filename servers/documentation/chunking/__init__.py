"""Turn a file's text into a readable document and heading-aware chunks.

Each format has its own module with one job; they all end in :func:`blocks.pack`, which never
splits a code block and never lets a chunk cross a heading. Everything here is plain functions,
testable without MCP or a database.
"""

from __future__ import annotations

from servers.documentation.chunking.blocks import Chunk, Heading, Parsed, slugify
from servers.documentation.chunking.dispatch import KINDS, kind_for_path, parse

__all__ = ["KINDS", "Chunk", "Heading", "Parsed", "kind_for_path", "parse", "slugify"]
