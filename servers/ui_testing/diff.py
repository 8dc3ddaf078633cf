"""Compare two PNGs: changed pixels, a stored diff image, boxes around the changed regions, pass or fail.

pixelmatch (anti-aliasing aware) does the per-pixel comparison when installed; a numpy colour-distance
fallback (no anti-aliasing detection) is used otherwise.
"""

from __future__ import annotations

from collections import deque
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field

from common.errors import InvalidInput, NotFound
from servers.ui_testing.images import encode_png, store_png

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


def load_rgba(path: Path) -> NDArray[np.uint8]:
    """An RGBA array of the PNG at ``path``; ``NotFound``/``InvalidInput`` if missing or not an image."""
    # Heavy: Pillow and numpy load only when a comparison runs.
    import numpy as np
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as opened:
            return np.asarray(opened.convert("RGBA"), dtype=np.uint8).copy()
    except FileNotFoundError as exc:
        raise NotFound(f"No image at {path.name}.") from exc
    except (UnidentifiedImageError, OSError) as exc:
        raise InvalidInput(f"{path.name} is not a readable image.") from exc


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

    Largest (most changed pixels) first.
    """
    import numpy as np

    h, w = mask.shape
    if not mask.any():
        return []
    cell = max(1, gap)
    gh, gw = -(-h // cell), -(-w // cell)
    padded = np.zeros((gh * cell, gw * cell), dtype=bool)
    padded[:h, :w] = mask
    blocks = padded.reshape(gh, cell, gw, cell)
    occupied: NDArray[np.bool_] = np.asarray(blocks.any(axis=(1, 3)))
    # Per cell, the first and last changed row and column inside it (only meaningful where occupied).
    rows: NDArray[np.bool_] = np.asarray(blocks.any(axis=3))  # (gh, cell, gw)
    cols: NDArray[np.bool_] = np.asarray(blocks.any(axis=1))  # (gh, gw, cell)
    row_min = rows.argmax(axis=1)
    row_max = cell - 1 - rows[:, ::-1, :].argmax(axis=1)
    col_min = cols.argmax(axis=2)
    col_max = cell - 1 - cols[:, :, ::-1].argmax(axis=2)
    counts = blocks.sum(axis=(1, 3))

    labels = _label_cells(occupied)
    boxes = []
    for cells in labels:
        cy, cx = np.array([c[0] for c in cells]), np.array([c[1] for c in cells])
        y0 = int((cy * cell + row_min[cy, cx]).min())
        y1 = int((cy * cell + row_max[cy, cx]).max())
        x0 = int((cx * cell + col_min[cy, cx]).min())
        x1 = int((cx * cell + col_max[cy, cx]).max())
        boxes.append(Box(x=x0, y=y0, width=x1 - x0 + 1, height=y1 - y0 + 1, pixels=int(counts[cy, cx].sum())))
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


def render_diff(a: NDArray[np.uint8], mask: NDArray[np.bool_]) -> bytes:
    """PNG of image ``a`` faded to light grey with the changed pixels in red."""
    import numpy as np
    from PIL import Image

    gray = a[..., :3].astype(np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    faded = (255 - (255 - gray) * 0.25).astype(np.uint8)
    rgb = np.repeat(faded[..., None], 3, axis=2)
    rgb[mask] = DIFF_RGB
    return encode_png(Image.fromarray(rgb, mode="RGB"))


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
    a, b = load_rgba(path_a), load_rgba(path_b)
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
