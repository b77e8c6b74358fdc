"""Loading the policy, its processor and the frozen reference; LoRA; exporting a HF checkpoint."""

from __future__ import annotations

import copy
import math
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from dybench.errors import DyBenchError
from dybench.train.config import LoraSettings


@dataclass
class Policy:
    model: Any
    processor: Any
    reference: Any | None
    weights: Path
    spec: Any


def resolve_weights(name: str) -> tuple[Any, Path]:
    """The model spec (video defaults) and local weights folder for an alias or a path."""
    from dybench.backends.registry import locate_weights, resolve_model

    spec = resolve_model(name)
    return spec, Path(locate_weights(spec))


def load_policy(name: str, beta: float, lora: LoraSettings | None, with_reference: bool) -> Policy:
    """Policy in float32 (master weights; bf16 runs autocast), reference only when beta > 0.

    With LoRA the reference is the same network with its adapters switched off, so no second
    copy of the weights is held.
    """
    from transformers import AutoModelForImageTextToText, AutoProcessor

    spec, weights = resolve_weights(name)
    try:
        model = AutoModelForImageTextToText.from_pretrained(weights, dtype=torch.float32, trust_remote_code=False)
        processor = AutoProcessor.from_pretrained(weights, trust_remote_code=False)
    except (OSError, ValueError) as exc:
        raise DyBenchError(f"{weights}: cannot load a transformers model and processor ({exc})") from None
    reference = None
    if lora is not None:
        model = add_lora(model, lora)
    elif with_reference and beta > 0:
        reference = copy.deepcopy(model).eval()
        reference.requires_grad_(False)
    model.train()
    return Policy(model=model, processor=processor, reference=reference, weights=weights, spec=spec)


def add_lora(model: Any, settings: LoraSettings) -> Any:
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError:
        raise DyBenchError("LoRA needs peft: pip install 'dybench[lora]'") from None
    config = LoraConfig(
        r=settings.r,
        lora_alpha=settings.alpha,
        lora_dropout=settings.dropout,
        # Adapters go on the language model only: the vision tower has projections with the same names.
        target_modules=rf".*language_model.*\.({'|'.join(settings.target_modules)})",
    )
    return get_peft_model(model, config)


def is_lora(model: Any) -> bool:
    return hasattr(model, "disable_adapter") and hasattr(model, "peft_config")


def reference_context(policy_model: Any, reference: Any | None) -> tuple[Any, Any]:
    """(model to score the reference with, context manager to enter while doing it)."""
    import contextlib

    if reference is not None:
        return reference, contextlib.nullcontext()
    if is_lora(policy_model):
        return policy_model, policy_model.disable_adapter()
    raise ValueError("no reference model: beta is 0 or the run is supervised")


def trainable_state(model: Any) -> dict[str, torch.Tensor]:
    """The parameters a checkpoint must hold: only adapters under LoRA, everything otherwise."""
    if is_lora(model):
        from peft import get_peft_model_state_dict

        return {k: v.detach().cpu().clone() for k, v in get_peft_model_state_dict(model).items()}
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


def weights_digest(model: Any) -> str:
    """A short digest of the trainable weights (each tensor's float64 sum and absolute sum): equal on
    two processes whose weights agree; weights that differ anywhere almost surely change it. Cheap
    on any device: two reductions per tensor, one small copy to the CPU."""
    import hashlib

    sums = [torch.stack([p.detach().double().sum(), p.detach().double().abs().sum()])
            for _, p in sorted(model.named_parameters()) if p.requires_grad]
    if not sums:
        return ""
    return hashlib.sha256(torch.cat(sums).cpu().numpy().tobytes()).hexdigest()[:16]


def load_trainable_state(model: Any, state: dict[str, torch.Tensor]) -> None:
    if is_lora(model):
        from peft import set_peft_model_state_dict

        set_peft_model_state_dict(model, state)
        return
    missing, unexpected = model.load_state_dict(state, strict=False)
    if unexpected or [m for m in missing if not m.endswith("lm_head.weight")]:
        raise DyBenchError(f"checkpoint does not match the model (missing {missing[:3]}, unexpected {unexpected[:3]})")


def merged_lora_state(model: Any, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The base model's state dict with the adapters merged in (W + B @ A * alpha / r, as peft's
    merge computes it), taken from `state`, the PeftModel's full state dict, not from the modules:
    under FSDP / ZeRO-3 a process's modules hold only shards, the gathered state dict the weights."""
    adapter = model.active_adapter
    config = model.peft_config[adapter]
    if getattr(config, "use_dora", False):
        raise DyBenchError("exporting DoRA adapters is not supported; train plain LoRA adapters")
    if getattr(config, "rank_pattern", None) or getattr(config, "alpha_pattern", None):
        raise DyBenchError("exporting LoRA adapters with per-module ranks or alphas is not supported")
    scaling = config.lora_alpha / (math.sqrt(config.r) if getattr(config, "use_rslora", False) else config.r)
    prefix = "base_model.model."
    merged: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        name = key.removeprefix(prefix)
        if ".lora_" in name:
            continue
        if ".base_layer." in name:
            module, parameter = name.rsplit(".base_layer.", 1)
            if parameter == "weight":
                lora_a = state[f"{prefix}{module}.lora_A.{adapter}.weight"]
                lora_b = state[f"{prefix}{module}.lora_B.{adapter}.weight"]
                value = value + (lora_b.to(value.dtype) @ lora_a.to(value.dtype)) * scaling
            name = f"{module}.{parameter}"
        merged[name] = value
    return merged


def export_hf(model: Any, processor: Any, out: Path, state_dict: dict[str, torch.Tensor] | None = None) -> None:
    """A plain transformers checkpoint (LoRA merged) + processor, loadable by `dybench eval --backend hf`.

    Written into a temporary folder first and then moved file by file, so an interrupted export
    never leaves a half-written weights file under `out`. `state_dict` is the gathered one under
    FSDP / ZeRO-3; the weights written come from it (LoRA included), never from the local shards.
    """
    out.mkdir(parents=True, exist_ok=True)
    staging = out / ".export.partial"
    if staging.exists():
        shutil.rmtree(staging)
    if is_lora(model):
        state = state_dict if state_dict is not None else model.state_dict()
        model.get_base_model().save_pretrained(staging, state_dict=merged_lora_state(model, state))
    else:
        model.save_pretrained(staging, state_dict=state_dict)
    processor.save_pretrained(staging)
    for path in sorted(staging.iterdir()):
        os.replace(path, out / path.name)
    staging.rmdir()
