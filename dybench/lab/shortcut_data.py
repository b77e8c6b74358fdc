"""The shortcut lab's data: a training split with a colour cue, a decorrelated test split, and what
the cue predicts.

Both splits come from `dybench.build.build_synthetic` (moving direction only), so every label,
original or counterfactual, comes from the generator and the task table. The training split is
rendered with `color_by_direction`: on original clips the moving object's colour names its
direction (red always moves right, ...). Its counterfactual clips break that rule (a mirrored red
object moves left), so the *training view* keeps only the original clips, with their direction and
static colour questions: there the cue is always right. CRPO makes its counterfactuals on the fly
from those originals, as the paper's trainer does. The test split is rendered without the cue
(colours at random), both clips of every pair kept.

A stronger warm start can add *motion pairs*: both clips of pairs whose object has a colour that
is not a cue colour, so the warm start learns some motion where the colour says nothing, while
keeping the colour habit where it does (an instruct model that can see motion but prefers the cue).
RL always trains on the cued originals alone.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Callable, NamedTuple

from dybench.build import build_synthetic
from dybench.data import MANIFEST
from dybench.families import load_data
from dybench.schema import Item, letter
from dybench.store import read_predictions
from dybench.synth.scene import COLORS
from dybench.text_files import json_lines, read_text

TASK = "moving_direction"
VIEW_TASKS = (TASK, "static_color")
"""Questions the training view keeps: the direction question and the static colour control."""


class Splits(NamedTuple):
    train: Path
    """RL data: original clips with the cue, their direction and colour questions."""
    warm: Path
    """Warm-start data: `train`, plus both clips of motion pairs whose object has no cue colour."""
    test: Path


def build_splits(root: Path, cue: dict[str, str], train_pairs: int, test_pairs: int, seed: int, size: int,
                 frames: int, progress: bool, motion_pairs: int = 0) -> Splits:
    """The lab's datasets under `root`; each build resumes where an earlier run stopped."""
    scene = dict(size=size, n_frames=frames)
    build_synthetic(root / "train-build", tasks=[TASK], pairs_per_task=train_pairs, seed=seed, split="train",
                    progress=progress, color_by_direction=cue, **scene)
    # Other seeds: no test or motion clip is a copy of a training clip.
    build_synthetic(root / "test", tasks=[TASK], pairs_per_task=test_pairs, seed=seed + 1, split="test",
                    progress=progress, **scene)
    train = dataset_view([(root / "train-build", "", is_cued_original)], root / "train")
    if motion_pairs == 0:
        return Splits(train, train, root / "test")
    build_synthetic(root / "motion-build", tasks=[TASK], pairs_per_task=motion_pairs, seed=seed + 2, split="test",
                    progress=progress, **scene)
    cue_colors = set(cue.values())
    warm = dataset_view([(root / "train-build", "", is_cued_original),
                         (root / "motion-build", "motion-", lambda row: _row_color(row) not in cue_colors)],
                        root / "warm")
    return Splits(train, warm, root / "test")


def is_cued_original(row: dict) -> bool:
    return row["transform"] == "original" and row["task"] in VIEW_TASKS


def _row_color(row: dict) -> str | None:
    return mover_color(Item.model_validate(row))


Source = tuple[Path, str, Callable[[dict], bool]]
"""(built folder, prefix for its ids and files, which rows to keep)."""


def _manifest_rows(path: Path) -> list[dict]:
    """The rows of a built folder's manifest; a damaged line stops with its file and line."""
    return [row for _, row in json_lines(read_text(path), path, advice=f"rebuild {path.parent}")]


def dataset_view(sources: list[Source], view: Path) -> Path:
    """A dataset folder with the chosen rows of built folders (ids, pair ids and files prefixed so
    that folders cannot collide). Videos are hard-linked (copied where links are impossible); the
    folder appears whole or not at all."""
    if (view / MANIFEST).is_file():
        return view
    staging = view.with_name(f".{view.name}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    (staging / "videos").mkdir(parents=True)
    kept = []
    for build, prefix, keep in sources:
        for row in _manifest_rows(build / MANIFEST):
            if not keep(row):
                continue
            video = f"videos/{prefix}{Path(row['video']).name}"
            if not (staging / video).exists():
                try:
                    os.link(build / row["video"], staging / video)
                except OSError:
                    shutil.copy2(build / row["video"], staging / video)
            kept.append({**row, "id": prefix + row["id"], "pair_id": prefix + row["pair_id"], "video": video})
    (staging / MANIFEST).write_text("".join(json.dumps(row, sort_keys=True) + "\n" for row in kept))
    staging.rename(view)
    return view


def mover_color(item: Item) -> str | None:
    """The moving object's colour, from the scene facts the generator stored ("red circle")."""
    name = str(item.meta.get("scene", {}).get("object", ""))
    first = name.split(" ", 1)[0]
    return first if first in COLORS else None


def cue_letter(item: Item, cue: dict[str, str]) -> str | None:
    """The letter a colour-only policy answers: the direction the cue ties to the object's colour,
    or None when the colour is not a cue colour (or that direction is not among the options)."""
    by_color = {color: direction for direction, color in cue.items()}
    direction = by_color.get(mover_color(item) or "")
    if direction is None or item.option_keys is None or direction not in item.option_keys:
        return None
    return letter(item.option_keys.index(direction))


def shortcut_rate(run_dir: Path, test: Path, cue: dict[str, str]) -> tuple[float | None, int]:
    """(share of answers equal to the cue's answer, items counted): over test items whose object has
    a cue colour. On the decorrelated split a model that reads the motion scores about 1/4 (chance
    agreement); one that answers from the colour scores 1."""
    dataset = load_data(str(test))
    _, predictions = read_predictions(run_dir)
    hits = counted = 0
    for item in dataset.items:
        expected = cue_letter(item, cue)
        if expected is None:
            continue
        counted += 1
        prediction = predictions.get(item.id)
        hits += int(prediction is not None and prediction.pred == expected)
    return (hits / counted if counted else None), counted
