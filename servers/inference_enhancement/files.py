"""The memory.jsonl files of import and export: read with a size cap, written atomically."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from common.errors import InvalidInput, NotFound


def read_source(path: str | None, content: str | None, *, max_bytes: int) -> str:
    """The text to import: ``content`` itself, or the UTF-8 file at ``path`` (exactly one of them)."""
    if (path is None) == (content is None):
        raise InvalidInput("give exactly one of path (a memory.jsonl file) or content (its text).")
    if content is not None:
        return content
    assert path is not None
    file = Path(path).expanduser()
    if not file.is_file():
        raise NotFound(f"No file at {str(file)!r}; give the path of the reference server's memory.jsonl.")
    size = file.stat().st_size
    if size > max_bytes:
        raise InvalidInput(
            f"{file} is {size} bytes; the limit is {max_bytes} (INFERENCE_ENHANCEMENT_IMPORT_MAX_BYTES)."
        )
    try:
        return file.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise InvalidInput(f"{file} is not UTF-8 text; nothing was imported.") from None


def write_atomic(path: Path, data: str) -> Path:
    """Write via a temporary file and rename, so a reader never sees half a file; the path written."""
    target = path.expanduser().resolve()
    if not target.parent.is_dir():
        raise NotFound(f"Folder {str(target.parent)!r} does not exist; create it or choose another path.")
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(data)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target
