"""Compare two PNGs: changed pixels, a stored diff image, boxes around the changed regions, pass or fail.

pixelmatch (anti-aliasing aware) does the per-pixel comparison when installed; a numpy colour-distance
fallback (no anti-aliasing detection) is used otherwise.
"""

from __future__ import annotations

import hashlib
import io
import threading
from collections import OrderedDict, deque
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field

from common.errors import InvalidInput, NotFound
from servers.ui_testing.images import PNG_SIGNATURE, encode_png, png_size, store_png

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

#: pixelmatch's colour threshold (0..1): tolerant of sub-pixel anti-aliasing, catches a changed word.
PIXEL_THRESHOLD = 0.1
#: Changed pixels within this many px belong to the same region.
REGION_GAP = 8
#: Boxes grow by this many px (within the image) so they enclose the changed element, not just its ink.
REGION_PAD = 4
MAX_BOXES = 20
DIFF_RGB = (255, 0, 0)


Engine = Literal["pixelmatch", "numpy"]


class Box(BaseModel):
    """A changed region in image pixels, top-left origin."""

    model_config = ConfigDict(frozen=True)

    x: int
    y: int
    width: int
    height: int
    pixels: int = Field(description="Changed pixels inside the box.")

    def contains(self, x: float, y: float, width: float, height: float) -> bool:
        """Whether the rectangle (same pixel space) lies inside this box."""
        return self.x <= x and self.y <= y and x + width <= self.x + self.width and y + height <= self.y + self.height


class DiffResult(BaseModel):
    """The outcome of one comparison; ``summary`` says it in one sentence."""

    same_size: bool
    size_a: tuple[int, int]
    size_b: tuple[int, int]
    changed_pixels: int = 0
    total_pixels: int = 0
    changed_ratio: float = 0.0
    max_ratio: float
    passed: bool
    diff_path: str | None = None
    diff_sha256: str | None = None
    boxes: list[Box] = Field(default_factory=list)
    regions_total: int = 0
    engine: Engine | None = None
    summary: str


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError as exc:
        raise NotFound(f"No image at {path.name}.") from exc
    except OSError as exc:
        raise InvalidInput(f"{path.name} is not a readable image.") from exc


def decode_rgba(data: bytes, name: str) -> NDArray[np.uint8]:
    """A read-only RGBA array of the image ``data`` (named ``name`` in errors); ``InvalidInput`` if not an image."""
    # Heavy: Pillow and numpy load only when a comparison runs.
    import numpy as np
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as opened:
            return np.asarray(opened.convert("RGBA"), dtype=np.uint8)  # read-only, never written to
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise InvalidInput(f"{name} is not a readable image.") from exc


class _Decoded:
    """Decoded images by the sha256 of their bytes, least recently used dropped beyond ``limit`` bytes:
    a baseline is compared with every new capture of its page and need not be decoded each time."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._items: OrderedDict[str, NDArray[np.uint8]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, data: bytes, name: str) -> NDArray[np.uint8]:
        key = hashlib.sha256(data).hexdigest()
        with self._lock:
            found = self._items.get(key)
            if found is not None:
                self._items.move_to_end(key)
                return found
        image = decode_rgba(data, name)
        with self._lock:
            self._items[key] = image
            while len(self._items) > 1 and sum(i.nbytes for i in self._items.values()) > self.limit:
                self._items.popitem(last=False)
        return image

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


#: Decoded baselines kept between comparisons (a 1920x3000 RGBA image is 23 MB).
BASELINES = _Decoded(limit=64 * 1024 * 1024)


def changed_mask(a: NDArray[np.uint8], b: NDArray[np.uint8], threshold: float) -> tuple[NDArray[np.bool_], Engine]:
    """Boolean mask of pixels that differ, and the engine that decided."""
    import numpy as np

    try:
        # Optional: the C++ pixelmatch; without it the numpy fallback below runs.
        import pybind11_pixelmatch as pm
    except ImportError:
        return _mask_numpy(a, b, threshold), "numpy"
    options = pm.Options()
    options.threshold = threshold
    options.includeAA = False  # anti-aliased pixels are not changes
    options.diffMask = True  # output only the differing pixels, on a transparent background
    out = np.zeros_like(a)
    pm.pixelmatch(np.ascontiguousarray(a), np.ascontiguousarray(b), output=out, options=options)
    return out[..., 3] > 0, "pixelmatch"


def _mask_numpy(a: NDArray[np.uint8], b: NDArray[np.uint8], threshold: float) -> NDArray[np.bool_]:
    """pixelmatch's YIQ colour distance (blended on white), without anti-aliasing detection."""
    import numpy as np

    def blend(img: NDArray[np.uint8]) -> NDArray[np.float64]:
        rgb = img[..., :3].astype(np.float64)
        alpha = img[..., 3:4].astype(np.float64) / 255.0
        result: NDArray[np.float64] = 255.0 + (rgb - 255.0) * alpha
        return result

    ca, cb = blend(a), blend(b)
    d = ca - cb
    y = d @ np.array([0.29889531, 0.58662247, 0.11448223])
    i = d @ np.array([0.59597799, -0.27417610, -0.32180189])
    q = d @ np.array([0.21147017, -0.52261711, 0.31114694])
    delta = 0.5053 * y * y + 0.299 * i * i + 0.1957 * q * q
    result: NDArray[np.bool_] = delta > 35215.0 * threshold * threshold
    return result


def find_boxes(mask: NDArray[np.bool_], gap: int = REGION_GAP, pad: int = REGION_PAD) -> list[Box]:
    """Boxes around groups of changed pixels, grown by ``pad`` px; pixels within about ``gap`` px are grouped.

    Largest (most changed pixels) first. Works on the changed pixels' coordinates, so its cost follows
    the size of the change rather than of the image.
    """
    import numpy as np

    h, w = mask.shape
    ys, xs = np.nonzero(mask)
    if not len(ys):
        return []
    cell = max(1, gap)
    cy, cx = ys // cell, xs // cell
    occupied = np.zeros((-(-h // cell), -(-w // cell)), dtype=bool)
    occupied[cy, cx] = True
    groups = _label_cells(occupied)
    label = np.zeros(occupied.shape, dtype=np.intp)
    for n, cells in enumerate(groups):
        at = np.array(cells)
        label[at[:, 0], at[:, 1]] = n
    of = label[cy, cx]
    y0, x0 = np.full(len(groups), h), np.full(len(groups), w)
    y1, x1 = np.zeros(len(groups), dtype=np.intp), np.zeros(len(groups), dtype=np.intp)
    np.minimum.at(y0, of, ys)
    np.minimum.at(x0, of, xs)
    np.maximum.at(y1, of, ys)
    np.maximum.at(x1, of, xs)
    counts = np.bincount(of, minlength=len(groups))
    boxes = [
        Box(
            x=int(x0[n]),
            y=int(y0[n]),
            width=int(x1[n] - x0[n]) + 1,
            height=int(y1[n] - y0[n]) + 1,
            pixels=int(counts[n]),
        )
        for n in range(len(groups))
    ]
    padded_boxes = [_grow(b, pad, w, h) for b in _merge_close(boxes, gap)]
    return sorted(padded_boxes, key=lambda b: (-b.pixels, b.y, b.x))


def _grow(box: Box, pad: int, width: int, height: int) -> Box:
    x0, y0 = max(0, box.x - pad), max(0, box.y - pad)
    x1, y1 = min(width, box.x + box.width + pad), min(height, box.y + box.height + pad)
    return Box(x=x0, y=y0, width=x1 - x0, height=y1 - y0, pixels=box.pixels)


def _label_cells(occupied: NDArray[np.bool_]) -> list[list[tuple[int, int]]]:
    """Groups of occupied cells connected through any of their eight neighbours."""
    gh, gw = occupied.shape
    seen = set()
    groups: list[list[tuple[int, int]]] = []
    for start in zip(*occupied.nonzero(), strict=True):
        first = (int(start[0]), int(start[1]))
        if first in seen:
            continue
        seen.add(first)
        group, queue = [], deque([first])
        while queue:
            y, x = queue.popleft()
            group.append((y, x))
            for ny in (y - 1, y, y + 1):
                for nx in (x - 1, x, x + 1):
                    if 0 <= ny < gh and 0 <= nx < gw and occupied[ny, nx] and (ny, nx) not in seen:
                        seen.add((ny, nx))
                        queue.append((ny, nx))
        groups.append(group)
    return groups


def _merge_close(boxes: list[Box], gap: int) -> list[Box]:
    """Merge boxes whose edges are within ``gap`` px of each other until none are."""
    merged = list(boxes)
    changed = True
    while changed:
        changed = False
        for i in range(len(merged)):
            for j in range(i + 1, len(merged)):
                a, b = merged[i], merged[j]
                if (
                    a.x - gap <= b.x + b.width
                    and b.x - gap <= a.x + a.width
                    and a.y - gap <= b.y + b.height
                    and b.y - gap <= a.y + a.height
                ):
                    x0, y0 = min(a.x, b.x), min(a.y, b.y)
                    x1, y1 = max(a.x + a.width, b.x + b.width), max(a.y + a.height, b.y + b.height)
                    merged[i] = Box(x=x0, y=y0, width=x1 - x0, height=y1 - y0, pixels=a.pixels + b.pixels)
                    del merged[j]
                    changed = True
                    break
            if changed:
                break
    return merged


#: Diff image palette: 64 light greys (the baseline faded to a quarter of its contrast), then red.
_FADED = [round(255 - (255 - (i * 4 + 2)) * 0.25) for i in range(64)]
_PALETTE = [c for g in _FADED for c in (g, g, g)] + list(DIFF_RGB)
_RED = len(_FADED)


def render_diff(a: NDArray[np.uint8], mask: NDArray[np.bool_]) -> bytes:
    """PNG of image ``a`` faded to light grey with the changed pixels in red.

    A palette image at the fastest compression: a third of the bytes of RGB to deflate, and the
    encoding is on the comparison's critical path.
    """
    import numpy as np
    from PIL import Image

    gray = Image.fromarray(a, mode="RGBA").convert("L").point([g // 4 for g in range(256)])
    index = np.array(gray, dtype=np.uint8)
    index[mask] = _RED
    image = Image.fromarray(index, mode="L")
    image.putpalette(_PALETTE)
    return encode_png(image, compress_level=1)


def compare(
    path_a: Path,
    path_b: Path,
    root: Path,
    *,
    max_ratio: float = 0.0,
    threshold: float = PIXEL_THRESHOLD,
    max_boxes: int = MAX_BOXES,
    gap: int = REGION_GAP,
) -> DiffResult:
    """Compare the PNG at ``path_a`` (baseline) with ``path_b``; the diff image is stored by hash under ``root``.

    Passes when the changed-pixel ratio is at most ``max_ratio``. Images of different sizes fail
    with both sizes in the summary (no pixel comparison is attempted).
    """
    if not 0.0 <= max_ratio <= 1.0:
        raise InvalidInput("max_ratio must be between 0 and 1 (a fraction of the pixels).")
    if not 0.0 <= threshold <= 1.0:
        raise InvalidInput("threshold must be between 0 and 1.")
    data_a, data_b = _read(path_a), _read(path_b)
    if data_a == data_b and data_a.startswith(PNG_SIGNATURE):
        # Reproducible captures of an unchanged page are byte-identical: nothing to decode.
        size = png_size(data_a)
        return DiffResult(
            same_size=True,
            size_a=size,
            size_b=size,
            total_pixels=size[0] * size[1],
            max_ratio=max_ratio,
            passed=True,
            summary="No changed pixels.",
        )
    a, b = BASELINES.get(data_a, path_a.name), decode_rgba(data_b, path_b.name)
    size_a, size_b = (int(a.shape[1]), int(a.shape[0])), (int(b.shape[1]), int(b.shape[0]))
    if size_a != size_b:
        return DiffResult(
            same_size=False,
            size_a=size_a,
            size_b=size_b,
            max_ratio=max_ratio,
            passed=False,
            summary=f"Sizes differ: {size_a[0]}x{size_a[1]} vs {size_b[0]}x{size_b[1]}; no pixel comparison made.",
        )
    mask, engine = changed_mask(a, b, threshold)
    changed = int(mask.sum())
    total = size_a[0] * size_a[1]
    ratio = changed / total if total else 0.0
    passed = ratio <= max_ratio
    boxes = find_boxes(mask, gap) if changed else []
    diff_path = diff_sha = None
    if changed:
        stored = store_png(render_diff(a, mask), root)
        diff_path, diff_sha = stored.path, stored.sha256
    summary = (
        "No changed pixels."
        if not changed
        else f"{changed} pixels changed ({ratio:.4%}) in {len(boxes)} region(s); "
        f"{'within' if passed else 'over'} the {max_ratio:.4%} limit."
    )
    return DiffResult(
        same_size=True,
        size_a=size_a,
        size_b=size_b,
        changed_pixels=changed,
        total_pixels=total,
        changed_ratio=ratio,
        max_ratio=max_ratio,
        passed=passed,
        diff_path=diff_path,
        diff_sha256=diff_sha,
        boxes=boxes[:max_boxes],
        regions_total=len(boxes),
        engine=engine,
        summary=summary,
    )
