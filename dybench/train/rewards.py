"""Rewards as plain functions over one question's whole group of rollouts, both branches at once.

Notation (see the CRPO section of the reference note): y_i are the G original-branch answers, ỹ_j
the G counterfactual-branch answers, gt the original label, and b(ỹ) "the counterfactual rollout
behaved as expected":

    b(ỹ) = [ỹ != gt]  for a question whose answer should change (dynamic),
    b(ỹ) = [ỹ == gt]  for one whose answer should stay (static).

    R_CRR^orig(y_i) = [y_i == gt] * mean_j b(ỹ_j)       (original branch)
    R_behave(ỹ_j)   = b(ỹ_j)                             (counterfactual branch)
    R_CRR^aug(ỹ_j)  = b(ỹ_j) * mean_i [y_i == gt]        (counterfactual branch)

An unparsable answer (None) is wrong and never "behaves": a garbled counterfactual rollout must not
be paid for differing from the label. A question the router could not classify (answer_changes
None) has no counterfactual branch: under crpo it earns correctness and format only.

T-GRPO (Video-R1): with p = accuracy of the ordered rollouts and p~ = accuracy of rollouts on
shuffled frames, every correct ordered rollout gets +alpha when p >= mu * p~.

Every function returns one float per rollout; each algorithm's reward function applies the weights and
returns the named terms, which the trainer logs as they are (names contain `correct`, `format`, `crr`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from statistics import fmean
from typing import Callable, Sequence

from dybench.train.config import AnswerFormat, RewardWeights, TGRPOSettings

Answer = str | None

ANSWER_FORMATS: dict[str, re.Pattern[str]] = {
    # optional <think>...</think>, then <answer>X</answer> (Video-R1's format)
    "tag": re.compile(r"^\s*(?:<think>.*?</think>\s*)?<answer>\s*([A-Z])\s*</answer>\s*$", re.DOTALL),
    # the evaluation prompt's "answer with the option's letter directly": the letter alone
    "letter": re.compile(r"^\s*\(?([A-Z])\)?\.?\s*$"),
}
"""The answer formats a training prompt can ask for (config `answer_format`), as full-match patterns."""


@dataclass(frozen=True)
class Group:
    """One question's rollouts. `second_*` is the second branch: the counterfactual clip (crpo) or shuffled frames (t-grpo)."""

    answer: str
    answer_changes: bool | None  # None: unknown kind, no counterfactual branch
    counterfactual_answer: str | None
    orig_answers: Sequence[Answer]
    orig_texts: Sequence[str]
    second_answers: Sequence[Answer] = ()
    second_texts: Sequence[str] = ()


@dataclass
class GroupRewards:
    """Per-rollout totals for each branch, and every weighted term by name (for logging)."""

    orig: list[float]
    second: list[float]
    terms: dict[str, list[float]] = field(default_factory=dict)


RewardFn = Callable[[Group], GroupRewards]


# --- the terms --------------------------------------------------------------------------------


def correctness(answers: Sequence[Answer], label: str) -> list[float]:
    return [float(a is not None and a == label) for a in answers]


def format_ok(texts: Sequence[str], answer_format: str = "tag") -> list[float]:
    """1 where the completion is exactly in the format the prompt asked for, else 0."""
    pattern = ANSWER_FORMATS[answer_format]
    return [float(pattern.match(t or "") is not None) for t in texts]


def behaves(answer: Answer, label: str, answer_changes: bool) -> bool:
    """b(ỹ): did a counterfactual rollout do what the question's kind demands?"""
    if answer is None:
        return False
    return answer != label if answer_changes else answer == label


def behave(cf_answers: Sequence[Answer], label: str, answer_changes: bool) -> list[float]:
    """R_behave(ỹ_j) = b(ỹ_j)."""
    return [float(behaves(a, label, answer_changes)) for a in cf_answers]


def crr_orig(orig_answers: Sequence[Answer], cf_answers: Sequence[Answer], label: str, answer_changes: bool) -> list[float]:
    """R_CRR^orig(y_i) = [y_i == gt] * mean_j b(ỹ_j)."""
    share = fmean(behave(cf_answers, label, answer_changes)) if cf_answers else 0.0
    return [c * share for c in correctness(orig_answers, label)]


def crr_aug(orig_answers: Sequence[Answer], cf_answers: Sequence[Answer], label: str, answer_changes: bool) -> list[float]:
    """R_CRR^aug(ỹ_j) = b(ỹ_j) * mean_i [y_i == gt]."""
    accuracy = fmean(correctness(orig_answers, label)) if orig_answers else 0.0
    return [b * accuracy for b in behave(cf_answers, label, answer_changes)]


def temporal_bonus(ordered: Sequence[Answer], shuffled: Sequence[Answer], label: str, alpha: float, mu: float) -> list[float]:
    """T-GRPO: +alpha to each correct ordered rollout when ordered acc >= mu * shuffled acc."""
    correct = correctness(ordered, label)
    p_ordered = fmean(correct) if correct else 0.0
    p_shuffled = fmean(correctness(shuffled, label)) if shuffled else 0.0
    if p_ordered >= mu * p_shuffled:
        return [alpha * c for c in correct]
    return [0.0 for _ in correct]


# --- per algorithm ----------------------------------------------------------------------------
# Each RL algorithm's reward function (registered with it in dybench/train/algorithms.py) takes a
# group and the run's reward settings and returns both branches' totals and the named terms.


def base_terms(group: Group, weights: RewardWeights, answer_format: AnswerFormat) -> tuple[dict[str, list[float]], list[float]]:
    """Correctness and format on the original branch: the terms every algorithm starts from."""
    terms: dict[str, list[float]] = {
        "orig/correct": correctness(group.orig_answers, group.answer),
        "orig/format": format_ok(group.orig_texts, answer_format),
    }
    orig = [weights.correct * c + weights.format * f for c, f in zip(terms["orig/correct"], terms["orig/format"])]
    return terms, orig


def grpo_rewards(
    group: Group, weights: RewardWeights, tgrpo: TGRPOSettings | None = None, answer_format: AnswerFormat = "tag"
) -> GroupRewards:
    """GRPO: correctness and format on the original clip only."""
    terms, orig = base_terms(group, weights, answer_format)
    return GroupRewards(orig=orig, second=[], terms=terms)


def crpo_rewards(
    group: Group, weights: RewardWeights, tgrpo: TGRPOSettings | None = None, answer_format: AnswerFormat = "tag"
) -> GroupRewards:
    """CRPO: GRPO's terms plus the relational terms over both branches (a question of unknown kind,
    with no counterfactual branch, earns GRPO's terms only)."""
    terms, orig = base_terms(group, weights, answer_format)
    if group.answer_changes is None:
        return GroupRewards(orig=orig, second=[], terms=terms)
    label, change = group.answer, group.answer_changes
    terms["orig/crr"] = crr_orig(group.orig_answers, group.second_answers, label, change)
    terms["cf/format"] = format_ok(group.second_texts, answer_format)
    terms["cf/behave"] = behave(group.second_answers, label, change)
    terms["cf/crr"] = crr_aug(group.orig_answers, group.second_answers, label, change)
    # Logged only (no weight): is the counterfactual rollout right about the new label?
    terms["cf/correct"] = correctness(group.second_answers, group.counterfactual_answer or "")
    orig = [o + weights.crr_orig * r for o, r in zip(orig, terms["orig/crr"])]
    second = [
        weights.format * f + weights.behave * b + weights.crr_aug * r
        for f, b, r in zip(terms["cf/format"], terms["cf/behave"], terms["cf/crr"])
    ]
    return GroupRewards(orig=orig, second=second, terms=terms)


def tgrpo_rewards(
    group: Group, weights: RewardWeights, tgrpo: TGRPOSettings | None = None, answer_format: AnswerFormat = "tag"
) -> GroupRewards:
    """T-GRPO: GRPO's terms plus the temporal bonus against rollouts on shuffled frames."""
    terms, orig = base_terms(group, weights, answer_format)
    settings = tgrpo or TGRPOSettings()
    terms["orig/temporal"] = temporal_bonus(group.orig_answers, group.second_answers, group.answer, settings.alpha, settings.mu)
    terms["shuffled/correct"] = correctness(group.second_answers, group.answer)
    orig = [o + weights.temporal * t for o, t in zip(orig, terms["orig/temporal"])]
    return GroupRewards(orig=orig, second=[], terms=terms)


