"""Every synthetic label agrees with what its decoded frames show, read by tests/pixel_labels.py
without the generator, its pixel check or the task table: the filled area for fill, the door's
angle for door, the number of separate blocks for stack, which object acts first for event sequence
(moving direction, growth and bounces too)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

import pixel_labels
from dybench.build import build_synthetic
from dybench.families import load_data
from dybench.schema import Item, letter_index
from dybench.video import read_frames


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> list[Path]:
    """10 reversible pairs (each variant with each answer as the original's, once) and 6 event pairs."""
    root = tmp_path_factory.mktemp("labels")
    build_synthetic(root / "reversible", tasks=["reversible_dynamics"], pairs_per_task=10, seed=2, progress=False)
    build_synthetic(root / "events", tasks=["event_sequence"], pairs_per_task=6, seed=2, progress=False)
    return [root / "reversible", root / "events"]


def items_of(built: list[Path], task: str, variant: str) -> list[tuple[Item, np.ndarray]]:
    found = []
    for folder in built:
        for item in load_data(str(folder)).items:
            if item.task == task and item.variant == variant:
                found.append((item, read_frames(folder / item.video)[0]))
    return found


def key_of(item: Item) -> str:
    return item.option_keys[letter_index(item.answer)]


@pytest.mark.parametrize("variant, keys", [
    ("fill", {"fills", "drains"}),
    ("door", {"opens", "closes"}),
    ("stack", {"stacked", "unstacked"}),
    ("grow", {"grows", "shrinks"}),
    ("bounce", {"lower", "higher"}),
])
def test_reversible_labels_agree_with_the_quantity_measured_from_pixels(built, variant, keys):
    clips = items_of(built, "reversible_dynamics", variant)
    assert Counter(key_of(item) for item, _ in clips) == {key: 2 for key in keys}
    for item, frames in clips:
        assert pixel_labels.pixel_answer(item, frames) == item.answer, item.id


def test_fill_is_the_filled_area_growing_or_shrinking(built):
    for item, frames in items_of(built, "reversible_dynamics", "fill"):
        area = pixel_labels.saturated(frames).sum(axis=(1, 2))
        assert (area[-1] > 2 * area[0]) == (key_of(item) == "fills"), item.id


def test_door_is_the_leaf_turning_open_or_shut(built):
    for item, frames in items_of(built, "reversible_dynamics", "door"):
        angles = pixel_labels.door_angles(frames)
        shut, open_ = (angles[0], angles[-1]) if key_of(item) == "opens" else (angles[-1], angles[0])
        assert shut < 10 and open_ > 60, (item.id, angles.round())


def test_stack_is_three_separate_blocks_becoming_one_tower_or_the_reverse(built):
    for item, frames in items_of(built, "reversible_dynamics", "stack"):
        expected = (3, 1) if key_of(item) == "stacked" else (1, 3)
        assert pixel_labels.block_counts(frames) == expected, item.id


def test_event_order_is_which_named_object_acts_first(built):
    clips = items_of(built, "event_sequence", "two_events")
    assert len(clips) == 12 and Counter(item.answer for item, _ in clips) == {"A": 6, "B": 6}
    for item, frames in clips:
        first = letter_index(item.answer)
        times = [pixel_labels.activity_time(frames, pixel_labels.colour_word(o))[0] for o in item.options]
        assert times[first] + len(frames) / 4 < times[1 - first], (item.id, times)
        assert pixel_labels.pixel_answer(item, frames) == item.answer, item.id


def test_the_readers_can_disagree_with_a_label(built):
    """They read the clip, not the row: the same clip played backwards (or its halves swapped) gives
    the other answer, and a clip where nothing moves gives none."""
    for variant in ("fill", "door", "stack"):
        item, frames = items_of(built, "reversible_dynamics", variant)[0]
        reversed_answer = pixel_labels.pixel_answer(item, frames[::-1])
        assert reversed_answer is not None and reversed_answer != item.answer, variant
        assert pixel_labels.pixel_answer(item, np.repeat(frames[:1], len(frames), axis=0)) is None, variant
    item, frames = items_of(built, "event_sequence", "two_events")[0]
    half = len(frames) // 2
    swapped = np.concatenate([frames[half:], frames[:half]])
    assert pixel_labels.pixel_answer(item, swapped) not in (None, item.answer)
    assert pixel_labels.pixel_answer(item, np.repeat(frames[:1], len(frames), axis=0)) is None
