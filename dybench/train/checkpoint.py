"""Resumable checkpoints: model (or adapter) weights, optimizer, scheduler and RNG state.

Everything is saved with `torch.save` as tensors, numbers and plain containers, written by us,
and loaded with ``weights_only=True`` (no arbitrary objects are unpickled). A checkpoint is
written to a temporary folder and renamed into place, so a crash while saving leaves the previous
checkpoint intact. Multi-GPU runs under FSDP or DeepSpeed keep model and optimizer in
accelerate's own sharded `save_state` format (`step-N/accelerate/`, their shards cannot be
gathered cheaply); state.pt then holds only the step, scheduler and RNG state.
"""

from __future__ import annotations

import random
import re
import shutil
from pathlib import Path
from typing import Any

import torch

from dybench.errors import DyBenchError

CHECKPOINTS = "checkpoints"
STATE_FILE = "state.pt"
_STEP_DIR = re.compile(r"^step-(\d+)$")


def rng_state() -> dict[str, Any]:
    """Every random generator the loop draws from (generation samples from torch's)."""
    state: dict[str, Any] = {"python": random.getstate(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def checkpoint_dir(out: Path, step: int) -> Path:
    return out / CHECKPOINTS / f"step-{step:06d}"


def list_checkpoints(out: Path) -> list[tuple[int, Path]]:
    """Complete checkpoints under `out`, oldest first."""
    folder = out / CHECKPOINTS
    if not folder.is_dir():
        return []
    found = []
    for path in folder.iterdir():
        match = _STEP_DIR.match(path.name)
        if match and (path / STATE_FILE).is_file():
            found.append((int(match.group(1)), path))
    return sorted(found)


def latest_checkpoint(out: Path) -> tuple[int, Path] | None:
    found = list_checkpoints(out)
    return found[-1] if found else None


def staging_dir(out: Path, step: int) -> Path:
    """Where checkpoint `step` is assembled before it is renamed into place."""
    target = checkpoint_dir(out, step)
    return target.with_name(target.name + ".partial")


def start_checkpoint(out: Path, step: int) -> Path:
    """An empty staging folder for checkpoint `step` (sharded engines write into it too)."""
    staging = staging_dir(out, step)
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    return staging


def finish_checkpoint(out: Path, step: int, state: dict[str, Any], keep: int) -> Path:
    """Write `state` (plus `step`) as state.pt, rename the folder into place, keep the newest `keep`."""
    staging, target = staging_dir(out, step), checkpoint_dir(out, step)
    torch.save({"step": step, **state}, staging / STATE_FILE)
    if target.exists():
        shutil.rmtree(target)
    staging.rename(target)
    for _, old in list_checkpoints(out)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return target


def load_checkpoint(path: Path) -> dict[str, Any]:
    try:
        return torch.load(path / STATE_FILE, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError) as exc:
        raise DyBenchError(f"{path / STATE_FILE}: cannot read the checkpoint ({exc})") from None
