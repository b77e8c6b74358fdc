"""The shortcut lab: its data carries the cue where it should and nowhere else, `--quick` runs end to
end through the real builder, trainer and eval and writes its three files, bad input is one line."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dybench.cli import app
from dybench.families import load_data
from dybench.errors import DyBenchError
from dybench.lab.shortcut import ShortcutSettings, load_settings, prepare_folder
from dybench.lab.shortcut_data import Splits, build_splits, cue_letter, mover_color
from signal_runs import interrupt

CUE = ShortcutSettings().cue


@pytest.fixture(scope="module")
def splits(tmp_path_factory: pytest.TempPathFactory) -> Splits:
    root = tmp_path_factory.mktemp("lab") / "data"
    return build_splits(root, CUE, train_pairs=8, test_pairs=8, seed=0, size=64, frames=8, progress=False,
                        motion_pairs=8)


def test_the_cue_holds_on_every_training_question_and_not_on_the_test_split(splits: Splits) -> None:
    train, test = splits.train, splits.test
    items = load_data(str(train)).items
    assert {item.transform for item in items} == {"original"}
    assert {item.task for item in items} == {"moving_direction", "static_color"}
    direction = [item for item in items if item.task == "moving_direction"]
    assert direction and all(cue_letter(item, CUE) == item.answer for item in direction)
    test_items = load_data(str(test)).items
    assert {item.transform for item in test_items} > {"original"}  # both clips of every pair
    # Decorrelated: the colour's answer is wrong on at least one clip of every pair with a cue colour.
    by_pair: dict[str, list] = {}
    for item in test_items:
        by_pair.setdefault(item.pair_id, []).append(item)
    for pair in by_pair.values():
        if mover_color(pair[0]) in CUE.values():
            assert not all(cue_letter(item, CUE) == item.answer for item in pair)


def test_the_warm_start_adds_motion_pairs_only_where_the_colour_says_nothing(splits: Splits) -> None:
    train_ids = {item.id for item in load_data(str(splits.train)).items}
    warm = load_data(str(splits.warm)).items
    added = [item for item in warm if item.id not in train_ids]
    assert added and all(item.id.startswith("motion-") for item in added)
    assert all(mover_color(item) not in CUE.values() for item in added)
    assert {item.transform for item in added} > {"original"}


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


def test_quick_experiment_runs_end_to_end_and_writes_its_three_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if not os.environ.get("DYBENCH_CACHE"):
        monkeypatch.setenv("DYBENCH_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "lab"
    result = CliRunner().invoke(app, ["lab", "shortcut", "--out", str(out), "--quick", "--no-progress"])
    assert result.exit_code == 0, result.output
    for name in ("results.csv", "curves.png", "summary.md"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    rows = (out / "results.csv").read_text().splitlines()
    assert [row.split(",")[0] for row in rows[1:]] == ["warm-start", "grpo", "t-grpo", "crpo"]
    assert json.loads((out / "lab.json").read_text())["rl_steps"] == 2
    # A rerun reuses every finished stage.
    again = CliRunner().invoke(app, ["lab", "shortcut", "--out", str(out), "--quick", "--no-progress"])
    assert again.exit_code == 0, again.output


@pytest.mark.slow
def test_an_interrupted_quick_experiment_finishes_like_an_uninterrupted_one(tmp_path: Path, model_cache) -> None:
    """SIGINT while the warm start loads, SIGTERM in its first update, SIGTERM during an RL run:
    each rerun of the same command continues, and the results equal those of a run left alone."""
    from signal_runs import PAUSE_ENV

    def lab(out: Path) -> list[str]:
        return [sys.executable, "-m", "dybench.cli", "lab", "shortcut", "--out", str(out), "--quick", "--no-progress"]

    straight, out = tmp_path / "straight", tmp_path / "interrupted"
    done = subprocess.run(lab(straight), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]

    message = interrupt(lab(out), signal.SIGINT, lambda: (out / "warm" / ".paused-load").is_file(),
                        "the warm start's model loading", pause="load:60")
    assert "rerun the same command" in message
    message = interrupt(lab(out), signal.SIGTERM, lambda: (out / "warm" / ".paused-update").is_file(),
                        "the warm start's first update", pause="update:3")
    assert "rerun the same command" in message
    rl_run = out / "runs" / "t-grpo-seed0" / "metrics.jsonl"
    interrupt(lab(out), signal.SIGTERM, rl_run.is_file, "the second RL run")
    finished = subprocess.run(lab(out), capture_output=True, text=True)
    assert finished.returncode == 0, finished.stderr[-2000:]

    assert (out / "results.csv").read_text() == (straight / "results.csv").read_text()
    for run in sorted((straight / "runs").iterdir()):
        assert (out / "runs" / run.name / "curve.jsonl").read_text() == (run / "curve.jsonl").read_text(), run.name
    assert PAUSE_ENV not in os.environ
