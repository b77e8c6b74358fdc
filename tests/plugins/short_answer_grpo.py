"""Test plugin: an RL algorithm added from outside the package, GRPO plus a bonus for short
completions. One registry entry, no edit inside dybench/ (see docs/architecture.md)."""

from __future__ import annotations

from dybench.train.algorithms import ALGORITHMS, Algorithm
from dybench.train.rewards import GroupRewards, grpo_rewards

SHORT_CHARS = 3
BONUS = 0.5


def short_answer_rewards(group, weights, tgrpo=None, answer_format="tag") -> GroupRewards:  # noqa: ANN001
    rewards = grpo_rewards(group, weights, tgrpo, answer_format)
    short = [float(len(text.strip()) <= SHORT_CHARS) for text in group.orig_texts]
    rewards.terms["orig/short"] = short
    rewards.orig = [total + BONUS * s for total, s in zip(rewards.orig, short)]
    return rewards


ALGORITHMS.register("grpo-short", Algorithm("grpo-short", "GRPO with a bonus for completions of 3 characters or fewer",
                                            rewards=short_answer_rewards))
