"""`dybench build-pairs`: render synthetic counterfactual pairs, or make them from your videos."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.table import Table

from dybench.build import BuildSummary, build_from_videos, build_synthetic
from dybench.signals import interrupt_exit_code
from dybench.cli.common import console, err_console
from dybench.errors import DyBenchError
from dybench.escaping import rich_text

ANNOTATION_HELP = (
    "JSONL, one object per line: video (path inside SRC), task, options (list), answer (letter or option "
    "text); optional question, variant, option_keys, transform; for event_sequence, segments: two "
    "(start, end) ranges in seconds, as two-number lists, in the order they happen, not overlapping, inside the clip. "
    'Example: {"video": "a.mp4", "task": "moving_direction", "options": ["left", "right", "up", "down"], '
    '"answer": "right"}'
)


def build_pairs_command(
    out: Path = typer.Option(..., "--out", "-o", help="Dataset folder to write (manifest.jsonl, videos/, README.md)."),
    tasks: str = typer.Option(None, "--tasks", help="Comma-separated dynamic tasks (default: all three categories)."),
    pairs_per_task: int = typer.Option(50, "--pairs-per-task", "-n", help="Counterfactual pairs per task."),
    seed: int = typer.Option(0, "--seed", help="Same seed, same manifest and same clip bytes."),
    split: str = typer.Option("test", "--split", help="test, or train (adds static control questions on every clip)."),
    workers: int = typer.Option(1, "--workers", "-j", help="Processes rendering in parallel."),
    size: int = typer.Option(128, "--size", help="Frame width and height in pixels (synthetic)."),
    frames: int = typer.Option(16, "--frames", help="Frames per clip (synthetic)."),
    fps: float = typer.Option(8.0, "--fps", help="Frames per second of the written clips (synthetic)."),
    color_by_direction: str = typer.Option(
        None, "--color-by-direction",
        help='Moving direction: JSON mapping direction -> colour on original clips, e.g. \'{"right": "red", '
        '"left": "blue"}\' (a deliberate shortcut for experiments; off by default).'),
    from_videos: Path = typer.Option(None, "--from-videos", help="Folder of your videos: make pairs from them instead."),
    annotations: Path = typer.Option(None, "--annotations", help=ANNOTATION_HELP),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
) -> None:
    """Write counterfactual clip pairs (manifest.jsonl + videos/ + data card README.md).

    Synthetic: dybench build-pairs --out DIR [--tasks ...] [--pairs-per-task N] [--seed S] [--split test|train]
    [--workers K]. Your videos: dybench build-pairs --from-videos SRC --annotations ANN.jsonl --out DIR.
    Rerunning the same command resumes an interrupted build without re-rendering finished pairs.
    """
    try:
        summary = _build(out, tasks, pairs_per_task, seed, split, workers, size, frames, fps, color_by_direction,
                         from_videos, annotations, progress)
    except KeyboardInterrupt:
        err_console.print(rich_text(f"interrupted: finished pairs are kept in {out}; rerun the same command to resume"),
                          highlight=False)
        raise typer.Exit(interrupt_exit_code()) from None
    print_summary(summary)


def _build(out: Path, tasks: str | None, pairs_per_task: int, seed: int, split: str, workers: int, size: int,
           frames: int, fps: float, color_by_direction: str | None, from_videos: Path | None,
           annotations: Path | None, progress: bool) -> BuildSummary:
    if from_videos is not None or annotations is not None:
        if from_videos is None or annotations is None:
            raise DyBenchError("--from-videos and --annotations go together")
        return build_from_videos(from_videos, annotations, out, workers=workers, progress=progress)
    cue = None
    if color_by_direction:
        try:
            cue = json.loads(color_by_direction)
        except json.JSONDecodeError:
            raise DyBenchError(f"--color-by-direction: not valid JSON: {color_by_direction!r}") from None
        if not isinstance(cue, dict):
            raise DyBenchError("--color-by-direction: expected a JSON object like {\"right\": \"red\"}")
    names = [t.strip() for t in tasks.split(",") if t.strip()] if tasks else None
    if split not in ("test", "train"):
        raise DyBenchError(f"--split must be test or train, got {split!r}")
    return build_synthetic(out, tasks=names, pairs_per_task=pairs_per_task, seed=seed, split=split,  # type: ignore[arg-type]
                           workers=workers, progress=progress, size=size, n_frames=frames, fps=fps,
                           color_by_direction=cue)


def print_summary(summary: BuildSummary) -> None:
    letters = sorted(summary.per_letter)
    table = Table(title=rich_text(f"{summary.out}: {summary.n_pairs} pairs, {summary.n_items} items"))
    for column in ("category", "pairs", "items", *letters):
        table.add_column(column, justify="left" if column == "category" else "right")
    for category, counts in summary.per_category.items():
        table.add_row(rich_text(category), str(counts.pairs), str(counts.items), *(str(counts.letters.get(x, 0)) for x in letters))
    console.print(table)
    resumed = f", {summary.resumed_jobs} already done" if summary.resumed_jobs else ""
    console.print(rich_text(f"built {summary.built_jobs} pairs{resumed}; data card: {summary.out / 'README.md'}"),
                  highlight=False)
