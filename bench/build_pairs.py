"""How fast `build-pairs` is: synthetic pairs per second with 1 and 2 workers, and `--from-videos`
against the ffmpeg command line doing the same counterfactuals on the same clips.

The reference is measured in the same run: for every annotated clip, one ffmpeg process with
`-vf hflip` or `-vf reverse` and our codec settings (`-c:v libx264rgb -qp 0 -preset ultrafast`),
which is what a user would script without dybench. Target: ours at least 1.5x faster.

    .venv/bin/python bench/build_pairs.py [--pairs-per-task 8] [--clips 24] [--size 256] [--frames 48] [--repeat 5]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import av
import numpy as np

from dybench.build import build_from_videos, build_synthetic
from dybench.synth import GENERATORS, SceneOptions
from dybench.video import read_frames


def ffmpeg_binary() -> str:
    """imageio-ffmpeg's static build if installed (it has libx264rgb), else ffmpeg on PATH."""
    try:
        import imageio_ffmpeg

        return imageio_ffmpeg.get_ffmpeg_exe()
    except ImportError:
        found = shutil.which("ffmpeg")
        if not found:
            raise SystemExit("no ffmpeg: pip install imageio-ffmpeg (the dev extra) or apt-get install ffmpeg")
        return found


def best_of(runs: dict[str, object], repeat: int) -> dict[str, float]:
    """Seconds of each variant, best of `repeat` rounds. Each round runs every variant back to back,
    so a burst of load from other processes on a shared machine hits all of them alike.
    `runs[name](round)` must write into a fresh folder for each round."""
    best = {name: float("inf") for name in runs}
    for round_ in range(repeat):
        for name, fn in runs.items():
            start = time.perf_counter()
            fn(round_)  # type: ignore[operator]
            best[name] = min(best[name], time.perf_counter() - start)
    return best


def bench_synthetic(root: Path, pairs_per_task: int, repeat: int) -> None:
    n_pairs = 3 * pairs_per_task
    seconds = best_of({
        f"{workers}": (lambda r, w=workers: build_synthetic(root / f"synthetic-{w}-{r}", pairs_per_task=pairs_per_task,
                                                           seed=0, workers=w, progress=False))
        for workers in (1, 2)
    }, repeat)
    for workers, value in seconds.items():
        print(f"synthetic, {workers} worker(s): {n_pairs} pairs in {value:.2f} s = {n_pairs / value:.1f} pairs/s")
    print(f"synthetic speed-up 2 workers / 1 worker: {seconds['1'] / seconds['2']:.2f}x")


def write_camera_clip(path: Path, frames: np.ndarray, fps: int) -> None:
    """Encode like a camera or phone would: lossy H.264, yuv420p (what users' videos look like)."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def make_sources(folder: Path, clips: int, size: int, frames: int) -> Path:
    """Moving-object clips with known directions, and their annotations."""
    folder.mkdir(parents=True)
    options = SceneOptions(size=size, n_frames=frames)
    rows = []
    keys = ["left", "right", "up", "down"]
    for i in range(clips):
        key = keys[i % 4]
        rendered = GENERATORS["moving_direction"].render(np.random.default_rng(i), options, "object_motion", key)
        write_camera_clip(folder / f"clip{i:03d}.mp4", rendered.frames, 8)
        rows.append({"video": f"clip{i:03d}.mp4", "task": "moving_direction", "options": keys, "answer": key})
    annotations = folder.parent / "annotations.jsonl"
    annotations.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return annotations


def bench_from_videos(root: Path, clips: int, size: int, frames: int, repeat: int) -> None:
    src = root / "src"
    annotations = make_sources(src, clips, size, frames)
    ffmpeg = ffmpeg_binary()
    out = root / "ffmpeg"
    out.mkdir()
    commands = []
    for line in annotations.read_text().splitlines():
        row = json.loads(line)
        flt = "hflip" if row["answer"] in ("left", "right") else "reverse"  # what dybench picks too
        commands.append([ffmpeg, "-nostdin", "-loglevel", "error", "-y", "-i", str(src / row["video"]), "-vf", flt,
                         "-c:v", "libx264rgb", "-qp", "0", "-preset", "ultrafast", str(out / f"{flt}-{row['video']}")])
    seconds = best_of({
        "ours-1": lambda r: build_from_videos(src, annotations, root / f"ours-1-{r}", progress=False),
        "ours-2": lambda r: build_from_videos(src, annotations, root / f"ours-2-{r}", workers=2, progress=False),
        "ffmpeg": lambda r: [subprocess.run(c, check=True) for c in commands],
    }, repeat)
    # Same frames either way (both lossless): the comparison is like for like.
    first = json.loads(annotations.read_text().splitlines()[0])
    mine = next((root / "ours-1-0" / "videos").glob("clip000-*-hflip.mp4"))
    same = np.array_equal(read_frames(mine)[0], read_frames(out / f"hflip-{first['video']}")[0])
    ours, ours_2, reference = seconds["ours-1"], seconds["ours-2"], seconds["ffmpeg"]
    print(f"--from-videos: {clips} clips of {size}x{size}x{frames} (yuv420p H.264 sources): dybench {ours:.2f} s "
          f"(1 worker), {ours_2:.2f} s (2 workers); ffmpeg command line {reference:.2f} s "
          f"({ffmpeg.split('/')[-1]}, one process per clip, its own threads)")
    print(f"ratio ffmpeg time / dybench time: {reference / ours:.2f}x with 1 worker, {reference / ours_2:.2f}x with "
          f"2 workers (target >= 1.5x); identical frames: {same}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs-per-task", type=int, default=8)
    parser.add_argument("--clips", type=int, default=24)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--frames", type=int, default=48)
    parser.add_argument("--repeat", type=int, default=5, help="rounds per measurement; the best is reported")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="dybench-bench-") as tmp:
        root = Path(tmp)
        bench_synthetic(root, args.pairs_per_task, args.repeat)
        bench_from_videos(root, args.clips, args.size, args.frames, args.repeat)


if __name__ == "__main__":
    main()
