"""The policy as the trainer uses it: rollouts are sampled with dropout off, and a LoRA export merges
the weights it is handed (the gathered ones under FSDP / ZeRO-3), not whatever this process holds."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch

from dybench.train.config import LoraSettings
from dybench.train.policy import export_hf, load_policy

MODEL = "tiny-random-qwen3-vl"


def lora_policy(dropout: float = 0.0):
    policy = load_policy(MODEL, beta=0.0, lora=LoraSettings(r=4, alpha=8, dropout=dropout), with_reference=False)
    torch.manual_seed(0)
    with torch.no_grad():  # adapters start at B = 0 (no effect); give them one
        for name, parameter in policy.model.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0.0, 0.05)
    return policy


def text_inputs(policy) -> dict[str, torch.Tensor]:
    return dict(policy.processor.tokenizer(["In which direction does the square move?"], return_tensors="pt"))


def test_rollouts_are_sampled_with_dropout_off(model_cache) -> None:
    from accelerate import Accelerator

    from dybench.train.rollouts import generation_model

    policy = lora_policy(dropout=0.5)
    accelerator = Accelerator(cpu=True)
    model = accelerator.prepare(policy.model)
    inputs = text_inputs(policy)
    with torch.no_grad():
        assert not torch.equal(model(**inputs).logits, model(**inputs).logits)  # training: dropout is on
        with generation_model(accelerator, model) as generator:
            assert not any(module.training for module in generator.modules())
            assert torch.equal(generator(**inputs).logits, generator(**inputs).logits)
    assert all(module.training for module in accelerator.unwrap_model(model).modules())  # back to training


def test_lora_export_merges_the_state_dict_it_is_given(tmp_path: Path, model_cache) -> None:
    from transformers import AutoModelForImageTextToText

    policy = lora_policy()
    model = policy.model
    expected = copy.deepcopy(model).merge_and_unload().state_dict()  # peft's own merge
    gathered = {key: value.detach().clone() for key, value in model.state_dict().items()}
    # Under ZeRO-3 / FSDP this process holds only shards of the weights; zeros stand in for them here,
    # so a merge of the live modules instead of `gathered` shows.
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.zero_()
    export_hf(model, policy.processor, tmp_path / "out", gathered)
    exported = AutoModelForImageTextToText.from_pretrained(tmp_path / "out", dtype=torch.float32).state_dict()
    assert exported.keys() == expected.keys()
    for key in expected:
        assert torch.allclose(exported[key], expected[key], atol=1e-6), key
    adapted = [k for k in exported if "language_model" in k and k.endswith("q_proj.weight")]
    assert adapted and all(  # the adapters changed the weights they sit on
        not torch.equal(exported[k], gathered["base_model.model." + k.replace(".weight", ".base_layer.weight")])
        for k in adapted
    )


@pytest.mark.parametrize("bad", ["use_dora"])
def test_lora_variants_the_export_cannot_merge_are_refused(bad: str, tmp_path: Path, model_cache) -> None:
    from dybench.errors import DyBenchError

    policy = lora_policy()
    setattr(policy.model.peft_config["default"], bad, True)
    with pytest.raises(DyBenchError, match="DoRA"):
        export_hf(policy.model, policy.processor, tmp_path / "out")
