"""Shortcut probes: what each probe shows the model, which answers are correct under it, and what the
suite concludes: a model that needs time loses its P-Acc without it, one that never looks does not."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dybench.families import load_data
from dybench.errors import DyBenchError
from dybench.evaluate import run_eval, score_run
from dybench.leaderboard import categories_of, publish, read_board
from dybench.probe_suite import ProbeSummary, read_summary, run_probe_suite
from dybench.probes import GREY, PROBES, STATIC_PROBES, answer_when_reversed, apply_probe, probe_items
from dybench.store import read_predictions, read_run_config
from dybench.tasks import transformed_answer
from dybench.video import SampledClip, load_clip
from pixel_labels import pixel_answer

CLI = [sys.executable, "-c", "from dybench.cli import main; main()"]


def dybench(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "COLUMNS": "200", **(env or {})})


def numbered_clip(n: int = 8) -> SampledClip:
    """A clip whose frame k is filled with the value 10 * (k + 1), so every frame says which it is."""
    frames = np.stack([np.full((6, 8, 3), 10 * (k + 1), np.uint8) for k in range(n)])
    indices = [3 * k for k in range(n)]
    return SampledClip(frames=frames, indices=indices, timestamps=[i / 30 for i in indices], source_fps=30.0,
                       source_n_frames=3 * n)


def shown(clip: SampledClip) -> list[int]:
    """Which original frame (0-based) each slot of a probed numbered clip shows."""
    return [int(frame[0, 0, 0]) // 10 - 1 for frame in clip.frames]


# --- what the model is shown ----------------------------------------------------------------------


@pytest.mark.parametrize("probe", PROBES)
def test_every_probe_keeps_length_shape_indices_and_timestamps(probe):
    clip = numbered_clip()
    probed = apply_probe(clip, probe, "item-1")
    assert probed.frames.shape == clip.frames.shape and probed.frames.dtype == np.uint8
    assert probed.indices == clip.indices and probed.timestamps == clip.timestamps  # still plays as a normal video
    assert probed.extra["probe"] == probe
    assert np.array_equal(clip.frames, numbered_clip().frames)  # the decoded clip itself is left alone


def test_each_probe_shows_what_its_name_says():
    clip = numbered_clip(8)
    assert shown(apply_probe(clip, "single-frame", "x")) == [4] * 8
    assert shown(apply_probe(clip, "first-last", "x")) == [0, 0, 0, 0, 7, 7, 7, 7]
    assert shown(apply_probe(clip, "reversed", "x")) == [7, 6, 5, 4, 3, 2, 1, 0]
    blank = apply_probe(clip, "blank", "x")
    assert (blank.frames == GREY).all() and blank.extra["probe_positions"] is None
    assert apply_probe(clip, None, "x") is clip  # no probe: the full video


def test_shuffled_order_is_a_seeded_permutation_per_item_never_the_original_order():
    clip = numbered_clip(8)
    first = shown(apply_probe(clip, "shuffled", "item-1"))
    assert sorted(first) == list(range(8)) and first != list(range(8))
    assert shown(apply_probe(clip, "shuffled", "item-1")) == first  # same item, same order (resume, shards)
    assert apply_probe(clip, "shuffled", "item-1").extra["probe_positions"] == first
    others = {tuple(shown(apply_probe(clip, "shuffled", f"item-{k}"))) for k in range(2, 12)}
    assert len(others) > 5
    two = numbered_clip(2)
    assert all(shown(apply_probe(two, "shuffled", f"item-{k}")) == [1, 0] for k in range(10))


# --- which answers are correct ------------------------------------------------------------------


def test_reversed_maps_dynamic_answers_through_the_task_table_and_leaves_out_what_it_cannot(synthetic_test_set):
    items = load_data(str(synthetic_test_set)).items
    probed, notes = probe_items(items, "reversed")
    by_id = {item.id: item for item in probed}
    for item in items:
        if item.task in ("moving_direction", "reversible_dynamics"):
            assert by_id[item.id].answer == transformed_answer(item, "reverse") != item.answer
            # ...and it is what the reversed frames the model is shown say, read independently
            shown_frames = apply_probe(load_clip(synthetic_test_set / item.video), "reversed", item.id).frames
            assert pixel_answer(by_id[item.id], shown_frames) == by_id[item.id].answer, item.id
        else:  # event_sequence builds no pairs by reversal: reversing also runs each event backwards
            assert item.task == "event_sequence" and item.id not in by_id
    assert len(notes) == 1 and "event_sequence" in notes[0]
    assert probe_items(items, "shuffled") == (items, [])  # only reversed changes what is correct


def test_static_questions_keep_their_answer_when_reversed(synthetic_train_set):
    static = [item for item in load_data(str(synthetic_train_set)).items if item.kind == "static"]
    assert static and all(answer_when_reversed(item) == item.answer for item in static)


def test_reversed_on_items_the_table_cannot_answer_is_a_clear_error(synthetic_test_set):
    events = [item for item in load_data(str(synthetic_test_set)).items if item.task == "event_sequence"]
    with pytest.raises(DyBenchError, match="no answer under reversal"):
        probe_items(events, "reversed")


# --- probe runs are ordinary runs -----------------------------------------------------------------


def test_a_probe_run_is_a_separate_run_that_records_its_probe_and_rescores_identically(synthetic_test_set, tmp_path):
    data = str(synthetic_test_set)
    full = tmp_path / "full"
    run_eval("baseline:motion", data, full, limit=4, progress=False)
    reversed_run = tmp_path / "reversed"
    scores = run_eval("baseline:motion", data, reversed_run, probe="reversed", progress=False)
    config = read_run_config(reversed_run)
    assert config.probe == "reversed" and read_run_config(full).probe is None
    assert config.fingerprint != read_run_config(full).fingerprint
    assert score_run(reversed_run)[0] == scores  # `dybench score` applies the same answers
    with pytest.raises(DyBenchError, match="changed: probe"):
        run_eval("baseline:motion", data, full, limit=4, probe="blank", progress=False)


def test_unknown_probe_names_fail_with_one_line(synthetic_test_set, tmp_path):
    for args in (["eval", "--probe", "sideways"], ["probe", "--probes", "blank,sideways"]):
        result = dybench(*args, "--model", "baseline:constant", "--data", str(synthetic_test_set),
                         "--out", str(tmp_path / "run"))
        assert result.returncode == 2 and "Traceback" not in result.stderr
        assert result.stderr.strip().splitlines() == [
            "error: unknown probe 'sideways'; choose one of single-frame, first-last, shuffled, blank, reversed"]
        assert not (tmp_path / "run").exists()


# --- what the suite concludes ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def motion_suite_dir(synthetic_test_set, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("probes") / "motion"
    run_probe_suite("baseline:motion", str(synthetic_test_set), folder, progress=False)
    return folder


@pytest.fixture(scope="module")
def motion_suite(motion_suite_dir) -> ProbeSummary:
    return read_summary(motion_suite_dir)


def test_motion_baseline_loses_nearly_all_its_p_acc_without_time(motion_suite):
    full = motion_suite.run("full")
    assert full.n_pairs == 12 and full.p_acc >= 0.9
    for probe in STATIC_PROBES:  # one frame, shuffled frames, no frames: at most chance for a pair (1/4)
        assert motion_suite.run(probe).p_acc <= 0.25, probe
    best = max(motion_suite.run(p).p_acc for p in STATIC_PROBES)
    assert motion_suite.temporal_reliance == pytest.approx(full.p_acc - best) and motion_suite.temporal_reliance >= 0.65
    # it follows the motion backwards: right on reversed clips, and it changes its answers
    assert motion_suite.run("reversed").p_acc >= 0.9
    assert motion_suite.reversed_answer_change.rate >= 0.9 and motion_suite.reversed_answer_change.n_items >= 12


@pytest.mark.parametrize("model", ["baseline:constant", "baseline:random"])
def test_a_model_that_never_looks_is_unchanged_by_every_probe(model, synthetic_test_set, tmp_path):
    summary = run_probe_suite(model, str(synthetic_test_set), tmp_path / "suite", limit=12, progress=False)
    answers = {run.probe: {i: p.pred for i, p in read_predictions(tmp_path / "suite" / run.run_dir)[1].items()}
               for run in summary.runs}
    full = answers["full"]
    for probe in PROBES:
        assert answers[probe] == {i: full[i] for i in answers[probe]}, probe  # the same answer to every item
    full_run = summary.run("full")
    for probe in ("single-frame", "first-last", "shuffled", "blank"):  # same items and answers: same scores
        run = summary.run(probe)
        assert (run.acc, run.p_acc, run.n_pairs) == (full_run.acc, full_run.p_acc, full_run.n_pairs)
    assert summary.temporal_reliance == 0.0
    assert summary.reversed_answer_change.rate == 0.0 and summary.reversed_answer_change.n_items > 0


def test_suite_writes_its_summary_a_chart_and_one_run_directory_per_probe(motion_suite_dir, motion_suite):
    assert [run.probe for run in motion_suite.runs] == ["full", *PROBES]
    for run in motion_suite.runs:
        config = read_run_config(motion_suite_dir / run.run_dir)
        assert config.probe == (None if run.probe == "full" else run.probe)
    chart = (motion_suite_dir / "probes.png").read_bytes()
    assert chart[:8] == b"\x89PNG\r\n\x1a\n"
    from matplotlib.image import imread

    pixels = imread(motion_suite_dir / "probes.png")
    assert pixels.shape[1] >= 600 and len({tuple(p) for p in pixels.reshape(-1, pixels.shape[-1])[::97]}) > 10


def test_publishing_a_probe_folder_adds_probe_columns_to_the_full_runs_row(motion_suite_dir, motion_suite, tmp_path):
    board_path = tmp_path / "board.csv"
    publish([motion_suite_dir, motion_suite_dir / "shuffled"], board_path)
    board = read_board(board_path)
    row = board[board["model"] == "baseline:motion"].iloc[0]
    assert row["p_acc"] == round(motion_suite.run("full").p_acc, 6)
    assert row["p_acc_single_frame"] == round(motion_suite.run("single-frame").p_acc, 6)
    assert row["temporal_reliance"] == round(motion_suite.temporal_reliance, 6)
    assert row["answer_change_reversed"] == round(motion_suite.reversed_answer_change.rate, 6)
    assert categories_of(board.columns) == ["event_sequence", "moving_direction", "reversible_dynamics"]
    # a probe run published alone is labelled as such, never as the model on the full video
    alone = board[board["model"] == "baseline:motion (probe: shuffled)"].iloc[0]
    assert alone["p_acc"] == round(motion_suite.run("shuffled").p_acc, 6) and "probe shuffled" in alone["provenance"]
    assert "| P-Acc single frame % |" in board_path.with_suffix(".md").read_text()


@pytest.mark.slow
def test_probe_command_runs_the_tiny_qwen3_vl_on_cpu_and_writes_the_files(synthetic_test_set, tmp_path):
    out = tmp_path / "tiny"
    result = dybench("probe", "--model", "tiny-random-qwen3-vl", "--backend", "hf", "--device", "cpu",
                     "--data", str(synthetic_test_set), "--limit", "2", "--num-frames", "4", "--max-tokens", "2",
                     "--out", str(out), "--no-progress", env={"DYBENCH_CACHE": str(tmp_path / "cache")})
    assert result.returncode == 0, result.stderr[-3000:]
    summary = read_summary(out)
    assert [run.probe for run in summary.runs] == ["full", *PROBES]
    assert all(run.n_items == 2 and (out / run.run_dir / "predictions.jsonl").is_file() for run in summary.runs)
    assert (out / "probes.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "temporal reliance" in result.stdout and "single-frame" in result.stdout
    assert json.loads((out / "blank" / "run.json").read_text())["probe"] == "blank"
