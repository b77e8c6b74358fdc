"""Reference baselines that need no weights: the floor, the shortcut and the pixel-level ceiling.

- `baseline:random` picks an option uniformly, seeded by (sampling seed, item id): the same run twice gives
  the same answers, whatever the batch size or shard.
- `baseline:constant` always answers A: the fixed-answer shortcut. Both clips of a DyBench pair have
  different answers, so its P-Acc is exactly 0.
- `baseline:motion` solves synthetic dynamic questions from the sampled frames alone (it never reads
  the answer): a foreground track for moving direction, a measured quantity over time for
  reversible dynamics, the timing of each object's activity for event sequence. What it cannot
  handle it declines ("cannot tell"), which is scored as invalid; `Response.extra` says why.

All three answer in text, in the form the item's prompt asks for ("Answer: B" under a lettered
prompt, "Answer: Yes" on a TimeBlind yes/no item), so their replies go through the same extraction
as a model's and the random baseline is a chance floor on every dataset family.
"""

from __future__ import annotations

import hashlib
import random
import re
import time
from typing import Any, Callable

import numpy as np

from dybench.backends.base import Request, Response, Sampling
from dybench.errors import DyBenchError
from dybench.prompts import reply_choosing
from dybench.schema import Item, letter, letter_index

DIRECTIONS = ("left", "right", "up", "down")


class _Baseline:
    name = "baseline"
    kind = ""

    def describe(self) -> dict[str, Any]:
        return {"baseline": self.kind}

    def close(self) -> None:
        return None

    def answer(self, request: Request, sampling: Sampling) -> Response:
        raise NotImplementedError

    def generate(self, requests: list[Request], sampling: Sampling) -> list[Response]:
        responses = []
        for request in requests:
            start = time.perf_counter()
            response = self.answer(request, sampling)
            response.latency_s = time.perf_counter() - start
            responses.append(response)
        return responses


class RandomBaseline(_Baseline):
    """A uniformly random option, reproducible per item id."""

    name = "baseline:random"
    kind = "random"

    def answer(self, request: Request, sampling: Sampling) -> Response:
        digest = hashlib.sha256(f"{sampling.seed}:{request.item.id}".encode()).digest()
        choice = random.Random(digest).randrange(len(request.item.options))
        return Response(text=reply_choosing(request.item, choice, request.template))


class ConstantBaseline(_Baseline):
    """Always the first option: what a model that ignores the video and the question would do."""

    name = "baseline:constant"
    kind = "constant"

    def answer(self, request: Request, sampling: Sampling) -> Response:
        return Response(text=reply_choosing(request.item, 0, request.template))


# --- the pixel-level solver -------------------------------------------------------------------

FOREGROUND_THRESHOLD = 40
"""Max channel difference (0..255) from the clip's median frame that counts as foreground."""
MIN_TRACK_SHIFT_PX = 1.0


class CannotTell(Exception):
    """The solver has no answer for this item (the reason goes into Response.extra)."""


def option_keys(item: Item, vocabulary: tuple[str, ...]) -> list[str | None]:
    """Each option's canonical key: `item.option_keys` when present (our task tables), else the one
    vocabulary word its text contains (official data), else None."""
    if item.option_keys is not None:
        return list(item.option_keys)
    keys: list[str | None] = []
    for text in item.options:
        words = set(re.findall(r"[a-z]+", text.lower()))
        found = [word for word in vocabulary if word in words]
        keys.append(found[0] if len(found) == 1 else None)
    return keys


def choose(item: Item, key: str, vocabulary: tuple[str, ...]) -> str:
    keys = option_keys(item, vocabulary)
    if key not in keys:
        raise CannotTell(f"no option means {key!r}")
    return letter(keys.index(key))


def foreground_masks(frames: np.ndarray) -> np.ndarray:
    """Per frame, the pixels that differ from the clip's median frame (what moves or changes)."""
    data = frames.astype(np.int16)
    background = np.median(data, axis=0)
    return np.abs(data - background).max(axis=-1) > FOREGROUND_THRESHOLD


def centroid_track(masks: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(t, x, y) of the foreground centroid in every frame that has foreground."""
    ts, xs, ys = [], [], []
    for t, mask in enumerate(masks):
        rows, cols = np.nonzero(mask)
        if len(rows):
            ts.append(t)
            xs.append(cols.mean())
            ys.append(rows.mean())
    return np.array(ts, float), np.array(xs), np.array(ys)


def solve_moving_direction(item: Item, frames: np.ndarray) -> str:
    """Fit a line through the track of the moving object's centroid; the dominant axis and sign."""
    ts, xs, ys = centroid_track(foreground_masks(frames))
    if len(ts) < 2:
        raise CannotTell("no moving foreground")
    dx = float(np.polyfit(ts, xs, 1)[0] * (ts[-1] - ts[0]))
    dy = float(np.polyfit(ts, ys, 1)[0] * (ts[-1] - ts[0]))
    if max(abs(dx), abs(dy)) < MIN_TRACK_SHIFT_PX:
        raise CannotTell("the foreground does not move")
    if abs(dx) >= abs(dy):
        key = "right" if dx > 0 else "left"
    else:
        key = "down" if dy > 0 else "up"  # image rows grow downwards
    return choose(item, key, DIRECTIONS)


# Pixels that are part of a scene's objects rather than its muted, nearly grey background: strongly
# coloured, or bright. (Synthetic backgrounds stay in 45..125 and nearly grey; objects are vivid.)
VIVID_SPREAD = 70
BRIGHT_MIN = 170
CHANGE_RANGE = 60


def changing_pixels(frames: np.ndarray) -> np.ndarray:
    """(H, W): pixels whose colour changes a lot at some point of the clip (static things drop out)."""
    data = frames.astype(np.int16)
    return (data.max(axis=0) - data.min(axis=0)).max(axis=-1) > CHANGE_RANGE


def vivid_pixels(frames: np.ndarray) -> np.ndarray:
    """(T, H, W): strongly coloured or bright pixels."""
    data = frames.astype(np.int16)
    spread = data.max(axis=-1) - data.min(axis=-1)
    return (spread > VIVID_SPREAD) | (data.min(axis=-1) > BRIGHT_MIN)


def bright_pixels(frames: np.ndarray) -> np.ndarray:
    return frames.min(axis=-1) > BRIGHT_MIN


def moving_objects(frames: np.ndarray) -> np.ndarray:
    """(T, H, W): vivid pixels where something changes (the process, not the static distractors)."""
    return vivid_pixels(frames) & changing_pixels(frames)[None]


def rise_or_fall(values: np.ndarray, ratio: float = 1.5) -> int:
    """+1 when the quantity ends at least `ratio` times where it started, -1 for the mirror image,
    0 when neither. Start and end are averaged over a few frames against noise."""
    k = max(1, len(values) // 8)
    first, last = float(np.mean(values[:k])), float(np.mean(values[-k:]))
    if last >= ratio * max(first, 1.0):
        return 1
    if first >= ratio * max(last, 1.0):
        return -1
    return 0


def measure_area(frames: np.ndarray) -> np.ndarray:
    """Area of the changing object (grow/shrink, liquid level)."""
    return moving_objects(frames).sum(axis=(1, 2))


def measure_light(frames: np.ndarray) -> np.ndarray:
    """Bright pixels where something changes: the light through an opening doorway."""
    return (bright_pixels(frames) & changing_pixels(frames)[None]).sum(axis=(1, 2))


def measure_tower(frames: np.ndarray) -> np.ndarray:
    """Tallest column of moving object pixels: the height of a tower of blocks."""
    return moving_objects(frames).sum(axis=1).max(axis=1)


def measure_peak_height(frames: np.ndarray) -> np.ndarray:
    """Height (rows above the bottom) of the moving object's centroid: a bouncing ball."""
    _, _, ys = centroid_track(moving_objects(frames))
    return frames.shape[1] - ys


def bounce_trend(heights: np.ndarray) -> int:
    """-1 when the highest point comes early (bounces get lower), +1 when it comes late."""
    if len(heights) < 4:
        return 0
    half = len(heights) // 2
    early, late = float(heights[:half].max()), float(heights[half:].max())
    floor = float(heights.min())
    if early - floor >= 1.3 * max(late - floor, 1.0):
        return -1
    if late - floor >= 1.3 * max(early - floor, 1.0):
        return 1
    return 0


# Per reversible process: (measure, rule, option key when it rises, option key when it falls).
REVERSIBLE: dict[str, tuple[Callable[[np.ndarray], np.ndarray], Callable[[np.ndarray], int], str, str]] = {
    "grow": (measure_area, rise_or_fall, "grows", "shrinks"),
    "fill": (measure_area, rise_or_fall, "fills", "drains"),
    "door": (measure_light, rise_or_fall, "opens", "closes"),
    "stack": (measure_tower, rise_or_fall, "stacked", "unstacked"),
    "bounce": (measure_peak_height, bounce_trend, "higher", "lower"),
}
REVERSIBLE_WORDS = tuple(word for *_, rises, falls in REVERSIBLE.values() for word in (rises, falls))


def solve_reversible(item: Item, frames: np.ndarray) -> str:
    """Measure the process's quantity over time (area, light, tower height, bounce height); its
    direction decides between the two directions of the process."""
    variant = item.variant or _guess_variant(item)
    if variant not in REVERSIBLE:
        raise CannotTell(f"no pixel measure for the {variant!r} process")
    measure, rule, rises, falls = REVERSIBLE[variant]
    values = measure(frames)
    if len(values) < 2:
        raise CannotTell("nothing changes in the clip")
    direction = rule(values)
    if direction == 0:
        raise CannotTell(f"the {variant} measure shows no clear direction")
    return choose(item, rises if direction > 0 else falls, REVERSIBLE_WORDS)


def _guess_variant(item: Item) -> str | None:
    words = set(re.findall(r"[a-z]+", " ".join(item.options).lower()))
    for variant, (*_, rises, falls) in REVERSIBLE.items():
        if {rises, falls} & words:
            return variant
    return None


def colour_mask(frames: np.ndarray, rgb: tuple[int, int, int], tolerance: int = 45) -> np.ndarray:
    diff = frames.astype(np.int32) - np.array(rgb, dtype=np.int32)
    return (diff * diff).sum(axis=-1) < tolerance * tolerance


def near(mask: np.ndarray, reach: int) -> np.ndarray:
    """The bounding box of `mask`, grown by `reach` pixels on every side."""
    rows, cols = np.nonzero(mask)
    region = np.zeros_like(mask)
    region[max(0, rows.min() - reach) : rows.max() + reach + 1, max(0, cols.min() - reach) : cols.max() + reach + 1] = True
    return region


def solve_event_sequence(item: Item, frames: np.ndarray) -> str:
    """Each option names an object by colour ("The red circle jumps"). Track each colour's pixels;
    an event shows as that mask changing between frames. The option whose activity is centred
    earlier happened first."""
    from dybench.synth.scene import COLORS  # the palette synthetic scenes are drawn with

    centres = []
    for text in item.options:
        named = [name for name in COLORS if re.search(rf"\b{name}\b", text.lower())]
        if len(named) != 1:
            raise CannotTell(f"option {text!r} names no single known colour")
        mask = colour_mask(frames, COLORS[named[0]])
        # Only around where the object rests: another object's flash can pass through this colour.
        rest = mask.mean(axis=0) >= 0.25
        if not rest.any():
            raise CannotTell(f"no {named[0]} object at rest in the clip")
        mask &= near(rest, reach=int(0.22 * frames.shape[1]))[None]
        activity = (mask[1:] ^ mask[:-1]).sum(axis=(1, 2)).astype(float)
        activity = np.clip(activity - np.median(activity), 0, None)  # anti-aliased edges flicker a little
        if activity.sum() < 10:
            raise CannotTell(f"the {named[0]} object does nothing visible")
        centres.append(float((activity * np.arange(len(activity))).sum() / activity.sum()))
    if len(set(centres)) != len(centres):
        raise CannotTell("the events happen at the same time")
    return letter(int(np.argmin(centres)))


SOLVERS: dict[str, Callable[[Item, np.ndarray], str]] = {
    "moving_direction": solve_moving_direction,
    "reversible_dynamics": solve_reversible,
    "event_sequence": solve_event_sequence,
}


class MotionBaseline(_Baseline):
    """Answers synthetic dynamic questions from the frames alone; declines everything else."""

    name = "baseline:motion"
    kind = "motion"

    def answer(self, request: Request, sampling: Sampling) -> Response:
        solver = SOLVERS.get(request.item.category)
        if solver is None:
            return Response(text="cannot tell", extra={"fallback": f"no solver for {request.item.category}"})
        try:
            choice = letter_index(solver(request.item, request.clip.frames))
            return Response(text=reply_choosing(request.item, choice, request.template))
        except CannotTell as exc:
            return Response(text="cannot tell", extra={"fallback": str(exc)})


BASELINES: dict[str, type[_Baseline]] = {
    "random": RandomBaseline,
    "constant": ConstantBaseline,
    "motion": MotionBaseline,
}


def create_baseline(name: str) -> _Baseline:
    """`baseline:random`, `baseline:constant` or `baseline:motion` (the prefix is optional). They
    take no backend options (the registry refuses any, rather than ignore them); `baseline:random`
    takes its seed from the sampling settings (`--seed`)."""
    kind = name.removeprefix("baseline:")
    if kind not in BASELINES:
        raise DyBenchError(f"unknown baseline {name!r}; known: {', '.join('baseline:' + k for k in BASELINES)}")
    return BASELINES[kind]()
