"""Video I/O: lossless, deterministic clips that both decoders read back exactly, exact transforms,
and frame sampling that records which frames it took and when."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from dybench.errors import DyBenchError
from dybench.video import (
    VideoError,
    apply_transform,
    hflip,
    load_clip,
    probe,
    read_frames,
    read_frames_pyav,
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
