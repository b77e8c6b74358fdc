"""Video I/O, frame sampling and the three counterfactual transforms.

Clips are written losslessly (H.264 in RGB, qp 0: `libx264rgb`), so a counterfactual clip decodes
to *exactly* the transformed frames of its original: a test can compare them bit for bit, and a
model can only tell the two apart by their dynamics. Frames are RGB uint8 arrays shaped (T, H, W, 3).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

from dybench.errors import DyBenchError

# OpenCV's FFmpeg backend prints its own complaints (e.g. "moov atom not found") straight to stderr;
# a bad video already becomes one VideoError line, so keep FFmpeg quiet (the user can override).
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")

CODEC = "libx264rgb"
CODEC_OPTIONS = {"qp": "0", "preset": "ultrafast"}
"""Lossless and fast. ffmpeg equivalent: -c:v libx264rgb -qp 0 -preset ultrafast."""


class VideoError(DyBenchError):
    """A video that cannot be opened or decoded."""


@dataclass(frozen=True)
class VideoInfo:
    fps: float
    n_frames: int
    width: int
    height: int

    @property
    def duration_s(self) -> float:
        return self.n_frames / self.fps if self.fps > 0 else 0.0


@dataclass
class SampledClip:
    """Frames sampled from a video, with exactly which source frames they are and when."""

    frames: np.ndarray
    indices: list[int]
    timestamps: list[float]
    source_fps: float
    source_n_frames: int
    extra: dict = field(default_factory=dict)

    @property
    def sampled_fps(self) -> float:
        """Frames per second of the sampled sequence (what a model should be told)."""
        if len(self.timestamps) < 2:
            return self.source_fps
        span = self.timestamps[-1] - self.timestamps[0]
        return (len(self.timestamps) - 1) / span if span > 0 else self.source_fps


def read_frames(path: str | Path) -> tuple[np.ndarray, float]:
    """Decode every frame with OpenCV. Returns (frames RGB uint8 THWC, fps)."""
    path = Path(path)
    if not path.is_file():
        raise VideoError(f"{path}: video file not found")
    capture = cv2.VideoCapture(str(path))
    try:
        if not capture.isOpened():
            raise VideoError(f"{path}: cannot open video (unknown format or corrupt file)")
        fps = float(capture.get(cv2.CAP_PROP_FPS)) or 0.0
        frames = []
        while True:
            ok, frame = capture.read()
            if not ok:
                break
            frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
    finally:
        capture.release()
    if not frames:
        raise VideoError(f"{path}: no decodable frames (corrupt or empty video)")
    return np.stack(frames), fps


def read_frames_pyav(path: str | Path) -> np.ndarray:
    """Decode every frame with PyAV (an independent decoder, used to check written clips)."""
    try:
        with av.open(str(path)) as container:
            frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    except (av.FFmpegError, OSError) as exc:
        raise VideoError(f"{path}: PyAV cannot decode ({exc})") from None
    if not frames:
        raise VideoError(f"{path}: no decodable frames")
    return np.stack(frames)


def probe(path: str | Path) -> VideoInfo:
    """Frame count, fps and size without decoding the whole clip."""
    capture = cv2.VideoCapture(str(path))
    try:
        if not capture.isOpened():
            raise VideoError(f"{path}: cannot open video")
        return VideoInfo(
            fps=float(capture.get(cv2.CAP_PROP_FPS)),
            n_frames=int(capture.get(cv2.CAP_PROP_FRAME_COUNT)),
            width=int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)),
            height=int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)),
        )
    finally:
        capture.release()


def uniform_indices(n_frames: int, num: int) -> list[int]:
    """`num` frame indices spread evenly over `n_frames` (the middle of each of `num` bins)."""
    if n_frames <= 0:
        raise VideoError("cannot sample from a video with no frames")
    if num <= 0:
        raise DyBenchError("number of frames to sample must be positive")
    return [min(n_frames - 1, int((i + 0.5) * n_frames / num)) for i in range(num)]


def fps_indices(n_frames: int, source_fps: float, target_fps: float, max_frames: int | None = None) -> list[int]:
    """Indices at `target_fps` (never more than the source has); thinned evenly to `max_frames`."""
    if source_fps <= 0 or target_fps <= 0:
        raise DyBenchError("fps must be positive")
    step = max(1.0, source_fps / target_fps)
    indices = sorted({min(n_frames - 1, int(round(i * step))) for i in range(int(n_frames / step) or 1)})
    if max_frames is not None and len(indices) > max_frames:
        picks = uniform_indices(len(indices), max_frames)
        indices = [indices[p] for p in picks]
    return indices


def sample_frames(
    frames: np.ndarray,
    fps: float,
    num_frames: int | None = None,
    sample_fps: float | None = None,
    max_frames: int | None = None,
) -> SampledClip:
    """Pick frames uniformly (`num_frames`) or at `sample_fps`, recording indices and timestamps."""
    n = len(frames)
    if num_frames is not None:
        indices = uniform_indices(n, num_frames)
    elif sample_fps is not None:
        indices = fps_indices(n, fps, sample_fps, max_frames)
    else:
        indices = list(range(n))
    safe_fps = fps if fps > 0 else 1.0
    return SampledClip(
        frames=frames[indices],
        indices=indices,
        timestamps=[round(i / safe_fps, 6) for i in indices],
        source_fps=safe_fps,
        source_n_frames=n,
    )


def load_clip(
    path: str | Path,
    num_frames: int | None = None,
    sample_fps: float | None = None,
    max_frames: int | None = None,
    frame_range: tuple[int, int] | None = None,
) -> SampledClip:
    """Decode a video (optionally only frames [start, end)) and sample it."""
    frames, fps = read_frames(path)
    if frame_range is not None:
        start, end = frame_range
        frames = frames[start:end]
        if len(frames) == 0:
            raise VideoError(f"{path}: frame range {start}:{end} is empty")
    return sample_frames(frames, fps, num_frames=num_frames, sample_fps=sample_fps, max_frames=max_frames)


def write_video(path: str | Path, frames: np.ndarray, fps: float) -> None:
    """Encode RGB frames losslessly to mp4. Writes to a temp name first: no half-written clips."""
    path = Path(path)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise DyBenchError(f"frames must be uint8 (T, H, W, 3), got {frames.dtype} {frames.shape}")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.partial")
    rate = Fraction(fps).limit_denominator(1001)
    with av.open(str(tmp), mode="w", format="mp4") as container:
        stream = container.add_stream(CODEC, rate=rate, options=dict(CODEC_OPTIONS))
        stream.width = frames.shape[2]
        stream.height = frames.shape[1]
        stream.pix_fmt = "rgb24"
        # One thread: x264's output then never depends on the machine (same seed, same bytes).
        stream.thread_count = 1
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    tmp.replace(path)


# --- the counterfactual transforms (pure functions of frames) --------------------------------


def hflip(frames: np.ndarray) -> np.ndarray:
    """Mirror every frame left-right (exactly frames[:, :, ::-1]; cv2.flip is ~50x faster than
    numpy's strided copy)."""
    frames = np.ascontiguousarray(frames)
    out = np.empty_like(frames)
    for source, target in zip(frames, out):
        cv2.flip(source, 1, dst=target)
    return out


def reverse(frames: np.ndarray) -> np.ndarray:
    """Play the clip backwards."""
    return np.ascontiguousarray(frames[::-1])


def swap_segments(frames: np.ndarray, boundary: int) -> np.ndarray:
    """Swap the two segments [0, boundary) and [boundary, T)."""
    if not 0 < boundary < len(frames):
        raise DyBenchError(f"segment boundary {boundary} must lie inside the clip (1..{len(frames) - 1})")
    return np.ascontiguousarray(np.concatenate([frames[boundary:], frames[:boundary]]))


def apply_transform(frames: np.ndarray, transform: str, boundary: int | None = None) -> np.ndarray:
    """Apply "original", "hflip", "reverse", "swap_segments" or a composite like "hflip+reverse"."""
    if transform == "original":
        return frames
    for part in transform.split("+"):
        if part == "hflip":
            frames = hflip(frames)
        elif part == "reverse":
            frames = reverse(frames)
        elif part == "swap_segments":
            if boundary is None:
                raise DyBenchError("swap_segments needs the segment boundary")
            frames = swap_segments(frames, boundary)
        else:
            raise DyBenchError(f"unknown transform {part!r}")
    return frames
