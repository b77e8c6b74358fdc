"""Video I/O: lossless, deterministic clips that both decoders read back exactly, exact transforms,
and frame sampling that records which frames it took and when."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from dybench.errors import DyBenchError
from dybench.video import (
    VideoError,
    apply_transform,
    fps_indices,
    hflip,
    iter_frames,
    load_clip,
    probe,
    read_frames,
    read_frames_pyav,
    read_index,
    reverse,
    sample_frames,
    swap_segments,
    write_video,
)


@pytest.fixture(scope="module")
def frames() -> np.ndarray:
    """A noisy clip with a distinct pattern per frame (compression would blur it; we must not)."""
    rng = np.random.default_rng(0)
    clip = rng.integers(0, 256, size=(12, 40, 56, 3), dtype=np.uint8)
    clip[:, :, :8] = np.arange(12, dtype=np.uint8)[:, None, None, None] * 20  # frame-index stripe
    return clip


def test_written_clip_decodes_to_the_exact_frames_with_opencv_and_pyav(tmp_path: Path, frames):
    path = tmp_path / "clip.mp4"
    write_video(path, frames, fps=8)
    decoded, fps = read_frames(path)
    assert fps == pytest.approx(8)
    np.testing.assert_array_equal(decoded, frames)
    np.testing.assert_array_equal(read_frames_pyav(path), frames)
    info = probe(path)
    assert (info.n_frames, info.width, info.height) == (12, 56, 40)
    assert not list(tmp_path.glob("*.partial"))


def test_same_frames_give_the_same_bytes(tmp_path: Path, frames):
    write_video(tmp_path / "a.mp4", frames, fps=8)
    write_video(tmp_path / "b.mp4", frames, fps=8)
    digest = lambda p: hashlib.sha256(p.read_bytes()).hexdigest()  # noqa: E731
    assert digest(tmp_path / "a.mp4") == digest(tmp_path / "b.mp4")


@pytest.mark.parametrize("transform", ["hflip", "reverse", "hflip+reverse", "swap_segments"])
def test_counterfactual_clip_holds_exactly_the_transformed_frames(tmp_path: Path, frames, transform):
    path = tmp_path / f"{transform}.mp4"
    write_video(path, apply_transform(frames, transform, boundary=5), fps=8)
    decoded, _ = read_frames(path)
    if transform == "hflip":
        expected = frames[:, :, ::-1]
    elif transform == "reverse":
        expected = frames[::-1]
    elif transform == "hflip+reverse":
        expected = frames[::-1, :, ::-1]
    else:
        expected = np.concatenate([frames[5:], frames[:5]])
    np.testing.assert_array_equal(decoded, expected)


def test_transforms_are_pure_and_invertible(frames):
    original = frames.copy()
    np.testing.assert_array_equal(hflip(hflip(frames)), frames)
    np.testing.assert_array_equal(reverse(reverse(frames)), frames)
    np.testing.assert_array_equal(swap_segments(swap_segments(frames, 5), 7), frames)
    np.testing.assert_array_equal(frames, original)
    with pytest.raises(DyBenchError, match="boundary"):
        swap_segments(frames, 0)
    with pytest.raises(DyBenchError, match="unknown transform"):
        apply_transform(frames, "rotate")


def test_uniform_sampling_records_indices_and_timestamps(frames):
    clip = sample_frames(frames, fps=8, num_frames=4)
    assert clip.indices == [1, 4, 7, 10]
    assert clip.timestamps == [0.125, 0.5, 0.875, 1.25]
    np.testing.assert_array_equal(clip.frames, frames[[1, 4, 7, 10]])
    assert clip.sampled_fps == pytest.approx(3 / 1.125)


def test_fps_sampling_never_exceeds_the_source_and_respects_max_frames(frames):
    assert sample_frames(frames, fps=8, sample_fps=4).indices == [0, 2, 4, 6, 8, 10]
    assert sample_frames(frames, fps=8, sample_fps=30).indices == list(range(12))
    assert len(sample_frames(frames, fps=8, sample_fps=8, max_frames=5).indices) == 5


def test_frame_range_selects_a_segment(tmp_path: Path, frames):
    path = tmp_path / "clip.mp4"
    write_video(path, frames, fps=8)
    clip = load_clip(path, frame_range=(3, 9))
    np.testing.assert_array_equal(clip.frames, frames[3:9])


@pytest.mark.parametrize("content", [None, b"", b"not a video at all" * 10])
def test_missing_or_corrupt_video_is_one_clear_error(tmp_path: Path, content):
    path = tmp_path / "broken.mp4"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(VideoError, match="broken.mp4"):
        read_frames(path)
    with pytest.raises(VideoError, match="broken.mp4"):
        read_frames_pyav(path)


def test_write_refuses_frames_of_the_wrong_shape(tmp_path: Path):
    with pytest.raises(DyBenchError, match="uint8"):
        write_video(tmp_path / "x.mp4", np.zeros((3, 8, 8), dtype=np.uint8), fps=8)


# --- decoding only the sampled frames -----------------------------------------------------------


def encode(path: Path, frames: np.ndarray, pts: list[int] | None = None, codec: str = "libx264rgb",
           options: dict[str, str] | None = None, time_base: Fraction = Fraction(1, 1000),
           container_format: str | None = None) -> Path:
    """Write a clip with PyAV directly (independent of dybench's writer): explicit pts make a
    variable-frame-rate clip; `options` set the codec's keyframe interval, B-frames, quality."""
    with av.open(str(path), "w", format=container_format) as container:
        stream = container.add_stream(codec, rate=10, options={"preset": "ultrafast", **(options or {})})
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "rgb24" if codec == "libx264rgb" else "yuv420p"
        if pts is not None:
            stream.codec_context.time_base = time_base
        for number, image in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            if pts is not None:
                frame.pts, frame.time_base = pts[number], time_base
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def striped(n: int, height: int = 32, width: int = 48, seed: int = 1) -> np.ndarray:
    """Noisy frames whose left stripe says which frame they are (3 * index, so up to 85 frames)."""
    clip = np.random.default_rng(seed).integers(0, 256, size=(n, height, width, 3), dtype=np.uint8)
    clip[:, :, :8] = (np.arange(n, dtype=np.uint8) * 3)[:, None, None, None]
    return clip


@pytest.fixture(scope="module")
def short_gop_clip(tmp_path_factory) -> tuple[Path, np.ndarray]:
    """The project's lossless settings with a keyframe every 7 frames, so sampling must seek."""
    frames = striped(60)
    path = encode(tmp_path_factory.mktemp("gop") / "gop.mp4", frames, options={"qp": "0", "g": "7", "keyint_min": "7"})
    return path, frames


@pytest.mark.parametrize("settings", [dict(num_frames=4), dict(num_frames=16), dict(num_frames=59),
                                      dict(sample_fps=3.0), dict(sample_fps=2.0, max_frames=5), {}])
def test_sampled_frames_equal_a_full_decode_at_the_same_indices(short_gop_clip, settings):
    path, frames = short_gop_clip
    assert len(read_index(path).keyframes) > 5
    full, fps = read_frames(path)
    np.testing.assert_array_equal(full, frames)
    clip = load_clip(path, **settings)
    expected = sample_frames(full, fps, **settings)
    assert clip.indices == expected.indices
    assert clip.timestamps == expected.timestamps
    np.testing.assert_array_equal(clip.frames, full[clip.indices])


def test_project_clips_sample_as_a_full_decode_does(tmp_path: Path, frames):
    """Clips written by dybench (one keyframe): same indices, timestamps, fps and pixels as sampling
    the fully decoded clip, so existing runs keep their predictions."""
    path = tmp_path / "clip.mp4"
    write_video(path, frames, fps=8)
    full, fps = read_frames(path)
    for settings in (dict(num_frames=4), dict(num_frames=12), dict(sample_fps=4), dict(sample_fps=8, max_frames=5)):
        clip, expected = load_clip(path, **settings), sample_frames(full, fps, **settings)
        assert (clip.indices, clip.timestamps, clip.source_fps, clip.source_n_frames) == \
            (expected.indices, expected.timestamps, expected.source_fps, expected.source_n_frames)
        np.testing.assert_array_equal(clip.frames, expected.frames)


def test_sampling_seeks_through_b_frames_of_a_lossy_clip(tmp_path: Path):
    """A lossy H.264 clip with B-frames (decode order differs from display order) and short
    keyframe intervals: the sampled frames are bit for bit those of a full decode by the same decoder."""
    path = encode(tmp_path / "lossy.mp4", striped(50), codec="libx264",
                  options={"preset": "medium", "crf": "30", "g": "9", "bf": "3"})
    full = read_frames_pyav(path)
    for settings in (dict(num_frames=7), dict(num_frames=50), dict(sample_fps=4.0)):
        clip = load_clip(path, **settings)
        np.testing.assert_array_equal(clip.frames, full[clip.indices])


def test_frames_in_any_order_hold_at_most_one_keyframe_interval(short_gop_clip):
    path, frames = short_gop_clip
    index = read_index(path)
    one_interval = 7 * frames[0].nbytes
    backwards = list(range(59, -1, -1))
    np.testing.assert_array_equal(np.stack(list(iter_frames(index, backwards, max_held_bytes=one_interval))), frames[::-1])
    jumps = [30, 2, 2, 59, 0, 31]
    np.testing.assert_array_equal(np.stack(list(iter_frames(index, jumps))), frames[jumps])


def test_a_file_without_timestamps_is_read_by_streaming(tmp_path: Path):
    """A raw H.264 stream has no container index or timestamps: the index comes from decoding it,
    and the frames are still exact."""
    frames = striped(20)
    path = encode(tmp_path / "raw.h264", frames, options={"qp": "0", "g": "5"}, container_format="h264")
    index = read_index(path)
    assert not index.seekable and index.n_frames == 20
    clip = load_clip(path, num_frames=5)
    np.testing.assert_array_equal(clip.frames, frames[clip.indices])
    backwards = list(range(19, -1, -1))
    np.testing.assert_array_equal(np.stack(list(iter_frames(index, backwards))), frames[::-1])
    with pytest.raises(VideoError, match="raw.h264 cannot seek.*MiB"):
        list(iter_frames(index, backwards, max_held_bytes=3 * frames[0].nbytes))


def test_a_truncated_file_gives_the_frames_that_decode(tmp_path: Path):
    """The index of a cut-off mp4 (moov first) lists frames whose data is gone: sampling uses what
    decodes, as a full decode does, instead of failing or returning wrong frames."""
    frames = striped(60)
    path = encode(tmp_path / "whole.mp4", frames, options={"qp": "0", "g": "7"})
    with av.open(str(path)) as source, av.open(str(tmp_path / "fast.mp4"), "w", options={"movflags": "faststart"}) as out:
        stream = out.add_stream_from_template(source.streams.video[0])
        for packet in source.demux(source.streams.video[0]):
            if packet.dts is not None:
                packet.stream = stream
                out.mux(packet)
    cut = tmp_path / "cut.mp4"
    data = (tmp_path / "fast.mp4").read_bytes()
    cut.write_bytes(data[: len(data) * 2 // 3])
    full, _ = read_frames(cut)
    assert 0 < len(full) < 60
    clip = load_clip(cut, num_frames=8)
    assert clip.source_n_frames == len(full)
    np.testing.assert_array_equal(clip.frames, full[clip.indices])


def test_fewer_frames_than_asked_gives_each_frame_once(tmp_path: Path, frames):
    path = tmp_path / "short.mp4"
    write_video(path, frames[:8], fps=8)
    clip = load_clip(path, num_frames=16)
    assert clip.indices == list(range(8))
    np.testing.assert_array_equal(clip.frames, frames[:8])


# --- variable frame rate ----------------------------------------------------------------------------

VFR_PTS_MS = [0, 300, 600, 900, 1200, *range(1500, 5000, 120)]
"""35 frames over 5 s: five frames 0.3 s apart, then thirty 0.12 s apart (a phone clip that
sped up), in milliseconds."""


@pytest.fixture(scope="module")
def vfr_clip(tmp_path_factory) -> tuple[Path, np.ndarray]:
    assert len(VFR_PTS_MS) == 35
    frames = striped(35)
    return encode(tmp_path_factory.mktemp("vfr") / "vfr.mp4", frames, pts=VFR_PTS_MS, options={"qp": "0"}), frames


def test_timestamps_of_a_variable_frame_rate_clip_are_the_streams_pts(vfr_clip):
    path, frames = vfr_clip
    clip = load_clip(path, num_frames=35)
    assert clip.timestamps == pytest.approx([p / 1000 for p in VFR_PTS_MS], abs=1e-4)
    np.testing.assert_array_equal(clip.frames, frames)
    part = load_clip(path, frame_range=(5, 35), num_frames=3)
    assert part.timestamps == pytest.approx([(VFR_PTS_MS[5 + i] - 1500) / 1000 for i in part.indices], abs=1e-4)


def test_fps_sampling_of_a_variable_frame_rate_clip_follows_time(vfr_clip):
    """At 2 fps over 5 s: a frame every 0.5 s of real time, the frame nearest to each tick, not
    every n-th frame (which would put 8 of 10 samples in the fast part)."""
    path, frames = vfr_clip
    clip = load_clip(path, sample_fps=2.0)
    ticks = [0.5 * k for k in range(len(clip.timestamps))]
    assert len(clip.indices) == 10  # the last frame shows until 5.08 s
    assert all(abs(t - tick) <= 0.15 + 1e-6 for t, tick in zip(clip.timestamps, ticks)), clip.timestamps
    np.testing.assert_array_equal(clip.frames[:, 0, 0, 0], np.array(clip.indices, dtype=np.uint8) * 3)


@pytest.mark.parametrize(("n", "fps", "target"), [(48, 25, 10), (100, 29.97, 4), (30, 8, 3), (90, 30, 10), (16, 8, 16)])
def test_fps_sampling_at_a_constant_rate_takes_the_nearest_of_every_step_th_frame(n, fps, target):
    """By timestamps, a constant-rate clip samples as it always did: frame round(k * fps / target),
    halves to even (25 -> 10 fps steps 2.5 frames: 0, 2, 5, 8, 10, ...)."""
    step = max(1.0, fps / target)
    expected = sorted({min(n - 1, round(k * step)) for k in range(int(n / step) or 1)})
    assert fps_indices([i / fps for i in range(n)], n / fps, target) == expected


def test_memory_is_bounded_by_the_frames_kept_not_the_clips_length(tmp_path: Path):
    """A 30 s 320x240 clip is 200 MB decoded; sampling 8 of its frames must not come near that."""
    base = np.random.default_rng(3).integers(0, 256, size=(240, 320, 3), dtype=np.uint8)
    frames = (np.roll(base, shift, axis=1) for shift in range(900))
    path = tmp_path / "long.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=30, options={"preset": "ultrafast", "crf": "30"})
        stream.width, stream.height, stream.pix_fmt = 320, 240, "yuv420p"
        for image in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    script = (
        "import resource, sys; from dybench.video import load_clip, read_index; read_index(sys.argv[1]);"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss;"
        "clip = load_clip(sys.argv[1], num_frames=8);"
        "print(len(clip.frames), (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024)"
    )
    result = subprocess.run([sys.executable, "-c", script, str(path)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    kept, grown_mb = map(int, result.stdout.split())
    assert kept == 8
    assert grown_mb < 60, f"sampling 8 frames grew the process by {grown_mb} MB"
