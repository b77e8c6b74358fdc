"""Shortcut probes: the same items with degraded video, to see which part of a clip a model uses.

A probe replaces the pictures of a sampled clip and nothing else:

- `single-frame`: every slot shows the middle frame (one moment, no motion);
- `first-last`: the first half of the slots shows the first frame, the rest the last frame
  (the end states in order, without the motion between them);
- `shuffled`: the sampled frames in a random order, seeded by the item id (all the moments, no order);
- `blank`: uniform grey frames (no picture at all: the language-prior floor);
- `reversed`: the sampled frames backwards.

The clip keeps its length, indices and timestamps: the model is shown an ordinary video with as
many frames (so as many visual tokens, and models that need two or more frames still work) at the
same times; only what the frames show changes. Qwen-VL processors place frames in time from the
indices, so handing over the source indices of a shuffled or reversed clip would tell the model
the true order and undo the probe. Which sampled frame each slot shows is kept in
`clip.extra["probe_positions"]`.

Only `reversed` changes what is correct: a dynamic item's answer maps through the task table's
`reverse` entry (`dybench.tasks.transformed_answer`), a static item keeps its answer. Items whose
answer under reversal the table does not give (tasks that do not build pairs by reversal, such as
event_sequence, where playing backwards also runs each event backwards; items without option keys)
are left out of a reversed run.

`STATIC_PROBES` are the probes that leave no usable order of time (one moment, shuffled moments,
nothing). `first-last` is not among them: its two frames are in order, which is enough for "where
did it end up?". Temporal reliance = full P-Acc minus the best static probe's P-Acc.
"""

from __future__ import annotations

import dataclasses
import hashlib
from typing import TYPE_CHECKING

import numpy as np

from dybench.errors import DyBenchError
from dybench.schema import Item
from dybench.tasks import load_tasks, transformed_answer

if TYPE_CHECKING:
    from dybench.video import SampledClip

PROBES: tuple[str, ...] = ("single-frame", "first-last", "shuffled", "blank", "reversed")
STATIC_PROBES: tuple[str, ...] = ("single-frame", "shuffled", "blank")
GREY = 128
"""The value of every channel of a `blank` frame."""


class NoItemsUnderProbe(DyBenchError):
    """None of the chosen items can be scored under the probe (reversed on data without task tables)."""


def check_probe(name: str | None) -> str | None:
    """`name` if it is a probe (None = the full video); otherwise one line listing the probes."""
    if name is not None and name not in PROBES:
        raise DyBenchError(f"unknown probe {name!r}; choose one of {', '.join(PROBES)}")
    return name


def item_seed(item_id: str) -> int:
    """The shuffle seed of an item: the same order on every run, resume, batch size and shard."""
    return int.from_bytes(hashlib.sha256(f"shuffled:{item_id}".encode()).digest()[:8], "big")


def shuffled_positions(n: int, seed: int) -> list[int]:
    """A seeded random order of n positions that is never the original order (when n >= 2)."""
    rng = np.random.default_rng(seed)
    while True:
        order = [int(p) for p in rng.permutation(n)]
        if n < 2 or order != list(range(n)):
            return order


def probe_positions(probe: str, n: int, seed: int) -> list[int]:
    """Which of the n sampled frames each of the n slots shows under `probe` (not `blank`)."""
    if probe == "single-frame":
        return [n // 2] * n
    if probe == "first-last":
        return [0] * ((n + 1) // 2) + [n - 1] * (n // 2)
    if probe == "shuffled":
        return shuffled_positions(n, seed)
    if probe == "reversed":
        return list(range(n - 1, -1, -1))
    raise DyBenchError(f"probe {probe!r} does not pick frames")


def probe_frames(probe: str, frames: np.ndarray, seed: int) -> tuple[np.ndarray, list[int] | None]:
    """The degraded frames (same shape and dtype) and the sampled frame behind each slot
    (None for `blank`, which shows none)."""
    check_probe(probe)
    if probe == "blank":
        return np.full_like(frames, GREY), None
    positions = probe_positions(probe, len(frames), seed)
    return np.ascontiguousarray(frames[positions]), positions


def apply_probe(clip: SampledClip, probe: str | None, item_id: str) -> SampledClip:
    """The clip as the model sees it under `probe` (unchanged for None = the full video)."""
    if probe is None:
        return clip
    frames, positions = probe_frames(probe, clip.frames, item_seed(item_id))
    return dataclasses.replace(clip, frames=frames, extra={**clip.extra, "probe": probe, "probe_positions": positions})


def shown_positions(clip: SampledClip) -> list[int] | None:
    """Which sampled frame each slot of `clip` shows, in slot order: every frame in order for the
    full video, the probe's choice under a probe, None under `blank` (no slot shows the video)."""
    if "probe" not in clip.extra:
        return list(range(len(clip.indices)))
    positions = clip.extra["probe_positions"]
    return None if positions is None else list(positions)


# --- answers under a probe --------------------------------------------------------------------


def answer_when_reversed(item: Item) -> str | None:
    """The correct letter when the clip plays backwards, from the task table; None where the table
    does not say (the item is then left out of a reversed run)."""
    if item.kind == "static":
        return item.answer  # a static question's answer survives every transform
    task = load_tasks().get(item.task)
    if task is None or "reverse" not in task.pair_transforms or item.variant is None or item.option_keys is None:
        return None
    return transformed_answer(item, "reverse")


def probe_items(items: list[Item], probe: str | None) -> tuple[list[Item], list[str]]:
    """The items a run under `probe` asks, with the answers correct for what it shows, and notes
    for scores.json on anything left out."""
    if probe != "reversed":
        return list(items), []
    kept, left_out = [], []
    for item in items:
        answer = answer_when_reversed(item)
        if answer is None:
            left_out.append(item)
        else:
            kept.append(item if answer == item.answer else item.model_copy(update={"answer": answer}))
    if not kept:
        raise NoItemsUnderProbe(
            "--probe reversed: the task table gives no answer under reversal for any of these items "
            "(it needs items of DyBench's own tasks that build pairs by reversal, or static items)"
        )
    tasks = ", ".join(sorted({item.task for item in left_out}))
    notes = [f"probe reversed: {len(left_out)} items left out, the task table gives no answer for them "
             f"under reversal (tasks: {tasks})"] if left_out else []
    return kept, notes
