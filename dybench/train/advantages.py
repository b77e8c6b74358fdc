"""Group-normalised advantages: each rollout's reward relative to its question's group.

``per_branch`` (default) normalises the original and the counterfactual rollouts of a question
separately (each branch is its own GRPO group); ``joint`` pools both branches of the question into
one group of 2G. With ``scale=False`` the advantage is only centred: Dr. GRPO's advantage, but not
its loss, since `dybench.train.loss` keeps the per-completion length normalisation (each completion's
token losses averaged over its own length) that Dr. GRPO also removes.
"""

from __future__ import annotations

from typing import Sequence

import torch

from dybench.train.config import AdvantageMode

EPS = 1e-4


def normalise(rewards: torch.Tensor, scale: bool = True) -> torch.Tensor:
    """(r - mean) / (std + eps) over one group; a group with equal rewards gets zeros."""
    centred = rewards - rewards.mean()
    if not scale or rewards.numel() < 2:
        return centred
    return centred / (rewards.std(unbiased=False) + EPS)


def group_advantages(
    orig: Sequence[float],
    second: Sequence[float],
    mode: AdvantageMode = "per_branch",
    scale: bool = True,
) -> tuple[list[float], list[float]]:
    """Advantages for one question's original and counterfactual rollouts."""
    orig_t = torch.tensor(list(orig), dtype=torch.float64)
    second_t = torch.tensor(list(second), dtype=torch.float64)
    if mode == "joint" and second_t.numel():
        both = normalise(torch.cat([orig_t, second_t]), scale)
        return both[: len(orig_t)].tolist(), both[len(orig_t) :].tolist()
    if mode not in ("per_branch", "joint"):
        raise ValueError(f"unknown advantage mode {mode!r}")
    orig_a = normalise(orig_t, scale).tolist() if orig_t.numel() else []
    second_a = normalise(second_t, scale).tolist() if second_t.numel() else []
    return orig_a, second_a
