"""The shortcut lab: its data carries the cue where it should and nowhere else (read back from the
pixels), the question never names the colour, the control gates the RL comparison, `--quick` runs
end to end through the real builder, trainer, eval and probes and writes its report and
leaderboard, the reading states each target as measured, and bad input is one line."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import pixel_labels
from dybench.cli import app
from dybench.errors import DyBenchError
from dybench.families import load_data
from dybench.lab.report import Interval, target_lines
from dybench.lab.shortcut import RunResult, ShortcutSettings, load_settings, prepare_folder
from dybench.lab.shortcut_data import (
    QUESTION,
    DataSizes,
    LabScene,
    Splits,
    build_splits,
    conflicts,
    cue_letter,
    lab_tasks,
    mover_color,
    write_task_table,
)
from dybench.schema import Item, letter_index
from dybench.video import read_frames
from signal_runs import interrupt

CUE = ShortcutSettings().cue
SIZES = DataSizes(control_pairs=6, cue_pairs=6, rl_pairs=18, test_pairs=8, other_pairs=6, static_share=0.1)


@pytest.fixture(scope="module")
def splits(tmp_path_factory: pytest.TempPathFactory) -> Splits:
    root = tmp_path_factory.mktemp("lab")
    with lab_tasks(write_task_table(root / "tasks")):
        return build_splits(root / "data", CUE, SIZES, seed=0, scene=LabScene(), progress=False)


def items(folder: Path) -> list[Item]:
    return load_data(str(folder)).items


def true_direction(folder: Path, item: Item) -> str:
    """The direction the decoded frames show (optical flow, tests/pixel_labels.py), not a label."""
    return pixel_labels.direction_from_flow(read_frames(folder / item.video)[0])


def pixel_colour(folder: Path, item: Item) -> str:
    """The colour word most of the clip's vivid pixels have."""
    frames = read_frames(folder / item.video)[0]
    counts = {colour: int(pixel_labels.colour_mask(frames, colour).sum()) for colour in pixel_labels.HUES}
    return max(counts, key=counts.get)


def key_of(item: Item) -> str:
    return item.option_keys[letter_index(item.answer)]


def test_every_direction_question_is_two_way_in_one_order_and_never_names_the_colour(splits: Splits) -> None:
    for folder in splits:
        direction = [item for item in items(folder) if item.task == "moving_direction"]
        assert direction, folder
        for item in direction:
            assert item.question == QUESTION
            assert item.options == ["left", "right"] and item.option_keys == ["left", "right"]


def test_every_test_pair_has_one_clip_that_agrees_with_the_colour_and_one_that_conflicts(splits: Splits) -> None:
    pairs: dict[str, list[Item]] = {}
    for item in items(splits.test):
        pairs.setdefault(item.pair_id, []).append(item)
    assert len(pairs) == SIZES.test_pairs
    by_colour = {colour: direction for direction, colour in CUE.items()}
    for pair in pairs.values():
        assert len(pair) == 2
        colours = {pixel_colour(splits.test, item) for item in pair}
        assert len(colours) == 1 and colours <= set(CUE.values())
        (colour,) = colours
        shown = [true_direction(splits.test, item) for item in pair]
        assert shown == [key_of(item) for item in pair]  # the labels are what the pixels show
        assert sorted(direction == by_colour[colour] for direction in shown) == [False, True]
        assert sorted(conflicts(item, CUE) for item in pair) == [False, True]


def test_the_generalisation_split_uses_only_colours_never_used_as_cues(splits: Splits) -> None:
    other = items(splits.test_other)
    assert {mover_color(item) for item in other}.isdisjoint(CUE.values())
    assert all(cue_letter(item, CUE) is None for item in other)
    for item in other[:4]:
        assert pixel_colour(splits.test_other, item) not in CUE.values()


def test_rl_clips_carry_the_cue_and_few_static_questions(splits: Splits) -> None:
    rl = items(splits.rl)
    assert {item.transform for item in rl} == {"original"}
    direction = [item for item in rl if item.task == "moving_direction"]
    static = [item for item in rl if item.task != "moving_direction"]
    assert len(direction) == SIZES.rl_pairs
    assert {item.task for item in static} <= {"static_color"}
    assert 0 < len(static) <= SIZES.static_share * len(rl)
    by_colour = {colour: direction for direction, colour in CUE.items()}
    for item in direction:
        assert true_direction(splits.rl, item) == key_of(item) == by_colour[pixel_colour(splits.rl, item)]


def test_the_cue_lesson_labels_each_clip_with_its_colour_whatever_the_motion(splits: Splits) -> None:
    lesson = items(splits.cue_sft)
    by_colour = {colour: direction for direction, colour in CUE.items()}
    against_motion = Counter()
    for item in lesson:
        colour = pixel_colour(splits.cue_sft, item)
        assert key_of(item) == by_colour[colour]
        against_motion[true_direction(splits.cue_sft, item) != key_of(item)] += 1
    assert against_motion[True] == against_motion[False] == SIZES.cue_pairs  # one clip of each pair


def test_the_control_sees_both_clips_of_pairs_in_every_colour(splits: Splits) -> None:
    control = items(splits.control)
    assert len(control) == 2 * SIZES.control_pairs
    assert all(key_of(item) == true_direction(splits.control, item) for item in control)


def test_the_lab_scene_is_one_object_on_a_flat_background_crossing_most_of_the_frame(splits: Splits) -> None:
    item = items(splits.control)[0]
    frames = read_frames(splits.control / item.video)[0]
    pixels = frames[0].reshape(-1, 3)
    values, counts = np.unique(pixels, axis=0, return_counts=True)
    assert counts.max() / len(pixels) > 0.9  # one flat colour: no texture, gradient, noise or distractor
    moving = pixel_labels.changed_from_background(frames)
    xs = [np.nonzero(mask.any(axis=0))[0].mean() for mask in moving]
    assert abs(xs[-1] - xs[0]) > 0.6 * frames.shape[2]


def test_the_lab_task_table_is_used_only_while_the_lab_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from dybench.tasks import get_task, tasks_dir

    monkeypatch.delenv("DYBENCH_TASKS_DIR", raising=False)
    before = tasks_dir()
    with lab_tasks(write_task_table(tmp_path / "tasks")):
        assert list(get_task("moving_direction").variants[0].options) == ["left", "right"]
    assert tasks_dir() == before and "DYBENCH_TASKS_DIR" not in os.environ
    assert len(get_task("moving_direction").variants[0].options) == 4


def test_a_folder_of_another_experiment_is_refused_in_one_line(tmp_path: Path) -> None:
    prepare_folder(tmp_path / "lab", ShortcutSettings.quick())
    with pytest.raises(DyBenchError, match="other settings \\(rl_steps\\)"):
        prepare_folder(tmp_path / "lab", ShortcutSettings.quick().model_copy(update={"rl_steps": 3}))
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(DyBenchError, match="holds no shortcut experiment"):
        prepare_folder(tmp_path / "other", ShortcutSettings.quick())
    with pytest.raises(DyBenchError, match="seeds"):
        load_settings(quick=True, seeds=0)


def test_a_cue_that_is_not_two_way_is_refused_in_one_line(tmp_path: Path) -> None:
    def lab(config: str) -> subprocess.CompletedProcess:
        (tmp_path / "lab.yaml").write_text(config)
        return subprocess.run([sys.executable, "-m", "dybench.cli", "lab", "shortcut", "--out", str(tmp_path / "lab"),
                               "--config", str(tmp_path / "lab.yaml")], capture_output=True, text=True, timeout=120)

    four_way = lab("cue: {right: red, left: blue, up: green}\n")
    assert four_way.returncode == 2 and "Traceback" not in four_way.stderr
    assert "cue" in four_way.stderr and "left and right" in four_way.stderr
    assert "two different colours" in lab("cue: {right: red, left: red}\n").stderr
    assert not (tmp_path / "lab").exists()


def test_a_second_experiment_on_a_folder_in_use_stops_at_once_and_leaves_it_alone(tmp_path: Path) -> None:
    """Another process holds the folder (here: this test, through the same lock): the second
    `dybench lab shortcut` names it in one line and writes nothing."""
    from dybench.locks import file_lock, lock_path_for

    out = tmp_path / "lab"
    with file_lock(lock_path_for(out)):
        second = subprocess.run([sys.executable, "-m", "dybench.cli", "lab", "shortcut", "--out", str(out), "--quick",
                                 "--no-progress"], capture_output=True, text=True, timeout=120)
    assert second.returncode == 2 and "Traceback" not in second.stderr
    assert f"pid {os.getpid()}" in second.stderr and "use another --out" in second.stderr
    assert not out.exists()


def result(policy: str, p_acc: float, shortcut: float, other: float | None = None, seed: int | None = 0) -> RunResult:
    return RunResult(policy=policy, seed=seed, steps=1, acc=p_acc, p_acc=p_acc, shortcut_rate=shortcut,
                     same_answer_rate=None, acc_original=None, acc_counterfactual=None, invalid_rate=0.0,
                     other_p_acc=other)


def test_the_reading_states_each_target_as_measured() -> None:
    results = [result("control", 0.9, 0.0, 0.9), result("warm-start", 0.1, 0.8, 0.6, None),
               result("grpo", 0.1, 0.85), result("crpo", 0.5, 0.3)]
    lines = target_lines(results, Interval(0.4, 0.3, 0.5, 200), control_passed=True)
    assert all(line.startswith("holds") for line in lines), lines
    # CRPO only 0.1 above GRPO, and an interval that reaches 0: two targets missed, named.
    results[-1] = result("crpo", 0.2, 0.3)
    lines = target_lines(results, Interval(0.1, -0.02, 0.2, 200), control_passed=True)
    missed = [line for line in lines if line.startswith("MISSED")]
    assert len(missed) == 2 and "CRPO - GRPO P-Acc +0.10" in missed[-1] and "warm start 0.10 + 0.15" in missed[0]
    # A control below its bar: the one line says so and RL is reported as not run.
    lines = target_lines([result("control", 0.5, 0.0, 0.5)], None, control_passed=False)
    assert lines[0].startswith("MISSED: control") and "RL was not run" in lines[1]


def test_quick_experiment_runs_end_to_end_and_writes_its_report_and_leaderboard(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if not os.environ.get("DYBENCH_CACHE"):
        monkeypatch.setenv("DYBENCH_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "lab"
    result = CliRunner().invoke(app, ["lab", "shortcut", "--out", str(out), "--quick", "--no-progress"])
    assert result.exit_code == 0, result.output
    for name in ("results.csv", "curves.png", "summary.md", "leaderboard.csv", "leaderboard.md", "leaderboard.html"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    rows = (out / "results.csv").read_text().splitlines()
    assert [row.split(",")[0] for row in rows[1:]] == ["control", "warm-start", "grpo", "t-grpo", "crpo"]
    board = (out / "leaderboard.csv").read_text()
    for name in ("shortcut-lab/control-seed0", "shortcut-lab/warm-start", "shortcut-lab/crpo-seed0"):
        assert name in board
    assert json.loads((out / "lab.json").read_text())["rl_steps"] == 2
    assert "DYBENCH_TASKS_DIR" not in os.environ
    # A rerun reuses every finished stage.
    again = CliRunner().invoke(app, ["lab", "shortcut", "--out", str(out), "--quick", "--no-progress"])
    assert again.exit_code == 0, again.output


def test_a_control_below_its_bar_stops_before_any_rl(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if not os.environ.get("DYBENCH_CACHE"):
        monkeypatch.setenv("DYBENCH_CACHE", str(tmp_path / "cache"))
    config = tmp_path / "lab.yaml"
    config.write_text("control_min_p_acc: 1.0\n")  # two updates of a random model cannot reach it
    out = tmp_path / "lab"
    result = CliRunner().invoke(app, ["lab", "shortcut", "--out", str(out), "--quick", "--config", str(config)])
    assert result.exit_code == 0, result.output
    assert "no RL is run" in result.output
    assert [row.split(",")[0] for row in (out / "results.csv").read_text().splitlines()[1:]] == ["control"]
    assert not (out / "runs").exists() and not (out / "warm").exists()
    assert "RL was not run" in (out / "summary.md").read_text()


@pytest.mark.slow
def test_an_interrupted_quick_experiment_finishes_like_an_uninterrupted_one(tmp_path: Path, model_cache) -> None:
    """SIGINT while the control loads, SIGTERM in its first update, SIGTERM during an RL run:
    each rerun of the same command continues, and the results equal those of a run left alone."""
    from signal_runs import PAUSE_ENV

    def lab(out: Path) -> list[str]:
        return [sys.executable, "-m", "dybench.cli", "lab", "shortcut", "--out", str(out), "--quick", "--no-progress"]

    straight, out = tmp_path / "straight", tmp_path / "interrupted"
    done = subprocess.run(lab(straight), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]

    message = interrupt(lab(out), signal.SIGINT, lambda: (out / "control" / "seed0" / ".paused-load").is_file(),
                        "the control's model loading", pause="load:60")
    assert "rerun the same command" in message
    message = interrupt(lab(out), signal.SIGTERM, lambda: (out / "control" / "seed0" / ".paused-update").is_file(),
                        "the control's first update", pause="update:3")
    assert "rerun the same command" in message
    rl_run = out / "runs" / "t-grpo-seed0" / "metrics.jsonl"
    interrupt(lab(out), signal.SIGTERM, rl_run.is_file, "the second RL run")
    finished = subprocess.run(lab(out), capture_output=True, text=True)
    assert finished.returncode == 0, finished.stderr[-2000:]

    assert (out / "results.csv").read_text() == (straight / "results.csv").read_text()
    for run in sorted((straight / "runs").iterdir()):
        assert (out / "runs" / run.name / "curve.jsonl").read_text() == (run / "curve.jsonl").read_text(), run.name
    assert PAUSE_ENV not in os.environ


def test_an_unknown_mover_colour_is_refused_in_one_line_before_anything_is_built(tmp_path: Path) -> None:
    from dybench.build import build_synthetic

    with pytest.raises(DyBenchError, match="mover_colors.*unknown colour 'pink'"):
        build_synthetic(tmp_path / "b", tasks=["moving_direction"], pairs_per_task=1, progress=False,
                        mover_colors=["pink"])
    assert not (tmp_path / "b").exists()


def test_the_data_card_of_a_lab_build_names_its_scene(splits: Splits) -> None:
    card = (splits.control.parent / "control-build" / "README.md").read_text()
    assert "noise 0" in card
    assert "moving-direction scene {'mover_radius': 0.11, 'travel': 0.7, 'distractors': False, 'plain_background': True}" in card
    test_card = (splits.test.parent / "test-build" / "README.md").read_text()
    assert "'mover_colors': ['blue', 'red']" in test_card
