"""`dybench build-pairs --from-videos`: pairs from the user's own clips, labelled through the task
table, resumable, and one clear line (file:line) for every bad annotation or video."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cli_errors import assert_one_line_error
from dybench.build import build_from_videos
from dybench.families import load_data
from dybench.errors import DyBenchError
from dybench.synth import GENERATORS, SceneOptions
from dybench.synth.direction import direction_of_flow, mean_flow
from dybench.tasks import transformed_answer
from dybench.video import apply_transform, read_frames, read_frames_pyav, write_video
from pixel_labels import pixel_answer

CLI = [sys.executable, "-c", "from dybench.cli import main; main()"]
OPTIONS = SceneOptions()


def render(task: str, variant: str, key: str, seed: int):
    return GENERATORS[task].render(np.random.default_rng(seed), OPTIONS, variant, key)


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    """A folder of 'user' clips: two moving objects, a growing shape, and two events in a row."""
    folder = tmp_path_factory.mktemp("videos")
    write_video(folder / "walk_right.mp4", render("moving_direction", "object_motion", "right", 1).frames, 8)
    write_video(folder / "sub" / "rise.mp4", render("moving_direction", "object_motion", "up", 2).frames, 8)
    write_video(folder / "balloon.mp4", render("reversible_dynamics", "grow", "grows", 3).frames, 8)
    events = render("event_sequence", "two_events", "a", 4)
    write_video(folder / "party.mp4", events.frames, 8)
    (folder / "party.json").write_text(json.dumps(events.fills))
    moving = render("moving_direction", "object_motion", "up", 5).frames
    write_video(folder / "one_frame.mp4", moving[:1], 8)
    write_video(folder / "frozen.mp4", np.repeat(moving[:1], 16, axis=0), 8)
    return folder


def annotation_lines(source: Path) -> list[dict]:
    events = json.loads((source / "party.json").read_text())
    return [
        {"video": "walk_right.mp4", "task": "moving_direction", "options": ["left", "right", "up", "down"], "answer": "right"},
        {"video": "sub/rise.mp4", "task": "moving_direction", "question": "Where does the shape go?",
         "options": ["Down", "Up"], "answer": "B"},
        {"video": "balloon.mp4", "task": "reversible_dynamics", "options": ["It shrinks", "It grows larger", "It keeps the same size"],
         "answer": "It grows larger"},
        # The clip is 16 frames at 8 fps: events in [0, 1) s and [1, 2) s.
        {"video": "party.mp4", "task": "event_sequence", "question": "Which event happens first?",
         "options": [events["event_b"], events["event_a"]], "answer": events["event_a"], "segments": [[0, 1.0], [1.0, 2.0]]},
    ]


def write_annotations(path: Path, rows: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


@pytest.fixture(scope="module")
def built(source, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("built") / "mine"
    annotations = write_annotations(out.parent / "ann.jsonl", annotation_lines(source))
    summary = build_from_videos(source, annotations, out, progress=False)
    assert summary.n_pairs == 4 and summary.n_items == 8
    return out


def pairs(folder: Path) -> dict:
    result: dict = {}
    for item in load_data(str(folder)).items:
        result.setdefault(item.pair_id, []).append(item)
    return {items[0].meta["source_video"]: items for items in result.values()}


def test_counterfactual_labels_follow_the_task_table(built):
    by_video = pairs(built)
    walk = by_video["walk_right.mp4"]
    assert [(i.transform, i.answer_text) for i in walk] == [("original", "right"), ("hflip", "left")]
    rise = by_video["rise.mp4"]
    assert [(i.transform, i.answer_text) for i in rise] == [("original", "Up"), ("reverse", "Down")]
    balloon = by_video["balloon.mp4"]
    assert [(i.transform, i.answer_text) for i in balloon] == [("original", "It grows larger"), ("reverse", "It shrinks")]
    for original, counter in by_video.values():
        assert original.answer != counter.answer
        assert transformed_answer(original, counter.transform) == counter.answer


def test_every_label_agrees_with_an_independent_pixel_reading(built):
    """Direction by optical flow, growth by area, the events' order by which object acts first."""
    items = load_data(str(built)).items
    assert {i.task for i in items} == {"moving_direction", "reversible_dynamics", "event_sequence"}
    for item in items:
        assert pixel_answer(item, read_frames(built / item.video)[0]) == item.answer, item.id


def test_counterfactual_direction_agrees_with_optical_flow(built):
    for original, counter in (pairs(built)["walk_right.mp4"], pairs(built)["rise.mp4"]):
        for item in (original, counter):
            frames, _ = read_frames(built / item.video)
            assert direction_of_flow(*mean_flow(frames)) == item.answer_text.lower(), item.id


def test_counterfactual_clips_are_exact_transforms_and_decode_with_pyav(built, source):
    for original, counter in pairs(built).values():
        frames, fps = read_frames(built / original.video)
        assert fps == pytest.approx(8)
        expected = apply_transform(frames, counter.transform, original.meta.get("segment_boundary"))
        np.testing.assert_array_equal(read_frames(built / counter.video)[0], expected)
        np.testing.assert_array_equal(read_frames_pyav(built / counter.video), expected)
    walk = pairs(built)["walk_right.mp4"][0]
    assert (built / walk.video).read_bytes() == (source / "walk_right.mp4").read_bytes()


def test_event_segments_are_cut_and_swapped(built, source):
    original, counter = pairs(built)["party.mp4"]
    assert original.meta["segment_boundary"] == 8 and counter.meta["segment_boundary"] == 8
    assert original.answer == "B" and counter.answer == "A"  # options were given as [event_b, event_a]
    full, _ = read_frames(source / "party.mp4")
    np.testing.assert_array_equal(read_frames(built / original.video)[0], full)
    np.testing.assert_array_equal(read_frames(built / counter.video)[0], np.concatenate([full[8:], full[:8]]))


def test_rerun_resumes_and_a_new_line_adds_only_its_pair(built, source, tmp_path):
    out = tmp_path / "copy"
    shutil.copytree(built, out)
    lines = annotation_lines(source)
    again = build_from_videos(source, write_annotations(tmp_path / "a.jsonl", lines), out, progress=False)
    assert (again.built_jobs, again.resumed_jobs) == (0, 4)
    extra = {"video": "walk_right.mp4", "task": "moving_direction", "options": ["left", "right"], "answer": "right",
             "transform": "reverse"}
    more = build_from_videos(source, write_annotations(tmp_path / "b.jsonl", [*lines, extra]), out, progress=False)
    assert (more.built_jobs, more.resumed_jobs, more.n_pairs) == (1, 4, 5)


def run_cli(source: Path, annotations: Path, out: Path) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, "build-pairs", "--from-videos", str(source), "--annotations", str(annotations),
                           "--out", str(out), "--no-progress"], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "COLUMNS": "200"})


GOOD = {"video": "walk_right.mp4", "task": "moving_direction", "options": ["left", "right", "up", "down"], "answer": "right"}
EVENTS = {"video": "party.mp4", "task": "event_sequence", "options": ["x", "y"], "answer": "A"}  # 2 s at 8 fps


@pytest.mark.parametrize(
    "bad, fragments",
    [
        ('{"video": "walk_right.mp4", "task": ', ["ann.jsonl:2", "not valid JSON"]),
        ({**GOOD, "task": "spinning"}, ["ann.jsonl:2", "unknown task 'spinning'"]),
        ({**GOOD, "video": "missing.mp4"}, ["ann.jsonl:2", "missing.mp4", "not found"]),
        ({**GOOD, "video": "broken.mp4"}, ["ann.jsonl:2", "broken.mp4"]),
        ({**GOOD, "answer": "sideways"}, ["ann.jsonl:2", "sideways"]),
        ({k: v for k, v in GOOD.items() if k != "options"}, ["ann.jsonl:2", "options"]),
        ({**GOOD, "options": ["north", "south"]}, ["ann.jsonl:2", "do not match"]),
        ({"video": "walk_right.mp4", "task": "event_sequence", "options": ["x", "y"], "answer": "A"},
         ["ann.jsonl:2", "segments"]),
        ({**GOOD, "options": ["up", "down"], "answer": "up", "transform": "hflip"}, ["ann.jsonl:2", "does not change"]),
        ({**GOOD, "video": "../outside.mp4"}, ["ann.jsonl:2", "outside"]),
        # Segments: the label says segments[0] happens first, so they must be real, ordered, disjoint ranges.
        (json.dumps(EVENTS)[:-1] + ', "segments": [[0, Infinity], [1, 2]]}', ["ann.jsonl:2", "segments", "finite"]),
        (json.dumps(EVENTS)[:-1] + ', "segments": [[0, 1], [NaN, 2]]}', ["ann.jsonl:2", "segments", "finite"]),
        ({**EVENTS, "segments": [[0, 1.5], [1.0, 2.0]]}, ["ann.jsonl:2", "field segments", "overlap"]),
        ({**EVENTS, "segments": [[1.0, 2.0], [0, 1.0]]}, ["ann.jsonl:2", "field segments", "time order"]),
        ({**EVENTS, "segments": [[0, 1.0], [1.0, 3.5]]}, ["ann.jsonl:2", "field segments", "3.5", "2 s"]),
        ({**EVENTS, "segments": [[1.0, 0.5], [1.0, 2.0]]}, ["ann.jsonl:2", "field segments", "start < end"]),
        # A counterfactual that is the original frame for frame would give the same pixels two labels.
        ({**GOOD, "video": "one_frame.mp4", "options": ["up", "down"], "answer": "up", "transform": "reverse"},
         ["ann.jsonl:2", "one_frame.mp4", "reverse", "same frames as the original"]),
        ({**GOOD, "video": "frozen.mp4", "options": ["up", "down"], "answer": "up", "transform": "reverse"},
         ["ann.jsonl:2", "frozen.mp4", "same frames as the original"]),
        ({**EVENTS, "video": "frozen.mp4", "segments": [[0, 1.0], [1.0, 2.0]]},
         ["ann.jsonl:2", "frozen.mp4", "swap_segments", "same frames as the original"]),
    ],
)
def test_bad_annotation_or_video_fails_with_one_line_naming_file_and_line(source, tmp_path, bad, fragments):
    (source / "broken.mp4").write_bytes(b"this is not a video" * 50)
    annotations = write_annotations(tmp_path / "ann.jsonl", [GOOD, bad])
    assert_one_line_error(run_cli(source, annotations, tmp_path / "out"), *fragments)
    # nothing of the bad line is left behind, finished or not
    assert [p.name for p in (tmp_path / "out").rglob("*.*") if p.parent.name == "videos"
            and not p.name.startswith("walk_right")] == []


def test_an_unreadable_video_keeps_the_pairs_already_built(source, tmp_path):
    (source / "broken.mp4").write_bytes(b"this is not a video" * 50)
    annotations = write_annotations(tmp_path / "ann.jsonl", [GOOD, {**GOOD, "video": "broken.mp4"}])
    with pytest.raises(DyBenchError, match="ann.jsonl:2"):
        build_from_videos(source, annotations, tmp_path / "out", progress=False)
    rows = (tmp_path / "out" / "manifest.jsonl").read_text().splitlines()
    assert len(rows) == 2 and all((tmp_path / "out" / json.loads(r)["video"]).is_file() for r in rows)
    fixed = build_from_videos(source, write_annotations(annotations, [GOOD]), tmp_path / "out", progress=False)
    assert (fixed.built_jobs, fixed.resumed_jobs) == (0, 1)
