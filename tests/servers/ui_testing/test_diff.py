"""Image comparison on synthetic PNGs: counts, boxes, thresholds, the numpy fallback."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from common.errors import InvalidInput, NotFound
from servers.ui_testing.diff import compare, find_boxes


def png(tmp_path: Path, name: str, pixels: np.ndarray) -> Path:
    path = tmp_path / f"{name}.png"
    Image.fromarray(pixels, mode="RGB").save(path)
    return path


def white(h: int = 200, w: int = 300) -> np.ndarray:
    return np.full((h, w, 3), 255, dtype=np.uint8)


def test_identical_images_pass_with_no_diff_image(tmp_path: Path):
    a = png(tmp_path, "a", white())
    result = compare(a, a, tmp_path)
    assert result.passed
    assert result.changed_pixels == 0
    assert result.diff_path is None
    assert result.boxes == []
    assert result.summary == "No changed pixels."


def test_two_separate_changes_give_two_boxes_and_a_stored_diff_image(tmp_path: Path):
    base = white()
    changed = base.copy()
    changed[10:20, 10:30] = 0  # 200 px
    changed[150:160, 200:290] = 0  # 900 px
    result = compare(png(tmp_path, "a", base), png(tmp_path, "b", changed), tmp_path)

    assert not result.passed
    assert result.changed_pixels == 1100
    assert result.changed_ratio == pytest.approx(1100 / 60_000)
    assert result.engine == "pixelmatch"
    assert result.regions_total == 2
    big, small = result.boxes
    assert (big.x, big.y, big.width, big.height, big.pixels) == (196, 146, 98, 18, 900)
    assert (small.x, small.y, small.width, small.height, small.pixels) == (6, 6, 28, 18, 200)
    assert result.diff_path is not None
    assert result.diff_sha256 is not None
    assert result.diff_sha256 in result.diff_path
    with Image.open(result.diff_path) as opened:
        diff = opened.convert("RGB")
    assert diff.size == (300, 200)
    assert diff.getpixel((15, 15)) == (255, 0, 0)
    assert diff.getpixel((100, 100)) == (255, 255, 255)  # white stays white, faded
    assert diff.getpixel((160, 20)) != (255, 0, 0)


def test_one_baseline_against_several_captures_gives_each_its_own_result(tmp_path: Path):
    base = png(tmp_path, "a", white())
    first, second = white(), white()
    first[10:20, 10:30] = 0
    second[100:105, 100:110] = 0
    a = compare(base, png(tmp_path, "b1", first), tmp_path)
    b = compare(base, png(tmp_path, "b2", second), tmp_path)  # the decoded baseline is reused
    assert (a.changed_pixels, a.boxes[0].x) == (200, 6)
    assert (b.changed_pixels, b.boxes[0].x) == (50, 96)
    assert compare(base, base, tmp_path).changed_pixels == 0


def test_nearby_changes_merge_into_one_box(tmp_path: Path):
    base = white()
    changed = base.copy()
    changed[50:60, 50:60] = 0
    changed[50:60, 64:74] = 0  # 4 px apart: one region, like letters of one word
    result = compare(png(tmp_path, "a", base), png(tmp_path, "b", changed), tmp_path)
    assert result.regions_total == 1
    assert result.boxes[0].contains(50, 50, 24, 10)


def test_the_ratio_threshold_decides_pass_or_fail(tmp_path: Path):
    base = white()
    changed = base.copy()
    changed[0:6, 0:10] = 0  # 60 of 60,000 px = 0.1 %
    a, b = png(tmp_path, "a", base), png(tmp_path, "b", changed)
    assert not compare(a, b, tmp_path, max_ratio=0.0005).passed
    assert compare(a, b, tmp_path, max_ratio=0.001).passed
    with pytest.raises(InvalidInput, match="max_ratio"):
        compare(a, b, tmp_path, max_ratio=2)


def test_a_faint_colour_shift_is_below_the_pixel_threshold(tmp_path: Path):
    base = white()
    faint = base.copy()
    faint[:, :] = (252, 252, 252)
    assert compare(png(tmp_path, "a", base), png(tmp_path, "b", faint), tmp_path).passed


def test_the_number_of_boxes_is_capped_and_the_total_still_counted(tmp_path: Path):
    base = white(200, 400)
    changed = base.copy()
    for i in range(12):
        changed[20:25, i * 30 : i * 30 + 5] = 0
    result = compare(png(tmp_path, "a", base), png(tmp_path, "b", changed), tmp_path, max_boxes=5)
    assert result.regions_total == 12
    assert len(result.boxes) == 5


def test_the_numpy_fallback_finds_the_same_change_without_pixelmatch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setitem(sys.modules, "pybind11_pixelmatch", None)  # import now raises ImportError
    base = white()
    changed = base.copy()
    changed[10:20, 10:30] = (200, 0, 0)
    result = compare(png(tmp_path, "a", base), png(tmp_path, "b", changed), tmp_path)
    assert result.engine == "numpy"
    assert result.changed_pixels == 200
    assert result.boxes[0].contains(10, 10, 20, 10)


def test_a_missing_or_broken_image_says_so(tmp_path: Path):
    a = png(tmp_path, "a", white())
    with pytest.raises(NotFound, match=r"nope\.png"):
        compare(a, tmp_path / "nope.png", tmp_path)
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    with pytest.raises(InvalidInput, match=r"broken\.png is not a readable image"):
        compare(a, broken, tmp_path)


def test_find_boxes_on_an_empty_mask_is_empty():
    assert find_boxes(np.zeros((10, 10), dtype=bool)) == []
