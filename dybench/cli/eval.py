"""`dybench eval` (ask a model every question, resumably) and `dybench merge` (join shard runs)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer
from rich.table import Table

from dybench.backends.base import Sampling
from dybench.backends.registry import backend_names, backend_options
from dybench.signals import interrupt_exit_code
from dybench.cli.model_options import BACKEND_ARGS, CHAT_TEMPLATE, SYSTEM_PROMPT
from dybench.cli.common import console, err_console, fail
from dybench.escaping import rich_text
from dybench.tables import interval, percent



def _with_interval(entry: dict[str, Any], name: str) -> str:
    bounds = interval(entry.get(f"{name}_ci"))
    return f"{percent(entry.get(name))} {bounds}" if bounds else percent(entry.get(name))


def print_summary(scores: dict[str, Any], title: str) -> None:
    """Acc / P-Acc (with 95% intervals) overall and per category, as percentages."""
    table = Table(title=rich_text(title))
    table.add_column("category")
    for column in ("Acc % [95% CI]", "P-Acc % [95% CI]", "pairs"):
        table.add_column(column, justify="right")
    rows = sorted((scores.get("per_category") or {}).items())
    for name, entry in [*[(rich_text(name), entry) for name, entry in rows], ("[bold]all", scores)]:
        table.add_row(name, _with_interval(entry, "acc"), _with_interval(entry, "p_acc"), str(entry.get("n_pairs", "-")))
    console.print(table)
    line = (f"items: {scores.get('n_items', '-')}   invalid answers: {percent(scores.get('invalid_rate'))}%   "
            f"unreadable videos or failed requests: {scores.get('n_errors', 0)}")
    timeblind = scores.get("timeblind")
    if timeblind:
        line += "\nTimeBlind: " + "  ".join(f"{k}={percent(v)}%" for k, v in timeblind.items() if k.endswith("acc"))
    console.print(line)


def eval_command(
    model: str = typer.Option(..., "--model", "-m", help="Model alias (see `dybench models`), local path, org/name hub id, "
                              "or baseline:random | baseline:constant | baseline:motion."),
    data: str = typer.Option(..., "--data", "-d", help="A folder from `dybench build-pairs`, dybench:PATH (official "
                             "release), timeblind:PATH/data.jsonl or hf:DIR (from `dybench export hf`)."),
    out: Path = typer.Option(..., "--out", "-o", help="Run directory: predictions.jsonl, run.json, scores.json. "
                             "Rerunning the same command with the same --out resumes."),
    backend: Optional[str] = typer.Option(None, "--backend", "-b", help=f"{' | '.join(backend_names())} "
                                          "(default: the model's default backend)."),
    limit: Optional[int] = typer.Option(None, "--limit", min=1, help="Evaluate only the first N items "
                                        "(rounded up to finish the last pair)."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", min=1, help="Items per backend call; at most one "
                                             "batch is lost if the run is interrupted (default: vllm 32, openai 32, "
                                             "hf 4, baseline 16)."),
    num_frames: Optional[int] = typer.Option(None, "--num-frames", min=1, help="Sample this many frames uniformly "
                                             "(overrides the model's default)."),
    fps: Optional[float] = typer.Option(None, "--fps", min=0.0, help="Sample frames at this rate instead of a "
                                        "fixed count (with --max-frames as a cap)."),
    max_frames: Optional[int] = typer.Option(None, "--max-frames", min=1, help="Cap on frames when sampling by fps."),
    min_pixels: Optional[int] = typer.Option(None, "--min-pixels", min=1, help="Pixel budget floor per frame "
                                             "for the model's processor."),
    max_pixels: Optional[int] = typer.Option(None, "--max-pixels", min=1, help="Pixel budget ceiling per frame."),
    shard: Optional[str] = typer.Option(None, "--shard", help="I/N: evaluate shard I (0-based) of N; pairs stay "
                                        "together. Join shard runs with `dybench merge`."),
    probe: Optional[str] = typer.Option(None, "--probe", help="Degrade every clip: single-frame | first-last | "
                                        "shuffled | blank | reversed (stored as its own run; `dybench probe` runs "
                                        "them all)."),
    max_tokens: int = typer.Option(64, "--max-tokens", min=1, help="Most tokens generated per answer."),
    temperature: float = typer.Option(0.0, "--temperature", min=0.0, help="0 = greedy (reproducible)."),
    top_p: float = typer.Option(1.0, "--top-p", min=0.0, max=1.0, help="Nucleus sampling threshold."),
    seed: int = typer.Option(0, "--seed", help="Sampling seed (also seeds baseline:random)."),
    base_url: Optional[str] = typer.Option(None, "--base-url", help="openai backend: the server, e.g. "
                                           "http://127.0.0.1:8000/v1."),
    api_key_env: Optional[str] = typer.Option(None, "--api-key-env", help="openai backend: name of the environment "
                                              "variable holding the API key (the key is never written to disk)."),
    concurrency: Optional[int] = typer.Option(None, "--concurrency", min=1, help="openai backend: requests in flight."),
    request_timeout: Optional[float] = typer.Option(None, "--request-timeout", min=0.001, help="openai backend: most "
                                                    "seconds one item's request may take, retries included "
                                                    "(default 600); past it the item is recorded as failed."),
    tensor_parallel_size: Optional[int] = typer.Option(None, "--tensor-parallel-size", min=1, help="vllm backend: GPUs per model."),
    max_model_len: Optional[int] = typer.Option(None, "--max-model-len", min=1, help="vllm backend: context length."),
    dtype: Optional[str] = typer.Option(None, "--dtype", help="hf/vllm backends: e.g. bfloat16, float32."),
    device: Optional[str] = typer.Option(None, "--device", help="hf backend: cpu, cuda, cuda:1 ..."),
    data_parallel: int = typer.Option(1, "--data-parallel", min=1, help="Run N shard workers at once (one engine "
                                      "each, each pinned to its own GPU(s), or to its share of the CPU threads) "
                                      "and merge them into --out; shard folders are kept in OUT/shards/."),
    backend_args: Optional[str] = BACKEND_ARGS,
    system_prompt: Optional[str] = SYSTEM_PROMPT,
    chat_template: Optional[Path] = CHAT_TEMPLATE,
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show the progress bar."),
) -> None:
    """Ask a model every question of a dataset; write predictions, run.json and scores.json.

    Finished batches are saved as they complete: after a crash or Ctrl-C, run the same command again and it continues where it stopped. A run directory holds one configuration: different settings need a new --out.

    Examples: `dybench eval --model baseline:motion --data data/synth-test --out runs/motion`;
    `dybench eval --model qwen3-vl-8b --data data/synth-test --out runs/q8b-0 --shard 0/2`;
    `dybench eval --model qwen3-vl-8b --data data/synth-test --out runs/q8b --data-parallel 8` (one GPU per worker)
    """
    from dybench.evaluate import EvalInterrupted, run_eval

    if backend is not None and backend not in backend_names():
        fail(f"--backend {backend!r}: choose one of {', '.join(backend_names())}")
    flags = {
        "base_url": base_url,
        "api_key_env": api_key_env,
        "concurrency": concurrency,
        "timeout_s": request_timeout,
        "tensor_parallel_size": tensor_parallel_size,
        "max_model_len": max_model_len,
        "dtype": dtype,
        "device": device,
    }
    options = backend_options(model, backend, flags, backend_args)
    chat_template = None if chat_template is None else str(chat_template)
    sampling = Sampling(max_tokens=max_tokens, temperature=temperature, top_p=top_p, seed=seed)
    if data_parallel > 1:
        eval_kwargs = dict(
            model=model, data=data, backend=backend, limit=limit, batch_size=batch_size, shard=shard,
            num_frames=num_frames, fps=fps, max_frames=max_frames, min_pixels=min_pixels, max_pixels=max_pixels,
            sampling=sampling, backend_options=options, probe=probe, system_prompt=system_prompt,
            chat_template=chat_template,
        )
        scores = _eval_data_parallel(data_parallel, out, eval_kwargs, options.get("tensor_parallel_size") or 1,
                                     options.get("device"), progress)  # flag or --backend-args: the same checks
        print_summary(scores, title=f"{model} on {data} ({data_parallel} workers)" + (f" (probe: {probe})" if probe else ""))
        console.print(rich_text(f"wrote {out / 'predictions.jsonl'}, {out / 'run.json'}, {out / 'scores.json'} "
                                f"(shards in {out / 'shards'})"), highlight=False)
        return
    try:
        scores = run_eval(
            model, data, out, backend=backend, limit=limit, batch_size=batch_size, shard=shard,
            num_frames=num_frames, fps=fps, max_frames=max_frames, min_pixels=min_pixels, max_pixels=max_pixels,
            sampling=sampling, backend_options=options, progress=progress, console=err_console, probe=probe,
            system_prompt=system_prompt, chat_template=chat_template,
        )
    except EvalInterrupted as exc:
        fail(str(exc), code=interrupt_exit_code())
    except KeyboardInterrupt:  # before the first batch: nothing to keep
        fail("interrupted before any item was evaluated", code=interrupt_exit_code())
    print_summary(scores, title=f"{model} on {data}" + (f" (probe: {probe})" if probe else ""))
    console.print(rich_text(f"wrote {out / 'predictions.jsonl'}, {out / 'run.json'}, {out / 'scores.json'}"),
                  highlight=False)


def _eval_data_parallel(count: int, out: Path, eval_kwargs: dict[str, Any], devices_per_worker: int,
                        device: str | None, progress: bool) -> dict[str, Any]:
    from dybench.data_parallel import DataParallelInterrupted, execute_data_parallel, plan_data_parallel
    from dybench.evaluate import make_progress

    if eval_kwargs["limit"] is not None:
        fail("--limit with --data-parallel would ask a different subset than one process does: drop one of them")
    if device is not None and ":" in device:
        fail(f"--device {device} names one GPU, but --data-parallel pins each worker to its own: use --device cuda")
    plan = plan_data_parallel(count, out, eval_kwargs, devices_per_worker)
    try:
        with make_progress(err_console, progress) as bar:
            task = bar.add_task(f"eval x{count}", total=None)
            return execute_data_parallel(plan, lambda done, total: bar.update(task, completed=done, total=total))
    except DataParallelInterrupted as exc:
        fail(str(exc), code=interrupt_exit_code())


def merge_command(
    shards: list[Path] = typer.Argument(..., help="Run directories of the shards (from `dybench eval --shard I/N`)."),
    out: Path = typer.Option(..., "--out", "-o", help="The merged run directory."),
) -> None:
    """Join shard runs of one configuration into one run directory and score it.

    The shards must share settings (the same fingerprint in run.json) and must not overlap. Example: `dybench merge runs/q8b-0 runs/q8b-1 --out runs/q8b`
    """
    from dybench.evaluate import score_run
    from dybench.store import merge_runs

    config, rows = merge_runs(list(shards), out)
    scores, missing = score_run(out)
    print_summary(scores, title=f"{config.model} on {config.dataset.name} (merged {len(shards)} runs)")
    if missing:
        err_console.print(f"[yellow]warning:[/] {missing} items have no prediction (a shard missing or "
                          "unfinished?); they count as wrong")
    console.print(rich_text(f"wrote {out / 'predictions.jsonl'} ({len(rows)} items), {out / 'run.json'}, "
                            f"{out / 'scores.json'}"), highlight=False)


__all__ = ["eval_command", "merge_command"]
