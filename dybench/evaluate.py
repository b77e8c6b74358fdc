"""The eval loop: items -> sampled clips -> prompts -> backend -> extracted answers -> store -> scores.

Order matters for the user: the dataset is validated and the model resolved (its backend created)
before a single clip is decoded, so a bad manifest row, an unknown model, a missing package or an
unreachable server fails in seconds. Then batches flow through a small thread pool that decodes
the next batch while the backend answers the current one. Each finished batch is appended to
`predictions.jsonl` before the next starts, so an interrupted run resumes where it stopped; on
Ctrl-C or SIGTERM the answers of the batch in flight that had already arrived are stored too.
A shortcut probe (dybench.probes) degrades each clip right after it is sampled. Everything stored
from a reply is redacted (dybench.redact) and cut to `MAX_STORED_OUTPUT_CHARS`.
"""

from __future__ import annotations

import dataclasses
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from dybench.atomic import write_json_atomic
from dybench.backends.base import Backend, BatchInterrupted, Request, Response, Sampling
from dybench.backends.registry import backend_entry
from dybench.chat import chat_settings
from dybench.data import Dataset
from dybench.families import load_data
from dybench.errors import DyBenchError
from dybench.escaping import rich_text
from dybench.prediction_rows import sent_frames, with_outcome
from dybench.probes import apply_probe, check_probe, probe_items
from dybench.families import template_for
from dybench.prompts import PromptTemplate, extract_for_item, render_prompt
from dybench.redact import redact, redact_data
from dybench.schema import Item, Prediction
from dybench.store import (
    RUN_JSON,
    SCORES,
    ChatSettings,
    DatasetRef,
    PredictionStore,
    RunConfig,
    ShardSpec,
    VideoSettings,
    check_resumable,
    check_run_dir_free,
    current_command,
    hold_run_dir,
    open_run,
    package_versions,
    parse_shard,
    read_predictions,
    read_run_config,
    shard_items,
)
from dybench.video import SampledClip, load_clip

DEFAULT_NUM_FRAMES = 16
"""Frames sampled when neither the model's defaults nor the command line say how many."""

PREFETCH_BATCHES = 2
"""Batches decoded ahead of the one the backend is answering."""

MAX_STORED_OUTPUT_CHARS = 65_536
"""Most characters of one reply stored in predictions.jsonl. A longer reply (a model that never
stops, a server that sends megabytes) keeps its first and last halves of this, with a marker
between, and the row records the full length in `output_chars`; its answer is extracted from the
full reply first, so it counts as what it answered."""


class EvalInterrupted(DyBenchError):
    """Ctrl-C or SIGTERM during a run: the message says how much is saved and how to resume."""


class AnswersSoFar(KeyboardInterrupt):
    """An interrupt while the backend answered a batch, with the answers that had arrived by item id."""

    def __init__(self, answered: dict[str, Response]):
        super().__init__()
        self.answered = answered


@dataclass
class DecodedItem:
    item: Item
    clip: SampledClip | None
    error: str | None
    video_path: Path | None


def _field(spec: Any, name: str) -> Any:
    return getattr(spec, name, None)


def video_settings(spec: Any, num_frames: int | None, fps: float | None, max_frames: int | None,
                   min_pixels: int | None, max_pixels: int | None) -> VideoSettings:
    """The model's video defaults, overridden by whatever the command line set. Asking for
    `--num-frames` drops the model's fps default and vice versa (they are alternatives)."""
    settings = VideoSettings(
        num_frames=_field(spec, "num_frames"),
        fps=_field(spec, "fps"),
        max_frames=_field(spec, "max_frames"),
        min_pixels=_field(spec, "min_pixels"),
        max_pixels=_field(spec, "max_pixels"),
    )
    if num_frames is not None:
        settings.num_frames, settings.fps = num_frames, None
    if fps is not None:
        settings.fps, settings.num_frames = fps, None
    for name, value in (("max_frames", max_frames), ("min_pixels", min_pixels), ("max_pixels", max_pixels)):
        if value is not None:
            setattr(settings, name, value)
    if settings.num_frames is None and settings.fps is None:
        settings.num_frames = DEFAULT_NUM_FRAMES
    return settings


def _spec_with(spec: Any, settings: VideoSettings) -> Any:
    """The model spec carrying the effective video settings, so the backend (pixel limits,
    processor metadata) sees exactly what the run records."""
    updates = {k: v for k, v in settings.model_dump().items() if hasattr(spec, k)}
    if hasattr(spec, "model_copy"):
        return spec.model_copy(update=updates)
    if dataclasses.is_dataclass(spec):
        return dataclasses.replace(spec, **updates)
    return spec


def select_items(items: list[Item], shard: ShardSpec | None, limit: int | None) -> list[Item]:
    """The items this command evaluates: its shard, then the first `limit` items, rounded up to
    finish the last pair (a half pair cannot be scored)."""
    chosen = shard_items(items, shard)
    if limit is None or limit >= len(chosen):
        return chosen
    if limit <= 0:
        raise DyBenchError("--limit must be positive")
    pairs = {item.pair_id for item in chosen[:limit]}
    return [item for item in chosen if item.pair_id in pairs]


def frame_range(item: Item) -> tuple[int, int] | None:
    """Frames [start, end) of the video file that belong to the item (`meta.frame_range`), if any."""
    value = item.meta.get("frame_range")
    if value is None:
        return None
    start, end = value
    return int(start), int(end)


def decode_item(dataset: Dataset, item: Item, settings: VideoSettings, probe: str | None = None) -> DecodedItem:
    """Decode and sample one clip (degraded by `probe`, if any); a missing or undecodable video
    becomes an error, not a crash. Only the sampled frames are decoded (dybench.video.load_clip).
    A clip with fewer frames than `num_frames` is shown each of its frames once; its prediction
    records how many (`n_frames`) and the run's notes count such clips."""
    path = None
    try:
        path = dataset.video_path(item)
        clip = load_clip(
            path,
            num_frames=settings.num_frames,
            sample_fps=settings.fps,
            max_frames=settings.max_frames,
            frame_range=frame_range(item),
        )
        if settings.num_frames is not None and len(clip.indices) < settings.num_frames:
            clip.extra["frames_available"] = len(clip.indices)
        return DecodedItem(item, apply_probe(clip, probe, item.id), None, path)
    except DyBenchError as exc:
        return DecodedItem(item, None, f"video: {exc}", path)
    except Exception as exc:  # a decoder failing on a strange file must not end the run
        return DecodedItem(item, None, f"video: {type(exc).__name__}: {exc}", path)


class RateColumn(ProgressColumn):
    """Items per second (the figure that matters for a benchmark run)."""

    def render(self, task: Any) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed:.2f} items/s" if speed else "- items/s", style="progress.data.speed")


def make_progress(console: Console, enabled: bool) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        RateColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        TimeElapsedColumn(),
        console=console,
        disable=not enabled,
    )


def stored_output(text: str | None) -> tuple[str | None, dict[str, int]]:
    """The reply as stored: redacted, and cut to its two ends if longer than MAX_STORED_OUTPUT_CHARS
    (then with `output_chars`, the full length, for the row)."""
    if text is None or len(text) <= MAX_STORED_OUTPUT_CHARS:
        return (None if text is None else redact(text)), {}
    half = MAX_STORED_OUTPUT_CHARS // 2
    # The marker has no word a yes/no or A/B extraction could read as an answer.
    marker = f"\n[... {len(text) - 2 * half} characters cut ...]\n"
    return redact(text[:half]) + marker + redact(text[-half:]), {"output_chars": len(text)}


def predictions_for(
    decoded: list[DecodedItem],
    responses: dict[str, Response],
    store: PredictionStore,
    template: PromptTemplate,
    family: str,
    sends_video_file: bool = False,
) -> list[Prediction]:
    """The rows of a batch, each with its target, correctness and frames sent (dybench.prediction_rows)."""
    return [with_outcome(row, entry.item, family)
            for entry, row in zip(decoded, _reply_rows(decoded, responses, store, template, sends_video_file))]


def _reply_rows(decoded: list[DecodedItem], responses: dict[str, Response], store: PredictionStore,
                template: PromptTemplate, sends_video_file: bool) -> list[Prediction]:
    rows = []
    for entry in decoded:
        item = entry.item
        if entry.error is not None:
            rows.append(Prediction(id=item.id, key=store.key(item.id), error=redact(entry.error), **sent_frames(None)))
            continue
        response = responses[item.id]
        text, error = response.text, response.error
        if text is not None and not isinstance(text, str):  # a backend bug must not sink the batch
            text, error = None, error or f"the backend returned a {type(text).__name__} reply, not text"
        pred = None if error else extract_for_item(text, item, template)
        output, cut = stored_output(text)
        rows.append(
            Prediction(
                id=item.id,
                key=store.key(item.id),
                output=output,
                pred=pred,
                error=None if error is None else redact(error),
                latency_s=None if response.latency_s is None else round(response.latency_s, 4),
                **cut,
                **({"extra": redact_data(response.extra)} if response.extra else {}),
                **_short_clip_fields(entry.clip),
                **sent_frames(entry.clip, sends_video_file),
            )
        )
    return rows


def _short_clip_fields(clip: SampledClip | None) -> dict[str, int]:
    """`n_frames` on a prediction whose clip had fewer frames than the run asks for."""
    if clip is None or "frames_available" not in clip.extra:
        return {}
    return {"n_frames": int(clip.extra["frames_available"])}


def short_clip_notes(predictions: dict[str, Prediction], settings: VideoSettings) -> list[str]:
    """A note on clips shown fewer frames than `--num-frames` asks (each of their frames once)."""
    counts = [row.n_frames for row in predictions.values() if getattr(row, "n_frames", None) is not None]
    if not counts or settings.num_frames is None:
        return []
    return [f"{len(counts)} clips have fewer frames than the {settings.num_frames} asked for "
            f"(fewest: {min(counts)}); they were shown each of their frames once, none repeated"]


def answer_batch(backend: Backend, decoded: list[DecodedItem], template: PromptTemplate,
                 sampling: Sampling) -> dict[str, Response]:
    requests = [
        Request(item=d.item, prompt=render_prompt(d.item, template), clip=d.clip, video_path=d.video_path,
                template=template)
        for d in decoded
        if d.clip is not None
    ]
    if not requests:
        return {}
    try:
        responses = backend.generate(requests, sampling)
    except BatchInterrupted as interrupt:
        raise AnswersSoFar({request.item.id: response for request, response in zip(requests, interrupt.responses)
                            if response is not None}) from None
    if len(responses) != len(requests):
        raise DyBenchError(f"backend {backend.name} returned {len(responses)} answers for {len(requests)} requests")
    return {request.item.id: response for request, response in zip(requests, responses)}


def absolute_spec(data: str) -> str:
    """The --data value with its path made absolute, so run.json works from any directory."""
    from dybench.families import FAMILIES

    for prefix in (f"{entry.prefix}:" for _, entry in FAMILIES.items() if entry.prefix):
        if data.startswith(prefix):
            return prefix + str(Path(data.removeprefix(prefix)).resolve())
    return str(Path(data).resolve())


def score(dataset: Dataset, predictions: dict[str, Prediction], settings: VideoSettings | None = None) -> dict[str, Any]:
    from dybench.metrics import score_predictions

    rows = [predictions[item.id] for item in dataset.items if item.id in predictions]
    notes = short_clip_notes({row.id: row for row in rows}, settings) if settings is not None else []
    if notes:
        dataset = dataclasses.replace(dataset, notes=[*dataset.notes, *notes])
    return score_predictions(dataset, rows)


def record_notes(run_dir: Path, notes: list[str]) -> None:
    """Keep `notes` in run.json (what the run did differently from what it was asked)."""
    config = read_run_config(run_dir)
    if config.notes != notes:
        write_json_atomic(run_dir / RUN_JSON, config.model_copy(update={"notes": notes}).model_dump(mode="json"))


def run_eval(
    model: str,
    data: str,
    out: str | Path,
    backend: str | None = None,
    limit: int | None = None,
    batch_size: int | None = None,
    shard: str | ShardSpec | None = None,
    num_frames: int | None = None,
    fps: float | None = None,
    max_frames: int | None = None,
    min_pixels: int | None = None,
    max_pixels: int | None = None,
    sampling: Sampling | None = None,
    backend_options: dict[str, Any] | None = None,
    decode_workers: int = 2,
    progress: bool = True,
    console: Console | None = None,
    probe: str | None = None,
    system_prompt: str | None = None,
    chat_template: str | Path | None = None,
) -> dict[str, Any]:
    """Evaluate `model` on `data`, storing answers in `out`; returns the scores (also in scores.json).

    Rerunning with the same arguments resumes: finished items are skipped. Different settings in
    an existing `out` are refused (use a new directory). `probe` degrades every clip the same way
    (see dybench.probes); it is part of the run's settings, as are `system_prompt` and
    `chat_template` (a Jinja template file; see dybench.chat).
    """
    plan = plan_run(model, data, out, backend=backend, limit=limit, batch_size=batch_size, shard=shard,
                    num_frames=num_frames, fps=fps, max_frames=max_frames, min_pixels=min_pixels,
                    max_pixels=max_pixels, sampling=sampling, probe=probe, system_prompt=system_prompt,
                    chat_template=chat_template)
    engine = start_backend(plan, backend, backend_options)
    try:
        return execute_run(plan, engine, decode_workers=decode_workers, progress=progress, console=console)
    finally:
        engine.close()


@dataclass
class PlannedRun:
    """A run checked and ready to start: everything but the backend. `dataset` holds exactly the
    items to ask, with the answers that are correct for what the probe shows."""

    run_dir: Path
    dataset: Dataset
    template: PromptTemplate
    spec: Any
    settings: VideoSettings
    config: RunConfig
    sampling: Sampling
    batch_size: int | None
    chat_template: str | None = None
    """The text of the --chat-template file (run.json keeps its hash)."""


def plan_run(
    model: str,
    data: str,
    out: str | Path,
    backend: str | None = None,
    limit: int | None = None,
    batch_size: int | None = None,
    shard: str | ShardSpec | None = None,
    num_frames: int | None = None,
    fps: float | None = None,
    max_frames: int | None = None,
    min_pixels: int | None = None,
    max_pixels: int | None = None,
    sampling: Sampling | None = None,
    probe: str | None = None,
    dataset: Dataset | None = None,
    system_prompt: str | None = None,
    chat_template: str | Path | None = None,
) -> PlannedRun:
    """Validate a run before any backend starts: the dataset, the model, the probe, and that `out`
    is new or holds this very run (so a mistake fails in seconds, not after a model has loaded).
    `dataset`: `data` already loaded, so several plans over one dataset (the shards of a
    data-parallel run) read and validate it once."""
    from dybench.backends.registry import resolve_model

    check_probe(probe)
    if batch_size is not None and batch_size <= 0:
        raise DyBenchError("--batch-size must be positive")
    shard_spec = parse_shard(shard) if isinstance(shard, str) else shard
    sampling = sampling or Sampling()
    run_dir = Path(out)

    if dataset is None:
        dataset = load_data(data)  # validates every row (and every video path) before any work
    selected, notes = probe_items(select_items(dataset.items, shard_spec, limit), probe)
    template = template_for(dataset.family)
    for item in selected:
        render_prompt(item, template)  # a row the template cannot render stops the run now

    spec = resolve_model(model)
    settings = video_settings(spec, num_frames, fps, max_frames, min_pixels, max_pixels)
    chat, chat_template_text = chat_settings(system_prompt, chat_template)
    check_chat_settings(backend or spec.default_backend, chat)
    config = RunConfig(
        model=model,
        backend=backend or spec.default_backend,
        video=settings,
        prompt=template,
        chat=chat,
        sampling=dataclasses.asdict(sampling),
        dataset=DatasetRef(spec=absolute_spec(data), name=dataset.name, family=dataset.family, n_items=len(dataset.items)),
        dataset_fingerprint=dataset.fingerprint,
        probe=probe,
        shard=shard_spec,
        versions=package_versions(),
        command=redact_data(current_command()),
    )
    check_run_dir_free(run_dir)  # a busy or conflicting run directory fails before the backend starts
    if (run_dir / RUN_JSON).is_file():
        check_resumable(run_dir, config, ignore=("backend", "backend_settings"))
    asked = dataclasses.replace(dataset, items=selected, notes=[*dataset.notes, *notes])
    return PlannedRun(run_dir, asked, template, spec, settings, config, sampling, batch_size, chat_template_text)


def check_chat_settings(backend: str, chat: ChatSettings) -> None:
    """A backend that builds no conversation (a baseline) refuses chat settings instead of ignoring them."""
    if chat.identity() and not backend_entry(backend).chat_settings:
        given = [flag for flag, value in (("--system-prompt", chat.system_prompt),
                                          ("--chat-template", chat.chat_template_sha256)) if value is not None]
        raise DyBenchError(f"backend {backend} puts no prompt to a model, so {' and '.join(given)} would be ignored: "
                           "drop it, or use a model backend (hf, vllm, openai)")


def start_backend(plan: PlannedRun, backend: str | None = None,
                  backend_options: dict[str, Any] | None = None) -> Backend:
    """The planned run's model, started with its video settings (it may serve several planned
    runs of the same model and settings, such as the probes of one model)."""
    from dybench.backends.registry import create_backend

    spec = _spec_with(plan.spec, plan.settings)
    chat = {"system_prompt": plan.config.chat.system_prompt, "chat_template": plan.chat_template}
    if hasattr(spec, "model_copy"):  # the spec carries them to the backend, as it does the video settings
        spec = spec.model_copy(update={k: v for k, v in chat.items() if v is not None})
    return create_backend(spec, backend, **(backend_options or {}))


def execute_run(plan: PlannedRun, engine: Backend, decode_workers: int = 2, progress: bool = True,
                console: Console | None = None) -> dict[str, Any]:
    """Ask `engine` every unfinished item of `plan`, then score the run (the caller closes `engine`)."""
    console = console or Console(stderr=True)
    run_dir = plan.run_dir
    config = plan.config.model_copy(update={"backend": engine.name,
                                            "backend_settings": redact_data(engine.describe())})
    selected = plan.dataset.items
    store: PredictionStore | None = None
    with hold_run_dir(run_dir):
        try:
            store = open_run(run_dir, config)
            batch_size = plan.batch_size or backend_entry(config.backend).default_batch_size
            finished = store.load()
            todo = [item for item in selected if item.id not in finished]
            if finished and progress:
                console.print(rich_text(f"resuming {run_dir}: {len(selected) - len(todo)} of {len(selected)} items "
                                        "already done"), highlight=False)
            _run_batches(plan.dataset, todo, len(selected), engine, store, plan.template, plan.settings,
                         plan.sampling, batch_size, decode_workers, progress, console, config.probe)
            predictions = store.load()
            record_notes(run_dir, short_clip_notes(predictions, plan.settings))
            scores = score(plan.dataset, predictions, plan.settings)
            write_json_atomic(run_dir / SCORES, scores)
        except KeyboardInterrupt:  # Ctrl-C or SIGTERM anywhere in the run: say what is kept
            raise EvalInterrupted(interrupted_message(store, selected)) from None
    return scores


def interrupted_message(store: PredictionStore | None, selected: list[Item]) -> str:
    """How much of an interrupted run is saved, and how to go on."""
    if store is None:
        return "interrupted before any item was evaluated; rerun the same command to start again"
    saved = store.load()
    done = sum(1 for item in selected if item.id in saved)
    return f"interrupted: {done} of {len(selected)} items are saved in {store.path}; rerun the same command to resume"


def _run_batches(dataset: Dataset, todo: list[Item], total: int, engine: Backend, store: PredictionStore,
                 template: PromptTemplate, settings: VideoSettings, sampling: Sampling, batch_size: int,
                 decode_workers: int, progress: bool, console: Console, probe: str | None = None) -> None:
    batches = [todo[i : i + batch_size] for i in range(0, len(todo), batch_size)]
    done = total - len(todo)
    with ThreadPoolExecutor(max_workers=max(1, decode_workers), thread_name_prefix="decode") as pool, \
            store.appender() as appender, make_progress(console, progress) as bar:
        task = bar.add_task("eval", total=total, completed=done)

        def submit(batch: list[Item]) -> list[Future[DecodedItem]]:
            return [pool.submit(decode_item, dataset, item, settings, probe) for item in batch]

        # Decoding runs PREFETCH_BATCHES ahead of the backend, so neither waits for the other.
        pending = deque(submit(batch) for batch in batches[:PREFETCH_BATCHES])
        try:
            for number, batch in enumerate(batches):
                decoded = [future.result() for future in pending.popleft()]
                if number + PREFETCH_BATCHES < len(batches):
                    pending.append(submit(batches[number + PREFETCH_BATCHES]))
                try:
                    responses = answer_batch(engine, decoded, template, sampling)
                except AnswersSoFar as interrupt:  # keep what arrived; the rest is asked on resume
                    kept = [d for d in decoded if d.error is not None or d.item.id in interrupt.answered]
                    appender.append(predictions_for(kept, interrupt.answered, store, template, dataset.family,
                                                    sends_video_file(engine)))
                    raise
                appender.append(predictions_for(decoded, responses, store, template, dataset.family,
                                                sends_video_file(engine)))
                done += len(batch)
                bar.update(task, completed=done)
        except KeyboardInterrupt:
            _cancel(pending)
            raise
        except DyBenchError as exc:  # e.g. the server went away mid-run: say that the work so far is kept
            _cancel(pending)
            raise DyBenchError(f"{exc} ({done} of {total} items are saved; rerun the same command to resume)") from None


def sends_video_file(engine: Backend) -> bool:
    """Whether `engine` sends the video file rather than the sampled frames (see Backend)."""
    return bool(getattr(engine, "sends_video_file", False))


def _cancel(pending: deque[list[Future[DecodedItem]]]) -> None:
    for futures in pending:
        for future in futures:
            future.cancel()


def score_run(run_dir: Path) -> tuple[dict[str, Any], int]:
    """Score a finished run directory (e.g. after `merge`) against its dataset; returns the scores
    and how many items of the dataset have no prediction (they count as wrong)."""
    config, predictions = read_predictions(run_dir)
    dataset = load_data(config.dataset.spec)
    if dataset.fingerprint != config.dataset_fingerprint:
        raise DyBenchError(
            f"{config.dataset.spec}: the dataset changed since {run_dir} was run "
            f"(fingerprint {dataset.fingerprint}, run used {config.dataset_fingerprint})"
        )
    items, notes = probe_items(shard_items(dataset.items, config.shard), check_probe(config.probe))
    missing = sum(1 for item in items if item.id not in predictions)
    scores = score(dataclasses.replace(dataset, items=items, notes=[*dataset.notes, *notes]), predictions, config.video)
    write_json_atomic(run_dir / SCORES, scores)
    return scores, missing
