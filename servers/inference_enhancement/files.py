"""The memory.jsonl files of import and export, only inside INFERENCE_ENHANCEMENT_FILE_ROOTS.

Every path goes through ``common.safefiles``: it must resolve inside an allowed folder, is opened
without following links, only a regular file is read (size checked before the first byte), and an
export is written to a temp file and renamed, refusing a link, folder, FIFO or device at the target.
"""

from __future__ import annotations

from pathlib import Path

from common import safefiles
from common.errors import InvalidInput

ROOTS_SETTING = "INFERENCE_ENHANCEMENT_FILE_ROOTS"
SIZE_SETTING = "INFERENCE_ENHANCEMENT_IMPORT_MAX_BYTES"


def read_source(path: str | None, content: str | None, roots: safefiles.Roots, *, max_bytes: int) -> str:
    """The text to import: ``content`` itself, or the UTF-8 file at ``path`` inside ``roots`` (exactly one)."""
    if (path is None) == (content is None):
        raise InvalidInput("give exactly one of path (a memory.jsonl file) or content (its text).")
    if content is not None:
        return content
    assert path is not None
    try:
        data = safefiles.read_bytes(path, roots, max_bytes=max_bytes)
    except InvalidInput as exc:
        raise _with_size_hint(exc) from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InvalidInput(f"{safefiles.shown(path)} is not UTF-8 text; nothing was imported.") from None


def write_export(path: str, data: str, roots: safefiles.Roots, *, max_bytes: int) -> Path:
    """Write the export to ``path`` inside ``roots`` atomically; the real path written."""
    try:
        return safefiles.write_atomic(path, roots, data, max_bytes=max_bytes)
    except InvalidInput as exc:
        raise _with_size_hint(exc) from None


def _with_size_hint(exc: InvalidInput) -> InvalidInput:
    """The kit's size refusal with the setting that raises the limit named; other refusals unchanged."""
    text = str(exc)
    if "too large" in text or "grew past" in text or text.startswith("Refusing to write"):
        return InvalidInput(f"{text} Raise {SIZE_SETTING} to allow more.")
    return exc
