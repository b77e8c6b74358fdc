"""Video I/O, frame sampling and the three counterfactual transforms.

Clips are written losslessly (H.264 in RGB, qp 0: `libx264rgb`), so a counterfactual clip decodes
to *exactly* the transformed frames of its original: a test can compare them bit for bit, and a
model can only tell the two apart by their dynamics. Frames are RGB uint8 arrays shaped (T, H, W, 3).

Reading a clip never decodes more than it must. `read_index` lists every frame of the video stream
from the container's packets (their presentation timestamps and which ones are keyframes) without
decoding anything; the sampler picks frame positions from that list; `iter_frames` then seeks to
the keyframe at or before each wanted frame and decodes forward from there, converting to RGB only
the frames it returns. Memory is bounded by the frames kept (plus at most one keyframe interval
when frames are asked for backwards, as `reverse` does). A file whose index turns out wrong (a
truncated file, timestamps missing or repeated, a seek that lands elsewhere) is read again by
decoding it from the start, which is slower but trusts nothing the container says.

Positions count frames in presentation order from 0; timestamps are seconds since the first frame,
taken from the stream's own timestamps, so variable-frame-rate clips are placed in time correctly.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import TypeVar

import av
import cv2
import numpy as np

from dybench.errors import DyBenchError

# OpenCV's FFmpeg backend prints its own complaints (e.g. "moov atom not found") straight to stderr;
# a bad video already becomes one VideoError line, so keep FFmpeg quiet (the user can override).
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")

T = TypeVar("T")

CODEC = "libx264rgb"
CODEC_OPTIONS = {"qp": "0", "preset": "ultrafast"}
"""Lossless and fast. ffmpeg equivalent: -c:v libx264rgb -qp 0 -preset ultrafast."""


class VideoError(DyBenchError):
    """A video that cannot be opened or decoded."""


class _IndexMismatch(Exception):
    """The file decodes differently from what its index says (the caller falls back to streaming)."""


@dataclass(frozen=True)
class VideoInfo:
    fps: float
    n_frames: int
    width: int
    height: int

    @property
    def duration_s(self) -> float:
        return self.n_frames / self.fps if self.fps > 0 else 0.0


@dataclass(frozen=True)
class StreamIndex:
    """Every frame of a video stream, in presentation order, known without decoding it.

    `pts` is None for an index built by decoding (`seekable` False): such a file is only ever read
    from the start. `times` are seconds since the first frame; `end_s` is when the last frame stops
    showing (its start plus its duration), so the clip spans [0, end_s).
    """

    path: Path
    times: tuple[float, ...]
    end_s: float
    fps: float
    width: int
    height: int
    pts: tuple[int, ...] | None = None
    keyframes: tuple[int, ...] = ()
    seekable: bool = True

    @property
    def n_frames(self) -> int:
        return len(self.times)

    @property
    def info(self) -> VideoInfo:
        return VideoInfo(fps=self.fps, n_frames=self.n_frames, width=self.width, height=self.height)

    def keyframe_before(self, position: int) -> int:
        """The last keyframe at or before `position` (decoding can start there)."""
        at = int(np.searchsorted(self.keyframes, position, side="right")) - 1
        return self.keyframes[max(at, 0)]

    def durations(self) -> list[float]:
        """How long each frame shows, in seconds."""
        return [b - a for a, b in zip(self.times, [*self.times[1:], self.end_s])]

    def is_constant_rate(self) -> bool:
        spans = self.durations()
        return max(spans) - min(spans) <= 1e-6 * max(spans[0], 1e-9)


@dataclass
class SampledClip:
    """Frames sampled from a video, with exactly which source frames they are and when.

    `indices` and `timestamps` count from the clip's first frame (the start of its frame range,
    if it has one), as models are told; `stream_indices` and `stream_timestamps` place the same
    frames in the whole decoded stream (positions from 0, seconds since its first frame), which is
    what a prediction row records. Without a range the two agree (the default)."""

    frames: np.ndarray
    indices: list[int]
    timestamps: list[float]
    source_fps: float
    source_n_frames: int
    extra: dict = field(default_factory=dict)
    stream_indices: list[int] | None = None
    stream_timestamps: list[float] | None = None

    def __post_init__(self) -> None:
        if self.stream_indices is None:
            self.stream_indices = list(self.indices)
        if self.stream_timestamps is None:
            self.stream_timestamps = list(self.timestamps)

    @property
    def sampled_fps(self) -> float:
        """Frames per second of the sampled sequence (what a model should be told)."""
        if len(self.timestamps) < 2:
            return self.source_fps
        span = self.timestamps[-1] - self.timestamps[0]
        return (len(self.timestamps) - 1) / span if span > 0 else self.source_fps


# --- full decodes (references for tests and small clips) -------------------------------------


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


# --- the index -----------------------------------------------------------------------------------


def _open(path: Path) -> av.container.InputContainer:
    if not path.is_file():
        raise VideoError(f"{path}: video file not found")
    try:
        container = av.open(str(path))
    except (av.FFmpegError, OSError, UnicodeDecodeError):
        raise VideoError(f"{path}: cannot open video (unknown format or corrupt file)") from None
    if not container.streams.video:
        container.close()
        raise VideoError(f"{path}: no video stream")
    return container


def _nominal_fps(stream: av.video.stream.VideoStream, n_frames: int, span_s: float) -> float:
    """The stream's average rate as the container states it (the rate players and OpenCV report),
    else frames over duration."""
    for rate in (stream.average_rate, stream.guessed_rate):
        if rate and float(rate) > 0:
            return float(rate)
    return n_frames / span_s if span_s > 0 else 0.0


def read_index(path: str | Path) -> StreamIndex:
    """The video stream's frames from its packets: no decoding, memory of a few numbers a frame.

    Packets the demuxer marks as discarded (before an edit list's start) are not frames of the clip.
    When the packets carry no usable timestamps (missing or repeated) or one is damaged (a file cut
    off mid-packet), the index is built by decoding the whole stream once instead
    (`index_by_decoding`).
    """
    path = Path(path)
    container = _open(path)
    try:
        stream = container.streams.video[0]
        packets: list[tuple[int, bool, int]] = []
        try:
            for packet in container.demux(stream):
                if packet.size == 0 or packet.is_discard:
                    continue
                if packet.pts is None or packet.is_corrupt:  # e.g. a file cut off mid-packet
                    return index_by_decoding(path)
                packets.append((packet.pts, packet.is_keyframe, packet.duration or 0))
        except (av.FFmpegError, OSError):
            return index_by_decoding(path)
        packets.sort()
        pts = [p for p, _, _ in packets]
        if not pts or len(set(pts)) != len(pts) or not packets[0][1]:
            return index_by_decoding(path)
        base = Fraction(stream.time_base)
        first = pts[0]
        # Offsets from the first frame in ticks are exact integers; one float multiply per frame
        # (Fraction arithmetic per frame costs a tenth of a second on a 10-minute clip).
        times = (np.asarray(pts, dtype=np.int64) - first).astype(np.float64) * base.numerator / base.denominator
        last_duration = packets[-1][2] or (pts[-1] - pts[-2] if len(pts) > 1 else 0)
        end_s = float((pts[-1] + last_duration - first) * base)
        fps = _nominal_fps(stream, len(pts), end_s)
        if end_s <= times[-1]:
            end_s = times[-1] + (1 / fps if fps > 0 else 0.0)
        return StreamIndex(
            path=path, times=tuple(times.tolist()), end_s=end_s, fps=fps,
            width=stream.codec_context.width, height=stream.codec_context.height,
            pts=tuple(pts), keyframes=tuple(i for i, (_, key, _) in enumerate(packets) if key),
        )
    finally:
        container.close()


def index_by_decoding(path: str | Path) -> StreamIndex:
    """The index of a file whose packets cannot be trusted: decode every frame once, counting
    them and noting their times (nothing is kept but the numbers)."""
    path = Path(path)
    container = _open(path)
    try:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        base = Fraction(stream.time_base) if stream.time_base else None
        stamps: list[float | None] = []
        width = height = 0
        try:
            for frame in container.decode(stream):
                stamps.append(float(frame.pts * base) if frame.pts is not None and base else None)
                width, height = frame.width, frame.height
        except (av.FFmpegError, OSError):
            pass  # the frames before the damage are the clip (as a player would show it)
        if not stamps:
            raise VideoError(f"{path}: no decodable frames (corrupt or empty video)")
        fps = _nominal_fps(stream, len(stamps), 0.0) or 30.0
        known = [s for s in stamps if s is not None]
        if len(known) == len(stamps) and all(b > a for a, b in zip(known, known[1:])):
            times = [s - known[0] for s in known]
        else:  # no trustworthy timestamps: place frames at the nominal rate
            times = [i / fps for i in range(len(stamps))]
        span = times[-1] - times[0]
        end_s = times[-1] + (span / (len(times) - 1) if len(times) > 1 and span > 0 else 1 / fps)
        return StreamIndex(path=path, times=tuple(times), end_s=end_s, fps=fps, width=width, height=height,
                           seekable=False)
    finally:
        container.close()


def probe(path: str | Path) -> VideoInfo:
    """Frame count, fps and size without decoding the clip."""
    return read_index(path).info


# --- decoding chosen frames ----------------------------------------------------------------------


def iter_frames(index: StreamIndex, positions: Sequence[int], max_held_bytes: int | None = None) -> Iterator[np.ndarray]:
    """The frames at `positions`, in the order given (repeats and backward steps allowed), each an
    RGB uint8 array (H, W, 3).

    Seeks to the keyframe at or before each frame unless decoding forward from where it is gets
    there sooner. Frames decoded on the way that are asked for later are kept, but only within
    the current keyframe interval: playing a clip backwards holds one interval, never the clip.
    A file that is not `seekable` is decoded from its start, keeping every frame asked for later
    that it passes (for a backwards order: the whole clip); `max_held_bytes` refuses that beyond
    a size. Raises `_IndexMismatch` when the file does not decode as its index says.
    """
    for position in positions:
        if not 0 <= position < index.n_frames:
            raise VideoError(f"{index.path}: frame {position} is outside the clip's {index.n_frames} frames")
    if not positions:
        return
    remaining = Counter(positions)
    held: dict[int, np.ndarray] = {}
    target = positions[0]
    reader = _Reader(index, wants=lambda position: position == target or remaining[position] > 0)
    try:
        for target in positions:
            remaining[target] -= 1
            if target in held:
                frame = held[target] if remaining[target] else held.pop(target)
                yield frame
                continue
            window = reader.go_to(target)
            while True:
                position, frame = reader.next_frame()
                if position > target:
                    raise _IndexMismatch(f"frame {target} was never decoded (next came frame {position})")
                if position == target:
                    image = _rgb(frame)
                    if remaining[target]:
                        held[target] = image
                    yield image
                    break
                if remaining[position] and position >= window and position not in held:
                    held[position] = _rgb(frame)  # every frame of a stream has one size
                    if max_held_bytes is not None and len(held) * held[position].nbytes > max_held_bytes:
                        raise VideoError(_too_much_held(index, max_held_bytes))
    finally:
        reader.close()


def _rgb(frame: av.VideoFrame) -> np.ndarray:
    """The frame as RGB uint8 (H, W, 3). The planar RGB of lossless clips (gbrp) is only reordered
    (PyAV stacks its planes as R, G, B: the same pixels as swscale's conversion, several times faster)."""
    if frame.format.name == "gbrp":
        return np.ascontiguousarray(frame.to_ndarray())
    return frame.to_ndarray(format="rgb24")


def _too_much_held(index: StreamIndex, max_held_bytes: int) -> str:
    why = ("cannot seek (no usable index), so this order of its frames holds" if not index.seekable
           else "has keyframes so far apart that this order of its frames holds")
    return (f"{index.path.name} {why} more than {max_held_bytes / 2**20:.1f} MiB of decoded frames; cut it to the "
            "part the question is about, or re-encode it with keyframes (ffmpeg -i IN -g 250 OUT.mp4)")


class _Reader:
    """A decoder positioned in a stream: `go_to` a frame, then `next_frame` until there.

    With an index, packets of frames nobody `wants` are decoded with `skip_frame=NONREF`: a frame
    no other frame is predicted from (most B-frames) is then not decoded at all, which changes no
    other frame's pixels. Without an index every frame is decoded (positions are counted).
    """

    def __init__(self, index: StreamIndex, wants: Callable[[int], bool]):
        self.index = index
        self.wants = wants
        self.container = _open(index.path)
        self.stream = self.container.streams.video[0]
        self.stream.thread_type = "AUTO"
        self.position_of = {p: i for i, p in enumerate(index.pts)} if index.pts is not None else None
        self.frames: Iterator[av.VideoFrame] | None = None
        self.position = -1  # the last frame decoded

    def _decode(self) -> Iterator[av.VideoFrame]:
        context = self.stream.codec_context
        assert self.position_of is not None
        for packet in self.container.demux(self.stream):
            position = self.position_of.get(packet.pts) if packet.pts is not None else None
            context.skip_frame = "DEFAULT" if position is None or self.wants(position) else "NONREF"
            yield from packet.decode()

    def go_to(self, target: int) -> int:
        """Prepare to decode up to `target`; returns the first position of its keyframe interval
        (for a non-seekable file: where decoding restarted)."""
        if not self.index.seekable:
            if self.frames is None or target <= self.position:
                self._restart_from_start()
            return 0
        key = self.index.keyframe_before(target)
        if self.frames is None or target <= self.position or key > self.position:
            self.container.seek(self.index.pts[key], stream=self.stream, backward=True, any_frame=False)
            self.frames = self._decode()
            self.position = key - 1
        return key

    def _restart_from_start(self) -> None:
        self.container.close()
        self.container = _open(self.index.path)
        self.stream = self.container.streams.video[0]
        self.stream.thread_type = "AUTO"
        self.frames = self.container.decode(self.stream)
        self.position = -1

    def next_frame(self) -> tuple[int, av.VideoFrame]:
        assert self.frames is not None
        try:
            frame = next(self.frames, None)
        except (av.FFmpegError, OSError) as exc:
            raise _IndexMismatch(f"decoding failed after frame {self.position}: {exc}") from None
        if frame is None:
            raise _IndexMismatch(f"the stream ended after frame {self.position}")
        if self.position_of is None:
            position = self.position + 1
        else:  # frames may be skipped, but never out of order or unknown to the index
            position = self.position_of.get(frame.pts, -1) if frame.pts is not None else -1
            if position <= self.position:
                raise _IndexMismatch(f"decoded frame pts {frame.pts} where a frame after {self.position} was expected")
        self.position = position
        return position, frame

    def close(self) -> None:
        self.container.close()


def with_index(path: str | Path, use: Callable[[StreamIndex], T]) -> T:
    """`use(index)` with the file's index; if the file then decodes differently from what its index
    says, `use` runs again from scratch on an index built by decoding (`use` must be restartable:
    writers write to a temporary name, collections start empty)."""
    path = Path(path)
    index = read_index(path)
    try:
        return use(index)
    except _IndexMismatch:
        if not index.seekable:
            raise VideoError(f"{path}: decodes differently on each read (corrupt file)") from None
    try:
        return use(index_by_decoding(path))
    except _IndexMismatch as exc:
        raise VideoError(f"{path}: decodes differently on each read ({exc})") from None


# --- sampling --------------------------------------------------------------------------------


def uniform_indices(n_frames: int, num: int) -> list[int]:
    """`num` frame indices spread evenly over `n_frames` (the middle of each of `num` bins).

    A clip with fewer frames than asked gives each of its frames once (never a frame twice: a
    repeated frame would show the model a pause that is not in the video); the caller says so.
    """
    if n_frames <= 0:
        raise VideoError("cannot sample from a video with no frames")
    if num <= 0:
        raise DyBenchError("number of frames to sample must be positive")
    if num >= n_frames:
        return list(range(n_frames))
    return [int((i + 0.5) * n_frames / num) for i in range(num)]


def frame_position(times: Sequence[float], end_s: float, t: float) -> float:
    """Where time `t` (seconds) falls in the clip, in frames: frame i starts at `times[i]`, the
    clip ends at `end_s` (position len(times)); between two starts the position is interpolated.
    For a constant rate this is exactly t * fps; for a variable rate it follows the timestamps."""
    starts = np.asarray([*times, end_s], dtype=np.float64)
    return float(np.interp(t, starts, np.arange(len(starts), dtype=np.float64)))


def frame_at(times: Sequence[float], end_s: float, t: float) -> int:
    """The frame boundary nearest to time `t`: round(frame_position), from 0 to len(times)."""
    return _nearest(frame_position(times, end_s, t))


def _nearest(position: float) -> int:
    """round(position), halves to even as Python rounds; float noise below 1e-9 frames is dropped
    first, so a tick exactly halfway (2.5 frames at 25 -> 10 fps) rounds as the exact value would."""
    return int(round(round(position, 9)))


def fps_indices(times: Sequence[float], end_s: float, target_fps: float, max_frames: int | None = None) -> list[int]:
    """Frames at `target_fps` by the clip's timestamps (never more than the source has); thinned
    evenly to `max_frames`. Ticks fall every max(1/target_fps, mean frame duration) seconds from
    the first frame; each takes the frame nearest to it in time."""
    n = len(times)
    if n == 0:
        raise VideoError("cannot sample from a video with no frames")
    if target_fps <= 0 or end_s <= 0:
        raise DyBenchError("fps must be positive")
    period = max(1.0 / target_fps, end_s / n)
    count = int(min(n, end_s * target_fps) + 1e-9) or 1
    starts = np.asarray([*times, end_s], dtype=np.float64)
    ticks = np.interp(np.arange(count) * period, starts, np.arange(n + 1, dtype=np.float64))
    indices = sorted({min(n - 1, _nearest(float(t))) for t in ticks})
    if max_frames is not None and len(indices) > max_frames:
        picks = uniform_indices(len(indices), max_frames)
        indices = [indices[p] for p in picks]
    return indices


def sample_positions(times: Sequence[float], end_s: float, num_frames: int | None = None,
                     sample_fps: float | None = None, max_frames: int | None = None) -> list[int]:
    """Which frames to take: `num_frames` spread evenly, or one per tick at `sample_fps`, or all."""
    if num_frames is not None:
        return uniform_indices(len(times), num_frames)
    if sample_fps is not None:
        return fps_indices(times, end_s, sample_fps, max_frames)
    return list(range(len(times)))


def sample_frames(
    frames: np.ndarray,
    fps: float,
    num_frames: int | None = None,
    sample_fps: float | None = None,
    max_frames: int | None = None,
) -> SampledClip:
    """Pick frames of an in-memory constant-rate clip uniformly (`num_frames`) or at `sample_fps`,
    recording indices and timestamps."""
    n = len(frames)
    safe_fps = fps if fps > 0 else 1.0
    times = [i / safe_fps for i in range(n)]
    indices = sample_positions(times, n / safe_fps, num_frames, sample_fps, max_frames)
    return SampledClip(
        frames=frames[indices],
        indices=indices,
        timestamps=[round(times[i], 6) for i in indices],
        source_fps=safe_fps,
        source_n_frames=n,
    )


@dataclass
class SamplePlan:
    """Which frames of a clip (or of its frames [start, end)) a sampling setting picks: `picks`
    count from `start`, `times` are seconds since frame `start` (from the stream's timestamps)."""

    start: int
    end: int
    times: list[float]
    picks: list[int]


def plan_sample(index: StreamIndex, num_frames: int | None = None, sample_fps: float | None = None,
                max_frames: int | None = None, frame_range: tuple[int, int] | None = None,
                path: str | Path = "") -> SamplePlan:
    """The frames `load_clip` decodes, decided from the index alone (the trainer checks its segment
    boundaries against the same picks before training starts)."""
    start, end = frame_range if frame_range is not None else (0, index.n_frames)
    end = min(end, index.n_frames)
    if start < 0 or end <= start:
        raise VideoError(f"{path}: frame range {start}:{end} is empty (the video has {index.n_frames} frames)")
    origin = index.times[start]
    times = [t - origin for t in index.times[start:end]]
    end_s = (index.times[end] if end < index.n_frames else index.end_s) - origin
    return SamplePlan(start, end, times, sample_positions(times, end_s, num_frames, sample_fps, max_frames))


def load_clip(
    path: str | Path,
    num_frames: int | None = None,
    sample_fps: float | None = None,
    max_frames: int | None = None,
    frame_range: tuple[int, int] | None = None,
) -> SampledClip:
    """Sample a video (optionally only its frames [start, end)), decoding only the sampled frames.

    Indices count from the range's first frame and timestamps are seconds since it, from the
    stream's timestamps (`stream_indices` / `stream_timestamps`: the same frames in the whole
    stream). A clip with fewer frames than `num_frames` gives all it has.
    """
    path = Path(path)

    def sample(index: StreamIndex) -> SampledClip:
        window = plan_sample(index, num_frames, sample_fps, max_frames, frame_range, path)
        positions = [window.start + p for p in window.picks]
        frames = np.stack(list(iter_frames(index, positions)))
        return SampledClip(
            frames=frames,
            indices=window.picks,
            timestamps=[round(window.times[p], 6) for p in window.picks],
            source_fps=index.fps if index.fps > 0 else 1.0,
            source_n_frames=window.end - window.start,
            stream_indices=positions,
            stream_timestamps=[round(index.times[p], 6) for p in positions],
        )

    return with_index(path, sample)


# --- writing ---------------------------------------------------------------------------------


VFR_TIME_BASE = Fraction(1, 90000)
"""Timestamps of a variable-rate clip are written in 1/90000 s (MPEG's clock: exact for every
common frame rate)."""


class ClipWriter:
    """Encode RGB frames one at a time, losslessly, to mp4 at a temporary name, moved into place on
    a clean exit (no half-written clips). Frames get a constant rate `fps`, or each its own start
    time (seconds) when `write` is given one (a variable-rate clip)."""

    def __init__(self, path: str | Path, fps: float, variable_rate: bool = False):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = self.path.with_name(f".{self.path.name}.partial")
        self.rate = Fraction(fps).limit_denominator(1001)
        self.variable_rate = variable_rate
        self.container: av.container.OutputContainer | None = None
        self.stream: av.video.stream.VideoStream | None = None
        self.n_frames = 0

    def _start(self, frame: np.ndarray) -> av.video.stream.VideoStream:
        self.container = av.open(str(self.tmp), mode="w", format="mp4")
        stream = self.container.add_stream(CODEC, rate=self.rate, options=dict(CODEC_OPTIONS))
        stream.width = frame.shape[1]
        stream.height = frame.shape[0]
        stream.pix_fmt = "rgb24"
        # One thread: x264's output then never depends on the machine (same seed, same bytes).
        stream.thread_count = 1
        if self.variable_rate:
            stream.codec_context.time_base = VFR_TIME_BASE
            stream.time_base = VFR_TIME_BASE
        self.stream = stream
        return stream

    def write(self, frame: np.ndarray, time_s: float | None = None) -> None:
        if frame.ndim != 3 or frame.shape[-1] != 3 or frame.dtype != np.uint8:
            raise DyBenchError(f"frames must be uint8 (H, W, 3), got {frame.dtype} {frame.shape}")
        stream = self.stream or self._start(frame)
        assert self.container is not None
        picture = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
        if self.variable_rate:
            if time_s is None:
                raise DyBenchError("a variable-rate clip needs each frame's time")
            picture.pts = int(round(time_s / VFR_TIME_BASE))
            picture.time_base = VFR_TIME_BASE
        for packet in stream.encode(picture):
            self.container.mux(packet)
        self.n_frames += 1

    def close(self) -> None:
        """Finish the file and move it into place."""
        if self.container is None or self.stream is None:
            raise DyBenchError(f"{self.path}: no frames to write")
        for packet in self.stream.encode():
            self.container.mux(packet)
        self.container.close()
        self.container = None
        self.tmp.replace(self.path)

    def abort(self) -> None:
        if self.container is not None:
            self.container.close()
            self.container = None
        self.tmp.unlink(missing_ok=True)

    def __enter__(self) -> ClipWriter:
        return self

    def __exit__(self, exc_type: object, *_: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def write_video(path: str | Path, frames: np.ndarray | Iterable[np.ndarray], fps: float,
                times: Sequence[float] | None = None) -> None:
    """Encode RGB frames losslessly to mp4 (constant rate `fps`, or the start time of each frame in
    seconds given in `times`). Writes to a temp name first: no half-written clips."""
    if isinstance(frames, np.ndarray) and (frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8):
        raise DyBenchError(f"frames must be uint8 (T, H, W, 3), got {frames.dtype} {frames.shape}")
    with ClipWriter(path, fps, variable_rate=times is not None) as writer:
        for number, frame in enumerate(frames):
            writer.write(frame, None if times is None else times[number])


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
    return apply_transform(frames, "reverse")


def swap_segments(frames: np.ndarray, boundary: int) -> np.ndarray:
    """Swap the two segments [0, boundary) and [boundary, T)."""
    return apply_transform(frames, "swap_segments", boundary)


def apply_transform(frames: np.ndarray, transform: str, boundary: int | None = None) -> np.ndarray:
    """Apply "original", "hflip", "reverse", "swap_segments" or a composite like "hflip+reverse"
    (the frame order and mirroring `transform_plan` decides)."""
    if transform == "original":
        return frames
    order, mirrored = transform_plan(len(frames), transform, boundary)
    reordered = np.ascontiguousarray(frames[order])
    return hflip(reordered) if mirrored else reordered


def transform_plan(n_frames: int, transform: str, boundary: int | None = None) -> tuple[list[int], bool]:
    """What a transform does to a clip of `n_frames`, without the frames: the source frame of
    each output frame, in output order, and whether each frame is mirrored. Lets a counterfactual
    be made by streaming frames through the encoder (`apply_transform(frames, t, b)` equals
    `frames[order]`, mirrored if `mirrored`)."""
    order = list(range(n_frames))
    mirrored = False
    if transform == "original":
        return order, mirrored
    for part in transform.split("+"):
        if part == "hflip":
            mirrored = not mirrored
        elif part == "reverse":
            order = order[::-1]
        elif part == "swap_segments":
            if boundary is None:
                raise DyBenchError("swap_segments needs the segment boundary")
            if not 0 < boundary < n_frames:
                raise DyBenchError(f"segment boundary {boundary} must lie inside the clip (1..{n_frames - 1})")
            order = order[boundary:] + order[:boundary]
        else:
            raise DyBenchError(f"unknown transform {part!r}")
    return order, mirrored


def mirror(frame: np.ndarray) -> np.ndarray:
    """One frame mirrored left-right (what `hflip` does to each frame)."""
    return cv2.flip(np.ascontiguousarray(frame), 1)
