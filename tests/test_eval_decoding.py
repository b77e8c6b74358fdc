"""How `dybench eval` samples clips: the frames a clip has, never one twice, and the run says so."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dybench.backends.registry import resolve_model
from dybench.build import build_synthetic
from dybench.families import load_data
from dybench.evaluate import decode_item, run_eval, video_settings


@pytest.fixture(scope="module")
def eight_frame_set(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("short") / "data"
    build_synthetic(folder, tasks=["moving_direction"], pairs_per_task=2, seed=0, progress=False, size=48, n_frames=8)
    return folder


def test_a_clip_shorter_than_asked_shows_each_frame_once(eight_frame_set):
    dataset = load_data(str(eight_frame_set))
    settings = video_settings(resolve_model("baseline:constant"), 16, None, None, None, None)
    decoded = decode_item(dataset, dataset.items[0], settings)
    assert decoded.error is None
    assert decoded.clip.indices == list(range(8))
    assert len(decoded.clip.frames) == 8


def test_run_json_and_scores_note_clips_with_fewer_frames_than_asked(eight_frame_set, tmp_path):
    out = tmp_path / "run"
    scores = run_eval("baseline:constant", str(eight_frame_set), out, num_frames=16, progress=False)
    rows = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert rows and all(row["n_frames"] == 8 for row in rows)
    note = "4 clips have fewer frames than the 16 asked for (fewest: 8); they were shown each of their frames once"
    assert any(n.startswith(note) for n in json.loads((out / "run.json").read_text())["notes"])
    assert any(n.startswith(note) for n in scores["notes"])
    # Asking for no more than the clips have: nothing to say, nothing recorded.
    exact = tmp_path / "exact"
    run_eval("baseline:constant", str(eight_frame_set), exact, num_frames=8, progress=False)
    assert json.loads((exact / "run.json").read_text())["notes"] == []
    assert all("n_frames" not in json.loads(line) for line in (exact / "predictions.jsonl").read_text().splitlines())
