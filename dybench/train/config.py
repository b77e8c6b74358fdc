"""The training configuration: one pydantic model, validated in full before any compute starts.

Values come from (lowest to highest priority) the defaults below, a YAML file (`--config`), and
command-line options. The resolved config is written next to the checkpoint so a run can be
repeated exactly.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from dybench.errors import DyBenchError, pydantic_message
from dybench.schema import TransformName
from dybench.train.provenance import PROVENANCE_KEY
from dybench.train.trackers import ReportTo
from dybench.yaml_files import read_yaml_mapping

if TYPE_CHECKING:
    from dybench.registry import Registry
    from dybench.train.algorithms import Algorithm

AdvantageMode = Literal["per_branch", "joint"]
Precision = Literal["auto", "fp32", "bf16"]
AnswerFormat = Literal["tag", "letter"]


class _Strict(BaseModel):
    # A misspelt key in a YAML config must fail loudly, not be ignored.
    model_config = ConfigDict(extra="forbid")


class RewardWeights(_Strict):
    """Weight of every reward term (rewards are plain functions, docs/architecture.md; weights are options).

    Original branch: correct, format, crr (R_CRR^orig). Counterfactual branch: format, behave,
    crr (R_CRR^aug). T-GRPO adds `temporal` (its bonus, already scaled by `tgrpo.alpha`).
    """

    correct: float = 1.0
    format: float = 1.0
    crr_orig: float = 1.0
    behave: float = 1.0
    crr_aug: float = 1.0
    temporal: float = 1.0


class TGRPOSettings(_Strict):
    """Video-R1's temporal reward: +alpha to correct ordered rollouts when acc >= mu * shuffled acc."""

    alpha: float = 0.3
    mu: float = 0.8


class LoraSettings(_Strict):
    r: int = Field(16, ge=1)
    alpha: int = Field(32, ge=1)
    dropout: float = Field(0.05, ge=0.0, lt=1.0)
    target_modules: list[str] = Field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"],
        description="module names (of the language model) that get adapters",
    )


class RouterSettings(_Strict):
    """How questions outside DyBench's task table are routed (dybench.train.router)."""

    kind: Literal["rules", "llm"] = Field(
        "rules", description="rules: conservative rules on the text; llm: ask `model` through an eval backend "
        "(answers cached in OUT/router/)"
    )
    model: str | None = Field(None, description="llm: the router model (alias, checkpoint folder, baseline:...)")
    backend: str | None = Field(None, description="llm: eval backend (vllm, openai, hf, baseline; default: the model's)")
    options: dict[str, Any] = Field(
        default_factory=dict, description="llm: backend options, e.g. {base_url: ..., api_key_env: ...}"
    )
    batch_size: int = Field(16, ge=1, description="llm: questions per backend call")

    @model_validator(mode="after")
    def _model_for_llm(self) -> RouterSettings:
        if self.kind == "llm" and not self.model:
            raise ValueError("the llm router needs a model (router.model)")
        return self


class TrainConfig(_Strict):
    """Everything a training run depends on."""

    algo: str = Field("crpo", description="an RL algorithm from dybench/train/algorithms.py (or a plugin)")
    model: str = Field(description="model alias (see `dybench models`) or local checkpoint folder")
    data: str = Field(description="training data: a folder built by `dybench build-pairs --split train`")
    out: Path = Field(description="output folder: HF checkpoint, metrics.jsonl, config, checkpoints/")

    # Optimisation
    max_steps: int = Field(100, ge=1, description="optimizer updates")
    batch_size: int = Field(2, ge=1, description="questions per micro-batch (per process)")
    grad_accum: int = Field(1, ge=1, description="micro-batches per optimizer update")
    group_size: int = Field(4, ge=1, description="rollouts per question and branch (G)")
    lr: float = Field(1e-6, gt=0, description="AdamW learning rate (Video-R1 used 1e-6 on 7B models)")
    weight_decay: float = Field(0.0, ge=0)
    adam_betas: tuple[float, float] = (0.9, 0.999)
    max_grad_norm: float | None = Field(1.0, gt=0, description="clip the gradient norm (None: off)")
    warmup_steps: int = Field(0, ge=0)

    # Objective
    beta: float = Field(0.04, ge=0, description="KL penalty to the frozen initial policy; 0 loads no reference")
    clip_eps: float = Field(0.2, gt=0, description="PPO-style ratio clipping")
    advantage: AdvantageMode = "per_branch"
    scale_advantages: bool = Field(
        True, description="divide by the group's std (False: centred only, Dr. GRPO's advantage; the loss "
        "keeps its per-completion length normalisation, which Dr. GRPO also drops)"
    )
    rewards: RewardWeights = Field(default_factory=RewardWeights)
    tgrpo: TGRPOSettings = Field(default_factory=TGRPOSettings)

    # Questions and counterfactuals
    answer_format: AnswerFormat = Field(
        "tag",
        description="tag: the prompt asks for <answer>X</answer> (Video-R1); letter: the evaluation "
        "prompt's own instruction (the letter alone)",
    )
    null_option: bool = Field(True, description='append "None of the above" to every question')
    null_option_text: str = "None of the above"
    static_transforms: list[TransformName] = Field(
        default_factory=lambda: ["hflip", "reverse"],
        description="transforms for static questions (one per question, fixed by its id)",
    )
    router: RouterSettings = Field(
        default_factory=RouterSettings, description="routing of questions outside the task table: rules or an LLM"
    )

    # Rollouts
    rollout_engine: Literal["hf", "vllm"] = Field(
        "hf", description="hf: transformers generate on the policy; vllm: a colocated vLLM engine, weights "
        "synced after every update (see dybench.train.rollouts)"
    )
    vllm_memory_fraction: float | None = Field(
        None, gt=0, lt=1, description="vllm rollouts: share of GPU memory for the engine (default 0.3; "
        "the CPU build gets a fixed 1 GiB KV cache)"
    )
    vllm_max_model_len: int | None = Field(None, ge=1, description="vllm rollouts: context length (default: the model's)")
    temperature: float = Field(1.0, gt=0)
    top_p: float = Field(1.0, gt=0, le=1)
    max_new_tokens: int = Field(32, ge=1)
    num_frames: int | None = Field(None, ge=1, description="frames per clip (default: the model's)")

    # Infrastructure
    precision: Precision = Field("auto", description="auto: bf16 where the GPU supports it, else fp32")
    lora: LoraSettings | None = None
    seed: int = 0
    save_every: int = Field(50, ge=1, description="write a resumable checkpoint every N updates")
    keep_checkpoints: int = Field(2, ge=1, description="resumable checkpoints kept on disk")
    display: bool = Field(True, description="rich live display of the reward terms")
    report_to: ReportTo = Field("none", description="also log metrics.jsonl's rows to tensorboard or wandb")
    export_every: int | None = Field(None, ge=1, description="write a HF checkpoint to checkpoints/step-N/ every N updates")

    @model_validator(mode="after")
    def _consistent(self) -> TrainConfig:
        if not self.static_transforms:
            raise ValueError("static_transforms must name at least one transform")
        if "swap_segments" in self.static_transforms:
            raise ValueError("static_transforms: swap_segments needs a segment boundary; use hflip or reverse")
        return self

    @field_validator("algo")
    @classmethod
    def _known_algorithm(cls, name: str) -> str:
        known = _algorithms().names()
        if name not in known:
            raise ValueError(f"unknown algorithm {name!r}; known: {', '.join(known)}")
        return name

    @property
    def algorithm(self) -> Algorithm:
        return _algorithms().get(self.algo)

    @property
    def rollouts_per_question(self) -> int:
        """Rollouts generated per question and step (both branches together)."""
        return self.algorithm.rollouts_per_question(self.group_size)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)


def load_config(path: Path | None = None, **overrides: Any) -> TrainConfig:
    """Defaults < YAML file < overrides (None values are ignored). One-line error when invalid."""
    data: dict[str, Any] = {}
    source = "training config"
    if path is not None:
        source = str(path)
        data.update(read_yaml_mapping(path, "config file", "expected a mapping of option: value"))
        data.pop(PROVENANCE_KEY, None)  # a saved train_config.yaml's record of its run, not a setting
    for key, value in overrides.items():
        if value is not None:
            data[key] = value
    try:
        return TrainConfig.model_validate(data)
    except ValidationError as exc:
        raise DyBenchError(f"{source}: {pydantic_message(exc, whole='config')}") from None


def _algorithms() -> Registry[Algorithm]:
    """The algorithm registry, imported late: its reward functions use this module's settings models."""
    from dybench.train.algorithms import ALGORITHMS as registry

    return registry
