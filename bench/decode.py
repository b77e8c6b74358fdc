"""How much dybench's clip loading costs against the least a program must do for the same frames.

On a generated long clip (640x360 H.264 at 30 fps, x264's defaults: B-frames, a keyframe every
250 frames), each method runs in its own process and reports its wall time and peak memory:

- `dybench`: `dybench.video.load_clip(path, num_frames=16)` (index, seek, decode, RGB);
- `pyav`: the plain PyAV reference for the same 16 frames: for each, seek to the keyframe before
  its timestamp (nominal rate) and decode forward to it, converting only that frame to RGB;
- `full` (with --full-decode, 60 s clip only): what dybench did before, decode every frame, then sample;
- `eval`: the whole `dybench eval --model baseline:constant --num-frames 16` process on a
  two-item manifest of the clip (peak memory of the process is the figure that matters).

Targets: dybench <= 1.3x the reference's time; eval peak memory <= 600 MB, the same for a
10-minute clip as for a 60-second one.

    .venv/bin/python bench/decode.py [--seconds 60] [--long-minutes 10] [--repeats 3] [--full-decode]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import av
import numpy as np

NUM_FRAMES = 16
WIDTH, HEIGHT, FPS = 640, 360, 30


def generate_clip(path: Path, seconds: float) -> None:
    """A moving square over drifting gradients with grain: H.264 (libx264 veryfast, CRF 23)."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:HEIGHT, 0:WIDTH]
    grain = rng.integers(0, 16, size=(4, HEIGHT, WIDTH, 3), dtype=np.uint8)
    backgrounds = [np.stack([(xx + 4 * k) % 256, (yy + 3 * k) % 256, np.full_like(xx, 7 * k % 256)], -1).astype(np.uint8)
                   for k in range(FPS)]
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=FPS, options={"crf": "23", "preset": "veryfast"})
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        for number in range(int(seconds * FPS)):
            t = number / FPS
            frame = backgrounds[number % FPS] + grain[number % 4]
            cx, cy = int(WIDTH / 2 + WIDTH / 3 * np.sin(t)), int(HEIGHT / 2 + HEIGHT / 3 * np.cos(0.7 * t))
            frame[max(0, cy - 30):cy + 30, max(0, cx - 30):cx + 30] = (255, 40, 40)
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def write_manifest(folder: Path, clip: Path) -> None:
    """Two items (one pair) on the clip, in the manifest format `dybench eval` reads."""
    (folder / "videos").mkdir(parents=True, exist_ok=True)
    target = folder / "videos" / clip.name
    if not target.exists():  # a hard link: a symlink would point outside the folder, which eval refuses
        try:
            os.link(clip, target)
        except OSError:
            shutil.copyfile(clip, target)
    base = {"category": "moving_direction", "task": "moving_direction", "kind": "dynamic", "pair_id": "p0",
            "question": "In which direction does the red square move?", "options": ["left", "right"],
            "video": f"videos/{clip.name}"}
    rows = [{**base, "id": "p0-original", "answer": "A", "transform": "original"},
            {**base, "id": "p0-hflip", "answer": "B", "transform": "hflip"}]
    (folder / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


# --- the methods (each runs in a child process: `decode.py --child METHOD CLIP`) ----------------


def load_with_dybench(path: str) -> np.ndarray:
    from dybench.video import load_clip

    return load_clip(path, num_frames=NUM_FRAMES).frames


def load_full_decode(path: str) -> np.ndarray:
    from dybench.video import read_frames, sample_frames

    frames, fps = read_frames(path)
    return sample_frames(frames, fps, num_frames=NUM_FRAMES).frames


def load_with_pyav(path: str) -> np.ndarray:
    """The reference: the same indices, each found by a seek to its nominal timestamp."""
    with av.open(path) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        n_frames, rate, base = stream.frames, stream.average_rate, stream.time_base
        start = stream.start_time or 0
        indices = [int((i + 0.5) * n_frames / NUM_FRAMES) for i in range(NUM_FRAMES)]
        frames = []
        for index in indices:
            target = start + int(round(index / rate / base))
            container.seek(target, stream=stream, backward=True, any_frame=False)
            for frame in container.decode(stream):
                if frame.pts is not None and frame.pts >= target:
                    frames.append(frame.to_ndarray(format="rgb24"))
                    break
        return np.stack(frames)


METHODS = {"dybench": load_with_dybench, "pyav": load_with_pyav, "full": load_full_decode}


def child(method: str, path: str) -> None:
    import resource

    started = time.perf_counter()
    frames = METHODS[method](path)
    seconds = time.perf_counter() - started
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": seconds, "peak_mb": peak_mb, "shape": list(frames.shape),
                      "sha256": hashlib.sha256(frames.tobytes()).hexdigest()}))


def measured(command: list[str]) -> tuple[float, float, str]:
    """(wall seconds, peak RSS in MB, stdout) of one process: its own resource usage from wait4,
    not the largest of all the children so far."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        started = time.perf_counter()
        process = subprocess.Popen(command, stdout=out, stderr=err, text=True, env={**os.environ, "COLUMNS": "200"})
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        if process.returncode:
            raise SystemExit(f"{' '.join(command)} failed:\n{err.read()}")
        return seconds, usage.ru_maxrss / 1024, out.read()


def run_method(method: str, clip: Path) -> dict:
    _, peak_mb, out = measured([sys.executable, __file__, "--child", method, str(clip)])
    return {**json.loads(out.strip().splitlines()[-1]), "process_peak_mb": peak_mb}


def run_eval(clip: Path, work: Path) -> dict:
    """Peak memory and time of a whole `dybench eval` process on a two-item manifest of the clip."""
    data = work / f"data-{clip.stem}"
    write_manifest(data, clip)
    out = work / f"run-{clip.stem}-{time.monotonic_ns()}"
    seconds, peak_mb, _ = measured([sys.executable, "-c", "from dybench.cli import main; main()", "eval", "--model",
                                    "baseline:constant", "--num-frames", str(NUM_FRAMES), "--data", str(data),
                                    "--out", str(out), "--no-progress"])
    errors = [json.loads(line).get("error") for line in (out / "predictions.jsonl").read_text().splitlines()]
    if any(errors):
        raise SystemExit(f"dybench eval could not decode the clip: {errors}")
    return {"seconds": seconds, "peak_mb": peak_mb}


def bench_clip(clip: Path, work: Path, repeats: int, full_decode: bool) -> None:
    print(f"\n{clip.name}: {clip.stat().st_size / 2**20:.0f} MiB")
    methods = ["pyav", "dybench", *(["full"] if full_decode else [])]
    results: dict[str, list[dict]] = {m: [] for m in methods}
    for _ in range(repeats):
        for method in methods:
            results[method].append(run_method(method, clip))
    digests = {r["sha256"] for rs in results.values() for r in rs}
    print(f"  same frames from every method: {len(digests) == 1}")
    best = {m: min(r["seconds"] for r in rs) for m, rs in results.items()}
    for method in methods:
        times = ", ".join(f"{r['seconds']:.2f}" for r in results[method])
        peaks = ", ".join(f"{r['process_peak_mb']:.0f}" for r in results[method])
        print(f"  {method:8s} time s [{times}]  peak MB [{peaks}]  time / pyav (best of {repeats}): "
              f"{best[method] / best['pyav']:.2f}x")
    for _ in range(repeats):
        evaluated = run_eval(clip, work)
        print(f"  eval process (baseline:constant, 2 items, --num-frames {NUM_FRAMES}): "
              f"{evaluated['seconds']:.2f} s, peak {evaluated['peak_mb']:.0f} MB")


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--child":
        child(sys.argv[2], sys.argv[3])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--long-minutes", type=float, default=10, help="0: skip the long clip")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--full-decode", action="store_true", help="also time the old full decode (60 s clip only)")
    parser.add_argument("--keep", type=Path, help="generate clips into (and reuse them from) this folder")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = args.keep or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        clips = [(work / f"clip-{args.seconds:g}s.mp4", args.seconds)]
        if args.long_minutes > 0:
            clips.append((work / f"clip-{args.long_minutes:g}min.mp4", args.long_minutes * 60))
        for number, (clip, seconds) in enumerate(clips):
            if not clip.exists():
                started = time.perf_counter()
                generate_clip(clip, seconds)
                print(f"generated {clip.name} in {time.perf_counter() - started:.0f} s")
            bench_clip(clip, Path(tmp), args.repeats, args.full_decode and number == 0)


if __name__ == "__main__":
    main()
