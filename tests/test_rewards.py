"""Reward terms, advantages and the loss, as pure functions on tables of cases."""

from __future__ import annotations

import math

import pytest
import torch

from dybench.errors import DyBenchError
from dybench.train.advantages import group_advantages
from dybench.train.config import RewardWeights, TGRPOSettings, load_config
from dybench.train.loss import kl_k3, policy_loss, sft_loss
from dybench.train.algorithms import group_rewards
from dybench.train.rewards import Group, behave, correctness, crr_aug, crr_orig, format_ok, temporal_bonus

# gt is "A" everywhere below; "C" is the null option.


@pytest.mark.parametrize(
    "answers, expected",
    [(["A", "A"], [1, 1]), (["A", "B"], [1, 0]), ([None, "a"], [0, 0])],
)
def test_correctness_is_exact_letter_match_and_none_is_wrong(answers, expected):
    assert correctness(answers, "A") == expected


@pytest.mark.parametrize(
    "text, answer_format, ok",
    [
        ("<answer>B</answer>", "tag", 1),
        ("  <think>it moves left</think> <answer> A </answer>\n", "tag", 1),
        ("<answer>B</answer> because", "tag", 0),
        ("B", "tag", 0),
        ("<answer>left</answer>", "tag", 0),
        ("B", "letter", 1),
        ("(B).", "letter", 1),
        ("B is right", "letter", 0),
        ("", "letter", 0),
    ],
)
def test_format_reward_is_the_requested_format_exactly(text, answer_format, ok):
    assert format_ok([text], answer_format) == [ok]


@pytest.mark.parametrize(
    "cf_answers, changes, expected",
    [
        (["B", "C", "A", None], True, [1, 1, 0, 0]),  # dynamic: any other valid answer behaves
        (["B", "C", "A", None], False, [0, 0, 1, 0]),  # static: only the same answer behaves
    ],
)
def test_behave_rewards_change_for_dynamic_and_stability_for_static(cf_answers, changes, expected):
    assert behave(cf_answers, "A", changes) == expected


@pytest.mark.parametrize(
    "orig, cf, changes, expected_orig, expected_aug",
    [
        # dynamic: 3/4 cf rollouts changed; 2/4 originals correct
        (["A", "A", "B", None], ["B", "C", "B", "A"], True, [0.75, 0.75, 0, 0], [0.5, 0.5, 0.5, 0]),
        # static: 1/4 cf rollouts kept the answer
        (["A", "A", "B", None], ["B", "C", "B", "A"], False, [0.25, 0.25, 0, 0], [0, 0, 0, 0.5]),
        # shortcut policy on a dynamic question: always "A" on both clips -> no relation reward at all
        (["A", "A"], ["A", "A"], True, [0, 0], [0, 0]),
        # the same answers on a static question are exactly right
        (["A", "A"], ["A", "A"], False, [1, 1], [1, 1]),
    ],
)
def test_crr_terms_couple_the_branches(orig, cf, changes, expected_orig, expected_aug):
    assert crr_orig(orig, cf, "A", changes) == pytest.approx(expected_orig)
    assert crr_aug(orig, cf, "A", changes) == pytest.approx(expected_aug)


@pytest.mark.parametrize(
    "ordered, shuffled, expected",
    [
        (["A", "A", "B", "B"], ["A", "B", "B", "B"], [0.3, 0.3, 0, 0]),  # 0.5 >= 0.8 * 0.25
        (["A", "B", "B", "B"], ["A", "A", "A", "B"], [0, 0, 0, 0]),  # 0.25 < 0.8 * 0.75
        (["B", "B"], ["B", "B"], [0, 0]),  # nothing correct, nothing to add
    ],
)
def test_temporal_bonus_follows_video_r1(ordered, shuffled, expected):
    assert temporal_bonus(ordered, shuffled, "A", alpha=0.3, mu=0.8) == pytest.approx(expected)


def test_crpo_group_rewards_weight_every_term_per_branch():
    group = Group(
        answer="A", answer_changes=True, counterfactual_answer="B",
        orig_answers=["A", "B"], orig_texts=["<answer>A</answer>", "B"],
        second_answers=["B", "A"], second_texts=["<answer>B</answer>", "<answer>A</answer>"],
    )
    weights = RewardWeights(correct=1, format=0.5, crr_orig=2, behave=3, crr_aug=4)
    rewards = group_rewards("crpo", group, weights)
    # orig 1: correct 1 + format .5 + crr 2 * (1 * 1/2); orig 2: nothing
    assert rewards.orig == pytest.approx([2.5, 0.0])
    # cf 1: format .5 + behave 3 + crr_aug 4 * (1 * 1/2); cf 2: format .5 only
    assert rewards.second == pytest.approx([5.5, 0.5])
    assert rewards.terms["cf/correct"] == [1, 0]
    assert {"orig/correct", "orig/format", "orig/crr", "cf/format", "cf/behave", "cf/crr"} <= set(rewards.terms)


def test_grpo_rewards_only_the_original_branch():
    group = Group(answer="A", answer_changes=True, counterfactual_answer="B",
                  orig_answers=["A", "B"], orig_texts=["<answer>A</answer>", "x"])
    rewards = group_rewards("grpo", group, RewardWeights())
    assert rewards.orig == [2.0, 0.0] and rewards.second == []
    assert not any("crr" in name for name in rewards.terms)


def test_tgrpo_adds_the_bonus_to_correct_ordered_rollouts():
    group = Group(answer="A", answer_changes=True, counterfactual_answer="B",
                  orig_answers=["A", "B"], orig_texts=["A", "B"], second_answers=["B", "B"], second_texts=["B", "B"])
    rewards = group_rewards("t-grpo", group, RewardWeights(format=0), TGRPOSettings(alpha=0.3, mu=0.8), "letter")
    assert rewards.orig == pytest.approx([1.3, 0.0]) and rewards.second == []


def test_advantages_per_branch_and_joint():
    orig, aux = group_advantages([1, 0], [5, 5], "per_branch")
    assert orig == pytest.approx([1, -1], abs=1e-3) and aux == [0, 0]
    orig, aux = group_advantages([1, 1], [0, 0], "joint")
    assert orig == pytest.approx([1, 1], abs=1e-3) and aux == pytest.approx([-1, -1], abs=1e-3)
    orig, _ = group_advantages([3, 1], [], "per_branch", scale=False)
    assert orig == [1, -1]


def test_loss_gradient_raises_the_logprob_of_positive_advantage_rollouts():
    logp = torch.tensor([[-1.0, -2.0], [-1.0, -2.0]], requires_grad=True)
    mask = torch.tensor([[1, 1], [1, 0]])
    parts = policy_loss(logp, logp.detach(), torch.tensor([1.0, -1.0]), mask)
    parts.loss.backward()
    assert parts.loss.item() == pytest.approx(0.0)  # (mean of +1 * 1) + (mean of -1 * 1) over 2
    assert (logp.grad[0] < 0).all() and logp.grad[1, 0] > 0 and logp.grad[1, 1] == 0


def test_loss_clips_large_ratios_and_penalises_kl():
    old = torch.zeros(1, 1)
    far = torch.tensor([[1.0]], requires_grad=True)  # ratio e > 1.2: clipped, no gradient
    parts = policy_loss(far, old, torch.tensor([1.0]), torch.ones(1, 1), clip_eps=0.2)
    parts.loss.backward()
    assert parts.clip_fraction == 1.0 and far.grad.abs().sum() == 0
    assert kl_k3(torch.tensor(0.0), torch.tensor(0.0)) == 0
    with_kl = policy_loss(far.detach(), far.detach(), torch.tensor([0.0]), torch.ones(1, 1), beta=0.5, ref_logp=old)
    assert with_kl.kl == pytest.approx(math.exp(-1) + 1 - 1) and with_kl.loss.item() == pytest.approx(0.5 * with_kl.kl)
    with pytest.raises(ValueError):
        policy_loss(far, old, torch.tensor([1.0]), torch.ones(1, 1), beta=0.1)


def test_sft_loss_is_mean_negative_logprob_of_target_tokens():
    logp = torch.log(torch.tensor([[0.5, 0.25], [0.5, 1.0]]))
    assert sft_loss(logp, torch.tensor([[1, 1], [1, 0]])).item() == pytest.approx((1.5 * math.log(2) + math.log(2)) / 2)


def test_config_errors_are_one_line_and_name_the_field(tmp_path):
    with pytest.raises(DyBenchError, match="field group_size"):
        load_config(model="m", data="d", out=tmp_path, group_size=0)
    bad = tmp_path / "c.yaml"
    bad.write_text("model: m\ndata: d\nout: o\nrewards:\n  corect: 1\n")
    with pytest.raises(DyBenchError, match=r"c.yaml: field rewards.corect"):
        load_config(bad)
    good = tmp_path / "g.yaml"
    good.write_text("model: m\ndata: d\nout: o\nlr: 0.001\nrewards:\n  crr_orig: 0.5\n")
    config = load_config(good, lr=3e-4)
    assert config.lr == 3e-4 and config.rewards.crr_orig == 0.5 and config.algo == "crpo"


def test_documented_example_config_is_valid_and_matches_the_defaults(tmp_path):
    from pathlib import Path

    from dybench.train.config import TrainConfig

    example = Path(__file__).resolve().parents[1] / "configs" / "crpo.yaml"
    loaded = load_config(example, model="m", data="d", out=tmp_path)
    assert loaded == TrainConfig(model="m", data="d", out=tmp_path)


def test_unscaled_advantages_are_centred_but_the_loss_still_averages_over_each_completion():
    """`scale_advantages: false` is Dr. GRPO's advantage (centred, not divided by the std), not its
    loss: every completion's tokens are still averaged over its own length, so a token of a short
    completion moves more than one of a long one. The documentation says so wherever it names Dr. GRPO."""
    from pathlib import Path

    from dybench.train import advantages as advantages_module
    from dybench.train.config import TrainConfig

    orig, _ = group_advantages([1.0, 0.0, 0.0, 0.0], [], scale=False)
    assert orig == pytest.approx([0.75, -0.25, -0.25, -0.25])
    logp = torch.zeros(2, 4, requires_grad=True)
    mask = torch.tensor([[1, 0, 0, 0], [1, 1, 1, 1]])
    policy_loss(logp, logp.detach(), torch.tensor([1.0, 1.0]), mask).loss.backward()
    assert logp.grad[0, 0] == pytest.approx(4 * logp.grad[1, 0].item())  # 1/1 vs 1/4 per token, halved

    root = Path(__file__).resolve().parents[1]
    for name, text in [("config.py", TrainConfig.model_fields["scale_advantages"].description),
                       ("advantages.py", advantages_module.__doc__),
                       ("configs/crpo.yaml", (root / "configs" / "crpo.yaml").read_text())]:
        said = " ".join(line for line in text.splitlines() if "Dr. GRPO" in line or "length" in line)
        assert "Dr. GRPO" in said and "length normalisation" in said, name


def test_crpo_pays_no_relation_reward_for_a_question_the_router_could_not_classify():
    """An ``unknown`` question has no counterfactual branch: its rollouts earn correctness and format
    only, and no crr / behave term is logged for it (not even a zero)."""
    group = Group(answer="A", answer_changes=None, counterfactual_answer=None, orig_answers=["A", "B", None],
                  orig_texts=["<answer>A</answer>", "<answer>B</answer>", "x"])
    rewards = group_rewards("crpo", group, RewardWeights(crr_orig=5.0))
    assert rewards.orig == [2.0, 1.0, 0.0] and rewards.second == []
    assert set(rewards.terms) == {"orig/correct", "orig/format"}
