"""CRPO training (with the GRPO, T-GRPO and SFT modes that share its loop).

Modules, in the order data flows through them: `config` (validated settings), `router` (kind and
counterfactual transform of each question), `llm_router` (the same asked of a model through an
eval backend), `questions` (null option, labels of both branches), `rollouts` (one batched
generation for both branches; log-probabilities), `rewards` (pure functions over a question's
whole group), `advantages`, `loss`, `trainer` (the loop, checkpoints, metrics), `policy`
(loading, LoRA, export), `display` (live view).

    from dybench.train import load_config, train
    train(load_config(model="tiny-random-qwen3-vl", data="data/train", out="runs/crpo", max_steps=3))
"""

from typing import Any

from dybench.train.config import TrainConfig, load_config


def __getattr__(name: str) -> Any:
    # The trainer imports torch (seconds): the command line reads the algorithm registry and the
    # config on every start, so the trainer is imported only when it is asked for.
    if name in ("Trainer", "TrainingInterrupted", "train"):
        from dybench.train import trainer

        return getattr(trainer, name)
    raise AttributeError(f"module 'dybench.train' has no attribute {name!r}")

__all__ = ["TrainConfig", "Trainer", "TrainingInterrupted", "load_config", "train"]
