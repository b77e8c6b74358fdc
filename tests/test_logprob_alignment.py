"""The log-probabilities the loss uses are those the rollouts were sampled from, through Qwen3-VL's
multimodal rope (3-D positions for the video tokens, left padding, a batch of both branches).

The trainer recomputes them with one full forward pass of prompt + completion
(`completion_logprobs`); transformers' `generate` samples token by token with a KV cache and its
own position bookkeeping (rope deltas). The scores `generate` sampled from (after temperature and
the suppressed placeholder tokens) are the independent reference.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from dybench.train.config import load_config
from dybench.train.rollouts import (
    completion_logprobs,
    completion_mask,
    end_token_ids,
    generation_model,
    multimodal_token_ids,
)
from dybench.train.trainer import Trainer

TEMPERATURE = 0.7


@pytest.mark.slow
def test_trainer_logprobs_equal_the_scores_generate_sampled_from(small_train_set: Path, tmp_path: Path,
                                                                  model_cache) -> None:
    settings = load_config(model="tiny-random-qwen3-vl", data=str(small_train_set), out=tmp_path / "ck",
                           temperature=TEMPERATURE, max_new_tokens=8, display=False)
    trainer = Trainer(settings)
    trainer.setup()
    # Questions of different lengths, each with its counterfactual clip: left padding differs by row.
    questions = sorted(trainer.questions, key=lambda q: len(q.item.question))
    chosen = [questions[0], questions[-1]]
    orig, aux = trainer.branches(chosen, 0)
    prompts = trainer.encode(orig + [prompt for prompt in aux if prompt is not None])
    assert prompts.inputs["attention_mask"].min() == 0  # some row is padded
    assert "pixel_values_videos" in prompts.inputs

    tokenizer = trainer.tokenizer
    torch.manual_seed(0)
    with torch.no_grad(), generation_model(trainer.accelerator, trainer.model) as model:
        end_ids = end_token_ids(model, tokenizer)
        output = model.generate(
            **prompts.inputs, do_sample=True, temperature=TEMPERATURE, top_p=1.0, top_k=0, max_new_tokens=8,
            num_return_sequences=2, eos_token_id=end_ids, pad_token_id=tokenizer.pad_token_id or end_ids[0],
            suppress_tokens=multimodal_token_ids(model) or None, output_scores=True, return_dict_in_generate=True,
        )
        prompt_length = prompts.inputs["input_ids"].shape[1]
        ids = output.sequences[:, prompt_length:]
        mask = completion_mask(ids, end_ids)
        # generate's scores: (T, N, vocab), already divided by the temperature, suppressed tokens at -inf
        reference = torch.stack([torch.log_softmax(step.float(), dim=-1) for step in output.scores], dim=1)
        reference = torch.gather(reference, 2, ids.unsqueeze(-1)).squeeze(-1)
        index = torch.arange(prompts.size).repeat_interleave(2)
        logp, _ = completion_logprobs(model, prompts, index, ids, mask, TEMPERATURE)

    assert mask.sum() >= 2 * len(index)  # real completions, not just end tokens
    valid = mask.bool()
    difference = (logp[valid] - reference[valid]).abs().max().item()
    assert difference < 1e-5, difference
    assert torch.isfinite(logp[valid]).all() and (logp[valid] <= 0).all()
