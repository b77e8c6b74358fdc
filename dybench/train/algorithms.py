"""The RL algorithms `dybench train-crpo --algo` knows, each declared once.

An algorithm is what differs between runs of the one training loop (dybench/train/trainer.py):
- its reward function (dybench/train/rewards.py), over a question's group of rollouts;
- its second branch, if any: the counterfactual clip (crpo) or the same clip with shuffled frames
  (t-grpo), rolled out G times next to the original;
- whether the second branch's rollouts are trained on (crpo) or only inform the original's rewards;
- the extra metrics it logs per group;
- or, for `sft`, no rollouts at all: supervised training on the labels.

A new algorithm is one `ALGORITHMS.register(...)` call, in this file or in a plugin module
(dybench/plugins.py); the config, the CLI's `--algo` help and the docs read the names from here.
"""

from __future__ import annotations

import dataclasses
import random
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from dybench.registry import Registry
from dybench.train.rewards import Group, GroupRewards, crpo_rewards, grpo_rewards, tgrpo_rewards

if TYPE_CHECKING:
    from dybench.train.config import AnswerFormat, RewardWeights, TGRPOSettings
    from dybench.train.metrics import StepStats
    from dybench.train.questions import TrainQuestion
    from dybench.train.trainer import BranchPrompt, Trainer
    from dybench.video import SampledClip

RewardFunction = Callable[..., GroupRewards]
"""(group, weights, tgrpo, answer_format) -> GroupRewards; see dybench/train/rewards.py."""
SecondBranch = Callable[["Trainer", "TrainQuestion", "SampledClip", int], "BranchPrompt | None"]
"""(trainer, question, original clip, step) -> the second branch's prompt, or None for no second branch."""
GroupMetrics = Callable[["StepStats", Group, GroupRewards], None]


@dataclass(frozen=True)
class Algorithm:
    name: str
    summary: str
    rewards: RewardFunction | None = None
    """None: supervised (no rollouts, no rewards)."""
    second_branch: SecondBranch | None = None
    trains_second_branch: bool = False
    needs_counterfactuals: bool = False
    """Builds counterfactual clips, so swap_segments items need their segment boundary."""
    group_metrics: GroupMetrics | None = None

    @property
    def supervised(self) -> bool:
        return self.rewards is None

    @property
    def branches(self) -> int:
        """Branches rolled out per question (1 or 2)."""
        return 2 if self.second_branch is not None else 1

    def rollouts_per_question(self, group_size: int) -> int:
        return group_size * self.branches


ALGORITHMS: Registry[Algorithm] = Registry("RL algorithm")


def group_rewards(
    algo: str,
    group: Group,
    weights: RewardWeights,
    tgrpo: TGRPOSettings | None = None,
    answer_format: AnswerFormat = "tag",
) -> GroupRewards:
    """The named algorithm's rewards for one group."""
    algorithm = ALGORITHMS.get(algo)
    if algorithm.rewards is None:
        raise ValueError(f"{algo} is supervised: it has no rewards")
    return algorithm.rewards(group, weights, tgrpo, answer_format)


# --- second branches --------------------------------------------------------------------------


def counterfactual_branch(trainer: Trainer, question: TrainQuestion, clip: SampledClip, step: int) -> BranchPrompt | None:
    """The counterfactual clip, labelled with the answer the transform produces (none for a question
    the router could not classify)."""
    from dybench.train.trainer import BranchPrompt

    if not question.route.has_counterfactual:
        return None
    assert question.counterfactual_answer is not None
    return BranchPrompt(question, trainer.counterfactual_clip(question, clip), question.counterfactual_answer)


def shuffled_branch(trainer: Trainer, question: TrainQuestion, clip: SampledClip, step: int) -> BranchPrompt | None:
    """The same frames in an order fixed by (seed, step, question): what T-GRPO contrasts with."""
    from dybench.train.trainer import BranchPrompt

    order = list(range(len(clip.frames)))
    random.Random(f"{trainer.config.seed}:{step}:{question.id}").shuffle(order)
    return BranchPrompt(question, dataclasses.replace(clip, frames=clip.frames[order]), question.answer)


# --- extra metrics ----------------------------------------------------------------------------


def counterfactual_metrics(stats: StepStats, group: Group, rewards: GroupRewards) -> None:
    if group.answer_changes is None:
        return
    stats.add("reward/cf/total", rewards.second)
    if rewards.second:
        stats.add("reward_std/cf", statistics.pstdev(rewards.second))
    stats.add("acc/cf", [float(a == group.counterfactual_answer) for a in group.second_answers])
    stats.add("invalid_rate/cf", [float(a is None) for a in group.second_answers])
    changed = [float(a is not None and a != group.answer) for a in group.second_answers]
    stats.add("answer_change_rate", changed)
    stats.add("answer_change_rate/" + ("dynamic" if group.answer_changes else "static"), changed)


def shuffled_metrics(stats: StepStats, group: Group, rewards: GroupRewards) -> None:
    stats.add("acc/shuffled", [float(a == group.answer) for a in group.second_answers])


ALGORITHMS.register("crpo", Algorithm(
    "crpo", "Counterfactual Relational Policy Optimization: both clips of a pair, relational rewards",
    rewards=crpo_rewards, second_branch=counterfactual_branch, trains_second_branch=True,
    needs_counterfactuals=True, group_metrics=counterfactual_metrics,
))
ALGORITHMS.register("grpo", Algorithm("grpo", "GRPO: correctness and format on the original clip", rewards=grpo_rewards))
ALGORITHMS.register("t-grpo", Algorithm(
    "t-grpo", "T-GRPO (Video-R1): a bonus when ordered frames beat shuffled ones",
    rewards=tgrpo_rewards, second_branch=shuffled_branch, group_metrics=shuffled_metrics,
))
ALGORITHMS.register("sft", Algorithm("sft", "supervised fine-tuning on the labels (no rollouts)"))
