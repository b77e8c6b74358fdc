"""The procedural scene renderer shared by every generator: backgrounds, shapes, distractors, noise.

A scene is drawn from a seeded `numpy.random.Generator`, so the same seed gives the same pixels on
any machine. Shapes are drawn with sub-pixel precision (OpenCV `shift`), so slow motion is smooth
and optical flow sees it. Backgrounds are muted and textured, and every scene carries static
distractors and mild sensor noise, so the answer is never readable from a flat colour or one frame.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import cv2
import numpy as np
from pydantic import BaseModel, Field, field_validator

COLORS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 180, 60),
    "blue": (50, 90, 235),
    "yellow": (235, 215, 40),
    "purple": (155, 60, 205),
    "orange": (245, 140, 30),
    "white": (242, 242, 242),
}
"""The object colours (RGB). Their names are the options of the static colour question."""

SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "diamond", "ring")
"""The object shapes. Their names are the options of the static shape question."""

SHIFT = 4
"""Sub-pixel bits for OpenCV drawing: coordinates are multiplied by 2**SHIFT."""


class SceneOptions(BaseModel):
    """How clips look: size, length, frame rate and noise. Part of a build's identity."""

    size: int = Field(default=128, ge=48, le=1024, description="frame width and height in pixels")
    n_frames: int = Field(default=16, ge=8, le=512, description="frames per clip")
    fps: float = Field(default=8.0, gt=0, le=120, description="frames per second of written clips")
    noise: float = Field(default=1.2, ge=0, le=10, description="std of per-pixel sensor noise (0-255 scale)")
    color_by_direction: dict[str, str] | None = Field(
        default=None,
        description="moving direction only: colour of the moving object per direction on original clips "
        "(a deliberate shortcut for experiments), e.g. {'right': 'red', 'left': 'blue'}",
    )
    # The moving-direction scene's difficulty, for experiments that first need a model to see motion
    # at all (dybench/lab/shortcut.py): the defaults are the benchmark's scene.
    mover_colors: list[str] | None = Field(
        default=None, min_length=1,
        description="moving direction only: colours the moving object is drawn from (default: every colour); "
        "color_by_direction wins on original clips",
    )
    mover_radius: float | None = Field(
        default=None, gt=0, le=0.2,
        description="moving direction only: the moving object's radius as a share of the frame (default 0.07-0.1 at random)",
    )
    travel: float | None = Field(
        default=None, gt=0, le=0.9,
        description="moving direction only: share of the frame the object crosses (default 0.25-0.34 at random; "
        "capped so the path fits)",
    )
    distractors: bool = Field(default=True, description="moving direction only: draw 1-3 static distractors")
    plain_background: bool = Field(
        default=False, description="moving direction only: one flat dark grey instead of a textured gradient",
    )

    @field_validator("mover_colors")
    @classmethod
    def _known_colors(cls, names: list[str] | None) -> list[str] | None:
        unknown = [name for name in names or [] if name not in COLORS]
        if unknown:
            raise ValueError(f"unknown colour {unknown[0]!r}; colours are {', '.join(COLORS)}")
        return names


@dataclass(frozen=True)
class Sprite:
    """One drawn object: shape, colour name, centre (x, y) in pixels, radius-like size in pixels."""

    shape: str
    color: str
    x: float
    y: float
    size: float
    rgb: tuple[int, int, int] | None = None  # overrides the named colour (e.g. a flash)

    def moved(self, **changes: float) -> Sprite:
        return replace(self, **changes)

    @property
    def box(self) -> tuple[float, float, float, float]:
        """(x0, y0, x1, y1) bounding box."""
        return (self.x - self.size, self.y - self.size, self.x + self.size, self.y + self.size)


def _fixed(value: float) -> int:
    return int(round(value * (1 << SHIFT)))


def _polygon(sprite: Sprite) -> np.ndarray:
    x, y, s = sprite.x, sprite.y, sprite.size
    if sprite.shape == "square":
        k = s * 0.85
        points = [(x - k, y - k), (x + k, y - k), (x + k, y + k), (x - k, y + k)]
    elif sprite.shape == "triangle":
        points = [(x, y - s), (x + s * 0.95, y + s * 0.75), (x - s * 0.95, y + s * 0.75)]
    elif sprite.shape == "diamond":
        points = [(x, y - s), (x + s * 0.8, y), (x, y + s), (x - s * 0.8, y)]
    else:
        raise ValueError(f"not a polygon shape: {sprite.shape}")
    return np.array([[_fixed(px), _fixed(py)] for px, py in points], dtype=np.int32)


def draw_sprite(canvas: np.ndarray, sprite: Sprite) -> None:
    """Draw `sprite` onto an RGB uint8 canvas in place."""
    color = sprite.rgb or COLORS[sprite.color]
    center = (_fixed(sprite.x), _fixed(sprite.y))
    if sprite.shape == "circle":
        cv2.circle(canvas, center, _fixed(sprite.size), color, -1, cv2.LINE_AA, SHIFT)
    elif sprite.shape == "ring":
        thickness = max(2, int(round(sprite.size * 0.4)))
        radius = max(1.0, sprite.size - thickness / 2)
        cv2.circle(canvas, center, _fixed(radius), color, thickness, cv2.LINE_AA, SHIFT)
    else:
        cv2.fillPoly(canvas, [_polygon(sprite)], color, cv2.LINE_AA, SHIFT)


def draw_rect(canvas: np.ndarray, x0: float, y0: float, x1: float, y1: float, rgb: tuple[int, int, int],
              thickness: int = -1) -> None:
    """Axis-aligned rectangle with sub-pixel edges (filled when thickness is -1)."""
    cv2.rectangle(canvas, (_fixed(x0), _fixed(y0)), (_fixed(x1), _fixed(y1)), rgb, thickness, cv2.LINE_AA, SHIFT)


def draw_polygon(canvas: np.ndarray, points: list[tuple[float, float]], rgb: tuple[int, int, int]) -> None:
    pts = np.array([[_fixed(x), _fixed(y)] for x, y in points], dtype=np.int32)
    cv2.fillPoly(canvas, [pts], rgb, cv2.LINE_AA, SHIFT)


def make_background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A muted two-colour gradient at a random angle, with low-frequency texture. Never close to an
    object colour: channels stay in 45..125 and nearly grey."""
    base = rng.uniform(55, 105)
    tints = [np.clip(base + rng.uniform(-14, 14, 3), 45, 125) for _ in range(2)]
    angle = rng.uniform(0, 2 * np.pi)
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32) / size
    ramp = (np.cos(angle) * (xs - 0.5) + np.sin(angle) * (ys - 0.5)) + 0.5
    ramp = np.clip(ramp, 0, 1)[..., None]
    image = tints[0][None, None, :] * (1 - ramp) + tints[1][None, None, :] * ramp
    cells = int(rng.integers(4, 9))
    texture = rng.normal(0, 7, (cells, cells)).astype(np.float32)
    texture = cv2.resize(texture, (size, size), interpolation=cv2.INTER_CUBIC)
    image = image + texture[..., None]
    return np.clip(np.round(image), 0, 255).astype(np.uint8)


def make_plain_background(rng: np.random.Generator, size: int) -> np.ndarray:
    """One flat, dark, nearly grey colour (channels 35..60): nothing in the frame but the objects."""
    base = rng.uniform(38, 56)
    tint = np.clip(base + rng.uniform(-3, 3, 3), 35, 60)
    return np.broadcast_to(np.round(tint).astype(np.uint8), (size, size, 3)).copy()


def add_noise(frames: np.ndarray, rng: np.random.Generator, sigma: float) -> np.ndarray:
    """Mild per-pixel sensor noise, independent per frame."""
    if sigma <= 0:
        return frames
    noisy = rng.standard_normal(frames.shape, dtype=np.float32)
    noisy *= sigma
    noisy += frames
    np.rint(noisy, out=noisy)
    return np.clip(noisy, 0, 255).astype(np.uint8)


Box = tuple[float, float, float, float]


def boxes_overlap(a: Box, b: Box, margin: float = 0.0) -> bool:
    return not (a[2] + margin < b[0] or b[2] + margin < a[0] or a[3] + margin < b[1] or b[3] + margin < a[1])


def place_distractors(
    rng: np.random.Generator,
    size: int,
    count: int,
    avoid: list[Box],
    exclude_colors: set[str],
    exclude_shapes: set[str],
    margin: float = 3.0,
) -> list[Sprite]:
    """Up to `count` static objects that overlap neither each other nor the `avoid` boxes, with
    colours and shapes outside the excluded sets (so "the red circle" stays unique)."""
    colors = [c for c in COLORS if c not in exclude_colors]
    shapes = [s for s in SHAPES if s not in exclude_shapes]
    placed: list[Sprite] = []
    taken = list(avoid)
    for _ in range(count):
        for _attempt in range(60):
            radius = rng.uniform(0.045, 0.07) * size
            x = rng.uniform(radius + 2, size - radius - 2)
            y = rng.uniform(radius + 2, size - radius - 2)
            sprite = Sprite(str(rng.choice(shapes)), str(rng.choice(colors)), x, y, radius)
            if not any(boxes_overlap(sprite.box, box, margin) for box in taken):
                placed.append(sprite)
                taken.append(sprite.box)
                break
    return placed


def render_frames(background: np.ndarray, layers: list[list[Sprite]], extra=None) -> np.ndarray:
    """Frames from a background and, per frame, the sprites to draw (in order). `extra(canvas, t)`
    draws anything that is not a sprite (containers, doors, floors) before the sprites."""
    frames = np.empty((len(layers), *background.shape), dtype=np.uint8)
    for t, sprites in enumerate(layers):
        canvas = background.copy()
        if extra is not None:
            extra(canvas, t)
        for sprite in sprites:
            draw_sprite(canvas, sprite)
        frames[t] = canvas
    return frames


def color_mask(frames: np.ndarray, rgb: tuple[int, int, int], tolerance: float = 45.0) -> np.ndarray:
    """Boolean (T, H, W): pixels within `tolerance` (Euclidean, RGB) of a colour."""
    diff = frames.astype(np.int32) - np.array(rgb, dtype=np.int32)
    return (diff * diff).sum(axis=-1) < tolerance * tolerance


def object_name(sprite: Sprite) -> str:
    return f"{sprite.color} {sprite.shape}"
