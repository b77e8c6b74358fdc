"""`dybench build-pairs` (synthetic): every category written, clips decodable by two decoders,
answers that differ within each pair, counterfactuals that are exactly transformed originals,
labels that agree with optical flow, determinism, resume after a kill, and clear errors."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pytest

from cli_errors import assert_one_line_error
from dybench.build import build_synthetic
from dybench.families import load_data
from dybench.errors import DyBenchError
from dybench.synth.scene import COLORS, color_mask
from dybench.tasks import get_task, transformed_answer
from dybench.video import apply_transform, read_frames, read_frames_pyav
from pixel_labels import direction_from_flow, pixel_answer

CLI = [sys.executable, "-c", "from dybench.cli import main; main()"]


def dybench(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "COLUMNS": "200"})


def hashes(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def cli_set(tmp_path_factory) -> Path:
    """The command of the issue: 8 pairs per task, seed 1."""
    out = tmp_path_factory.mktemp("cli") / "DS"
    result = dybench("build-pairs", "--out", str(out), "--pairs-per-task", "8", "--seed", "1", "--no-progress")
    assert result.returncode == 0, result.stderr
    assert "24 pairs" in result.stdout
    return out


def pairs_of(folder: Path):
    by_pair = defaultdict(list)
    for item in load_data(str(folder)).items:
        by_pair[item.pair_id].append(item)
    return by_pair


def test_build_writes_all_three_categories_with_balanced_letters(cli_set):
    items = load_data(str(cli_set)).items
    assert Counter(i.category for i in items) == {"moving_direction": 16, "reversible_dynamics": 16, "event_sequence": 16}
    assert {i.kind for i in items} == {"dynamic"}
    direction = Counter(i.answer for i in items if i.task == "moving_direction")
    assert direction == {"A": 4, "B": 4, "C": 4, "D": 4}
    events = Counter(i.answer for i in items if i.task == "event_sequence")
    assert events == {"A": 8, "B": 8}
    assert max(Counter(i.answer for i in items if i.task == "reversible_dynamics").values()) <= 6
    card = (cli_set / "README.md").read_text()
    assert "| moving_direction | 8 | 16 | 4 | 4 | 4 | 4 |" in card
    assert "seed 1" in card and "load_dataset" in card


def test_every_clip_decodes_with_opencv_and_pyav_alike(cli_set):
    for video in sorted({i.video for i in load_data(str(cli_set)).items}):
        frames, fps = read_frames(cli_set / video)
        assert frames.shape == (16, 128, 128, 3) and fps == pytest.approx(8)
        np.testing.assert_array_equal(read_frames_pyav(cli_set / video), frames)


def test_answers_differ_within_every_pair_and_follow_the_task_table(cli_set):
    for pair_id, (original, counter) in pairs_of(cli_set).items():
        assert original.transform == "original" and counter.transform != "original"
        assert original.answer != counter.answer, pair_id
        assert original.options == counter.options and original.question == counter.question
        assert transformed_answer(original, counter.transform) == counter.answer


def test_counterfactual_frames_are_exactly_the_transformed_original(cli_set):
    for pair_id, (original, counter) in pairs_of(cli_set).items():
        frames, _ = read_frames(cli_set / original.video)
        boundary = original.meta.get("segment_boundary")
        expected = apply_transform(frames, counter.transform, boundary)
        np.testing.assert_array_equal(read_frames(cli_set / counter.video)[0], expected, err_msg=pair_id)


def test_direction_labels_agree_with_optical_flow(cli_set):
    items = [i for i in load_data(str(cli_set)).items if i.task == "moving_direction"]
    assert {i.answer_text for i in items} == {"left", "right", "up", "down"}
    for item in items:
        frames, _ = read_frames(cli_set / item.video)
        assert direction_from_flow(frames) == item.answer_text, item.id


def test_every_label_agrees_with_an_independent_pixel_reading(cli_set):
    """Not the task table that made the label: tests/pixel_labels.py reads each answer off the clip
    (flow, area, the door's angle, separate blocks, which object acts first)."""
    items = load_data(str(cli_set)).items
    assert {i.variant for i in items if i.task == "reversible_dynamics"} >= {"fill", "door", "stack"}
    for item in items:
        frames, _ = read_frames(cli_set / item.video)
        assert pixel_answer(item, frames) == item.answer, item.id


def test_same_seed_gives_the_same_manifest_and_clips_whatever_the_workers(cli_set, tmp_path):
    again = tmp_path / "again"
    build_synthetic(again, pairs_per_task=8, seed=1, workers=2, progress=False)
    reference, mine = hashes(cli_set), hashes(again)
    # The data cards differ only in the folder name they show.
    assert reference.pop("README.md") and mine.pop("README.md")
    assert mine == reference
    other = tmp_path / "other"
    build_synthetic(other, tasks=["moving_direction"], pairs_per_task=2, seed=2, progress=False)
    assert hashes(other)["videos/moving_direction-00000-original.mp4"] != reference["videos/moving_direction-00000-original.mp4"]


def test_train_split_adds_static_questions_whose_answer_never_changes(synthetic_train_set):
    items = load_data(str(synthetic_train_set)).items
    static = [i for i in items if i.kind == "static"]
    assert {i.task for i in static} == {"static_color", "static_shape", "static_count"}
    clips = {i.video for i in items if i.kind == "dynamic"}
    by_pair = defaultdict(list)
    for item in static:
        assert item.video in clips
        assert get_task(item.task).kind == "static"
        by_pair[item.pair_id].append(item)
    for pair_id, (a, b) in by_pair.items():
        assert a.answer == b.answer and a.options == b.options
        assert a.transform == "original" and transformed_answer(a, b.transform) == b.answer
    for item in items:  # the dynamic labels of the train split, read off the pixels
        if item.kind == "dynamic":
            assert pixel_answer(item, read_frames(synthetic_train_set / item.video)[0]) == item.answer, item.id
    assert len({i.pair_id for i in static} & {i.pair_id for i in items if i.kind == "dynamic"}) == 0


def test_colour_cue_ties_colour_to_direction_on_original_clips(tmp_path):
    out = tmp_path / "cue"
    build_synthetic(out, tasks=["moving_direction"], pairs_per_task=8, seed=3, progress=False,
                    color_by_direction={"right": "red", "left": "blue"})
    cue = {"right": "red", "left": "blue"}
    checked = 0
    for pair_id, (original, counter) in pairs_of(out).items():
        if original.answer_text not in cue:
            continue
        color = cue[original.answer_text]
        assert original.meta["scene"]["object"].startswith(color)
        # The counterfactual is the same frames transformed: same colour, now moving the other way.
        counter_frames, _ = read_frames(out / counter.video)
        assert color_mask(counter_frames[:1], COLORS[color]).sum() > 30, pair_id
        assert counter.answer_text == {"right": "left", "left": "right"}[original.answer_text]
        checked += 1
    assert checked == 4


def test_resume_after_a_kill_finishes_without_rerendering_and_matches_a_clean_build(cli_set, tmp_path):
    out = tmp_path / "killed"
    process = subprocess.Popen([*CLI, "build-pairs", "--out", str(out), "--pairs-per-task", "8", "--seed", "1",
                                "--no-progress"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    manifest = out / "manifest.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and process.poll() is None:
        if manifest.exists() and manifest.read_text().count("\n") >= 6:
            break
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    written = manifest.read_text().count("\n")
    assert written < 48, "the build finished before it could be interrupted"
    # A torn last line, as a crash in the middle of a write would leave.
    with manifest.open("a") as handle:
        handle.write('{"id": "half a row')
    summary = build_synthetic(out, pairs_per_task=8, seed=1, progress=False)
    assert summary.resumed_jobs >= 3 and summary.built_jobs == 24 - summary.resumed_jobs
    assert (out / "manifest.jsonl").read_bytes() == (cli_set / "manifest.jsonl").read_bytes()
    assert not list(out.rglob("*.partial"))


def test_rerun_with_other_settings_is_refused_and_keeps_the_data(tmp_path):
    out = tmp_path / "ds"
    build_synthetic(out, tasks=["event_sequence"], pairs_per_task=1, seed=0, progress=False)
    before = hashes(out)
    result = dybench("build-pairs", "--out", str(out), "--tasks", "event_sequence", "--pairs-per-task", "1",
                     "--seed", "5")
    assert_one_line_error(result, "different settings", "seed")
    assert hashes(out) == before


@pytest.mark.parametrize(
    "args, fragments",
    [
        (["--tasks", "spinning_top"], ["unknown task 'spinning_top'", "moving_direction"]),
        (["--tasks", "static_color"], ["static control question"]),
        (["--split", "validation"], ["--split"]),
        (["--size", "8"], ["size"]),
        (["--color-by-direction", '{"right": "pink"}'], ["color_by_direction"]),
    ],
)
def test_bad_options_fail_with_one_line(tmp_path, args, fragments):
    result = dybench("build-pairs", "--out", str(tmp_path / "x"), "--pairs-per-task", "1", *args)
    assert_one_line_error(result, *fragments)


def test_library_rejects_an_unknown_task():
    with pytest.raises(DyBenchError, match="unknown task"):
        build_synthetic(Path("/nonexistent/never-written"), tasks=["nope"], progress=False)


def test_a_clip_whose_pixels_contradict_its_label_is_never_written(tmp_path, monkeypatch):
    """The generator is made to draw the wrong direction: the optical-flow check rejects every
    attempt, and the build stops with a clear error instead of writing a doubtful label."""
    from dybench.synth import direction

    real_render = direction.render
    opposite = {"left": "right", "right": "left", "up": "down", "down": "up"}
    monkeypatch.setattr(direction, "render", lambda rng, options, variant, key: real_render(rng, options, variant, opposite[key]))
    with pytest.raises(DyBenchError, match="pixel label check"):
        build_synthetic(tmp_path / "x", tasks=["moving_direction"], pairs_per_task=1, progress=False)
    assert not list((tmp_path / "x").rglob("*.mp4"))


@pytest.mark.parametrize("task", ["moving_direction", "reversible_dynamics", "event_sequence"])
def test_pixel_checks_see_nothing_in_a_frozen_clip(task):
    from dybench.synth import GENERATORS, SceneOptions
    from dybench.synth.pairs import plan_pair

    plan = plan_pair(get_task(task), 0, seed=0)
    rendered = GENERATORS[task].render(np.random.default_rng(0), SceneOptions(), plan.variant, plan.key)
    assert GENERATORS[task].measure(rendered.frames, rendered, rendered.boundary) == plan.key
    frozen = np.repeat(rendered.frames[:1], len(rendered.frames), axis=0)
    assert GENERATORS[task].measure(frozen, rendered, rendered.boundary) is None


def test_the_data_card_snippet_loads_the_manifest_with_datasets(cli_set, synthetic_train_set, tmp_path):
    datasets = pytest.importorskip("datasets")
    card = (cli_set / "README.md").read_text()
    assert 'load_dataset("json", data_files="DS/manifest.jsonl", split="train")' in card
    for folder, n_items in ((cli_set, 48), (synthetic_train_set, len(load_data(str(synthetic_train_set)).items))):
        ds = datasets.load_dataset("json", data_files=str(folder / "manifest.jsonl"), split="train",
                                   cache_dir=str(tmp_path / "hf"))
        assert len(ds) == n_items
        assert (folder / ds[0]["video"]).is_file()


def test_ctrl_c_keeps_finished_pairs_and_says_how_to_resume(cli_set, tmp_path):
    """Ctrl-C in a terminal interrupts the whole process group, workers included."""
    out = tmp_path / "interrupted"
    process = subprocess.Popen([*CLI, "build-pairs", "--out", str(out), "--pairs-per-task", "8", "--seed", "1",
                                "--workers", "2", "--no-progress"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, start_new_session=True, env={**os.environ, "COLUMNS": "200"})
    manifest = out / "manifest.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and process.poll() is None:
        if manifest.exists() and manifest.read_text().count("\n") >= 4:
            break
        time.sleep(0.02)
    os.killpg(process.pid, signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr and "rerun the same command" in stderr
    rows = manifest.read_text().count("\n")
    assert 4 <= rows < 48
    summary = build_synthetic(out, pairs_per_task=8, seed=1, progress=False)
    assert summary.resumed_jobs == rows // 2
    assert manifest.read_bytes() == (cli_set / "manifest.jsonl").read_bytes()


def descendants(pid: int) -> set[int]:
    """Every process below `pid` (psutil when installed, else /proc)."""
    try:
        import psutil
    except ImportError:
        children: dict[int, list[int]] = {}
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
        found, todo = set(), [pid]
        while todo:
            for child in children.get(todo.pop(), []):
                found.add(child)
                todo.append(child)
        return found
    try:
        return {p.pid for p in psutil.Process(pid).children(recursive=True)}
    except psutil.NoSuchProcess:
        return set()


def running(pid: int) -> bool:
    """Alive and not a zombie (an exited child nobody has reaped yet is not running)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


@pytest.mark.parametrize("signum, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130), (signal.SIGKILL, -9)])
def test_a_signal_to_a_parallel_build_stops_every_worker_and_the_rerun_matches_a_clean_build(
        cli_set, tmp_path, signum, code):
    """`kill`, `timeout`, Slurm and Kubernetes signal the main process only: the pool must go too."""
    out = tmp_path / "stopped"
    process = subprocess.Popen([*CLI, "build-pairs", "--out", str(out), "--pairs-per-task", "8", "--seed", "1",
                                "--workers", "2", "--no-progress"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, env={**os.environ, "COLUMNS": "200"})
    manifest = out / "manifest.jsonl"
    deadline = time.time() + 120
    workers: set[int] = set()
    while time.time() < deadline and process.poll() is None:
        workers |= descendants(process.pid)
        if manifest.exists() and manifest.read_text().count("\n") >= 4:
            break
        time.sleep(0.02)
    workers |= descendants(process.pid)
    assert len(workers) >= 2, "the pool's workers were never seen"
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == code, stderr
    if signum != signal.SIGKILL:  # a killed process says nothing; its workers must still not outlive it
        assert "Traceback" not in stderr and "rerun the same command" in stderr
    deadline = time.time() + 10
    while time.time() < deadline and any(running(pid) for pid in workers):
        time.sleep(0.1)
    assert [pid for pid in workers if running(pid)] == []
    assert manifest.read_text().count("\n") < 48, "the build finished before it could be interrupted"
    summary = build_synthetic(out, pairs_per_task=8, seed=1, progress=False)
    assert summary.resumed_jobs >= 2
    reference, rerun = hashes(cli_set), hashes(out)
    assert reference.pop("README.md") and rerun.pop("README.md")
    assert rerun == reference
