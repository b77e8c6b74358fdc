"""Rollout generation and the log-probabilities of completions.

The trainer sees one small interface, `RolloutEngine`:

* ``generate(model, prompts, num_samples)`` samples `num_samples` completions for every prompt of
  a batch in ONE call (the trainer puts the original and the counterfactual clip of every question
  in the same batch, so both branches come from one batched generation);
* ``sync_weights(model)`` is called after every optimizer update.

Two engines implement it (config `rollout_engine`):

* `HFRolloutEngine` (default): transformers' ``generate`` on the policy itself, so there is
  nothing to sync;
* `VLLMRolloutEngine` (`dybench.train.vllm_rollouts`): a vLLM engine colocated in the training
  process, fed the same chat text and frames+metadata as the evaluation's vLLM backend; the
  updated weights are copied into it after every optimizer update.

Log-probabilities for the loss are always recomputed by the policy (`completion_logprobs`), so an
engine only has to return tokens.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any, Iterator, Protocol

import torch

VIDEO_KEYS = ("pixel_values_videos", "video_grid_thw")


@dataclass
class PromptBatch:
    """Processor output for P prompts (left-padded), each with one video; the prompt texts and
    sampled clips they were built from travel along for engines that do their own processing."""

    inputs: dict[str, torch.Tensor]
    texts: list[str] = field(default_factory=list)
    clips: list[Any] = field(default_factory=list)

    @property
    def size(self) -> int:
        return int(self.inputs["input_ids"].shape[0])


@dataclass
class Rollouts:
    """N = P * num_samples completions, prompt-major (prompt p owns rows p*G .. p*G+G-1)."""

    prompt_index: torch.Tensor  # (N,)
    completion_ids: torch.Tensor  # (N, T)
    completion_mask: torch.Tensor  # (N, T): 1 up to and including the first end token
    texts: list[str]

    @property
    def lengths(self) -> torch.Tensor:
        return self.completion_mask.sum(1)


class RolloutEngine(Protocol):
    def generate(self, model: Any, prompts: PromptBatch, num_samples: int) -> Rollouts: ...

    def sync_weights(self, model: Any) -> None: ...

    def close(self) -> None: ...


MULTIMODAL_TOKEN_KEYS = ("image_token_id", "video_token_id", "vision_start_token_id", "vision_end_token_id")


def multimodal_token_ids(model: Any) -> list[int]:
    """Placeholder tokens a completion must never contain: a sampled `<|video_pad|>` would make
    the next forward pass expect a video that is not there. Both sampling and the recomputed
    log-probabilities exclude them, so the two distributions stay the same."""
    config = getattr(getattr(model, "module", model), "config", None)  # DDP keeps the model in .module
    ids = [getattr(config, key, None) for key in MULTIMODAL_TOKEN_KEYS]
    return sorted({int(i) for i in ids if i is not None})


def end_token_ids(model: Any, tokenizer: Any) -> list[int]:
    """Tokens that end a completion: the generation config's EOS (one id or several)."""
    eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    if eos is None:
        eos = tokenizer.eos_token_id
    ids = eos if isinstance(eos, list) else [eos]
    return [int(i) for i in ids if i is not None]


def completion_mask(completion_ids: torch.Tensor, end_ids: list[int]) -> torch.Tensor:
    """1 for every token up to and including the first end token, 0 after it."""
    is_end = torch.isin(completion_ids, torch.tensor(end_ids, device=completion_ids.device))
    # number of end tokens strictly before each position
    ends_before = torch.cumsum(is_end.int(), dim=1) - is_end.int()
    return (ends_before == 0).long()


@dataclass
class HFRolloutEngine:
    """Sampling with transformers' `generate` on the policy (the default, CPU or GPU)."""

    tokenizer: Any
    max_new_tokens: int = 32
    temperature: float = 1.0
    top_p: float = 1.0

    def generate(self, model: Any, prompts: PromptBatch, num_samples: int) -> Rollouts:
        end_ids = end_token_ids(model, self.tokenizer)
        pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else end_ids[0]
        prompt_length = prompts.inputs["input_ids"].shape[1]
        with torch.no_grad():
            output = model.generate(
                **prompts.inputs,
                do_sample=True,
                temperature=self.temperature,
                top_p=self.top_p,
                top_k=0,
                max_new_tokens=self.max_new_tokens,
                num_return_sequences=num_samples,
                eos_token_id=end_ids,
                pad_token_id=pad_id,
                suppress_tokens=multimodal_token_ids(model) or None,
            )
        sequences = output if isinstance(output, torch.Tensor) else output.sequences
        completion_ids = sequences[:, prompt_length:]
        mask = completion_mask(completion_ids, end_ids)
        texts = self.tokenizer.batch_decode(completion_ids * mask + pad_id * (1 - mask), skip_special_tokens=True)
        index = torch.arange(prompts.size, device=completion_ids.device).repeat_interleave(num_samples)
        return Rollouts(prompt_index=index, completion_ids=completion_ids, completion_mask=mask, texts=texts)

    def sync_weights(self, model: Any) -> None:
        """Nothing to do: generation runs on the policy's own weights."""

    def close(self) -> None:
        """Nothing to release."""


def select_prompts(inputs: dict[str, torch.Tensor], index: torch.Tensor) -> dict[str, torch.Tensor]:
    """The processor inputs of prompts `index` (repeats allowed), videos included.

    Text tensors are indexed by row; the video patches are one flat tensor over all videos, so
    they are cut per video (by its grid's size) and reassembled in the order of `index`.
    """
    selected: dict[str, torch.Tensor] = {}
    for key, value in inputs.items():
        if key in VIDEO_KEYS or not isinstance(value, torch.Tensor):
            continue
        selected[key] = value[index]
    if "video_grid_thw" in inputs:
        grids = inputs["video_grid_thw"]
        sizes = grids.prod(dim=1).tolist()
        chunks = torch.split(inputs["pixel_values_videos"], sizes, dim=0)
        selected["pixel_values_videos"] = torch.cat([chunks[i] for i in index.tolist()], dim=0)
        selected["video_grid_thw"] = grids[index]
    return selected


def completion_logprobs(
    model: Any,
    prompts: PromptBatch,
    prompt_index: torch.Tensor,
    completion_ids: torch.Tensor,
    completion_mask: torch.Tensor,
    temperature: float = 1.0,
    with_entropy: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """log p(token) of every completion token under `model` (N, T), and its entropy if asked.

    Logits are divided by the sampling temperature, so these are the probabilities the rollouts
    were drawn from.
    """
    inputs = select_prompts(prompts.inputs, prompt_index)
    inputs["input_ids"] = torch.cat([inputs["input_ids"], completion_ids], dim=1)
    inputs["attention_mask"] = torch.cat([inputs["attention_mask"], completion_mask.to(inputs["attention_mask"].dtype)], dim=1)
    length = completion_ids.shape[1]
    if "mm_token_type_ids" in inputs:
        inputs["mm_token_type_ids"] = torch.cat([inputs["mm_token_type_ids"], torch.zeros_like(completion_ids)], dim=1)
    logits = model(**inputs, logits_to_keep=length + 1, use_cache=False).logits[:, :-1, :]
    logits = logits.float() / temperature
    suppressed = multimodal_token_ids(model)
    if suppressed:
        logits[..., suppressed] = float("-inf")
    logp_all = torch.log_softmax(logits, dim=-1)
    logp = torch.gather(logp_all, 2, completion_ids.unsqueeze(-1)).squeeze(-1)
    entropy = None
    if with_entropy:
        with torch.no_grad():
            probs = logp_all.exp()
            entropy = -(probs * logp_all.masked_fill(probs == 0, 0.0)).sum(-1)
    return logp, entropy


@contextlib.contextmanager
def sampling_mode(model: Any) -> Iterator[None]:
    """`model` in eval mode (dropout off, LoRA's included) for the duration, then back in training
    mode: rollouts come from the policy itself, not from a randomly thinned copy of it."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        if was_training:
            model.train()


@contextlib.contextmanager
def generation_model(accelerator: Any, model: Any) -> Iterator[Any]:
    """The plain model to call `generate` on, in eval mode, with sharded parameters gathered where needed.

    DDP: the wrapped module. DeepSpeed ZeRO-3: parameters gathered for the duration (as TRL does).
    FSDP: full parameters summoned (FSDP1); FSDP2 modules gather their shards in their own hooks.
    """
    from accelerate.utils import DistributedType

    unwrapped = accelerator.unwrap_model(model)
    kind = accelerator.distributed_type
    with sampling_mode(unwrapped):
        if kind == DistributedType.DEEPSPEED and accelerator.state.deepspeed_plugin.zero_stage == 3:
            import deepspeed

            with deepspeed.zero.GatheredParameters(list(model.parameters()), modifier_rank=None):
                yield unwrapped
        elif kind == DistributedType.FSDP and getattr(accelerator.state.fsdp_plugin, "fsdp_version", 1) == 1:
            from torch.distributed.fsdp import FullyShardedDataParallel

            with FullyShardedDataParallel.summon_full_params(model, writeback=False, recurse=True):
                yield unwrapped
        else:
            yield unwrapped
