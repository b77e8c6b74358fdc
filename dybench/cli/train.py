"""`dybench train-crpo`: fine-tune a video LLM with CRPO, GRPO, T-GRPO or supervised answers."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import typer

from dybench.signals import interrupt_exit_code
from dybench.cli.common import console, fail
from dybench.escaping import rich_text
from dybench.train.algorithms import ALGORITHMS



def train_command(
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Model alias (e.g. qwen3-vl-8b, tiny-random-qwen3-vl) "
                                        "or a local checkpoint folder (e.g. the --out of an earlier run)."),
    data: Optional[str] = typer.Option(None, "--data", "-d", help="Training data: a folder from "
                                       "`dybench build-pairs --split train` (or any manifest folder, or hf:DIR from `dybench export hf`)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Output folder: HF checkpoint (model + processor), "
                                       "metrics.jsonl, train_config.yaml, checkpoints/."),
    algo: Optional[str] = typer.Option(None, "--algo", help=f"{' | '.join(ALGORITHMS.names())} (default crpo): "
                                 "dybench/train/algorithms.py, or a plugin (DYBENCH_PLUGINS)."),
    max_steps: Optional[int] = typer.Option(None, "--max-steps", min=1, help="Optimizer updates (default 100)."),
    group_size: Optional[int] = typer.Option(None, "--group-size", "-G", min=1, help="Rollouts per question and "
                                             "branch (default 4). CRPO and T-GRPO generate 2G per question: give "
                                             "GRPO 2G for an equal rollout budget."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", min=1, help="Questions per micro-batch and "
                                             "process (default 2)."),
    grad_accum: Optional[int] = typer.Option(None, "--grad-accum", min=1, help="Micro-batches per update (default 1)."),
    lr: Optional[float] = typer.Option(None, "--lr", help="AdamW learning rate (default 1e-6, Video-R1's for "
                                       "7B models; tiny CPU models learn at 1e-4..3e-4)."),
    beta: Optional[float] = typer.Option(None, "--beta", help="KL penalty to the initial model (default 0.04; 0 "
                                         "loads no reference model)."),
    max_new_tokens: Optional[int] = typer.Option(None, "--max-new-tokens", min=1, help="Tokens per rollout (default 32)."),
    answer_format: Optional[str] = typer.Option(None, "--answer-format", help="tag: ask for <answer>X</answer> "
                                                "(default); letter: the evaluation prompt's own instruction."),
    rollout_engine: Optional[str] = typer.Option(None, "--rollout-engine", help="hf (default): transformers "
                                                 "generate on the policy; vllm: a colocated vLLM engine, weights "
                                                 "synced after every update."),
    lora: bool = typer.Option(False, "--lora", help="Train LoRA adapters (needs peft) instead of all weights; "
                              "set rank etc. in --config."),
    save_every: Optional[int] = typer.Option(None, "--save-every", min=1, help="Resumable checkpoint every N "
                                             "updates (default 50)."),
    report_to: Optional[str] = typer.Option(None, "--report-to", help="none (default) | tensorboard | wandb: also "
                                            "log metrics.jsonl's rows there (OUT/tensorboard/, OUT/wandb/; "
                                            "WANDB_MODE=offline logs without a network)."),
    export_every: Optional[int] = typer.Option(None, "--export-every", min=1, help="Write a HF checkpoint that "
                                               "`dybench eval` loads to OUT/checkpoints/step-N/ every N updates."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out from its latest checkpoint."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Seed for sampling and data order (default 0)."),
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="YAML file with any option of "
                                          "dybench.train.config.TrainConfig (reward weights, advantage mode, "
                                          "LoRA, ...); command-line options override it."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Live display of the reward terms."),
) -> None:
    """Fine-tune a video LLM on counterfactual pairs with CRPO, or the GRPO / T-GRPO baselines, or SFT.

    Every setting is checked (config, data, model, output folder) before a model is loaded. Ctrl-C
    or SIGTERM saves a checkpoint once an update has finished; rerun the same command with --resume
    to continue exactly where it stopped (before the first update, the same command starts over).
    Evaluate the result with `dybench eval --model OUT --backend hf`.

    Example: `dybench train-crpo --model tiny-random-qwen3-vl --data data/train --out runs/crpo --max-steps 3`.
    Multi-GPU: `accelerate launch --config_file configs/fsdp.yaml -m dybench.cli train-crpo ...`.
    """
    from dybench.train.config import LoraSettings, load_config
    from dybench.train.display import live_display
    from dybench.train.router import describe_routes
    from dybench.train.trainer import ROUTES_FILE, Trainer, TrainingInterrupted

    settings = load_config(
        config,
        model=model,
        data=data,
        out=out,
        algo=algo,
        max_steps=max_steps,
        group_size=group_size,
        batch_size=batch_size,
        grad_accum=grad_accum,
        lr=lr,
        beta=beta,
        max_new_tokens=max_new_tokens,
        answer_format=answer_format,
        rollout_engine=rollout_engine,
        save_every=save_every,
        report_to=report_to,
        export_every=export_every,
        seed=seed,
        display=None if progress else False,
        lora=LoraSettings() if lora else None,
    )
    trainer = Trainer(settings, resume=resume, display=live_display if settings.display else None)
    main_process = os.environ.get("RANK", "0") == "0"  # under accelerate/torchrun, one process speaks
    processes = int(os.environ.get("WORLD_SIZE", "1"))
    if main_process:
        console.print(
        f"[bold]{settings.algo}[/] on {len(trainer.questions)} questions from {rich_text(settings.data)}: "
            f"{settings.max_steps} updates of {settings.batch_size * settings.grad_accum} questions x "
            f"{1 if settings.algorithm.supervised else settings.rollouts_per_question} rollouts (per process)"
            + (f"; {processes} processes: {processes * settings.batch_size * settings.grad_accum} questions per update"
               if processes > 1 else "")
        )
        console.print(rich_text(describe_routes(trainer.routes)) + f" -> {rich_text(settings.out / ROUTES_FILE)}",
                      highlight=False)
    try:
        result = trainer.train()
    except TrainingInterrupted as exc:  # Ctrl-C or SIGTERM: exit 130 / 143, the message says what next
        fail(str(exc), code=interrupt_exit_code())
    if main_process:
        console.print(f"[green]done[/]: checkpoint in {rich_text(result)} (metrics.jsonl alongside); "
                      f"evaluate with `dybench eval --model {rich_text(result)} --backend hf --data ... --out ...`")
