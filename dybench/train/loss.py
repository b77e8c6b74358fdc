"""The clipped policy-gradient loss with a KL penalty to a frozen reference, and SFT's loss.

Per completion token t of rollout i, with ratio r = exp(logp - logp_old):

    loss_it = -( min(r * A_i, clip(r, 1 - eps, 1 + eps) * A_i) - beta * KL_it )

KL_it is the non-negative k3 estimator exp(ref - logp) - (ref - logp) - 1 (as in GRPO). Token losses
are averaged over each completion, then over completions, so a long answer weighs no more than a
short one.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class LossParts:
    loss: torch.Tensor
    kl: float
    clip_fraction: float


def masked_mean(values: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    mask = mask.to(values.dtype)
    if dim is None:
        return (values * mask).sum() / mask.sum().clamp(min=1)
    return (values * mask).sum(dim) / mask.sum(dim).clamp(min=1)


def kl_k3(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """Per-token k3 estimate of KL(policy || reference): >= 0, unbiased, low variance."""
    delta = ref_logp - logp
    return torch.exp(delta) - delta - 1


def policy_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    clip_eps: float = 0.2,
    beta: float = 0.0,
    ref_logp: torch.Tensor | None = None,
) -> LossParts:
    """`logp`, `old_logp`, `ref_logp`, `mask`: (N, T) over completion tokens; `advantages`: (N,)."""
    ratio = torch.exp(logp - old_logp)
    adv = advantages.to(logp.dtype).unsqueeze(1)
    unclipped = ratio * adv
    clipped = torch.clamp(ratio, 1 - clip_eps, 1 + clip_eps) * adv
    objective = torch.minimum(unclipped, clipped)
    kl = torch.zeros_like(logp)
    if beta > 0:
        if ref_logp is None:
            raise ValueError("beta > 0 needs reference log-probabilities")
        kl = kl_k3(logp, ref_logp)
    per_token = -(objective - beta * kl)
    loss = masked_mean(per_token, mask, dim=1).mean()
    with torch.no_grad():
        clip_fraction = masked_mean((unclipped != clipped).to(logp.dtype), mask).item()
        kl_value = masked_mean(kl, mask, dim=1).mean().item() if beta > 0 else 0.0
    return LossParts(loss=loss, kl=kl_value, clip_fraction=clip_fraction)


def sft_loss(logp: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of the target answer tokens (mean per target, then over targets)."""
    return -masked_mean(logp, mask, dim=1).mean()
