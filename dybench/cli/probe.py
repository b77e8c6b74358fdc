"""`dybench probe`: the full eval plus every shortcut probe of one model, shown side by side."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer
from rich import box
from rich.table import Table

from dybench.backends.base import Sampling
from dybench.backends.registry import backend_names, backend_options
from dybench.signals import interrupt_exit_code
from dybench.cli.model_options import BACKEND_ARGS, CHAT_TEMPLATE, SYSTEM_PROMPT
from dybench.cli.common import console, err_console, fail
from dybench.escaping import rich_text
from dybench.probes import PROBES
from dybench.tables import SHORT_NAMES, interval, percent

if TYPE_CHECKING:
    from dybench.probe_suite import ProbeSummary


def points(value: float | None) -> str:
    """A difference of two rates, in percentage points with its sign."""
    return "-" if value is None else f"{100 * value:+.1f}"


def probe_tables(summary: ProbeSummary, title: str) -> list[Table]:
    """Two tables with one row per run (full, then each probe) and a column per category: P-Acc
    (with its 95% interval and, last, the temporal reliance row), then Acc."""
    categories = sorted({c for run in summary.runs for c, block in run.per_category.items() if block.n_pairs})
    tables = []
    for metric, label in (("p_acc", "P-Acc"), ("acc", "Acc")):
        table = Table(title=rich_text(f"{title}: {label} %"), box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True,
                      padding=(0, 1, 0, 0))
        table.add_column("video", no_wrap=True)
        columns = ["all", *(["95% CI"] if metric == "p_acc" else []), *[rich_text(SHORT_NAMES.get(c, c)) for c in categories],
                   "pairs"]
        for column in columns:
            table.add_column(column, justify="right", no_wrap=True)
        for run in summary.runs:
            cells = [percent(getattr(block, metric)) if (block := run.per_category.get(c)) and block.n_pairs else "-"
                     for c in categories]
            ci = [interval(run.p_acc_ci)] if metric == "p_acc" else []
            table.add_row(run.probe, percent(getattr(run, metric)), *ci, *cells, str(run.n_pairs))
        if metric == "p_acc":
            table.add_section()
            table.add_row("temporal reliance", points(summary.temporal_reliance), "",
                          *[points(summary.temporal_reliance_per_category.get(c)) for c in categories], "")
            table.caption = f"static probes: {', '.join(summary.static_probes)}; reliance in points"
        tables.append(table)
    return tables


def summary_lines(summary: ProbeSummary) -> list[str]:
    """The lines under the tables: temporal reliance spelled out, the answer change under reversal."""
    lines = []
    full = summary.run("full")
    if summary.temporal_reliance is not None and full is not None:
        best = summary.run(summary.best_static_probe)
        lines.append(f"temporal reliance {points(summary.temporal_reliance)} points: full P-Acc {percent(full.p_acc)}% "
                     f"minus the best static probe, {summary.best_static_probe} ({percent(best.p_acc)}%)")
    change = summary.reversed_answer_change
    if change is not None and not change.n_items:
        lines.append("reversed: no item whose correct answer flips under reversal got a valid answer in both runs, "
                     "so the answer-change rate is unknown")
    elif change is not None:
        lines.append(f"reversed: the answer changed on {percent(change.rate)}% of {change.n_items} items whose "
                     "correct answer flips when the clip plays backwards (a model that ignores time keeps it)")
    lines.extend(f"{name} not run: {why}" for name, why in summary.skipped.items())
    return lines


def probe_command(
    model: str = typer.Option(..., "--model", "-m", help="Model alias (see `dybench models`), local path, org/name hub id, "
                              "or baseline:random | baseline:constant | baseline:motion."),
    data: str = typer.Option(..., "--data", "-d", help="A folder from `dybench build-pairs`, dybench:PATH (official "
                             "release), timeblind:PATH/data.jsonl or hf:DIR (from `dybench export hf`)."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder of the runs (OUT/full, OUT/single-frame, ...), "
                             "probes.json and probes.png. Rerunning the same command resumes."),
    probes: str = typer.Option(",".join(PROBES), "--probes", help="Comma-separated probes to run besides the "
                               "full video."),
    backend: Optional[str] = typer.Option(None, "--backend", "-b", help=f"{' | '.join(backend_names())} "
                                          "(default: the model's default backend)."),
    limit: Optional[int] = typer.Option(None, "--limit", min=1, help="Evaluate only the first N items "
                                        "(rounded up to finish the last pair)."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", min=1, help="Items per backend call."),
    num_frames: Optional[int] = typer.Option(None, "--num-frames", min=1, help="Sample this many frames uniformly "
                                             "(overrides the model's default)."),
    fps: Optional[float] = typer.Option(None, "--fps", min=0.0, help="Sample frames at this rate instead of a "
                                        "fixed count (with --max-frames as a cap)."),
    max_frames: Optional[int] = typer.Option(None, "--max-frames", min=1, help="Cap on frames when sampling by fps."),
    min_pixels: Optional[int] = typer.Option(None, "--min-pixels", min=1, help="Pixel budget floor per frame."),
    max_pixels: Optional[int] = typer.Option(None, "--max-pixels", min=1, help="Pixel budget ceiling per frame."),
    max_tokens: int = typer.Option(64, "--max-tokens", min=1, help="Most tokens generated per answer."),
    temperature: float = typer.Option(0.0, "--temperature", min=0.0, help="0 = greedy (reproducible)."),
    seed: int = typer.Option(0, "--seed", help="Sampling seed (also seeds baseline:random)."),
    base_url: Optional[str] = typer.Option(None, "--base-url", help="openai backend: the server."),
    api_key_env: Optional[str] = typer.Option(None, "--api-key-env", help="openai backend: name of the environment "
                                              "variable holding the API key."),
    concurrency: Optional[int] = typer.Option(None, "--concurrency", min=1, help="openai backend: requests in flight."),
    request_timeout: Optional[float] = typer.Option(None, "--request-timeout", min=0.001, help="openai backend: most "
                                                    "seconds one item's request may take, retries included "
                                                    "(default 600); past it the item is recorded as failed."),
    tensor_parallel_size: Optional[int] = typer.Option(None, "--tensor-parallel-size", min=1,
                                                       help="vllm backend: GPUs per model."),
    max_model_len: Optional[int] = typer.Option(None, "--max-model-len", min=1, help="vllm backend: context length."),
    dtype: Optional[str] = typer.Option(None, "--dtype", help="hf/vllm backends: e.g. bfloat16, float32."),
    device: Optional[str] = typer.Option(None, "--device", help="hf backend: cpu, cuda, cuda:1 ..."),
    backend_args: Optional[str] = BACKEND_ARGS,
    system_prompt: Optional[str] = SYSTEM_PROMPT,
    chat_template: Optional[Path] = CHAT_TEMPLATE,
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show progress bars."),
) -> None:
    """Run the full eval and every shortcut probe, then show how much of the score needs time.

    Probes (the same items, only the video degraded): single-frame (the middle frame), first-last (first and last frame), shuffled (seeded random order), blank (grey frames: the language prior), reversed (played backwards; answers follow the task table). Static probes (no order of time): single-frame, shuffled, blank. Temporal reliance = full P-Acc minus the best static probe's P-Acc.

    Example: `dybench probe --model baseline:motion --data data/synth-test --out runs/probes-motion`
    """
    from dybench.evaluate import EvalInterrupted
    from dybench.probe_suite import CHART, SUMMARY, run_probe_suite

    if backend is not None and backend not in backend_names():
        fail(f"--backend {backend!r}: choose one of {', '.join(backend_names())}")
    flags = {"base_url": base_url, "api_key_env": api_key_env, "concurrency": concurrency, "timeout_s": request_timeout,
             "tensor_parallel_size": tensor_parallel_size, "max_model_len": max_model_len, "dtype": dtype,
             "device": device}
    options = backend_options(model, backend, flags, backend_args)
    try:
        summary = run_probe_suite(
            model, data, out, probes=probes.split(","), backend=backend, backend_options=options,
            system_prompt=system_prompt, chat_template=None if chat_template is None else str(chat_template),
            progress=progress,
            console=err_console, limit=limit, batch_size=batch_size, num_frames=num_frames, fps=fps,
            max_frames=max_frames, min_pixels=min_pixels, max_pixels=max_pixels,
            sampling=Sampling(max_tokens=max_tokens, temperature=temperature, seed=seed),
        )
    except EvalInterrupted as exc:
        fail(str(exc), code=interrupt_exit_code())
    except KeyboardInterrupt:
        fail("interrupted before any item was evaluated; rerun the same command to resume", code=interrupt_exit_code())
    for table in probe_tables(summary, f"{model} on {summary.dataset}"):
        console.print(table)
    for line in summary_lines(summary):
        console.print(rich_text(line), highlight=False)
    console.print(rich_text(f"wrote {out / SUMMARY}, {out / CHART} and one run directory per row"), highlight=False)


__all__ = ["probe_command", "probe_tables"]
