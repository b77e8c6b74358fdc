"""`dybench build-pairs`: counterfactual pairs, rendered procedurally or made from the user's videos.

A build is a list of *jobs* (one pair each) run by a process pool. Each job writes its clips
atomically, then the main process appends the job's manifest rows in one write, so an interrupted
build never lists a clip that is not complete, and a rerun skips every finished job. At the end
the manifest is rewritten in canonical order (so the same seed gives the same bytes whatever
--workers was) and the data card `README.md` is written next to it.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import multiprocessing.connection
import os
import shutil
import signal
import string
import threading
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, Field, FiniteFloat, ValidationError

from dybench.data import MANIFEST, refuse_nul
from dybench.atomic import write_text_atomic
from dybench.errors import DyBenchError, pydantic_message
from dybench.schema import Item, letter, letter_index
from dybench.synth import GENERATOR_VERSION, GENERATORS
from dybench.synth.pairs import PairPlan, build_pair, plan_pair
from dybench.synth.scene import COLORS, SceneOptions
from dybench.text_files import decode_text, read_text
from dybench.tasks import Task, answer_key_after, get_task, load_tasks, pair_transforms_that_change, split_transform
from dybench.video import (
    ClipWriter,
    StreamIndex,
    VideoError,
    VideoInfo,
    frame_at,
    iter_frames,
    mirror,
    probe,
    transform_plan,
    with_index,
)

BUILD_CONFIG = "build.json"
CARD = "README.md"
CARD_TEMPLATE = Path(__file__).resolve().parents[1] / "data_cards" / "TEMPLATE.md"
Split = Literal["test", "train"]
MAX_HELD_BYTES = 4 << 30
"""Decoded frames a counterfactual may hold at once. Only reversing a file that cannot seek holds
more than one keyframe interval (it holds the whole clip); beyond this it is refused."""


class BuildConfig(BaseModel):
    """What a dataset folder was built from; a rerun must match it to resume."""

    source: Literal["synthetic", "videos"]
    generator_version: str = GENERATOR_VERSION
    tasks: list[str] = Field(default_factory=list)
    pairs_per_task: int | None = None
    seed: int | None = None
    split: Split = "test"
    scene: SceneOptions | None = None
    videos: str | None = None


class CategoryCounts(BaseModel):
    items: int = 0
    pairs: int = 0
    letters: dict[str, int] = Field(default_factory=dict)


class BuildSummary(BaseModel):
    """What a build produced: counts per category and answer letter, where, and from what."""

    out: Path
    n_items: int
    n_pairs: int
    n_clips: int
    per_category: dict[str, CategoryCounts]
    per_letter: dict[str, int]
    config: BuildConfig
    built_jobs: int = Field(description="jobs (pairs) rendered by this run")
    resumed_jobs: int = Field(description="jobs already finished by an earlier run and skipped")


# --- the job runner -------------------------------------------------------------------------------


def _read_finished_rows(manifest: Path, out: Path) -> dict[str, list[dict]]:
    """Rows of complete jobs, by job. A torn last line (a crash mid-write) is cut off; a job with
    missing rows or a missing clip is dropped so it is rebuilt."""
    if not manifest.exists():
        return {}
    data = manifest.read_bytes()
    if data and not data.endswith(b"\n"):
        data = data[: data.rfind(b"\n") + 1]
    by_job: dict[str, list[dict]] = {}
    for number, line in enumerate(decode_text(data, manifest).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            job = row["meta"]["job"]
        except (json.JSONDecodeError, KeyError, TypeError):
            raise DyBenchError(f"{manifest}:{number}: not a row written by build-pairs; use a new --out folder") from None
        by_job.setdefault(job, []).append(row)
    complete = {}
    for job, rows in by_job.items():
        if len(rows) == rows[0]["meta"].get("job_rows") and all((out / r["video"]).is_file() for r in rows):
            complete[job] = rows
    return complete


def _write_rows(manifest: Path, rows: Iterable[dict]) -> None:
    """Append a job's rows: a killed build leaves whole jobs, or at worst one torn last line, which
    the next run cuts off. A write the disk cannot hold is cut back to where it started, so a full
    disk never leaves part of a job listed. (No fsync: the clips are not synced either, and a
    process being killed, the case that matters, loses nothing already written.)"""
    payload = "".join(json.dumps(row, sort_keys=True) + "\n" for row in rows).encode()
    fd = os.open(manifest, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        start = os.fstat(fd).st_size
        try:
            written = 0
            while written < len(payload):  # a short write (disk nearly full) must be finished or fail
                written += os.write(fd, payload[written:])
        except BaseException:  # disk full, or an interrupt between two parts of a short write
            os.ftruncate(fd, start)
            raise
    finally:
        os.close(fd)


def _prepare_folder(out: Path, config: BuildConfig) -> None:
    out.mkdir(parents=True, exist_ok=True)
    saved = out / BUILD_CONFIG
    if saved.exists():
        try:
            previous = BuildConfig.model_validate_json(read_text(saved))
        except ValidationError as exc:
            raise DyBenchError(f"{saved}: {pydantic_message(exc)}; use a new --out folder") from None
        if previous != config:
            differing = [k for k in config.model_fields if getattr(previous, k) != getattr(config, k)]
            raise DyBenchError(
                f"{out} was built with different settings ({', '.join(differing)}); "
                "rerun with the same options to resume, or use a new --out folder"
            )
    elif (out / MANIFEST).exists():
        raise DyBenchError(f"{out / MANIFEST} exists but was not written by build-pairs; use a new --out folder")
    else:
        write_text_atomic(saved, config.model_dump_json(indent=2) + "\n")


# Workers start from a clean server process, not a fork of this one: forking a process whose
# OpenCV, x264 or BLAS thread pools are running can leave a child waiting forever on a lock.
# The server imports the builder once, so each worker starts in milliseconds.
_POOL_CONTEXT = multiprocessing.get_context("forkserver")
_POOL_CONTEXT.set_forkserver_preload(["dybench.build"])


def _start_worker() -> None:
    """Pool initializer. Interrupts are the main process's to handle (it stops the pool and keeps the
    finished pairs), so a Ctrl-C sent to the terminal's whole process group is ignored here. And a
    worker exits as soon as the main process is gone: killed outright, it could stop no one, and the
    workers would otherwise wait for jobs forever."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    parent = multiprocessing.parent_process()
    if parent is not None:
        threading.Thread(target=_exit_when_closed, args=(parent.sentinel,), daemon=True).start()


def _exit_when_closed(sentinel: int) -> None:
    multiprocessing.connection.wait([sentinel])  # readable once the main process has exited
    os._exit(1)


def _stop_pool(pool: ProcessPoolExecutor) -> None:
    """Stop at once: queued jobs are cancelled and running ones abandoned (none of their rows is in
    the manifest yet, so the next run renders them again; half-written clips are temp files)."""
    # Python 3.14 has pool.terminate_workers(); before it, the processes are only reachable here.
    processes = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        process.terminate()
    for process in processes:
        process.join(timeout=10)
        if process.is_alive():
            process.kill()


def _run_jobs(
    out: Path,
    jobs: list[tuple[str, Callable[..., list[dict]], tuple]],
    workers: int,
    progress: bool,
    label: str,
) -> tuple[dict[str, list[dict]], int]:
    """Run the unfinished jobs; return (rows by job, jobs built now)."""
    manifest = out / MANIFEST
    finished = _read_finished_rows(manifest, out)
    # Rewrite the manifest without torn or incomplete jobs before appending anything new.
    write_text_atomic(manifest, "".join(json.dumps(r, sort_keys=True) + "\n" for rows in finished.values() for r in rows))
    pending = [(name, fn, args) for name, fn, args in jobs if name not in finished]

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TimeRemainingColumn(), disable=not progress, transient=False)

    def record(name: str, rows: list[dict]) -> None:
        _write_rows(manifest, rows)
        finished[name] = rows
        bar.advance(task_id)

    with bar:
        task_id = bar.add_task(label, total=len(jobs), completed=len(jobs) - len(pending))
        if workers <= 1 or len(pending) <= 1:
            for name, fn, args in pending:
                record(name, fn(*args))
        else:
            pool = ProcessPoolExecutor(max_workers=workers, mp_context=_POOL_CONTEXT, initializer=_start_worker)
            running: dict[Future, str] = {}
            queue = iter(pending)
            try:
                # Keep at most 2 jobs per worker in flight so an interrupt loses little work.
                for name, fn, args in queue:
                    running[pool.submit(fn, *args)] = name
                    if len(running) >= 2 * workers:
                        break
                while running:
                    done, _ = wait(running, return_when=FIRST_COMPLETED)
                    for future in done:
                        name = running.pop(future)
                        record(name, future.result())
                        for next_name, fn, args in queue:
                            running[pool.submit(fn, *args)] = next_name
                            break
            except BaseException:
                _stop_pool(pool)
                raise
            pool.shutdown()
    return finished, len(pending)


def _finish(out: Path, jobs: list[str], rows_by_job: dict[str, list[dict]], config: BuildConfig,
            built: int) -> BuildSummary:
    rows = [row for name in jobs for row in rows_by_job[name]]
    # clips, manifests or cards a killed run had half written
    for leftover in [*out.glob(".*.partial"), *(out / "videos").glob(".*.partial")]:
        leftover.unlink()
    write_text_atomic(out / MANIFEST, "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))
    summary = summarize(out, [Item.model_validate(r) for r in rows], config, built, len(jobs) - built)
    write_card(out, summary)
    return summary


def summarize(out: Path, items: list[Item], config: BuildConfig, built: int = 0, resumed: int = 0) -> BuildSummary:
    per_category: dict[str, CategoryCounts] = {}
    pairs: dict[str, set[str]] = {}
    for item in items:
        counts = per_category.setdefault(item.category, CategoryCounts())
        counts.items += 1
        counts.letters[item.answer] = counts.letters.get(item.answer, 0) + 1
        pairs.setdefault(item.category, set()).add(item.pair_id)
    for category, ids in pairs.items():
        per_category[category].pairs = len(ids)
        per_category[category].letters = dict(sorted(per_category[category].letters.items()))
    return BuildSummary(
        out=out,
        n_items=len(items),
        n_pairs=len({i.pair_id for i in items}),
        n_clips=len({i.video for i in items}),
        per_category=dict(sorted(per_category.items())),
        per_letter=dict(sorted(Counter(i.answer for i in items).items())),
        config=config,
        built_jobs=built,
        resumed_jobs=resumed,
    )


# --- synthetic ------------------------------------------------------------------------------------


def _synthetic_job(out: str, plan: PairPlan, seed: int, options: dict, with_static: bool) -> list[dict]:
    items = build_pair(Path(out), plan, seed, SceneOptions.model_validate(options), with_static)
    return [item.model_dump(mode="json") for item in items]


def resolve_tasks(tasks: list[str] | None) -> list[Task]:
    """The dynamic tasks to render (all by default); a static task or unknown name is an error."""
    names = tasks or [name for name in GENERATORS if name in load_tasks()]
    resolved = []
    for name in names:
        task = get_task(name)
        if task.kind == "static":
            raise DyBenchError(
                f"task {name!r} is a static control question: it is asked on every clip of --split train, "
                f"not rendered on its own; choose from {', '.join(GENERATORS)}"
            )
        if name not in GENERATORS:
            raise DyBenchError(f"task {name!r} has no procedural generator; known: {', '.join(GENERATORS)}")
        resolved.append(task)
    return resolved


def build_synthetic(
    out: Path,
    tasks: list[str] | None = None,
    pairs_per_task: int = 8,
    seed: int = 0,
    split: Split = "test",
    workers: int = 1,
    progress: bool = True,
    **scene: Any,
) -> BuildSummary:
    """Render `pairs_per_task` counterfactual pairs per task into `out` (resumable).

    `scene` options (see SceneOptions): size, n_frames, fps, noise, color_by_direction.
    The `train` split also asks the static control questions on every clip where they are
    unambiguous (answer unchanged by the transform; each static question has its own pair_id).
    """
    out = Path(out)
    refuse_nul(out, "--out")
    if pairs_per_task < 1:
        raise DyBenchError("--pairs-per-task must be at least 1")
    if split not in ("test", "train"):
        raise DyBenchError(f"--split must be test or train, got {split!r}")
    try:
        options = SceneOptions(**scene)
    except ValidationError as exc:
        raise DyBenchError(f"scene option {pydantic_message(exc)}") from None
    if options.color_by_direction:
        direction = get_task("moving_direction").variants[0]
        for key, color in options.color_by_direction.items():
            if key not in direction.options or color not in COLORS:
                raise DyBenchError(f"color_by_direction: {key!r} -> {color!r}: directions are {list(direction.options)}, "
                                   f"colours {list(COLORS)}")
    chosen = resolve_tasks(tasks)
    config = BuildConfig(source="synthetic", tasks=[t.name for t in chosen], pairs_per_task=pairs_per_task,
                         seed=seed, split=split, scene=options)
    _prepare_folder(out, config)
    jobs = []
    for task in chosen:
        for index in range(pairs_per_task):
            plan = plan_pair(task, index, seed)
            jobs.append((f"{task.name}/{index}", _synthetic_job,
                         (str(out), plan, seed, options.model_dump(), split == "train")))
    rows, built = _run_jobs(out, jobs, workers, progress, f"rendering pairs into {out}")
    return _finish(out, [name for name, _, _ in jobs], rows, config, built)


# --- from the user's videos -----------------------------------------------------------------------


class Annotation(BaseModel):
    """One line of the annotations file (JSON). See `dybench build-pairs --help`."""

    video: str = Field(description="path of the clip, relative to the --from-videos folder")
    task: str
    question: str | None = Field(default=None, description="default: the task's question template")
    options: list[str] = Field(min_length=2)
    answer: str = Field(description="option letter, or the text of the correct option")
    variant: str | None = None
    option_keys: list[str] | None = None
    transform: str | None = Field(default=None, description="default: the first pair transform that changes the answer")
    segments: list[tuple[FiniteFloat, FiniteFloat]] | None = Field(
        default=None, description="event_sequence: two [start, end] time ranges in seconds, in the order they happen"
    )


class _Neutral(dict):
    def __missing__(self, key: str) -> str:
        return "object"


class VideoJob(BaseModel):
    where: str
    source: str
    pair_id: str
    task: str
    question: str
    options: list[str]
    variant: str
    option_keys: list[str]
    answer_key: str
    transform: str
    segments: list[tuple[float, float]] | None = None


def _match_keys(task: Task, annotation: Annotation, where: str) -> tuple[str, list[str]]:
    """(variant, option keys): as given, else by matching option texts to the task's options."""
    if annotation.variant is not None:
        variants = [task.variant(annotation.variant)]
    else:
        variants = task.variants
    if annotation.option_keys is not None:
        if len(variants) > 1:
            raise DyBenchError(f"{where}: option_keys given without variant; task {task.name} has several "
                               f"({', '.join(v.name for v in task.variants)})")
        keys = annotation.option_keys
        unknown = [k for k in keys if k not in variants[0].options]
        if unknown or len(keys) != len(annotation.options) or len(set(keys)) != len(keys):
            raise DyBenchError(f"{where}: option_keys {keys} must be distinct keys of {task.name}/{variants[0].name} "
                               f"({', '.join(variants[0].options)}), one per option")
        return variants[0].name, keys
    normalise = lambda text: " ".join(text.lower().strip().rstrip(".").split())  # noqa: E731
    for variant in variants:
        fixed = {normalise(t): k for k, t in variant.options.items() if "{" not in t}
        if fixed and all(normalise(o) in fixed for o in annotation.options):
            return variant.name, [fixed[normalise(o)] for o in annotation.options]
        # Free-text options (event descriptions): keys in the order given.
        if not fixed and len(annotation.options) == len(variant.options):
            return variant.name, list(variant.options)
    raise DyBenchError(
        f"{where}: options {annotation.options} do not match task {task.name}'s options; "
        "give variant and option_keys"
    )


def segments_problem(segments: list[tuple[float, float]], duration: VideoInfo) -> str | None:
    """What is wrong with two event ranges (seconds), or None. The pair's labels assume the first
    range happens first and that the two do not share frames, so both are checked, not assumed."""
    if len(segments) != 2:
        return f"give two [start, end] time ranges in seconds, got {len(segments)}"
    # Half a frame of slack: an end given as the clip's length in seconds still cuts at its last frame.
    slack = 0.5 / duration.fps if duration.fps > 0 else 0.0
    for start, end in segments:
        if not 0 <= start < end:
            return f"each range needs 0 <= start < end, got [{start:g}, {end:g}]"
        if duration.duration_s > 0 and end > duration.duration_s + slack:
            return f"range [{start:g}, {end:g}] runs past the end of the {duration.duration_s:g} s clip"
    (first_start, first_end), (second_start, second_end) = segments
    if second_start < first_start:
        return (f"ranges [{first_start:g}, {first_end:g}] and [{second_start:g}, {second_end:g}] are not in "
                "time order; list the earlier event first")
    if second_start < first_end:
        return f"ranges [{first_start:g}, {first_end:g}] and [{second_start:g}, {second_end:g}] overlap"
    return None


def _duration(source: Path, where: str) -> VideoInfo:
    try:
        return probe(source)
    except VideoError as exc:
        raise DyBenchError(f"{where}: {exc}") from None


def parse_annotations(path: Path, src: Path) -> list[VideoJob]:
    """Validate every line before anything is built; errors name file:line."""
    if not path.is_file():
        raise DyBenchError(f"{path}: annotations file not found")
    jobs = []
    seen: dict[str, int] = {}
    for number, line in enumerate(read_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            annotation = Annotation.model_validate_json(line)
        except ValidationError as exc:
            first = exc.errors()[0]
            if first["type"] == "json_invalid":
                raise DyBenchError(f"{where}: not valid JSON; one JSON object per line") from None
            raise DyBenchError(f"{where}: {pydantic_message(exc)}") from None
        try:
            task = get_task(annotation.task)
        except DyBenchError as exc:
            raise DyBenchError(f"{where}: {exc}") from None
        if task.kind == "static":
            raise DyBenchError(f"{where}: task {task.name} is static: no transform changes its answer, so it makes no pair")
        try:
            refuse_nul(Path(annotation.video), "field video")
        except DyBenchError as exc:
            raise DyBenchError(f"{where}: {exc}") from None
        source = (src / annotation.video).resolve()
        if not source.is_relative_to(src.resolve()):
            raise DyBenchError(f"{where}: video {annotation.video!r} is outside {src}")
        if not source.is_file():
            raise DyBenchError(f"{where}: video {annotation.video!r} not found in {src}")
        try:
            variant, keys = _match_keys(task, annotation, where)
        except DyBenchError as exc:
            raise DyBenchError(str(exc) if str(exc).startswith(where) else f"{where}: {exc}") from None
        answer = annotation.answer.strip()
        if len(answer) == 1 and answer.isupper():
            index = letter_index(answer)
            if index >= len(annotation.options):
                raise DyBenchError(f"{where}: answer {answer} is out of range for {len(annotation.options)} options")
        elif answer in annotation.options:
            index = annotation.options.index(answer)
        else:
            raise DyBenchError(f"{where}: answer {answer!r} is neither an option letter nor one of the options")
        key = keys[index]
        changing = pair_transforms_that_change(task, variant, key)
        transform = annotation.transform or (changing[0] if changing else None)
        if transform is None:
            raise DyBenchError(f"{where}: no pair transform of {task.name} changes the answer {key!r}, "
                               "so its counterfactual would have the same answer")
        try:
            parts = split_transform(transform)
        except DyBenchError as exc:
            raise DyBenchError(f"{where}: {exc}") from None
        if answer_key_after(task, variant, key, transform) == key:
            raise DyBenchError(f"{where}: transform {transform} does not change the answer {key!r}")
        if "swap_segments" in parts and (not annotation.segments or len(annotation.segments) != 2):
            raise DyBenchError(f"{where}: field segments: swap_segments needs two [start, end] time ranges in seconds")
        if annotation.segments is not None:
            problem = segments_problem(annotation.segments, _duration(source, where))
            if problem:
                raise DyBenchError(f"{where}: field segments: {problem}")
        # Without a question, the task's own, with a neutral word for the scene's placeholders.
        question = annotation.question or task.variant(variant).question.format_map(_Neutral())
        # The pair id hashes the annotation itself: editing a line rebuilds that pair only.
        stem = Path(annotation.video).with_suffix("").as_posix().replace("/", "_")
        pair_id = f"{stem}-{hashlib.sha256(line.strip().encode()).hexdigest()[:10]}"
        if pair_id in seen:
            raise DyBenchError(f"{where}: the same annotation as line {seen[pair_id]}")
        seen[pair_id] = number
        jobs.append(VideoJob(
            where=where, source=str(source), pair_id=pair_id, task=task.name, question=question,
            options=annotation.options, variant=variant, option_keys=keys, answer_key=key, transform=transform,
            segments=annotation.segments,
        ))
    if not jobs:
        raise DyBenchError(f"{path}: no annotations (one JSON object per line)")
    return jobs


def _refuse_unchanged(job: VideoJob, index: StreamIndex, positions: list[int], order: list[int],
                      mirrored: bool) -> None:
    """Two clips with the same pixels cannot have different answers: a 1-frame clip reversed, a
    still clip, a symmetric one mirrored. Refuse the pair, before any clip of it is written, rather
    than write a wrong label. Output frame i of the counterfactual is source frame
    positions[order[i]] (mirrored or not); the first i where that differs from the original's
    frame positions[i] settles it, which for real footage is i = 0 (two frames decoded)."""
    digests: dict[tuple[int, bool], bytes] = {}

    def digest(position: int, flip: bool) -> bytes:
        if (position, flip) not in digests:
            [frame] = iter_frames(index, [position], max_held_bytes=MAX_HELD_BYTES)
            frame = np.ascontiguousarray(mirror(frame)) if flip else frame
            digests[(position, flip)] = hashlib.blake2b(frame.tobytes(), digest_size=16).digest()
        return digests[(position, flip)]

    for i, source in enumerate(order):
        if positions[i] != positions[source] or mirrored:
            if digest(positions[i], False) != digest(positions[source], mirrored):
                return
    raise DyBenchError(
        f"{job.where}: the {job.transform} counterfactual of {Path(job.source).name} has the same frames as the "
        f"original ({len(positions)} frame(s)), so one clip would get two answers; annotate a clip whose "
        "content changes under the transform, or choose another transform"
    )


def _segment_cuts(index: StreamIndex, segments: list[tuple[float, float]], where: str) -> list[tuple[int, int]]:
    """Frames [start, end) of each time range, by the stream's timestamps (a variable-rate clip's
    frames are not index / fps): each bound goes to the frame boundary nearest to it."""
    cuts = [(frame_at(index.times, index.end_s, a), frame_at(index.times, index.end_s, b)) for a, b in segments]
    if any(end - start < 1 for start, end in cuts):
        raise DyBenchError(f"{where}: field segments: a range holds no frame of the {index.n_frames}-frame video")
    return cuts


def _write_frames(index: StreamIndex, positions: list[int], path: Path, mirrored: bool = False) -> None:
    """Encode the source frames at `positions`, in that order, to `path`, one frame in memory at a
    time (backward runs hold one keyframe interval; see dybench.video.iter_frames). Each frame
    keeps how long it showed in the source (the last one shows for 1/fps), so a variable-rate
    clip stays variable-rate."""
    durations = index.durations()
    times = None if index.is_constant_rate() else list(np.cumsum([0.0] + [durations[p] for p in positions[:-1]]))
    with ClipWriter(path, index.fps, variable_rate=times is not None) as writer:
        for number, frame in enumerate(iter_frames(index, positions, max_held_bytes=MAX_HELD_BYTES)):
            writer.write(mirror(frame) if mirrored else frame, None if times is None else times[number])


def _video_job(out: str, job_json: str) -> list[dict]:
    job = VideoJob.model_validate_json(job_json)
    try:
        return with_index(job.source, lambda index: _video_job_rows(Path(out), job, index))
    except VideoError as exc:
        raise DyBenchError(f"{job.where}: {exc}") from None


def _video_job_rows(folder: Path, job: VideoJob, index: StreamIndex) -> list[dict]:
    """Write the pair's clips from the source's frames, streamed through the encoder: mirroring and
    swapping segments hold one frame at a time, reversing one keyframe interval (the whole clip
    only for a file that cannot seek, up to MAX_HELD_BYTES)."""
    task = get_task(job.task)
    fps = index.fps or 30.0
    ids = [f"{job.pair_id}-original", f"{job.pair_id}-{job.transform}"]
    meta: list[dict[str, Any]] = [{"job": job.pair_id, "source_video": Path(job.source).name, "fps": fps},
                                  {"job": job.pair_id, "source": ids[0], "fps": fps}]
    boundary = None
    positions = list(range(index.n_frames))
    if job.segments:
        (a0, a1), (b0, b1) = cuts = _segment_cuts(index, job.segments, job.where)
        boundary = a1 - a0
        positions = [*range(a0, a1), *range(b0, b1)]
        meta[0]["segment_boundary"] = boundary
        meta[1]["segment_boundary"] = len(positions) - boundary
        meta[0]["source_frames"] = [list(c) for c in cuts]
    order, mirrored = transform_plan(len(positions), job.transform, boundary)
    _refuse_unchanged(job, index, positions, order, mirrored)  # before any clip of the pair is written
    if job.segments:
        original_video = f"videos/{ids[0]}.mp4"
        _write_frames(index, positions, folder / original_video)
    else:
        # The original is the user's file, byte for byte; the counterfactual is its decoded frames
        # transformed and encoded losslessly.
        original_video = f"videos/{ids[0]}{Path(job.source).suffix.lower()}"
        tmp = folder / f"videos/.{ids[0]}.partial"
        tmp.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(job.source, tmp)
        tmp.replace(folder / original_video)
    _write_frames(index, [positions[i] for i in order], folder / "videos" / f"{ids[1]}.mp4", mirrored)
    items = []
    for clip_id, video, transform, clip_meta in zip(ids, [original_video, f"videos/{ids[1]}.mp4"],
                                                    ["original", job.transform], meta):
        key = answer_key_after(task, job.variant, job.answer_key, transform)
        items.append(Item(
            id=clip_id, pair_id=job.pair_id, task=task.name, category=task.category, video=video,
            question=job.question, options=job.options, answer=letter(job.option_keys.index(key)),
            transform=transform, kind="dynamic", variant=job.variant, option_keys=job.option_keys,
            meta={**clip_meta, "job_rows": 2},
        ).model_dump(mode="json"))
    return items


def build_from_videos(src: Path, annotations: Path, out: Path, workers: int = 1, progress: bool = True) -> BuildSummary:
    """Pairs from the user's clips: each annotated clip plus its counterfactual (hflip, reverse or
    its two segments swapped), labelled through the task's transform table (resumable)."""
    src, annotations, out = Path(src), Path(annotations), Path(out)
    for path, option in ((src, "--from-videos"), (annotations, "--annotations"), (out, "--out")):
        refuse_nul(path, option)
    if not src.is_dir():
        raise DyBenchError(f"{src}: --from-videos must be a folder of videos")
    parsed = parse_annotations(annotations, src)
    # Annotations are not part of the identity: a rerun with corrected or added lines resumes, and
    # pairs whose line was removed leave the manifest.
    config = BuildConfig(source="videos", videos=str(src.resolve()))
    _prepare_folder(out, config)
    jobs = [(job.pair_id, _video_job, (str(out), job.model_dump_json())) for job in parsed]
    rows, built = _run_jobs(out, jobs, workers, progress, f"making counterfactuals into {out}")
    return _finish(out, [name for name, _, _ in jobs], rows, config, built)


# --- the data card --------------------------------------------------------------------------------


def _table(summary: BuildSummary) -> str:
    letters = sorted(summary.per_letter)
    head = "| category | pairs | items | " + " | ".join(letters) + " |"
    rule = "|---|---:|---:|" + "---:|" * len(letters)
    lines = [head, rule]
    for category, counts in summary.per_category.items():
        cells = " | ".join(str(counts.letters.get(x, 0)) for x in letters)
        lines.append(f"| {category} | {counts.pairs} | {counts.items} | {cells} |")
    total = " | ".join(str(summary.per_letter.get(x, 0)) for x in letters)
    lines.append(f"| **all** | {summary.n_pairs} | {summary.n_items} | {total} |")
    return "\n".join(lines)


MOVER_SCENE = ("mover_colors", "mover_radius", "travel", "distractors", "plain_background")
"""SceneOptions fields that change only the moving-direction scene (experiments such as the shortcut lab)."""


def scene_changes(scene: SceneOptions) -> dict[str, object]:
    """The moving-direction scene options that differ from the benchmark's scene."""
    default = SceneOptions()
    return {name: getattr(scene, name) for name in MOVER_SCENE if getattr(scene, name) != getattr(default, name)}


def card_text(summary: BuildSummary, name: str | None = None) -> str:
    """The data card of a built folder, from data_cards/TEMPLATE.md."""
    from dybench import __version__

    config = summary.config
    if config.source == "synthetic":
        scene = config.scene or SceneOptions()
        source = (f"procedurally rendered (generator version {config.generator_version}), seed {config.seed}, "
                  f"{config.pairs_per_task} pairs per task, split `{config.split}`; clips {scene.size}x{scene.size}, "
                  f"{scene.n_frames} frames at {scene.fps:g} fps, noise {scene.noise:g}"
                  + (f", colour cue {scene.color_by_direction}" if scene.color_by_direction else "")
                  + (f", moving-direction scene {scene_changes(scene)}" if scene_changes(scene) else ""))
        command = (f"dybench build-pairs --out {name or summary.out.name} --pairs-per-task {config.pairs_per_task} "
                   f"--seed {config.seed} --split {config.split}"
                   + (f" --tasks {','.join(config.tasks)}" if config.tasks != list(GENERATORS) else "")
                   + (f" --size {scene.size}" if scene.size != 128 else "")
                   + (f" --frames {scene.n_frames}" if scene.n_frames != 16 else "")
                   + (f" --fps {scene.fps:g}" if scene.fps != 8 else ""))
        licence = "CC BY 4.0 (the rendered clips and manifest); the generator code is MIT like the rest of dybench."
        licence_id = "cc-by-4.0"
    else:
        source = f"counterfactuals of the videos in `{config.videos}`"
        command = "dybench build-pairs --from-videos SRC --annotations ANN.jsonl --out DIR"
        licence = "that of the source videos (the counterfactual clips are derived works of them)."
        licence_id = "other"  # the hub's id for a licence it does not list: the sources' own
    template = string.Template(CARD_TEMPLATE.read_text())
    return template.substitute(
        name=name or summary.out.name,
        source=source,
        command=command,
        counts=_table(summary),
        n_items=summary.n_items,
        n_pairs=summary.n_pairs,
        n_clips=summary.n_clips,
        generator_version=config.generator_version,
        dybench_version=__version__,
        licence=licence,
        license_id=licence_id,
        split=config.split,
    )


def write_card(out: Path, summary: BuildSummary) -> None:
    write_text_atomic(out / CARD, card_text(summary))


__all__ = ["BuildSummary", "BuildConfig", "build_synthetic", "build_from_videos", "summarize", "card_text"]
