"""What a prediction row records about its sample: the correct answer (`target`), whether the
answer counts as right (`correct`, by the scoring rule) and the frames sent to the model
(`frame_indices`, `frame_timestamps_s`: stream positions and presentation times, in the order
sent). They are a record: scores are recomputed without them, rows written before they existed
resume and score the same, and predictions made elsewhere need none of them."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from dybench.build import build_synthetic
from dybench.evaluate import decode_item, run_eval, score_run
from dybench.external_predictions import score_prediction_file
from dybench.families import load_data
from dybench.metrics import item_table
from dybench.prediction_rows import sent_frames
from dybench.probes import item_seed, probe_positions
from dybench.schema import RECORD_FIELDS, Prediction
from dybench.store import VideoSettings, read_predictions
from dybench.video import load_clip, write_video

CLI = [sys.executable, "-c", "from dybench.cli import main; main()"]


def dybench(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "COLUMNS": "200"})


def rows_of(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "predictions.jsonl").read_text().splitlines() if line.strip()]


def write_rows(run: Path, rows: list[dict]) -> None:
    (run / "predictions.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))


def manifest_answers(folder: Path) -> dict[str, str]:
    lines = (folder / "manifest.jsonl").read_text().splitlines()
    return {row["id"]: row["answer"] for row in map(json.loads, lines)}


def decoded_stream(path: Path) -> tuple[list[float], np.ndarray]:
    """Every frame of the file decoded by PyAV in presentation order: its time in seconds since
    the first frame (from the frame's own pts) and its pixels."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = sorted(((frame.pts, frame.to_ndarray(format="rgb24")) for frame in container.decode(stream)),
                        key=lambda pair: pair[0])
        base = Fraction(stream.time_base)
    first = frames[0][0]
    return [float((pts - first) * base) for pts, _ in frames], np.stack([pixels for _, pixels in frames])


def nearest_frames_at_rate(times: list[float], fps: float, max_frames: int) -> list[int]:
    """An independent reading of --fps/--max-frames on a constant-rate clip: the frame nearest to
    each tick k/fps within the clip, then `max_frames` of those spread evenly."""
    duration = times[-1] + (times[1] - times[0])
    ticks = [k / fps for k in range(int(duration * fps + 1e-9))]
    picked = sorted({int(np.argmin([abs(t - tick) for t in times])) for tick in ticks})
    if len(picked) > max_frames:
        picked = [picked[int((i + 0.5) * len(picked) / max_frames)] for i in range(max_frames)]
    return picked


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("rows") / "data"
    build_synthetic(folder, tasks=["moving_direction", "event_sequence", "reversible_dynamics"], pairs_per_task=2,
                    seed=5, split="train", progress=False)
    return folder


SAMPLINGS = {"num-frames": ["--num-frames", "6"], "fps": ["--fps", "3", "--max-frames", "5"]}


@pytest.fixture(scope="module")
def cli_runs(data, tmp_path_factory) -> dict[tuple[str, str], Path]:
    """`dybench eval` of both baselines under both kinds of frame sampling."""
    runs = {}
    for model in ("baseline:motion", "baseline:random"):
        for name, flags in SAMPLINGS.items():
            out = tmp_path_factory.mktemp("run") / "run"
            result = dybench("eval", "--model", model, "--data", str(data), "--out", str(out), "--no-progress", *flags)
            assert result.returncode == 0, result.stderr
            runs[model, name] = out
    return runs


@pytest.mark.parametrize("model", ["baseline:motion", "baseline:random"])
@pytest.mark.parametrize("sampling", list(SAMPLINGS))
def test_rows_carry_the_target_and_the_correctness_dybench_score_computes(cli_runs, data, model, sampling):
    run = cli_runs[model, sampling]
    rows = {row["id"]: row for row in rows_of(run)}
    answers = manifest_answers(data)
    assert set(rows) == set(answers)
    assert all(rows[row_id]["target"] == answer for row_id, answer in answers.items())
    for row in rows.values():
        assert row["correct"] == (row["pred"] is not None and row["error"] is None and row["pred"] == row["target"])
    _, predictions = read_predictions(run)
    table = item_table(load_data(str(data)), predictions).set_index("id")
    assert {row_id: row["correct"] for row_id, row in rows.items()} == table["correct"].to_dict()
    if model == "baseline:random":  # both outcomes occur, so the agreement above means something
        assert {row["correct"] for row in rows.values()} == {True, False}


@pytest.mark.parametrize("model", ["baseline:motion", "baseline:random"])
@pytest.mark.parametrize("sampling", list(SAMPLINGS))
def test_rows_name_the_frames_an_independent_decode_finds_at_those_times(cli_runs, data, model, sampling):
    dataset = load_data(str(data))
    settings = VideoSettings(num_frames=6) if sampling == "num-frames" else VideoSettings(fps=3.0, max_frames=5)
    rows = {row["id"]: row for row in rows_of(cli_runs[model, sampling])}
    for item in dataset.items:
        row = rows[item.id]
        times, pixels = decoded_stream(dataset.video_path(item))
        n = len(times)
        if sampling == "num-frames":
            expected = [int((i + 0.5) * n / 6) for i in range(6)]
        else:
            expected = nearest_frames_at_rate(times, 3.0, 5)
        assert row["frame_indices"] == expected
        assert row["frame_timestamps_s"] == pytest.approx([times[i] for i in expected], abs=1e-6)
        # The pixels at those positions are exactly what the eval loop hands the model (lossless clips).
        sent = decode_item(dataset, item, settings).clip
        assert np.array_equal(sent.frames, pixels[row["frame_indices"]])


def test_scores_ignore_a_hand_edited_correct_or_target(cli_runs, data):
    run = cli_runs["baseline:random", "num-frames"]
    honest, _ = score_run(run)
    edited = [{**row, "correct": not row["correct"], "target": "A"} for row in rows_of(run)]
    write_rows(run, edited)
    try:
        tampered, missing = score_run(run)
    finally:
        write_rows(run, [{**row, "correct": not row["correct"]} for row in edited])  # the fixture is shared
    assert missing == 0
    assert tampered == honest
    result = dybench("score", str(run))
    assert result.returncode == 0, result.stderr
    assert json.loads((run / "scores.json").read_text()) == honest


def test_a_run_of_old_shape_rows_resumes_and_scores_the_same(cli_runs, data, tmp_path):
    finished = cli_runs["baseline:motion", "num-frames"]
    full_scores = json.loads((finished / "scores.json").read_text())
    old = tmp_path / "old"
    shutil.copytree(finished, old)
    old_rows = [{k: v for k, v in row.items() if k not in RECORD_FIELDS} for row in rows_of(finished)]
    write_rows(old, old_rows)
    assert score_run(old)[0] == full_scores  # the old shape scores as it did

    write_rows(old, old_rows[: len(old_rows) // 2])  # an interrupted run from before the change
    result = dybench("eval", "--model", "baseline:motion", "--data", str(data), "--out", str(old), "--num-frames", "6")
    assert result.returncode == 0, result.stderr
    assert f"{len(old_rows) // 2} of {len(old_rows)} items already done" in result.stderr
    resumed = rows_of(old)
    assert resumed[: len(old_rows) // 2] == old_rows[: len(old_rows) // 2]  # kept as written
    assert all(set(RECORD_FIELDS) <= set(row) for row in resumed[len(old_rows) // 2 :])
    assert {row["id"] for row in resumed} == {row["id"] for row in old_rows}
    assert json.loads((old / "scores.json").read_text()) == full_scores
    assert json.loads((old / "run.json").read_text())["fingerprint"] == \
        json.loads((finished / "run.json").read_text())["fingerprint"]


def test_rows_made_elsewhere_score_with_or_without_the_record_fields(cli_runs, data, tmp_path):
    run = cli_runs["baseline:motion", "num-frames"]
    ours = json.loads((run / "scores.json").read_text())
    bare = tmp_path / "bare.jsonl"
    bare.write_text("".join(json.dumps({"id": row["id"], "output": row["output"]}) + "\n" for row in rows_of(run)))
    foreign = tmp_path / "foreign.jsonl"  # another tool's idea of these names is not read at all
    foreign.write_text("".join(json.dumps({"id": row["id"], "output": row["output"], "target": 3, "correct": "yes",
                                           "frame_indices": "all"}) + "\n" for row in rows_of(run)))
    for path in (bare, foreign):
        scores = score_prediction_file(str(data), path, tmp_path / path.stem)
        assert (scores["acc"], scores["p_acc"], scores["n_correct"]) == (ours["acc"], ours["p_acc"], ours["n_correct"])


@pytest.mark.parametrize("probe", ["shuffled", "reversed", "single-frame", "first-last", "blank"])
def test_probe_rows_record_the_frames_in_the_order_sent(cli_runs, data, tmp_path, probe):
    full = {row["id"]: row for row in rows_of(cli_runs["baseline:motion", "num-frames"])}
    run_eval("baseline:motion", str(data), tmp_path / probe, num_frames=6, probe=probe, progress=False)
    rows = rows_of(tmp_path / probe)
    assert rows
    dataset = {item.id: item for item in load_data(str(data)).items}
    for row in rows:
        sampled, times = full[row["id"]]["frame_indices"], full[row["id"]]["frame_timestamps_s"]
        if probe == "blank":
            assert row["frame_indices"] is None and row["frame_timestamps_s"] is None
            continue
        order = probe_positions(probe, len(sampled), item_seed(row["id"]))
        assert row["frame_indices"] == [sampled[p] for p in order]
        assert row["frame_timestamps_s"] == [times[p] for p in order]
        if probe == "shuffled":
            assert row["frame_indices"] != sampled and sorted(row["frame_indices"]) == sampled
        if probe == "reversed":
            assert row["frame_indices"] == sampled[::-1]
            # The target is the answer for the clip played backwards, not the manifest's.
            item = dataset[row["id"]]
            assert row["correct"] == (row["pred"] == row["target"])
            if item.kind == "dynamic" and item.task == "moving_direction":
                assert row["target"] != item.answer


def test_a_clip_cut_from_a_longer_video_is_placed_in_the_whole_stream(tmp_path):
    path = tmp_path / "long.mp4"
    frames = np.random.default_rng(0).integers(0, 255, size=(40, 16, 16, 3), dtype=np.uint8)
    write_video(path, frames, fps=10, times=[0.1 * i + (0.03 if i > 20 else 0.0) for i in range(40)])
    clip = load_clip(path, num_frames=3, frame_range=(5, 35))
    recorded = sent_frames(clip)
    times, pixels = decoded_stream(path)
    assert recorded["frame_indices"] == [5 + i for i in clip.indices] == [10, 20, 30]
    assert recorded["frame_timestamps_s"] == pytest.approx([times[i] for i in recorded["frame_indices"]], abs=1e-6)
    assert np.array_equal(clip.frames, pixels[recorded["frame_indices"]])


def test_a_video_that_does_not_decode_gets_a_wrong_row_without_frames(data, tmp_path):
    broken = tmp_path / "data"
    shutil.copytree(data, broken)
    item = load_data(str(broken)).items[0]
    (broken / item.video).write_bytes(b"not a video")
    run_eval("baseline:motion", str(broken), tmp_path / "run", num_frames=6, progress=False)
    row = next(row for row in rows_of(tmp_path / "run") if row["id"] == item.id)
    assert row["error"].startswith("video:")
    assert (row["target"], row["correct"], row["frame_indices"], row["frame_timestamps_s"]) == \
        (item.answer, False, None, None)
    assert Prediction.model_validate(row).correct is False


def test_on_timeblind_correct_follows_its_own_reader_not_the_stored_letter(tmp_path):
    from test_timeblind import write_timeblind

    from dybench.prediction_rows import with_outcome

    path = write_timeblind(tmp_path / "TimeBlind", n_instances=2)
    dataset = load_data(f"timeblind:{path}")
    item = next(item for item in dataset.items if item.meta["type"] == "multiple_choice" and item.answer == "A")
    # TimeBlind scores the raw output ("B"), whatever letter the row stores.
    row = with_outcome(Prediction(id=item.id, key="k", output="The answer is B", pred="A"), item, dataset.family)
    assert (row.target, row.correct) == ("A", False)
    assert bool(item_table(dataset, {item.id: row}).set_index("id").loc[item.id, "correct"]) is False


def test_a_timeblind_run_writes_rows_whose_correct_matches_its_scores(tmp_path):
    from test_timeblind import write_timeblind

    path = write_timeblind(tmp_path / "TimeBlind", n_instances=4)
    moving = np.zeros((12, 16, 16, 3), dtype=np.uint8)
    for row in map(json.loads, path.read_text().splitlines()):
        write_video(tmp_path / row["video_path"], moving, fps=6)
    run = tmp_path / "run"
    run_eval("baseline:random", f"timeblind:{path}", run, num_frames=4, progress=False)
    rows = rows_of(run)
    _, predictions = read_predictions(run)
    table = item_table(load_data(f"timeblind:{path}"), predictions).set_index("id")
    assert {row["id"]: row["correct"] for row in rows} == table["correct"].to_dict()
    assert {row["correct"] for row in rows} == {True, False}
    assert all(row["frame_indices"] == [1, 4, 7, 10] for row in rows)
