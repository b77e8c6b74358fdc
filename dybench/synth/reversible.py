"""Reversible dynamics: processes with a clear arrow of time, rendered forward or backward.

Variants (tasks/reversible_dynamics.yaml): an object grows or shrinks, a container fills or drains,
a door opens or closes, blocks are stacked into a tower or taken apart, a ball bounces lower and
lower (or, played backwards, higher and higher). Each label check measures one quantity from
pixels: object area, liquid area, light through the doorway, tower height, bounce peak heights.
"""

from __future__ import annotations

import math

import numpy as np

from dybench.synth.base import Rendered
from dybench.synth.scene import (
    COLORS,
    SHAPES,
    SceneOptions,
    Sprite,
    add_noise,
    color_mask,
    draw_polygon,
    draw_rect,
    make_background,
    place_distractors,
    render_frames,
)

CONTAINER_RGB = (205, 205, 210)
DOOR_RGB = (150, 95, 45)
LIGHT_RGB = (255, 246, 205)
FLOOR_RGB = (35, 35, 40)
LIQUIDS = [c for c in COLORS if c != "white"]


def _smooth(ts: np.ndarray) -> np.ndarray:
    return ts * ts * (3 - 2 * ts)


def _trend(values: np.ndarray, ratio: float) -> int:
    """+1 if the quantity rises by `ratio` from start to end and mostly rises on the way, -1 for the
    mirror image, 0 if unclear."""
    first, last = float(values[0]), float(values[-1])
    steps = np.diff(values.astype(np.float64))
    if last >= ratio * max(first, 1.0) and (steps >= -0.02 * last).mean() > 0.8:
        return 1
    if first >= ratio * max(last, 1.0) and (steps <= 0.02 * first).mean() > 0.8:
        return -1
    return 0


def _forward(key: str, forward_key: str, values: np.ndarray) -> np.ndarray:
    """Render forward, then play the frames' schedule backwards when the key is the reverse process."""
    return values if key == forward_key else values[::-1]


# --- grow / shrink -------------------------------------------------------------------------------


def render_grow(rng: np.random.Generator, options: SceneOptions, key: str) -> Rendered:
    size, n = options.size, options.n_frames
    color, shape = str(rng.choice(list(COLORS))), str(rng.choice(SHAPES))
    small = rng.uniform(0.06, 0.08) * size
    big = min(small * rng.uniform(2.0, 2.5), 0.26 * size)
    x, y = (rng.uniform(big + 2, size - big - 2) for _ in range(2))
    radii = _forward(key, "grows", small + (big - small) * _smooth(np.linspace(0, 1, n)))
    box = (x - big, y - big, x + big, y + big)
    distractors = place_distractors(rng, size, int(rng.integers(1, 4)), [box], {color}, {shape})
    layers = [[*distractors, Sprite(shape, color, x, y, float(r))] for r in radii]
    frames = add_noise(render_frames(make_background(rng, size), layers), rng, options.noise)
    name = f"{color} {shape}"
    return Rendered(
        frames, "grow", key, fills={"object": name},
        facts={"object": name, "radius_start": round(float(radii[0]), 2), "radius_end": round(float(radii[-1]), 2)},
        static={"static_color": color, "static_shape": shape},
        static_fills={"shape": shape, "color": color},
        probe={"rgb": COLORS[color]},
    )


def measure_grow(frames: np.ndarray, rendered: Rendered) -> str | None:
    area = color_mask(frames, rendered.probe["rgb"]).sum(axis=(1, 2))
    return {1: "grows", -1: "shrinks"}.get(_trend(area, 1.8))


# --- fill / drain ---------------------------------------------------------------------------------


def render_fill(rng: np.random.Generator, options: SceneOptions, key: str) -> Rendered:
    size, n = options.size, options.n_frames
    liquid = str(rng.choice(LIQUIDS))
    width, height = rng.uniform(0.24, 0.34) * size, rng.uniform(0.45, 0.6) * size
    x0 = rng.uniform(4, size - width - 4)
    y0 = rng.uniform(4, size - height - 4)
    low, high = rng.uniform(0.05, 0.15), rng.uniform(0.8, 0.92)
    levels = _forward(key, "fills", low + (high - low) * _smooth(np.linspace(0, 1, n)))
    inner = 3.0
    box = (x0, y0, x0 + width, y0 + height)
    distractors = place_distractors(rng, size, int(rng.integers(1, 4)), [box], {liquid, "white"}, set())

    def container(canvas: np.ndarray, t: int) -> None:
        depth = (height - 2 * inner) * levels[t]
        bottom = y0 + height - inner
        draw_rect(canvas, x0 + inner, bottom - depth, x0 + width - inner, bottom, COLORS[liquid])
        draw_rect(canvas, x0, y0, x0 + width, y0 + height, CONTAINER_RGB, thickness=2)

    layers = [list(distractors) for _ in range(n)]
    frames = add_noise(render_frames(make_background(rng, size), layers, container), rng, options.noise)
    return Rendered(
        frames, "fill", key,
        facts={"liquid": liquid, "level_start": round(float(levels[0]), 3), "level_end": round(float(levels[-1]), 3)},
        probe={"rgb": COLORS[liquid]},
    )


def measure_fill(frames: np.ndarray, rendered: Rendered) -> str | None:
    area = color_mask(frames, rendered.probe["rgb"]).sum(axis=(1, 2))
    return {1: "fills", -1: "drains"}.get(_trend(area, 2.5))


# --- door opens / closes ---------------------------------------------------------------------------


def render_door(rng: np.random.Generator, options: SceneOptions, key: str) -> Rendered:
    size, n = options.size, options.n_frames
    width, height = rng.uniform(0.24, 0.32) * size, rng.uniform(0.5, 0.62) * size
    x0 = rng.uniform(0.12 * size, size - width - 0.12 * size)
    y0 = rng.uniform(0.12 * size, size - height - 4)
    hinge_left = bool(rng.integers(0, 2))
    angles = _forward(key, "opens", np.radians(rng.uniform(75, 82)) * _smooth(np.linspace(0, 1, n)))
    bulge = 0.1 * height
    box = (x0 - 0.12 * size, y0 - bulge, x0 + width + 0.12 * size, y0 + height + bulge)
    distractors = place_distractors(rng, size, int(rng.integers(1, 4)), [box], {"white", "orange"}, set())

    def door(canvas: np.ndarray, t: int) -> None:
        draw_rect(canvas, x0, y0, x0 + width, y0 + height, LIGHT_RGB)
        theta = float(angles[t])
        # The free edge swings towards the viewer: narrower in x, taller (nearer) in y.
        reach = width * math.cos(theta)
        grow = bulge * math.sin(theta)
        if hinge_left:
            hinge, free = x0, x0 + reach
        else:
            hinge, free = x0 + width, x0 + width - reach
        draw_polygon(canvas, [(hinge, y0), (free, y0 - grow), (free, y0 + height + grow), (hinge, y0 + height)], DOOR_RGB)
        draw_rect(canvas, x0 - 2, y0 - 2, x0 + width + 2, y0 + height + 2, (60, 40, 25), thickness=2)

    layers = [list(distractors) for _ in range(n)]
    frames = add_noise(render_frames(make_background(rng, size), layers, door), rng, options.noise)
    return Rendered(
        frames, "door", key,
        facts={"hinge": "left" if hinge_left else "right",
               "angle_start_deg": round(math.degrees(float(angles[0])), 1),
               "angle_end_deg": round(math.degrees(float(angles[-1])), 1)},
        probe={"rgb": LIGHT_RGB},
    )


def measure_door(frames: np.ndarray, rendered: Rendered) -> str | None:
    light = color_mask(frames, rendered.probe["rgb"], tolerance=30).sum(axis=(1, 2))
    return {1: "opens", -1: "closes"}.get(_trend(light, 3.0))


# --- stack / unstack --------------------------------------------------------------------------------


def render_stack(rng: np.random.Generator, options: SceneOptions, key: str) -> Rendered:
    size, n = options.size, options.n_frames
    colors = [str(c) for c in rng.choice(LIQUIDS, size=3, replace=False)]
    block = rng.uniform(0.1, 0.12) * size
    floor = rng.uniform(0.84, 0.9) * size
    # Four floor slots: one is the tower's, the others hold the loose blocks.
    slot_width = (size - 8) / 4
    slots = [4 + slot_width * (i + 0.5) for i in range(4)]
    tower_slot = int(rng.integers(0, 4))
    tower_x = slots[tower_slot]
    loose = [slots[i] for i in range(4) if i != tower_slot]
    order = rng.permutation(3)
    lift = rng.uniform(0.6, 1.0) * block
    starts = [(loose[i], floor - block / 2) for i in order]
    ends = [(tower_x, floor - block / 2 - block * level) for level in range(3)]
    ts = _forward(key, "stacked", np.linspace(0, 1, n))

    def blocks_at(progress: float) -> list[tuple[float, float]]:
        positions = []
        for i in range(3):
            p = float(np.clip(progress * 3 - i, 0, 1))
            p_smooth = p * p * (3 - 2 * p)
            (sx, sy), (ex, ey) = starts[i], ends[i]
            top = min(sy, ey) - lift
            x = sx + (ex - sx) * p_smooth
            y = sy + (ey - sy) * p_smooth - (max(sy, ey) - top - abs(ey - sy) / 2) * math.sin(math.pi * p) * 0.9
            positions.append((x, y))
        return positions

    def scene(canvas: np.ndarray, t: int) -> None:
        draw_rect(canvas, 0, floor, size, size, FLOOR_RGB)
        for (x, y), color in zip(blocks_at(float(ts[t])), colors):
            half = block / 2 - 0.5
            draw_rect(canvas, x - half, y - half, x + half, y + half, COLORS[color])

    work_top = floor - 3 * block - lift - block
    distractors = place_distractors(rng, size, int(rng.integers(0, 3)), [(0, work_top, size, size)], set(colors), set())
    layers = [list(distractors) for _ in range(n)]
    frames = add_noise(render_frames(make_background(rng, size), layers, scene), rng, options.noise)
    return Rendered(
        frames, "stack", key,
        facts={"blocks": colors, "tower_slot": tower_slot},
        probe={"rgbs": [COLORS[c] for c in colors]},
    )


def tower_height(frames: np.ndarray, rgbs: list[tuple[int, int, int]]) -> np.ndarray:
    """Per frame, the tallest column of block-coloured pixels."""
    mask = np.zeros(frames.shape[:3], dtype=bool)
    for rgb in rgbs:
        mask |= color_mask(frames, rgb, tolerance=40)
    return mask.sum(axis=1).max(axis=1)


def measure_stack(frames: np.ndarray, rendered: Rendered) -> str | None:
    heights = tower_height(frames, rendered.probe["rgbs"])
    first, last = float(heights[0]), float(heights[-1])
    if last >= 2.4 * max(first, 1.0):
        return "stacked"
    if first >= 2.4 * max(last, 1.0):
        return "unstacked"
    return None


# --- bounce ----------------------------------------------------------------------------------------


def bounce_heights(n: int, fall_frames: float, restitution: float, drop: float, phase: float) -> np.ndarray:
    """Height above the floor at each frame of a ball dropped from `drop` (no air, elastic loss)."""
    g = 2 * drop / fall_frames**2
    heights = np.zeros(n)
    for i in range(n):
        t = i + phase
        v = math.sqrt(2 * g * drop)  # speed at the first impact
        if t < fall_frames:
            heights[i] = drop - 0.5 * g * t * t
            continue
        t -= fall_frames
        while True:
            v *= restitution
            period = 2 * v / g
            if period < 0.05:
                heights[i] = 0.0
                break
            if t < period:
                heights[i] = v * t - 0.5 * g * t * t
                break
            t -= period
    return heights


def render_bounce(rng: np.random.Generator, options: SceneOptions, key: str) -> Rendered:
    size, n = options.size, options.n_frames
    color = str(rng.choice(list(COLORS)))
    radius = rng.uniform(0.05, 0.065) * size
    floor = rng.uniform(0.86, 0.92) * size
    drop = rng.uniform(0.55, 0.68) * size
    restitution = rng.uniform(0.62, 0.72)
    fall = rng.uniform(2.8, 3.4) * n / 16
    heights = bounce_heights(n, fall, restitution, drop, phase=rng.uniform(0, 0.3))
    travel = rng.uniform(0.2, 0.35) * size * (1 if rng.integers(0, 2) else -1)
    x_start = rng.uniform(radius + 4 + max(0, -travel), size - radius - 4 - max(0, travel))
    xs = x_start + travel * np.linspace(0, 1, n)
    ys = floor - radius - heights
    if key == "higher":
        xs, ys = xs[::-1], ys[::-1]
    box = (min(xs) - radius, min(ys) - radius, max(xs) + radius, floor)
    distractors = place_distractors(rng, size, int(rng.integers(1, 4)), [box, (0, floor - 4, size, size)],
                                    {color}, {"circle"})
    layers = [[*distractors, Sprite("circle", color, float(x), float(y), radius)] for x, y in zip(xs, ys)]

    def ground(canvas: np.ndarray, t: int) -> None:
        draw_rect(canvas, 0, floor, size, size, FLOOR_RGB)

    frames = add_noise(render_frames(make_background(rng, size), layers, ground), rng, options.noise)
    return Rendered(
        frames, "bounce", key,
        facts={"ball": f"{color} circle", "restitution": round(restitution, 3), "drop_px": round(drop, 1),
               "n_distractors": len(distractors)},
        static={"static_color": color, "static_shape": "circle", "static_count": str(len(distractors))},
        static_fills={"shape": "circle", "color": color},
        probe={"rgb": COLORS[color], "floor": floor},
    )


def peak_heights(heights: np.ndarray, min_fraction: float = 0.08) -> list[float]:
    """Heights at the tops of the bounces (local maxima, ends included), ignoring tiny hops."""
    peaks = []
    last = len(heights) - 1
    for i, h in enumerate(heights):
        left = heights[i - 1] if i > 0 else -np.inf
        right = heights[i + 1] if i < last else -np.inf
        if h > left and h >= right:
            peaks.append(float(h))
    top = max(peaks, default=0.0)
    return [p for p in peaks if p >= min_fraction * top]


def measure_bounce(frames: np.ndarray, rendered: Rendered) -> str | None:
    mask = color_mask(frames, rendered.probe["rgb"])
    if (mask.sum(axis=(1, 2)) == 0).any():
        return None
    rows = np.arange(frames.shape[1])[None, :, None]
    centre_y = (mask * rows).sum(axis=(1, 2)) / mask.sum(axis=(1, 2))
    peaks = peak_heights(rendered.probe["floor"] - centre_y)
    if len(peaks) < 3:
        return None
    if (np.array(peaks[1:]) < 0.85 * np.array(peaks[:-1])).all():
        return "lower"
    if (np.array(peaks[:-1]) < 0.85 * np.array(peaks[1:])).all():
        return "higher"
    return None


RENDERERS = {"grow": render_grow, "fill": render_fill, "door": render_door, "stack": render_stack, "bounce": render_bounce}
MEASURES = {"grow": measure_grow, "fill": measure_fill, "door": measure_door, "stack": measure_stack, "bounce": measure_bounce}


def render(rng: np.random.Generator, options: SceneOptions, variant: str, key: str) -> Rendered:
    return RENDERERS[variant](rng, options, key)


def measure(frames: np.ndarray, rendered: Rendered, boundary: int | None = None) -> str | None:
    return MEASURES[rendered.variant](frames, rendered)
