"""The shortcut lab's data: its own task table, five datasets, and what the colour cue predicts.

Every clip comes from `dybench.build.build_synthetic` (moving direction only) under the lab's task
table (`write_task_table`): two options, left and right, and a question that never names the
colour ("In which direction does the object move?"), so the cue is visual only. Mirroring and
playing backwards both flip the answer, so with two options and no null option "the answer should
change" and "the counterfactual is answered right" are the same reward.

The scene is the lab's (`LabScene`): one object on a plain dark background, no distractors, no
noise, crossing most of the frame in eight frames; the benchmark's default scene at 64x64 is not
visible to the tiny model (see README, "Shortcut lab"). Datasets, all under OUT/data:

- `control`: both clips of decorrelated pairs, every colour: can the model see motion at all?
- `cue-sft`: both clips of pairs whose object has a cue colour, each labelled with the direction
  the colour names, whatever the motion: the short lesson that gives the warm start its habit;
- `rl`: original clips rendered with the cue (red always moves right, blue left), their direction
  question and a few static colour questions; CRPO makes the counterfactuals from them on the fly;
- `test`: both clips of pairs whose object has a cue colour: each pair has one clip where the
  colour agrees with the motion and one where it conflicts (the mirror image), so every
  (colour, direction) in the test is one CRPO's counterfactual branch meets in training;
- `test-other`: both clips of pairs in the colours never used as cues: perception where the
  colour says nothing, reported apart.

Direction options are shown in one fixed order (left, right) everywhere.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

from pydantic import BaseModel, ConfigDict, Field

from dybench.build import build_synthetic
from dybench.data import MANIFEST
from dybench.families import load_data
from dybench.metrics import item_table, pair_table, scored_letter
from dybench.schema import Item, letter
from dybench.store import read_predictions
from dybench.synth.scene import COLORS
from dybench.tasks import PROJECT_TASKS
from dybench.text_files import json_lines, read_text

TASK = "moving_direction"
DIRECTIONS = ("left", "right")
"""The options of every direction question, in the order they are shown."""
STATIC_TASK = "static_color"
STATIC_TASKS = ("static_color", "static_shape", "static_count")
"""Static tasks a `train` build asks about (copied into the lab's table); the lab keeps only the colour one."""
QUESTION = "In which direction does the object move?"

TASK_TABLE = f"""\
# The shortcut lab's moving-direction task: two options, and a question that never names the colour.
name: {TASK}
category: moving_direction
kind: dynamic
description: Which way one object moves, left or right.
pair_transforms: [hflip, reverse]
variants:
  - name: object_motion
    question: "{QUESTION}"
    options:
      left: "left"
      right: "right"
    transforms:
      hflip: [[left, right]]
      reverse: [[left, right]]
"""


class LabScene(BaseModel):
    """The moving-direction scene of every lab clip (fields of `dybench.synth.scene.SceneOptions`)."""

    model_config = ConfigDict(extra="forbid")

    size: int = Field(64, ge=48, description="frame size in pixels (the tiny model keeps 64 x 64)")
    n_frames: int = Field(8, ge=8, description="frames per clip")
    mover_radius: float = Field(0.11, gt=0, le=0.2, description="object radius, share of the frame (0.11: a 14-px object at 64)")
    travel: float = Field(0.7, gt=0, le=0.9, description="share of the frame the object crosses (capped so the path fits)")
    noise: float = Field(0.0, ge=0, le=10, description="per-pixel sensor noise (std, 0-255)")
    distractors: bool = False
    plain_background: bool = True


class Splits(NamedTuple):
    control: Path
    cue_sft: Path
    rl: Path
    test: Path
    test_other: Path


def write_task_table(folder: Path) -> Path:
    """The lab's task folder: its two-way direction task, and the project's static tasks (a `train`
    build asks them); written once, read through $DYBENCH_TASKS_DIR (`lab_tasks`)."""
    if (folder / f"{TASK}.yaml").is_file():
        return folder
    staging = folder.with_name(f".{folder.name}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    for name in STATIC_TASKS:
        shutil.copy2(PROJECT_TASKS / f"{name}.yaml", staging / f"{name}.yaml")
    (staging / f"{TASK}.yaml").write_text(TASK_TABLE)
    staging.rename(folder)
    return folder


@contextmanager
def lab_tasks(folder: Path) -> Iterator[None]:
    """Use the lab's task table (builds, trainer, evals) while the experiment runs."""
    previous = os.environ.get("DYBENCH_TASKS_DIR")
    os.environ["DYBENCH_TASKS_DIR"] = str(folder)
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("DYBENCH_TASKS_DIR", None)
        else:
            os.environ["DYBENCH_TASKS_DIR"] = previous


class DataSizes(NamedTuple):
    control_pairs: int
    cue_pairs: int
    rl_pairs: int
    test_pairs: int
    other_pairs: int
    static_share: float


def build_splits(root: Path, cue: dict[str, str], sizes: DataSizes, seed: int, scene: LabScene,
                 progress: bool) -> Splits:
    """The lab's datasets under `root` (the lab's task table must be in use); every build resumes
    where an earlier run stopped. Each dataset has its own seed: no clip is a copy of another's."""
    look = scene.model_dump()
    cue_colors = sorted(set(cue.values()))
    other_colors = [color for color in COLORS if color not in cue_colors]
    color_of = {color: direction for direction, color in cue.items()}

    def build(name: str, pairs: int, offset: int, split: str = "test", **options: object) -> Path:
        folder = root / f"{name}-build"
        build_synthetic(folder, tasks=[TASK], pairs_per_task=pairs, seed=seed + offset, split=split,  # type: ignore[arg-type]
                        progress=progress, **look, **options)
        return folder

    control = dataset_view([(build("control", sizes.control_pairs, 0), is_direction)], root / "control")
    cue_sft = dataset_view([(build("cue-sft", sizes.cue_pairs, 1, mover_colors=cue_colors), is_direction)],
                           root / "cue-sft", relabel=lambda row: color_of[row_color(row) or ""])
    rl_build = build("rl", sizes.rl_pairs, 2, split="train", color_by_direction=cue)
    rl = dataset_view([(rl_build, keep_rl_rows(rl_build, sizes.static_share))], root / "rl")
    test = dataset_view([(build("test", sizes.test_pairs, 3, mover_colors=cue_colors), is_direction)], root / "test")
    other = dataset_view([(build("test-other", sizes.other_pairs, 4, mover_colors=other_colors), is_direction)],
                         root / "test-other")
    return Splits(control, cue_sft, rl, test, other)


def is_direction(row: dict) -> bool:
    return row.get("task") == TASK


def keep_rl_rows(build: Path, static_share: float) -> Callable[[dict], bool]:
    """Original clips only; every direction question, and static colour questions up to
    `static_share` of the questions kept (a static question carries no signal once it is learned)."""
    rows = [row for row in _manifest_rows(build / MANIFEST) if row["transform"] == "original"]
    n_direction = sum(is_direction(row) for row in rows)
    budget = int(static_share / (1 - static_share) * n_direction) if static_share < 1 else len(rows)
    static_ids = {row["id"] for row in rows if row["task"] == STATIC_TASK}
    kept_static = set(sorted(static_ids)[:budget])

    def keep(row: dict) -> bool:
        return row["transform"] == "original" and (is_direction(row) or row["id"] in kept_static)

    return keep


def row_color(row: dict) -> str | None:
    return mover_color(Item.model_validate(row))


def _manifest_rows(path: Path) -> list[dict]:
    """The rows of a built folder's manifest; a damaged line stops with its file and line."""
    return [row for _, row in json_lines(read_text(path), path, advice=f"rebuild {path.parent}")]


def in_fixed_order(row: dict, key: str) -> dict:
    """A direction row with options (left, right) and the answer `key`."""
    return {**row, "options": list(DIRECTIONS), "option_keys": list(DIRECTIONS), "answer": letter(DIRECTIONS.index(key))}


def answer_key(row: dict) -> str:
    return row["option_keys"][ord(row["answer"]) - ord("A")]


Source = tuple[Path, Callable[[dict], bool]]
"""(built folder, which of its rows to keep)."""


def dataset_view(sources: list[Source], view: Path, relabel: Callable[[dict], str] | None = None) -> Path:
    """A dataset folder with the chosen rows of built folders, direction options in the fixed order
    (`relabel`: the answer key to give each direction row instead of the true one). Videos are
    hard-linked (copied where links are impossible); the folder appears whole or not at all."""
    if (view / MANIFEST).is_file():
        return view
    staging = view.with_name(f".{view.name}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    (staging / "videos").mkdir(parents=True)
    kept = []
    for build, keep in sources:
        for row in _manifest_rows(build / MANIFEST):
            if not keep(row):
                continue
            if is_direction(row):
                row = in_fixed_order(row, relabel(row) if relabel else answer_key(row))
                if relabel:
                    row["meta"] = {**row.get("meta", {}), "label": "the colour's direction (cue lesson), not the motion"}
            video = f"videos/{Path(row['video']).name}"
            if not (staging / video).exists():
                try:
                    os.link(build / row["video"], staging / video)
                except OSError:
                    shutil.copy2(build / row["video"], staging / video)
            kept.append({**row, "video": video})
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


def conflicts(item: Item, cue: dict[str, str]) -> bool:
    """The object has a cue colour and moves against it (the colour's answer is wrong)."""
    expected = cue_letter(item, cue)
    return expected is not None and expected != item.answer


def shortcut_rate(run_dir: Path, test: Path, cue: dict[str, str]) -> tuple[float | None, int]:
    """(share of conflicting clips answered with the colour's direction, clips counted). 1.0: the
    colour always wins; 0.0: the motion always wins (or the answer was invalid)."""
    dataset = load_data(str(test))
    _, predictions = read_predictions(run_dir)
    hits = counted = 0
    for item in dataset.items:
        if not conflicts(item, cue):
            continue
        counted += 1
        hits += int(scored_letter(item, predictions.get(item.id), dataset.family) == cue_letter(item, cue))
    return (hits / counted if counted else None), counted


def pair_outcomes(run_dir: Path, test: Path) -> dict[str, bool]:
    """Pair id -> both clips answered right, as P-Acc counts it (a missing answer is wrong)."""
    dataset = load_data(str(test))
    _, predictions = read_predictions(run_dir)
    pairs = pair_table(item_table(dataset, predictions))
    return {str(pair): bool(right) for pair, right in zip(pairs["pair_id"], pairs["all_correct"])}
