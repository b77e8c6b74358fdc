"""Rollouts from a colocated vLLM engine (config `rollout_engine: vllm`).

The engine lives in the training process, beside the policy (vLLM's in-process mode), so that
after every optimizer update the new weights are handed to it by reference (`reload_weights`),
never written to disk or pickled. It sees exactly what the evaluation's vLLM backend sends: the
same chat text and the same frames with their metadata (`VLLMBackend.video_prompt`).

Only tokens come back: the loss recomputes log-probabilities with the policy itself
(`completion_logprobs`), so a numerical difference between the two implementations changes which
samples are drawn, never the gradient's formula.

Sampling seeds are drawn from torch's global generator, whose state every checkpoint stores, so
a resumed run draws the same rollouts as an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any, Iterator

import torch

from dybench.errors import DyBenchError
from dybench.train.rollouts import PromptBatch, Rollouts, end_token_ids, multimodal_token_ids

IN_PROCESS_ENV = "VLLM_ENABLE_V1_MULTIPROCESSING"
BANNED_LOGIT_BIAS = -100.0
"""vLLM clamps logit biases to [-100, 100]; -100 makes a token's probability about e^-100."""
GPU_MEMORY_FRACTION = 0.3
"""Colocated on a training GPU the engine takes a share of the card, leaving the rest to training."""
CPU_KV_CACHE_BYTES = 1 << 30
"""On the CPU build a share of RAM does not work in-process: vLLM subtracts the whole process's
memory (policy, reference, optimizer) from it. A fixed KV cache does."""


@contextlib.contextmanager
def _in_process_engine() -> Iterator[None]:
    """Build the engine in this process (no engine-core subprocess), then restore the setting so
    other engines of the same process (an evaluation, say) keep vLLM's default."""
    previous = os.environ.get(IN_PROCESS_ENV)
    os.environ[IN_PROCESS_ENV] = "0"
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(IN_PROCESS_ENV, None)
        else:
            os.environ[IN_PROCESS_ENV] = previous


def policy_weights(model: Any) -> dict[str, torch.Tensor]:
    """The policy's full weights under their checkpoint names (LoRA adapters merged in)."""
    model = getattr(model, "module", model)  # DDP
    if not hasattr(model, "merge_adapter"):
        return model.state_dict()
    model.merge_adapter()
    try:
        return {
            name.removeprefix("base_model.model.").replace(".base_layer.", "."): tensor.detach().clone()
            for name, tensor in model.state_dict().items()
            if "lora_" not in name
        }
    finally:
        model.unmerge_adapter()


class VLLMRolloutEngine:
    """`RolloutEngine` backed by an in-process `vllm.LLM` built from the policy's initial weights."""

    def __init__(
        self,
        spec: Any,
        weights: Path,
        tokenizer: Any,
        max_new_tokens: int = 32,
        temperature: float = 1.0,
        top_p: float = 1.0,
        max_model_len: int | None = None,
        memory_fraction: float | None = None,
        seed: int = 0,
    ) -> None:
        try:
            import vllm  # noqa: F401
        except ImportError:
            raise DyBenchError(
                "rollout_engine vllm needs vLLM: pip install 'dybench[vllm]' (GPU) or scripts/install.sh (CPU build)"
            ) from None
        from dybench.backends.vllm import VLLMBackend, on_cpu

        self.tokenizer = tokenizer
        self.max_new_tokens = max_new_tokens
        self.temperature = temperature
        self.top_p = top_p
        memory = {"kv_cache_memory_bytes": CPU_KV_CACHE_BYTES} if on_cpu() else {
            "gpu_memory_utilization": memory_fraction or GPU_MEMORY_FRACTION
        }
        with _in_process_engine():
            self.backend = VLLMBackend(spec, weights, max_model_len=max_model_len, seed=seed, **memory)
        self.llm = self.backend.llm

    def sampling_params(self, model: Any, num_samples: int, seed: int) -> Any:
        from vllm import SamplingParams

        return SamplingParams(
            n=num_samples,
            temperature=self.temperature,
            top_p=self.top_p,
            max_tokens=self.max_new_tokens,
            stop_token_ids=end_token_ids(model, self.tokenizer),
            logit_bias={token: BANNED_LOGIT_BIAS for token in multimodal_token_ids(model)} or None,
            seed=seed,
        )

    def generate(self, model: Any, prompts: PromptBatch, num_samples: int) -> Rollouts:
        inputs = [self.backend.video_prompt(text, clip) for text, clip in zip(prompts.texts, prompts.clips)]
        # One seed per prompt from torch's generator: distinct streams, restored on resume.
        seeds = torch.randint(0, 2**31 - 1, (len(inputs),)).tolist()
        params = [self.sampling_params(model, num_samples, seed) for seed in seeds]
        outputs = self.llm.generate(inputs, params, use_tqdm=False)
        sequences = [list(sample.token_ids) for output in outputs for sample in output.outputs]
        return self._rollouts(sequences, prompts, num_samples, model)

    def _rollouts(self, sequences: list[list[int]], prompts: PromptBatch, num_samples: int, model: Any) -> Rollouts:
        """Token lists -> padded `Rollouts` (the mask covers every sampled token, the end token
        included when the completion stopped on one: the same convention as the HF engine)."""
        pad_id = self.tokenizer.pad_token_id
        if pad_id is None:
            pad_id = end_token_ids(model, self.tokenizer)[0]
        width = max(1, max(len(s) for s in sequences))
        device = prompts.inputs["input_ids"].device
        ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(sequences), width), dtype=torch.long)
        for row, tokens in enumerate(sequences):
            ids[row, : len(tokens)] = torch.tensor(tokens, dtype=torch.long)
            mask[row, : len(tokens)] = 1
        texts = self.tokenizer.batch_decode(sequences, skip_special_tokens=True)
        index = torch.arange(prompts.size).repeat_interleave(num_samples)
        return Rollouts(prompt_index=index.to(device), completion_ids=ids.to(device),
                        completion_mask=mask.to(device), texts=texts)

    def sync_weights(self, model: Any) -> None:
        """Copy the updated policy into the engine, then drop everything computed with the old
        weights (cached vision features and prefixes)."""
        weights = policy_weights(model)
        self.llm.collective_rpc("reload_weights", kwargs={"weights_iterator": list(weights.items())})
        self.llm.llm_engine.reset_encoder_cache()
        self.llm.reset_mm_cache()
        self.llm.reset_prefix_cache()

    def close(self) -> None:
        import gc

        self.backend.close()
        self.llm = None
        gc.collect()  # in-process, the engine's KV cache is freed only when collected


__all__ = ["VLLMRolloutEngine", "policy_weights"]
