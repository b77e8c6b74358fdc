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

from dybench.train.config import TrainConfig, load_config
from dybench.train.trainer import Trainer, TrainingInterrupted, train

__all__ = ["TrainConfig", "Trainer", "TrainingInterrupted", "load_config", "train"]
