"""Event sequence: two short events by two different objects, one after the other.

Each event starts and ends at rest (a jump, a flash, a swell, a shake), so the two segments can be
swapped without a visible cut in the objects' state. The label check looks at *where* pixels change
in each segment: the first segment's changes must lie on the object of the event said to be first,
the second segment's on the other one.
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
    make_background,
    object_name,
    place_distractors,
    render_frames,
)

EVENTS = {
    "jump": "The {name} jumps",
    "flash": "The {name} flashes",
    "swell": "The {name} swells and shrinks back",
    "shake": "The {name} shakes from side to side",
}


def event_pose(sprite: Sprite, event: str, phase: float, size: int) -> Sprite:
    """The sprite at `phase` in [0, 1] of its event (rest at 0 and 1)."""
    bump = math.sin(math.pi * phase)
    if event == "jump":
        return sprite.moved(y=sprite.y - 0.2 * size * bump)
    if event == "swell":
        return sprite.moved(size=sprite.size * (1 + 0.7 * bump))
    if event == "shake":
        return sprite.moved(x=sprite.x + 0.07 * size * math.sin(2 * math.pi * 2 * phase))
    if event == "flash":
        base = np.array(COLORS[sprite.color], dtype=np.float64)
        target = np.zeros(3) if sprite.color in ("white", "yellow") else np.full(3, 255.0)
        rgb = np.round(base + (target - base) * 0.85 * bump).astype(int)
        return Sprite(sprite.shape, sprite.color, sprite.x, sprite.y, sprite.size, rgb=tuple(int(c) for c in rgb))
    raise ValueError(f"unknown event {event}")


def motion_box(sprite: Sprite, event: str, size: int) -> tuple[float, float, float, float]:
    """Everything the sprite covers during its event."""
    x0, y0, x1, y1 = sprite.box
    if event == "jump":
        y0 -= 0.2 * size
    elif event == "swell":
        grow = 0.7 * sprite.size
        x0, y0, x1, y1 = x0 - grow, y0 - grow, x1 + grow, y1 + grow
    elif event == "shake":
        x0, x1 = x0 - 0.07 * size, x1 + 0.07 * size
    return (x0, y0, x1, y1)


def _place(rng: np.random.Generator, size: int, event: str, half: tuple[float, float, float, float],
           shape: str, color: str) -> Sprite:
    """A sprite whose whole event stays inside `half` (x0, y0, x1, y1)."""
    radius = rng.uniform(0.07, 0.085) * size
    hx0, hy0, hx1, hy1 = half
    for _ in range(100):
        sprite = Sprite(shape, color, rng.uniform(hx0, hx1), rng.uniform(hy0, hy1), radius)
        x0, y0, x1, y1 = motion_box(sprite, event, size)
        if x0 >= hx0 + 2 and y0 >= hy0 + 2 and x1 <= hx1 - 2 and y1 <= hy1 - 2:
            return sprite
    raise RuntimeError("no room for the event object")


def render(rng: np.random.Generator, options: SceneOptions, variant: str, key: str) -> Rendered:
    size, n = options.size, options.n_frames
    boundary = n // 2
    events = [str(e) for e in rng.choice(list(EVENTS), size=2, replace=False)]
    colors = [str(c) for c in rng.choice(list(COLORS), size=2, replace=False)]
    shapes = [str(s) for s in rng.choice(SHAPES, size=2, replace=False)]
    halves = [(0.0, 0.0, size / 2, float(size)), (size / 2, 0.0, float(size), float(size))]
    if rng.integers(0, 2):
        halves = [(0.0, 0.0, float(size), size / 2), (0.0, size / 2, float(size), float(size))]
    order = rng.permutation(2)
    sprites = [_place(rng, size, events[i], halves[order[i]], shapes[i], colors[i]) for i in range(2)]
    boxes = [motion_box(s, e, size) for s, e in zip(sprites, events)]
    distractors = place_distractors(rng, size, int(rng.integers(1, 3)), boxes, set(colors), set(shapes))
    # Event 0 happens in the first segment, event 1 in the second.
    segments = [(0, boundary), (boundary, n)]
    layers = []
    for t in range(n):
        posed = list(sprites)
        for i, (start, end) in enumerate(segments):
            if start <= t < end:
                phase = (t - start + 1) / (end - start + 1)
                posed[i] = event_pose(sprites[i], events[i], phase, size)
        layers.append([*distractors, *posed])
    frames = add_noise(render_frames(make_background(rng, size), layers), rng, options.noise)
    texts = [EVENTS[e].format(name=object_name(s)) for e, s in zip(events, sprites)]
    # Key "a" names the event of option a; the answer key says which of a/b comes first.
    by_key = {"a": 0, "b": 1} if key == "a" else {"a": 1, "b": 0}
    return Rendered(
        frames, variant, key,
        fills={"event_a": texts[by_key["a"]], "event_b": texts[by_key["b"]]},
        facts={"events_in_order": [events[0], events[1]], "objects_in_order": [object_name(s) for s in sprites],
               "segments": [[0, boundary], [boundary, n]]},
        boundary=boundary,
        probe={"regions": {k: [round(v, 2) for v in boxes[i]] for k, i in by_key.items()}},
    )


def changes_in(frames: np.ndarray, box: list[float], threshold: int = 20) -> int:
    """Pixels inside `box` that change clearly between consecutive frames (noise stays below)."""
    size = frames.shape[1]
    x0, y0 = max(0, int(box[0]) - 2), max(0, int(box[1]) - 2)
    x1, y1 = min(size, int(math.ceil(box[2])) + 3), min(size, int(math.ceil(box[3])) + 3)
    patch = frames[:, y0:y1, x0:x1].astype(np.int16)
    if len(patch) < 2:
        return 0
    return int((np.abs(np.diff(patch, axis=0)).max(axis=-1) > threshold).sum())


def measure(frames: np.ndarray, rendered: Rendered, boundary: int | None = None) -> str | None:
    if boundary is None:
        return None
    regions = rendered.probe["regions"]
    segments = [frames[:boundary], frames[boundary:]]
    activity = [{k: changes_in(seg, regions[k]) for k in ("a", "b")} for seg in segments]

    def dominated(seg: dict[str, int], key: str, other: str) -> bool:
        return seg[key] >= 20 and seg[key] > 4 * seg[other]

    if dominated(activity[0], "a", "b") and dominated(activity[1], "b", "a"):
        return "a"
    if dominated(activity[0], "b", "a") and dominated(activity[1], "a", "b"):
        return "b"
    return None
