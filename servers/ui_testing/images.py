"""PNG files stored by content hash (``<root>/<aa>/<sha256>.png``), thumbnails and blanked rectangles."""

from __future__ import annotations

import hashlib
import io
import os
import struct
import time
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field

from common.errors import InvalidInput
from common.safefiles import write_once

if TYPE_CHECKING:
    from PIL.Image import Image

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
THUMB_WIDTH = 320
THUMB_MAX_ASPECT = 3  # a taller capture is cut at the top, so a long page's thumbnail stays readable
#: Playwright's default mask colour, so selector masks and rectangle masks look alike.
MASK_RGB = (255, 0, 255)


class StoredImage(BaseModel):
    """A PNG on disk, named by the sha256 of its bytes."""

    model_config = ConfigDict(frozen=True)

    path: str
    sha256: str
    width: int
    height: int
    bytes: int


class Rect(BaseModel):
    """A rectangle in CSS pixels from the top-left of the captured image."""

    model_config = ConfigDict(frozen=True)

    x: int = Field(ge=0, le=100_000)
    y: int = Field(ge=0, le=100_000)
    width: int = Field(ge=1, le=100_000)
    height: int = Field(ge=1, le=100_000)


def png_size(data: bytes) -> tuple[int, int]:
    """(width, height) from a PNG's header, without decoding it."""
    if len(data) < 24 or not data.startswith(PNG_SIGNATURE) or data[12:16] != b"IHDR":
        raise InvalidInput("Not a PNG image.")
    width, height = struct.unpack(">II", data[16:24])
    return int(width), int(height)


def image_path(root: Path, sha256: str) -> Path:
    """Where the PNG with this hash lives under ``root``."""
    return root / sha256[:2] / f"{sha256}.png"


def store_png(data: bytes, root: Path) -> StoredImage:
    """Write ``data`` under its content hash (atomically; an existing identical file is kept) and describe it."""
    width, height = png_size(data)
    digest = hashlib.sha256(data).hexdigest()
    path = image_path(root, digest)
    try:
        # A reused image is fresh again, so the retention sweep's grace period protects it until its row lands.
        os.utime(path)
    except FileNotFoundError:
        write_once(path, data)
    return StoredImage(path=str(path), sha256=digest, width=width, height=height, bytes=len(data))


def encode_png(image: Image, compress_level: int = 6) -> bytes:
    """PNG bytes of a PIL image with no metadata, so equal pixels always give equal bytes."""
    buf = io.BytesIO()
    image.save(buf, format="PNG", compress_level=compress_level)
    return buf.getvalue()


def blank_rects(data: bytes, rects: list[Rect], scale: float) -> bytes:
    """``data`` with each rectangle (CSS px, scaled to device px) filled with the mask colour."""
    if not rects:
        return data
    # Heavy: only captures with rectangle masks need Pillow.
    from PIL import Image as PILImage
    from PIL import ImageDraw

    with PILImage.open(io.BytesIO(data)) as opened:
        image = opened.convert("RGBA")
    draw = ImageDraw.Draw(image)
    for r in rects:
        x0, y0 = round(r.x * scale), round(r.y * scale)
        x1, y1 = round((r.x + r.width) * scale) - 1, round((r.y + r.height) * scale) - 1
        draw.rectangle((x0, y0, x1, y1), fill=(*MASK_RGB, 255))
    return encode_png(image)


def thumbnail(data: bytes, root: Path) -> StoredImage:
    """A PNG at most ``THUMB_WIDTH`` wide (the top of a very tall image), stored by hash."""
    # Heavy: only thumbnails need Pillow.
    from PIL import Image as PILImage

    with PILImage.open(io.BytesIO(data)) as opened:
        image = opened.convert("RGB")
    w, h = image.size
    if h > w * THUMB_MAX_ASPECT:
        image = image.crop((0, 0, w, w * THUMB_MAX_ASPECT))
        h = w * THUMB_MAX_ASPECT
    if w > THUMB_WIDTH:
        image = image.resize((THUMB_WIDTH, max(1, round(h * THUMB_WIDTH / w))), PILImage.Resampling.LANCZOS)
    return store_png(encode_png(image), root)


def prune_files(root: Path, referenced: set[str], grace_s: float) -> int:
    """Delete the PNGs under ``root`` that no row points at and that were not written or reused within
    ``grace_s`` seconds (a capture in flight has its image on disk before its row); how many went."""
    if not root.is_dir():
        return 0
    removed = 0
    for path in root.glob("[0-9a-f][0-9a-f]/*.png"):
        if str(path) in referenced:
            continue
        try:
            # Read the time just before deleting, so an image reused a moment ago is kept.
            if time.time() - path.stat().st_mtime < grace_s:
                continue
            path.unlink()
            removed += 1
        except FileNotFoundError:
            continue
    return removed
