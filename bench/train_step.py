"""Does CRPO's second branch cost more than its rollouts?

Times an optimizer step of CRPO (G rollouts on the original clip + G on the counterfactual clip,
one batched generation) against a GRPO step with the same total number of rollouts (2G on the
original clip), same model, data, batch and settings, in the same process. Prints the ratio
CRPO / GRPO of the median step time. Target: <= 1.15 (the counterfactual branch costs no more
than the rollouts it adds; the clip transform and the extra prompt encoding are the only extras).

Usage: python bench/train_step.py [--data DIR] [--model tiny-random-qwen3-vl] [--group-size 4]
       [--batch-size 2] [--steps 12] [--rounds 3] [--max-new-tokens 16] [--rollout-engine hf|vllm]
Without --data, a small synthetic training set is built in a temporary folder.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

from dybench.train.config import load_config
from dybench.train.trainer import Trainer

WARMUP_STEPS = 2


def step_times(algo: str, group_size: int, args: argparse.Namespace, data: str, out: Path) -> list[float]:
    """Step times (seconds) after the warm-up steps, from the run's own metrics."""
    config = load_config(
        model=args.model, data=data, out=out, algo=algo, group_size=group_size, batch_size=args.batch_size,
        max_steps=WARMUP_STEPS + args.steps, max_new_tokens=args.max_new_tokens, lr=1e-5, beta=0.04,
        save_every=10_000, display=False, seed=0, rollout_engine=args.rollout_engine,
        vllm_max_model_len=4096 if args.rollout_engine == "vllm" else None,
    )
    rows: list[dict] = []
    Trainer(config, callbacks=[lambda step, row, trainer: rows.append(row)]).train()
    return [row["step_time_s"] for row in rows[WARMUP_STEPS:]]


def build_default_data(folder: Path) -> str:
    from dybench.build import build_synthetic

    build_synthetic(folder, split="train", pairs_per_task=2, seed=0, progress=False)
    return str(folder)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data")
    parser.add_argument("--model", default="tiny-random-qwen3-vl")
    parser.add_argument("--group-size", type=int, default=4, help="G per branch for CRPO (GRPO gets 2G)")
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--rounds", type=int, default=3, help="alternating CRPO/GRPO runs (machine load evens out)")
    parser.add_argument("--max-new-tokens", type=int, default=16)
    parser.add_argument("--rollout-engine", choices=("hf", "vllm"), default="hf")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="dybench-bench-") as tmp:
        data = args.data or build_default_data(Path(tmp) / "data")
        crpo: list[float] = []
        grpo: list[float] = []
        for round_ in range(args.rounds):
            grpo += step_times("grpo", 2 * args.group_size, args, data, Path(tmp) / f"grpo{round_}")
            crpo += step_times("crpo", args.group_size, args, data, Path(tmp) / f"crpo{round_}")
    crpo_s, grpo_s = statistics.median(crpo), statistics.median(grpo)
    rollouts = args.batch_size * 2 * args.group_size
    print(
        f"CRPO step: {crpo_s * 1000:.0f} ms (G={args.group_size} per branch); GRPO step: {grpo_s * 1000:.0f} ms "
        f"(G={2 * args.group_size}); {rollouts} rollouts per step each, batch {args.batch_size}, "
        f"{args.max_new_tokens} new tokens, model {args.model}, {args.rollout_engine} rollouts, median of {len(crpo)} steps each\n"
        f"ratio CRPO / GRPO = {crpo_s / grpo_s:.3f} (target <= 1.15)"
    )


if __name__ == "__main__":
    main()
