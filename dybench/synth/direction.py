"""Moving direction: one object crosses part of the frame among static distractors.

The start position is random along the whole free range, the path covers only a quarter to a third
of the frame, and the object drifts a little sideways, so no single frame tells the direction.
The label check is optical flow (Farneback) over the whole frame: the dominant mean motion.
"""

from __future__ import annotations

import cv2
import numpy as np

from dybench.synth.base import Rendered
from dybench.synth.scene import (
    COLORS,
    SHAPES,
    SceneOptions,
    Sprite,
    add_noise,
    make_background,
    make_plain_background,
    object_name,
    place_distractors,
    render_frames,
)

DIRECTIONS = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1)}


def render(rng: np.random.Generator, options: SceneOptions, variant: str, key: str) -> Rendered:
    size, n = options.size, options.n_frames
    dx, dy = DIRECTIONS[key]
    color = (options.color_by_direction or {}).get(key) or str(rng.choice(options.mover_colors or list(COLORS)))
    shape = str(rng.choice(SHAPES))
    radius = (options.mover_radius or rng.uniform(0.07, 0.1)) * size
    margin = radius + 2
    distance = min((options.travel or rng.uniform(0.25, 0.34)) * size, size - 2 * margin - 1)
    # Along the motion axis: the start is uniform over every position that keeps the path inside.
    start_along = rng.uniform(margin, size - margin - distance)
    across = rng.uniform(margin + 4, size - margin - 4)
    drift = rng.uniform(-0.03, 0.03) * size
    ts = np.linspace(0.0, 1.0, n)
    along = start_along + distance * ts
    if dx < 0 or dy < 0:
        along = along[::-1]
    across_path = across + drift * ts
    if dx != 0:
        xs, ys = along, across_path
    else:
        xs, ys = across_path, along
    mover = Sprite(shape, color, float(xs[0]), float(ys[0]), radius)
    path_box = (min(xs) - radius, min(ys) - radius, max(xs) + radius, max(ys) + radius)
    count = int(rng.integers(1, 4)) if options.distractors else 0
    distractors = place_distractors(rng, size, count, [path_box], exclude_colors={color}, exclude_shapes={shape})
    layers = [[*distractors, mover.moved(x=float(x), y=float(y))] for x, y in zip(xs, ys)]
    background = make_plain_background(rng, size) if options.plain_background else make_background(rng, size)
    frames = add_noise(render_frames(background, layers), rng, options.noise)
    name = object_name(mover)
    return Rendered(
        frames=frames,
        variant=variant,
        key=key,
        fills={"object": name},
        facts={
            "object": name,
            "start_xy": [round(float(xs[0]), 2), round(float(ys[0]), 2)],
            "end_xy": [round(float(xs[-1]), 2), round(float(ys[-1]), 2)],
            "n_distractors": len(distractors),
        },
        # How many distractors: a static question only where there is at least one to count.
        static={"static_color": color, "static_shape": shape,
                **({"static_count": str(len(distractors))} if distractors else {})},
        static_fills={"shape": shape, "color": color},
    )


FLOW_WIDTH = 64
"""Frames are shrunk to this width before optical flow: 4x fewer pixels at 128, same verdicts."""


def mean_flow(frames: np.ndarray, min_magnitude: float = 0.4) -> tuple[float, float]:
    """Mean Farneback flow (dx, dy) in pixels per frame (of the full-size clip) over pixels that
    clearly move."""
    scale = min(1.0, FLOW_WIDTH / frames.shape[2])
    grays = []
    for frame in frames:
        gray = cv2.GaussianBlur(cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY), (5, 5), 0)
        if scale < 1.0:
            gray = cv2.resize(gray, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        grays.append(gray)
    total = np.zeros(2)
    count = 0
    for prev, nxt in zip(grays, grays[1:]):
        flow = cv2.calcOpticalFlowFarneback(prev, nxt, None, 0.5, 2, 9, 2, 5, 1.1, 0)
        moving = np.linalg.norm(flow, axis=-1) > min_magnitude * scale
        if moving.any():
            total += flow[moving].sum(axis=0)
            count += int(moving.sum())
    if count == 0:
        return 0.0, 0.0
    return float(total[0] / count / scale), float(total[1] / count / scale)


def direction_of_flow(dx: float, dy: float, dominance: float = 2.0) -> str | None:
    """The direction whose axis clearly dominates the mean flow, or None when unclear."""
    if max(abs(dx), abs(dy)) < 0.2:
        return None
    if abs(dx) > dominance * abs(dy):
        return "right" if dx > 0 else "left"
    if abs(dy) > dominance * abs(dx):
        return "down" if dy > 0 else "up"
    return None


def measure(frames: np.ndarray, rendered: Rendered, boundary: int | None = None) -> str | None:
    return direction_of_flow(*mean_flow(frames))
