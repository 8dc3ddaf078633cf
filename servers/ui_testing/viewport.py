"""Viewport sizes: named presets or explicit sizes, validated before a browser is touched."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from common.errors import InvalidInput

MIN_SIDE = 100
MAX_SIDE = 4000
MIN_SCALE = 1.0
MAX_SCALE = 4.0


class Viewport(BaseModel):
    """A browser window in CSS pixels and its device scale factor (pixels per CSS pixel)."""

    model_config = ConfigDict(frozen=True)

    width: int = Field(ge=MIN_SIDE, le=MAX_SIDE, description="Width in CSS pixels.")
    height: int = Field(ge=MIN_SIDE, le=MAX_SIDE, description="Height in CSS pixels.")
    scale: float = Field(default=1.0, ge=MIN_SCALE, le=MAX_SCALE, description="Device scale factor.")


PRESETS: dict[str, Viewport] = {
    "desktop": Viewport(width=1920, height=1080, scale=1),
    "laptop": Viewport(width=1366, height=768, scale=1),
    "tablet": Viewport(width=768, height=1024, scale=2),
    "phone": Viewport(width=390, height=844, scale=3),
}


def resolve_viewport(
    preset: str | None = None, width: int | None = None, height: int | None = None, scale: float | None = None
) -> Viewport:
    """The viewport named by ``preset``, or the explicit size; raises ``InvalidInput`` saying what is allowed.

    An explicit width/height/scale overrides the preset's; with neither, ``desktop`` is used.
    """
    if preset is not None and preset not in PRESETS:
        raise InvalidInput(f"Unknown viewport preset {preset[:40]!r}; use one of {', '.join(PRESETS)} or width/height.")
    base = PRESETS[preset or "desktop"]
    if (width is None) != (height is None) and preset is None:
        raise InvalidInput("Give both width and height for an explicit viewport (or a preset).")
    w = base.width if width is None else width
    h = base.height if height is None else height
    s = base.scale if scale is None else scale
    problems = []
    if not MIN_SIDE <= w <= MAX_SIDE:
        problems.append(f"width {w}")
    if not MIN_SIDE <= h <= MAX_SIDE:
        problems.append(f"height {h}")
    if not MIN_SCALE <= s <= MAX_SCALE:
        problems.append(f"scale {s}")
    if problems:
        raise InvalidInput(
            f"Invalid viewport ({', '.join(problems)}): width and height must be {MIN_SIDE}..{MAX_SIDE} CSS px, "
            f"scale {MIN_SCALE:g}..{MAX_SCALE:g}."
        )
    return Viewport(width=w, height=h, scale=s)
