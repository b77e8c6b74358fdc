"""Training rollouts from the real vLLM engine (the CPU build here), colocated with the policy:
after a weight sync the engine answers exactly as the updated policy does, and the trainer runs
CRPO with it end to end, resumably, and vLLM serves the result for evaluation."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from dybench.backends.registry import resolve_model
from dybench.evaluate import run_eval
from dybench.testing import random_clip_requests
from dybench.train.config import load_config
from dybench.train.inputs import encode_prompts
from dybench.train.metrics import TIMING_COLUMNS, read_metrics
from dybench.train.policy import load_policy
from dybench.train.rollouts import PromptBatch
from dybench.train.trainer import Trainer

pytest.importorskip("vllm")
pytestmark = pytest.mark.slow

MODEL = "tiny-random-qwen3-vl"


def greedy_hf(policy, spec, prompts: list[str], clips: list) -> list[list[int]]:
    inputs = encode_prompts(policy.processor, spec, prompts, clips)
    inputs.pop("token_type_ids", None)
    with torch.no_grad():
        out = policy.model.generate(**inputs, do_sample=False, max_new_tokens=8)
    return out[:, inputs["input_ids"].shape[1]:].tolist()


def greedy_vllm(engine, prompts: list[str], clips: list) -> list[list[int]]:
    from vllm import SamplingParams

    inputs = [engine.backend.video_prompt(p, c) for p, c in zip(prompts, clips)]
    outputs = engine.llm.generate(inputs, SamplingParams(temperature=0.0, max_tokens=8, ignore_eos=True), use_tqdm=False)
    return [list(o.outputs[0].token_ids) for o in outputs]


def test_after_a_weight_sync_the_engine_answers_exactly_like_the_updated_policy(model_cache, tmp_path: Path) -> None:
    from dybench.train.vllm_rollouts import VLLMRolloutEngine

    spec = resolve_model(MODEL)
    policy = load_policy(MODEL, beta=0.0, lora=None, with_reference=False)
    requests = random_clip_requests(tmp_path / "clips", 2)
    prompts, clips = [r.prompt for r in requests], [r.clip for r in requests]
    engine = VLLMRolloutEngine(spec, policy.weights, policy.processor.tokenizer, max_new_tokens=8, max_model_len=2048)
    try:
        before = greedy_vllm(engine, prompts, clips)
        with torch.no_grad():  # an "update" large enough to change every greedy answer
            generator = torch.Generator().manual_seed(0)
            for parameter in policy.model.parameters():
                parameter.add_(0.5 * torch.randn(parameter.shape, generator=generator))
        policy.model.eval()
        updated = greedy_hf(policy, spec, prompts, clips)
        assert greedy_vllm(engine, prompts, clips) == before  # not synced yet: still the old weights
        engine.sync_weights(policy.model)
        assert greedy_vllm(engine, prompts, clips) == updated
        assert updated != before

        # Sampled rollouts: G per prompt, prompt-major, masks covering the sampled tokens.
        batch = PromptBatch(encode_prompts(policy.processor, spec, prompts, clips), texts=prompts, clips=clips)
        rollouts = engine.generate(policy.model, batch, 3)
        assert rollouts.prompt_index.tolist() == [0, 0, 0, 1, 1, 1]
        assert rollouts.completion_ids.shape[0] == 6 and len(rollouts.texts) == 6
        assert 1 <= int(rollouts.lengths.min()) and int(rollouts.lengths.max()) <= 8
    finally:
        engine.close()


def test_crpo_trains_with_vllm_rollouts_and_resumes_exactly(model_cache, small_train_set: Path, tmp_path: Path) -> None:
    settings = dict(model=MODEL, data=str(small_train_set), algo="crpo", rollout_engine="vllm", group_size=2,
                    batch_size=2, max_new_tokens=6, lr=1e-3, display=False, vllm_max_model_len=2048, save_every=1)
    full = load_config(out=tmp_path / "full", max_steps=3, **settings)
    Trainer(full).train()
    rows = read_metrics(tmp_path / "full")
    assert [row["step"] for row in rows] == [1, 2, 3]
    assert {"reward/orig/crr", "reward/cf/behave", "reward/cf/crr", "loss", "kl"} <= set(rows[0])
    assert all(row["rollout_time_s"] > 0 for row in rows)

    # Stop after 2 steps, then resume to 3: the last step matches the uninterrupted run.
    Trainer(load_config(out=tmp_path / "part", max_steps=2, **settings)).train()
    Trainer(load_config(out=tmp_path / "part", max_steps=3, **settings), resume=True).train()
    resumed = read_metrics(tmp_path / "part")

    def strip(row: dict) -> dict:
        return {k: v for k, v in row.items() if k not in TIMING_COLUMNS}

    assert [strip(r) for r in resumed] == [strip(r) for r in rows]

    # The trained checkpoint is served by vLLM for evaluation, like any model folder.
    scores = run_eval(str(tmp_path / "full"), str(small_train_set), tmp_path / "eval", backend="vllm", limit=4,
                      backend_options={"max_model_len": 2048}, progress=False)
    assert scores["n_items"] >= 4 and scores["n_errors"] == 0
