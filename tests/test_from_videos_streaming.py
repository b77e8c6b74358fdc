"""`build-pairs --from-videos` on real-world files: variable frame rates are cut by the stream's
timestamps, counterfactuals are streamed through the encoder (a clip is never held whole unless
it must be), and every built clip holds exactly the source's frames."""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

import dybench.build
from dybench.build import build_from_videos
from dybench.families import load_data
from dybench.errors import DyBenchError
from dybench.video import read_frames, read_index

VFR_PTS_MS = [0, 300, 600, 900, 1200, *range(1500, 5000, 120)]
"""35 frames over 5 s: five frames 0.3 s apart, then thirty 0.12 s apart."""


def striped(n: int) -> np.ndarray:
    """Noisy 48x32 frames whose edge stripes say which frame they are (3 * index; both edges, so
    a mirrored frame says it too)."""
    clip = np.random.default_rng(2).integers(0, 256, size=(n, 32, 48, 3), dtype=np.uint8)
    clip[:, :, :8] = clip[:, :, -8:] = (np.arange(n, dtype=np.uint8) * 3)[:, None, None, None]
    return clip


def encode(path: Path, frames: np.ndarray, pts_ms: list[int] | None = None, container_format: str | None = None,
           keyint: int = 6) -> Path:
    """A lossless clip written with PyAV directly; explicit pts (ms) make it variable-rate."""
    with av.open(str(path), "w", format=container_format) as container:
        stream = container.add_stream("libx264rgb", rate=10, options={"qp": "0", "preset": "ultrafast", "g": str(keyint)})
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "rgb24"
        if pts_ms is not None:
            stream.codec_context.time_base = Fraction(1, 1000)
        for number, image in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            if pts_ms is not None:
                frame.pts, frame.time_base = pts_ms[number], Fraction(1, 1000)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def frame_numbers(path: Path) -> list[int]:
    """Which source frame each frame of a built clip is, read from its pixels (the stripe)."""
    frames, _ = read_frames(path)
    return [int(v) // 3 for v in frames[:, 0, 0, 0]]


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("videos")
    encode(folder / "vfr.mp4", striped(35), VFR_PTS_MS)
    encode(folder / "long.mp4", striped(60))
    encode(folder / "raw.h264", striped(20), container_format="h264")
    return folder


def build(source: Path, out: Path, rows: list[dict]):
    annotations = out.parent / f"{out.name}.jsonl"
    annotations.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return build_from_videos(source, annotations, out, progress=False)


def pair(out: Path):
    original, counter = load_data(str(out)).items
    return original, counter


EVENTS = {"task": "event_sequence", "question": "Which happens first?", "options": ["slow", "fast"], "answer": "slow"}


def test_segments_of_a_variable_frame_rate_clip_are_cut_by_timestamps(source, tmp_path):
    """0.9 s is frame 3 of this clip (its fourth frame starts at 0.9 s); by index / nominal fps it
    would be a frame near the end. The last frame shows from 4.98 s to 5.08 s."""
    out = tmp_path / "events"
    build(source, out, [{**EVENTS, "video": "vfr.mp4", "segments": [[0, 0.9], [0.9, 5.08]]}])
    original, counter = pair(out)
    assert original.meta["source_frames"] == [[0, 3], [3, 35]]
    assert original.meta["segment_boundary"] == 3
    assert frame_numbers(out / original.video) == list(range(35))
    assert frame_numbers(out / counter.video) == [*range(3, 35), *range(3)]


def test_counterfactual_of_a_variable_frame_rate_clip_keeps_each_frames_duration(source, tmp_path):
    out = tmp_path / "mirror"
    build(source, out, [{"video": "vfr.mp4", "task": "moving_direction", "options": ["left", "right"], "answer": "right"}])
    original, counter = pair(out)
    assert original.transform == "original" and counter.transform == "hflip"
    assert read_index(out / counter.video).times == pytest.approx([p / 1000 for p in VFR_PTS_MS], abs=1e-3)
    np.testing.assert_array_equal(read_frames(out / counter.video)[0], read_frames(source / "vfr.mp4")[0][:, :, ::-1])
    out = tmp_path / "backwards"
    build(source, out, [{"video": "vfr.mp4", "task": "moving_direction", "options": ["down", "up"], "answer": "up"}])
    _, reversed_clip = pair(out)
    assert reversed_clip.transform == "reverse"
    durations = read_index(source / "vfr.mp4").durations()
    assert read_index(out / reversed_clip.video).durations()[:-1] == pytest.approx(durations[::-1][:-1], abs=1e-3)
    assert frame_numbers(out / reversed_clip.video) == list(range(34, -1, -1))


@pytest.mark.parametrize(("row", "expected"), [
    ({"task": "moving_direction", "options": ["left", "right"], "answer": "right"}, list(range(60))),
    ({"task": "moving_direction", "options": ["down", "up"], "answer": "up"}, list(range(59, -1, -1))),
    ({**EVENTS, "segments": [[0, 2.0], [2.0, 6.0]]}, [*range(20, 60), *range(20)]),
])
def test_counterfactuals_stream_frames_instead_of_holding_the_clip(source, tmp_path, monkeypatch, row, expected):
    """With room for only one keyframe interval (6 frames of 60), mirroring, swapping and even
    reversing a seekable clip still build, frame for frame."""
    monkeypatch.setattr(dybench.build, "MAX_HELD_BYTES", 6 * 32 * 48 * 3)
    out = tmp_path / "out"
    build(source, out, [{**row, "video": "long.mp4"}])
    _, counter = pair(out)
    assert frame_numbers(out / counter.video) == expected


def test_reversing_a_file_that_cannot_seek_beyond_the_limit_is_refused_naming_the_line(source, tmp_path, monkeypatch):
    """A raw H.264 stream has no index: reversing it holds the whole clip, so the size limit applies."""
    monkeypatch.setattr(dybench.build, "MAX_HELD_BYTES", 8 * 32 * 48 * 3)
    row = {"video": "raw.h264", "task": "moving_direction", "options": ["down", "up"], "answer": "up"}
    with pytest.raises(DyBenchError, match=r"out\.jsonl:1: raw\.h264 cannot seek .* MiB .*cut it"):
        build(source, tmp_path / "out", [row])
    monkeypatch.setattr(dybench.build, "MAX_HELD_BYTES", 4 << 30)
    build(source, tmp_path / "fine", [row])
    _, counter = pair(tmp_path / "fine")
    assert frame_numbers(tmp_path / "fine" / counter.video) == list(range(19, -1, -1))
