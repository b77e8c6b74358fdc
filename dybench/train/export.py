"""Intermediate Hugging Face exports (`--export-every N`): OUT/checkpoints/step-N/.

Each is a plain transformers checkpoint (config.json, model.safetensors, processor and tokenizer
files; LoRA merged), the same as the final one in OUT, so `dybench eval --backend hf|vllm --model
OUT/checkpoints/step-N` evaluates the policy after update N. The resumable checkpoints beside them
(step-NNNNNN/, dybench.train.checkpoint) hold optimizer and RNG state in our own format; an export
holds no state.pt, so resuming never mistakes one for the other, and pruning old resumable
checkpoints (keep_checkpoints) never removes an export.

An export is assembled in a hidden folder (.step-N.partial) and renamed into place, so a crash
while writing leaves no step-N/ that looks complete; the next export clears the leftover. It runs
as a step callback, so an interrupt during it is redone on --resume (see Trainer._run_callbacks).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from dybench.train.checkpoint import CHECKPOINTS


def export_dir(out: Path, step: int) -> Path:
    return out / CHECKPOINTS / f"step-{step}"


def _staging_dir(target: Path) -> Path:
    return target.with_name(f".{target.name}.partial")


def _replaced_dir(target: Path) -> Path:
    return target.with_name(f".{target.name}.replaced")


def export_step(trainer: Any, step: int) -> Path:
    """Write the trainer's current policy as OUT/checkpoints/step-`step`/ (every process calls this;
    the main one writes)."""
    target = export_dir(trainer.config.out, step)
    staging, replaced = _staging_dir(target), _replaced_dir(target)
    main = trainer.accelerator.is_main_process
    if main:
        for leftover in (staging, replaced):
            if leftover.exists():
                shutil.rmtree(leftover)
    trainer.export(staging)
    if main:
        # A resume that repeats step N writes step-N again: the old folder moves aside first, so at
        # every moment step-N/ is either the old export or the new one, whole.
        if target.exists():
            target.rename(replaced)
        staging.rename(target)
        shutil.rmtree(replaced, ignore_errors=True)
    trainer.accelerator.wait_for_everyone()
    return target


class ExportEvery:
    """Step callback: export after every `every`-th update."""

    def __init__(self, every: int) -> None:
        self.every = every

    def __call__(self, step: int, row: dict[str, Any], trainer: Any) -> None:
        if step % self.every == 0:
            export_step(trainer, step)


def export_callbacks(every: int | None) -> list[ExportEvery]:
    """The callbacks `--export-every` adds (none when it is not set)."""
    return [ExportEvery(every)] if every else []
