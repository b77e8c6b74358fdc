"""Labels read back from decoded frames alone, independently of the generators' own checks.

Each reader looks at a clip the way a person would describe it (which way things move, whether
the filled area grows, the door's angle, how many separate blocks there are, which object acts
first) and knows only how the scenes are drawn in general (dybench/synth/*.py: a still, muted,
nearly grey background; saturated objects; a brown door in front of a bright doorway). None calls
a renderer, a generator's `measure` or the task table, and none reads a scene's colours or regions
from the manifest: the only thing taken from a row is its question's options, to name the answer.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from dybench.schema import Item, letter

HUES = {"red": 0, "orange": 15, "yellow": 27, "green": 64, "blue": 113, "purple": 140}
"""Where each colour word lies on OpenCV's hue circle (0-179)."""


def hsv(frames: np.ndarray) -> np.ndarray:
    return np.stack([cv2.cvtColor(frame, cv2.COLOR_RGB2HSV) for frame in frames]).astype(np.int16)


def saturated(frames: np.ndarray) -> np.ndarray:
    """(T, H, W): vivid pixels. The backgrounds are nearly grey, so these are objects, liquids, blocks."""
    values = hsv(frames)
    return (values[..., 1] > 140) & (values[..., 2] > 90)


def colour_mask(frames: np.ndarray, colour: str) -> np.ndarray:
    """(T, H, W): pixels of a colour word."""
    values = hsv(frames)
    hue, sat, val = values[..., 0], values[..., 1], values[..., 2]
    if colour == "white":
        return (sat < 40) & (val > 200)
    distance = np.abs(hue - HUES[colour])
    distance = np.minimum(distance, 180 - distance)
    return (distance <= 6) & (sat > 120) & (val > 90)


def trend(values: np.ndarray, margin: float) -> int:
    """+1 if `values` rise by more than `margin` from first to last and rarely fall on the way, -1
    for the mirror image, 0 otherwise."""
    change = float(values[-1]) - float(values[0])
    steps = np.diff(values.astype(np.float64))
    if change > margin and (steps >= -0.1 * abs(change)).mean() >= 0.8:
        return 1
    if change < -margin and (steps <= 0.1 * abs(change)).mean() >= 0.8:
        return -1
    return 0


# --- moving direction: optical flow -----------------------------------------------------------------


def direction_from_flow(frames: np.ndarray) -> str:
    """Mean Farneback optical flow of the moving pixels: the dominant direction."""
    total = np.zeros(2)
    for a, b in zip(frames, frames[1:]):
        g0, g1 = (cv2.GaussianBlur(cv2.cvtColor(f, cv2.COLOR_RGB2GRAY), (5, 5), 0) for f in (a, b))
        flow = cv2.calcOpticalFlowFarneback(g0, g1, None, 0.5, 3, 15, 3, 5, 1.2, 0)
        moving = np.linalg.norm(flow, axis=-1) > 0.5
        total += flow[moving].sum(axis=0)
    dx, dy = total
    if abs(dx) > abs(dy):
        return "right" if dx > 0 else "left"
    return "down" if dy > 0 else "up"


# --- reversible dynamics --------------------------------------------------------------------------


def changed_from_background(frames: np.ndarray) -> np.ndarray:
    """(T, H, W): pixels that differ clearly from the clip's median frame."""
    background = np.median(frames, axis=0)
    return np.abs(frames.astype(int) - background).max(axis=-1) > 40


def grow_key(frames: np.ndarray) -> str:
    """The object's area (pixels unlike the median frame) at the end vs the start."""
    area = changed_from_background(frames).sum(axis=(1, 2))
    return "grows" if area[-1] > area[0] else "shrinks"


def bounce_key(frames: np.ndarray) -> str:
    """The ball's highest point (smallest row of changed pixels) in the first half vs the second."""
    changed = changed_from_background(frames)
    rows = np.where(changed.any(axis=2), np.arange(frames.shape[1])[None, :], frames.shape[1])
    top = rows.min(axis=1)
    half = len(top) // 2
    return "lower" if top[:half].min() < top[half:].min() else "higher"


def fill_key(frames: np.ndarray) -> str | None:
    """Filled area: the vivid pixels (liquid; still distractors add the same count to every frame)."""
    area = saturated(frames).sum(axis=(1, 2))
    return {1: "fills", -1: "drains"}.get(trend(area, margin=0.02 * frames.shape[1] * frames.shape[2]))


def door_panel(frames: np.ndarray) -> np.ndarray:
    """(T, H, W): the brown door leaf (orange-brown hue, saturated, of middling brightness)."""
    values = hsv(frames)
    hue, sat, val = values[..., 0], values[..., 1], values[..., 2]
    return (hue >= 8) & (hue <= 20) & (sat > 100) & (val > 90) & (val < 210)


def door_angles(frames: np.ndarray) -> np.ndarray:
    """The leaf's swing angle per frame, in degrees, from its foreshortening: a leaf turned by theta
    about its vertical hinge looks cos(theta) as wide as the closed leaf (the widest one seen)."""
    panel = door_panel(frames)
    width = (panel.sum(axis=1) >= 3).sum(axis=1).astype(np.float64)  # columns the leaf covers
    return np.degrees(np.arccos(np.clip(width / max(width.max(), 1.0), 0.0, 1.0)))


def door_key(frames: np.ndarray) -> str | None:
    angles = door_angles(frames)
    return {1: "opens", -1: "closes"}.get(trend(angles, margin=45.0))


def separate_blocks(mask: np.ndarray) -> int:
    """Groups of vivid pixels that do not touch (blocks set on one another count as one tower)."""
    grown = cv2.dilate(mask.astype(np.uint8), np.ones((3, 3), np.uint8), iterations=2)
    n, _, stats, _ = cv2.connectedComponentsWithStats(grown, connectivity=8)
    return int((stats[1:, cv2.CC_STAT_AREA] >= 30).sum())


def block_counts(frames: np.ndarray) -> tuple[int, int]:
    """Separate blocks in the first and the last frame. Only pixels that differ between the two
    frames count, so the still distractors drop out and every moved block stays in."""
    moved = np.abs(frames[0].astype(int) - frames[-1].astype(int)).max(axis=-1) > 40
    vivid = saturated(frames[[0, -1]])
    return separate_blocks(vivid[0] & moved), separate_blocks(vivid[1] & moved)


def stack_key(frames: np.ndarray) -> str | None:
    """Building a tower: three separate blocks become one; taking it apart: the reverse."""
    return {(3, 1): "stacked", (1, 3): "unstacked"}.get(block_counts(frames))


REVERSIBLE = {"grow": grow_key, "fill": fill_key, "door": door_key, "stack": stack_key, "bounce": bounce_key}


# --- event sequence: who acts first ---------------------------------------------------------------


def colour_word(text: str) -> str:
    words = [w for w in text.lower().replace(".", " ").split() if w in (*HUES, "white")]
    if len(words) != 1:
        raise ValueError(f"option {text!r} names no single colour")
    return words[0]


def activity_time(frames: np.ndarray, colour: str) -> tuple[float, int]:
    """(mean frame time, amount) of the changes in the pixels of one colour: when that object acts."""
    mask = colour_mask(frames, colour)
    change = (mask[1:] ^ mask[:-1]).sum(axis=(1, 2)).astype(np.float64)
    total = change.sum()
    times = np.arange(1, len(frames))
    return (float((change * times).sum() / total) if total else math.nan), int(total)


def first_event(frames: np.ndarray, options: list[str]) -> int | None:
    """Index of the option whose object acts first, or None when the order is unclear."""
    (time_a, amount_a), (time_b, amount_b) = (activity_time(frames, colour_word(o)) for o in options)
    if min(amount_a, amount_b) < 20 or abs(time_a - time_b) < len(frames) / 4:
        return None
    return 0 if time_a < time_b else 1


# --- one entry point ---------------------------------------------------------------------------------


def pixel_answer(item: Item, frames: np.ndarray) -> str | None:
    """The answer letter the pixels of `frames` support for `item`'s question, or None if unclear."""
    if item.task == "moving_direction":
        seen = direction_from_flow(frames)
        texts = [o.lower() for o in item.options]
        return letter(texts.index(seen)) if seen in texts else None
    if item.task == "reversible_dynamics":
        key = REVERSIBLE[item.variant](frames)
        return None if key is None else letter(item.option_keys.index(key))
    if item.task == "event_sequence":
        index = first_event(frames, item.options)
        return None if index is None else letter(index)
    raise ValueError(f"no pixel reader for task {item.task}")
