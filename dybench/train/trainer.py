"""The training loop shared by crpo, grpo, t-grpo and sft.

One optimizer update ("step") = `grad_accum` micro-batches of `batch_size` questions per process.
For each micro-batch of an RL algorithm:

1. decode the questions' clips and build the second branch in memory: the routed counterfactual
   transform (crpo) or shuffled frames (t-grpo);
2. ONE batched generation: every prompt of both branches, `group_size` samples each;
3. answers extracted with the evaluation's own extraction; rewards by a pure function over each
   question's whole group (both branches); group-normalised advantages;
4. log-probabilities of the trained rollouts under the policy (and the frozen reference when
   beta > 0); clipped policy-gradient loss + KL; backward.

Everything but the reward function and which rollouts are trained is shared across algorithms,
so comparisons are fair. GRPO trains the original branch, CRPO both branches, T-GRPO the ordered
rollouts only (its shuffled rollouts only measure how much order matters, as in Video-R1).

The order of work protects the user: config, output folder, data (every video present), model name,
optional packages, routes and swap boundaries are all checked before the policy is loaded (an LLM
router, if configured, answers in between; its answers are cached). An interrupt (Ctrl-C, SIGTERM)
at any later point leaves a folder that the same command resumes or starts over.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import random
import signal
import statistics
import time
from collections import OrderedDict
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import torch
import yaml

from dybench.atomic import write_json_atomic, write_text_atomic
from dybench.data import Dataset
from dybench.families import load_data
from dybench.errors import DyBenchError
from dybench.redact import redact_data
from dybench.signals import note_signal
from dybench.prompts import extract_choice, render_prompt
from dybench.train.advantages import group_advantages
from dybench.train.checkpoint import (
    checkpoint_dir,
    finish_checkpoint,
    latest_checkpoint,
    load_checkpoint,
    rng_state,
    set_rng_state,
    staging_dir,
    start_checkpoint,
)
from dybench.train.config import TrainConfig
from dybench.train.export import export_callbacks
from dybench.train.inputs import encode_prompts
from dybench.train.loss import masked_mean, policy_loss, sft_loss
from dybench.train.metrics import RANKS, MetricsLog, StepStats, metrics_row, read_metrics
from dybench.train.policy import (
    Policy,
    export_hf,
    load_policy,
    load_trainable_state,
    reference_context,
    resolve_weights,
    trainable_state,
    weights_digest,
)
from dybench.train.provenance import PROVENANCE_KEY, provenance
from dybench.train.questions import TrainQuestion, prepare_question, target_text, training_template
from dybench.train.algorithms import ALGORITHMS, Algorithm
from dybench.train.rewards import Group, GroupRewards, RewardFn
from dybench.train.rollouts import (
    HFRolloutEngine,
    PromptBatch,
    RolloutEngine,
    completion_logprobs,
    end_token_ids,
    generation_model,
)
from dybench.train.llm_router import build_router
from dybench.train.router import SEGMENT_BOUNDARY_KEY, Router, TaskTableRouter, route_report
from dybench.train.trackers import accelerator_options, check_tracker_installed, finish_trackers, log_row, start_trackers
from dybench.store import VideoSettings
from dybench.video import SampledClip, apply_transform, plan_sample, probe, with_index
from dybench.yaml_files import read_yaml_mapping

CONFIG_FILE = "train_config.yaml"
ROUTES_FILE = "routes.json"
"""How every question was routed: counts per kind and source, and each question's route."""
ROUTER_DIR = "router"
CLIP_CACHE_BYTES = 2 << 30
"""Decoded clips kept in memory across steps (least recently used dropped first)."""
StepCallback = Callable[[int, dict[str, Any], "Trainer"], None]

# Options that may differ between an interrupted run and its resumption.
RESUMABLE_CHANGES = {"max_steps", "save_every", "keep_checkpoints", "display", "report_to", "export_every"}


INTERRUPT_SIGNALS = (signal.SIGINT, signal.SIGTERM)
"""Ctrl-C, and what `timeout`, Slurm and Kubernetes send: both stop the run the same way."""


class TrainingInterrupted(DyBenchError):
    """Ctrl-C or SIGTERM: the message says which step was saved and how to continue or start over."""


@dataclass
class BranchPrompt:
    question: TrainQuestion
    clip: SampledClip
    label: str


# --- checks before any compute ----------------------------------------------------------------


def prepare_questions(config: TrainConfig, dataset: Dataset, router: Router | None = None) -> list[TrainQuestion]:
    """Route every item and label both branches; stop at the first item that cannot be trained on."""
    router = router or TaskTableRouter(static_transforms=tuple(config.static_transforms))
    null_text = config.null_option_text if config.null_option else None
    questions = []
    for item in dataset.items:
        try:
            path = dataset.video_path(item)
            question = prepare_question(item, path, router, null_text)
        except DyBenchError as exc:
            raise DyBenchError(f"{dataset.root}: item {item.id}: {exc}") from None
        if ALGORITHMS.get(config.algo).needs_counterfactuals and question.route.transform == "swap_segments":
            if SEGMENT_BOUNDARY_KEY not in item.meta:
                raise DyBenchError(
                    f"{dataset.root}: item {item.id}: swap_segments needs meta.{SEGMENT_BOUNDARY_KEY} "
                    "(the frame where the second event starts)"
                )
        questions.append(question)
    return questions


def check_videos(dataset: Dataset) -> None:
    """Every video is inside the dataset, opens and has frames (probed, not decoded; each file once)."""
    seen: set[Path] = set()
    for item in dataset.items:
        try:
            path = dataset.video_path(item)
        except DyBenchError as exc:
            raise DyBenchError(f"{dataset.root}: item {item.id}: {exc}") from None
        if path in seen:
            continue
        seen.add(path)
        if not path.is_file():
            raise DyBenchError(f"{dataset.root}: item {item.id}: video {item.video} not found")
        info = probe(path)
        if info.n_frames <= 0:
            raise DyBenchError(f"{dataset.root}: item {item.id}: video {item.video} has no frames")


def swap_boundary(indices: Sequence[int], source_boundary: int) -> int:
    """The segment boundary on a sampled clip: how many sampled frames lie before the source frame
    where the second event starts."""
    return sum(1 for index in indices if index < source_boundary)


def check_swap_boundaries(dataset: Dataset, questions: Sequence[TrainQuestion], settings: VideoSettings) -> None:
    """Every swap_segments counterfactual can be made from the sampled frames: a first (or second)
    event shorter than half a sampling bin has no sampled frame, and the swap would fail mid-run."""
    from dybench.evaluate import frame_range

    for question in questions:
        if question.route.transform != "swap_segments":
            continue
        window = with_index(question.video_path, lambda index: plan_sample(
            index, settings.num_frames, settings.fps, settings.max_frames, frame_range(question.item),
            question.video_path))
        n_frames, indices = window.end - window.start, window.picks
        source_boundary = int(question.item.meta[SEGMENT_BOUNDARY_KEY])
        cut = swap_boundary(indices, source_boundary)
        if not 0 < cut < len(indices):
            side = "before" if cut == 0 else "after"
            raise DyBenchError(
                f"{dataset.root}: item {question.id}: meta.{SEGMENT_BOUNDARY_KEY} {source_boundary} leaves no sampled "
                f"frame {side} it ({len(indices)} of {n_frames} frames sampled), so its segments cannot be swapped; "
                "sample more frames (num_frames) or drop the item"
            )


def saved_config_data(config: TrainConfig) -> dict[str, Any]:
    """The config as CONFIG_FILE holds it: credentials in backend options (a router's
    `base_url` with user:password@ or ?api_key=) redacted. The run itself uses `config` as given."""
    return redact_data(config.model_dump(mode="json"))


def saved_config_yaml(config: TrainConfig) -> str:
    return yaml.safe_dump({**saved_config_data(config), PROVENANCE_KEY: provenance()}, sort_keys=False)


def check_output(config: TrainConfig, resume: bool) -> None:
    """A training folder is either resumable (it holds a checkpoint: --resume continues it) or
    restartable (nothing was saved yet: the same command starts it again, with or without --resume)."""
    out = config.out
    saved = out / CONFIG_FILE
    found = latest_checkpoint(out)
    if found is not None and not resume:
        raise DyBenchError(
            f"{out}: holds a training run saved at step {found[0]}; pass --resume to continue it, or choose a new --out"
        )
    if not resume:
        return  # empty, or interrupted before its first checkpoint: starts over
    if not saved.is_file():
        raise DyBenchError(f"{out}: nothing to resume (no {CONFIG_FILE}); drop --resume to start a run there")
    previous = read_yaml_mapping(saved, "training config", "expected the config a run wrote")
    current = saved_config_data(config)  # as it was written: redacted, so a credential compares equal
    changed = sorted(k for k in current if k not in RESUMABLE_CHANGES and previous.get(k) != current[k])
    if changed:
        hint = "drop --resume to start over with the new ones" if found is None else "use the original options"
        raise DyBenchError(f"{saved}: --resume with different settings ({', '.join(changed)}); {hint}")


# --- the trainer ------------------------------------------------------------------------------


class Trainer:
    def __init__(
        self,
        config: TrainConfig,
        resume: bool = False,
        reward_fn: RewardFn | None = None,
        callbacks: Sequence[StepCallback] = (),
        engine: RolloutEngine | None = None,
        display: Any = None,
    ) -> None:
        self.config = config
        self.resume = resume
        self.callbacks = list(callbacks) + export_callbacks(config.export_every)
        self.algorithm: Algorithm = ALGORITHMS.get(config.algo)
        rewards = self.algorithm.rewards
        self.reward_fn = reward_fn or (rewards and partial(
            rewards, weights=config.rewards, tgrpo=config.tgrpo, answer_format=config.answer_format
        ))
        self._engine = engine
        self.display = display
        self.template = training_template(config.answer_format)
        # Checks, in order, before anything is loaded or computed.
        check_output(config, resume)
        check_tracker_installed(config.report_to)
        self.dataset = load_data(config.data)
        check_videos(self.dataset)
        self.spec, self.weights = resolve_weights(config.model)
        if config.lora is not None:
            try:
                import peft  # noqa: F401
            except ImportError:
                raise DyBenchError("LoRA needs peft: pip install 'dybench[lora]'") from None
        if config.precision == "bf16" and not (torch.cuda.is_available() and torch.cuda.is_bf16_supported()):
            raise DyBenchError("precision bf16 needs a GPU with bfloat16 support; use precision auto or fp32")
        from dybench.evaluate import video_settings

        self.video = video_settings(self.spec, config.num_frames, None, None, None, None)
        # Routing last: an LLM router is a model run (its answers are cached in OUT/router/).
        router = build_router(config.router, config.static_transforms, self.dataset, config.out / ROUTER_DIR)
        self.questions = prepare_questions(config, self.dataset, router)
        self.routes = route_report({q.id: q.route for q in self.questions}, config.router.kind, config.router.model)
        if self.algorithm.needs_counterfactuals:
            check_swap_boundaries(self.dataset, self.questions, self.video)
        self._clips: OrderedDict[str, SampledClip] = OrderedDict()
        self.step = 0
        self._critical = False
        self._interrupt_pending = False
        self._pending_row: dict[str, Any] | None = None

    # -- setup --

    def setup(self) -> None:
        from accelerate import Accelerator
        from accelerate.utils import set_seed

        config = self.config
        bf16 = config.precision == "bf16" or (
            config.precision == "auto" and torch.cuda.is_available() and torch.cuda.is_bf16_supported()
        )
        self.accelerator = Accelerator(mixed_precision="bf16" if bf16 else "no", cpu=not torch.cuda.is_available(),
                                       **accelerator_options(config.report_to, config.out))
        set_seed(config.seed, device_specific=True)
        self.log = MetricsLog(config.out)
        self.rank_log = MetricsLog(config.out, RANKS)
        # Written before the model loads, so an interrupt at any later point leaves a folder that the
        # same command can resume (a checkpoint exists) or start over (none does).
        checkpoint = latest_checkpoint(config.out) if self.resume else None
        if checkpoint is None:
            self._start_fresh()
        if self.accelerator.is_main_process:
            write_json_atomic(config.out / ROUTES_FILE, self.routes)
        needs_reference = not self.algorithm.supervised and config.beta > 0
        self.policy: Policy = load_policy(config.model, config.beta, config.lora, needs_reference)
        self.tokenizer = self.policy.processor.tokenizer
        params = [p for p in self.policy.model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=config.lr, betas=config.adam_betas, weight_decay=config.weight_decay)
        warmup = config.warmup_steps
        # Stepped once per update by us (accelerate's wrapper would step it once per process).
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / (warmup + 1)))
        self.model, self.optimizer = self.accelerator.prepare(self.policy.model, optimizer)
        if self.policy.reference is not None:
            self.policy.reference.to(self.accelerator.device)
        self.engine = self._engine or self._rollout_engine()
        if checkpoint is not None:
            self._restore(*checkpoint)
        start_trackers(self.accelerator, config.report_to, config.out, saved_config_data(config), self.step)

    def _rollout_engine(self) -> RolloutEngine:
        return ROLLOUT_ENGINES[self.config.rollout_engine](self)

    def _hf_rollout_engine(self) -> RolloutEngine:
        c = self.config
        return HFRolloutEngine(self.tokenizer, max_new_tokens=c.max_new_tokens, temperature=c.temperature, top_p=c.top_p)

    def _vllm_rollout_engine(self) -> RolloutEngine:
        c = self.config
        if self.sharded:
            raise DyBenchError("rollout_engine vllm: FSDP / DeepSpeed sharding is not supported; use DDP or rollout_engine hf")
        from dybench.train.vllm_rollouts import VLLMRolloutEngine

        return VLLMRolloutEngine(
            self.spec, self.weights, self.tokenizer, max_new_tokens=c.max_new_tokens, temperature=c.temperature,
            top_p=c.top_p, max_model_len=c.vllm_max_model_len, memory_fraction=c.vllm_memory_fraction, seed=c.seed,
        )

    def _start_fresh(self) -> None:
        """Step 0: the config written, rows of an earlier attempt that saved nothing dropped."""
        if self.accelerator.is_main_process:
            self.config.out.mkdir(parents=True, exist_ok=True)
            write_text_atomic(self.config.out / CONFIG_FILE, saved_config_yaml(self.config))
            self.log.truncate_after(0)
        self.accelerator.wait_for_everyone()

    def _restore(self, step: int, path: Path) -> None:
        state = load_checkpoint(path)
        if self.sharded:
            self.accelerator.load_state(str(path / "accelerate"))
        else:
            load_trainable_state(self.accelerator.unwrap_model(self.model), state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        rank = self.accelerator.process_index
        rng = state["rng"] if rank == 0 else torch.load(path / f"rng-rank{rank}.pt", weights_only=True)
        set_rng_state(rng)
        self.step = step
        if self.accelerator.is_main_process:
            self.log.truncate_after(step)
            self.rank_log.truncate_after(step)
        if state.get("callbacks_pending"):
            rows = read_metrics(self.config.out) if self.log.path.is_file() else []
            self._pending_row = rows[-1] if rows and rows[-1]["step"] == step else None
        self.engine.sync_weights(self.model)

    # -- data --

    @property
    def questions_per_step(self) -> int:
        c = self.config
        return c.batch_size * c.grad_accum * self.accelerator.num_processes

    def micro_batches(self, step: int) -> Iterator[list[TrainQuestion]]:
        """This process's micro-batches for `step`: a fixed function of (seed, step), so resuming is exact."""
        c = self.config
        n = len(self.questions)
        start = step * self.questions_per_step
        order_cache: dict[int, list[int]] = {}

        def at(position: int) -> TrainQuestion:
            epoch, offset = divmod(position, n)
            if epoch not in order_cache:
                order = list(range(n))
                random.Random(f"{c.seed}:{epoch}").shuffle(order)
                order_cache[epoch] = order
            return self.questions[order_cache[epoch][offset]]

        rank, world = self.accelerator.process_index, self.accelerator.num_processes
        for micro in range(c.grad_accum):
            base = start + micro * c.batch_size * world + rank * c.batch_size
            yield [at(base + i) for i in range(c.batch_size)]

    def epoch_of(self, step: int) -> float:
        return step * self.questions_per_step / len(self.questions)

    def clip(self, question: TrainQuestion) -> SampledClip:
        """The question's sampled clip (decoded once; questions on the same video share it)."""
        from dybench.evaluate import decode_item, frame_range

        key = f"{question.video_path}|{frame_range(question.item)}"
        if key in self._clips:
            self._clips.move_to_end(key)
            return self._clips[key]
        decoded = decode_item(self.dataset, question.item, self.video)
        if decoded.clip is None:
            raise DyBenchError(f"item {question.id}: {decoded.error}")
        self._clips[key] = decoded.clip
        while len(self._clips) > 1 and sum(c.frames.nbytes for c in self._clips.values()) > CLIP_CACHE_BYTES:
            self._clips.popitem(last=False)
        return decoded.clip

    def counterfactual_clip(self, question: TrainQuestion, clip: SampledClip) -> SampledClip:
        boundary = None
        if question.route.transform == "swap_segments":  # checked before training (check_swap_boundaries)
            boundary = swap_boundary(clip.indices, int(question.item.meta[SEGMENT_BOUNDARY_KEY]))
        frames = apply_transform(clip.frames, question.route.transform, boundary=boundary)
        return dataclasses.replace(clip, frames=frames)

    def branches(self, batch: list[TrainQuestion], step: int) -> tuple[list[BranchPrompt], list[BranchPrompt | None]]:
        """(original prompts, second-branch prompts) for a micro-batch. The second list is aligned
        with the batch: None where the algorithm builds no second branch (grpo, sft; crpo for a
        question of unknown kind)."""
        build_second = self.algorithm.second_branch
        orig: list[BranchPrompt] = []
        second: list[BranchPrompt | None] = []
        for question in batch:
            clip = self.clip(question)
            orig.append(BranchPrompt(question, clip, question.answer))
            second.append(build_second(self, question, clip, step) if build_second else None)
        return orig, second

    def encode(self, prompts: list[BranchPrompt]) -> PromptBatch:
        texts = [render_prompt(p.question.shown_item(), self.template) for p in prompts]
        inputs = encode_prompts(self.policy.processor, self.spec, texts, [p.clip for p in prompts])
        device = self.accelerator.device
        inputs.pop("token_type_ids", None)  # not a model input (as in the hf backend)
        tensors = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in inputs.items()}
        return PromptBatch(tensors, texts=texts, clips=[p.clip for p in prompts])

    # -- one micro-batch --

    def rl_micro_batch(self, batch: list[TrainQuestion], step: int, stats: StepStats, timing: dict[str, float]) -> None:
        c = self.config
        G = c.group_size
        orig, aligned_second = self.branches(batch, step)
        second = [prompt for prompt in aligned_second if prompt is not None]
        # Prompt position of each question's second branch (after all the originals).
        second_position = {}
        for q, prompt in enumerate(aligned_second):
            if prompt is not None:
                second_position[q] = len(orig) + len(second_position)
        prompts = self.encode(orig + second)
        started = time.perf_counter()
        with generation_model(self.accelerator, self.model) as generator, self.accelerator.autocast():
            rollouts = self.engine.generate(generator, prompts, G)
        timing["rollout"] += time.perf_counter() - started

        answers = [extract_choice(text, p.question.options) for text, p in zip(rollouts.texts, _repeat(orig + second, G))]
        train_rows: list[int] = []
        advantages: list[float] = []
        for q, question in enumerate(batch):
            o_rows = list(range(q * G, (q + 1) * G))
            s_rows = list(range(second_position[q] * G, (second_position[q] + 1) * G)) if q in second_position else []
            group = Group(
                answer=question.answer,
                answer_changes=question.route.answer_changes,
                counterfactual_answer=question.counterfactual_answer,
                orig_answers=[answers[i] for i in o_rows],
                orig_texts=[rollouts.texts[i] for i in o_rows],
                second_answers=[answers[i] for i in s_rows],
                second_texts=[rollouts.texts[i] for i in s_rows],
            )
            rewards = self.reward_fn(group)
            self._record_group(stats, group, rewards, question)
            trained_second = rewards.second if self.algorithm.trains_second_branch else []
            adv_orig, adv_second = group_advantages(rewards.orig, trained_second, c.advantage, c.scale_advantages)
            train_rows += o_rows + (s_rows if trained_second else [])
            advantages += adv_orig + adv_second

        rows = torch.tensor(train_rows, device=rollouts.completion_ids.device)
        ids, mask = rollouts.completion_ids[rows], rollouts.completion_mask[rows]
        logp, entropy = completion_logprobs(
            self.model, prompts, rollouts.prompt_index[rows], ids, mask, c.temperature, with_entropy=True
        )
        ref_logp = None
        if c.beta > 0:
            ref_model, ctx = reference_context(self.accelerator.unwrap_model(self.model), self.policy.reference)
            with torch.no_grad(), ctx, self.accelerator.autocast():
                ref_logp, _ = completion_logprobs(ref_model, prompts, rollouts.prompt_index[rows], ids, mask, c.temperature)
        parts = policy_loss(
            logp,
            logp.detach(),  # one update per batch: the sampling policy is the current one
            torch.tensor(advantages, device=logp.device),
            mask,
            clip_eps=c.clip_eps,
            beta=c.beta,
            ref_logp=ref_logp,
        )
        self.accelerator.backward(parts.loss / c.grad_accum)
        stats.add("loss", parts.loss.item())
        if c.beta > 0:
            stats.add("kl", parts.kl)
        stats.add("clip_fraction", parts.clip_fraction)
        assert entropy is not None
        stats.add("entropy", masked_mean(entropy, mask).item())
        stats.add("completion_length", rollouts.lengths.float().tolist())

    def _record_group(self, stats: StepStats, group: Group, rewards: GroupRewards, question: TrainQuestion) -> None:
        for name, values in rewards.terms.items():
            stats.add(f"reward/{name}", values)
        stats.add("reward/orig/total", rewards.orig)
        # Within-group spread: a group whose rollouts all earn the same reward teaches nothing.
        stats.add("reward_std/orig", statistics.pstdev(rewards.orig))
        stats.add("acc/orig", [float(a == group.answer) for a in group.orig_answers])
        stats.add("invalid_rate/orig", [float(a is None) for a in group.orig_answers])
        if self.algorithm.group_metrics is not None:
            self.algorithm.group_metrics(stats, group, rewards)

    def sft_micro_batch(self, batch: list[TrainQuestion], stats: StepStats) -> None:
        orig, _ = self.branches(batch, 0)
        prompts = self.encode(orig)
        end_id = end_token_ids(self.accelerator.unwrap_model(self.model), self.tokenizer)[0]
        targets = [
            self.tokenizer(target_text(q.answer, self.config.answer_format), add_special_tokens=False)["input_ids"] + [end_id]
            for q in batch
        ]
        length = max(len(t) for t in targets)
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else end_id
        device = self.accelerator.device
        ids = torch.tensor([t + [pad] * (length - len(t)) for t in targets], device=device)
        mask = torch.tensor([[1] * len(t) + [0] * (length - len(t)) for t in targets], device=device)
        logp, entropy = completion_logprobs(
            self.model, prompts, torch.arange(len(batch), device=device), ids, mask, with_entropy=True
        )
        loss = sft_loss(logp, mask)
        self.accelerator.backward(loss / self.config.grad_accum)
        stats.add("loss", loss.item())
        stats.add("sft/target_logprob", masked_mean(logp.detach(), mask, dim=1).tolist())
        assert entropy is not None
        stats.add("entropy", masked_mean(entropy, mask).item())
        stats.add("completion_length", mask.sum(1).float().tolist())

    # -- one step --

    def train_step(self, step: int) -> dict[str, Any]:
        started = time.perf_counter()
        stats = StepStats()
        timing = {"rollout": 0.0}
        micro_batches = list(self.micro_batches(step))
        for index, batch in enumerate(micro_batches):
            last = index == len(micro_batches) - 1
            sync = contextlib.nullcontext() if last else self.accelerator.no_sync(self.model)
            with sync:
                if self.algorithm.supervised:
                    self.sft_micro_batch(batch, stats)
                else:
                    self.rl_micro_batch(batch, step, stats, timing)
        grad_norm = None
        if self.config.max_grad_norm is not None:
            grad_norm = float(self.accelerator.clip_grad_norm_(self.model.parameters(), self.config.max_grad_norm))
        values: dict[str, Any] = self._reduce(stats)
        values.update(
            step=step + 1,
            epoch=round(self.epoch_of(step + 1), 4),
            grad_norm=grad_norm,
            lr=self.scheduler.get_last_lr()[0],
            rollout_time_s=round(timing["rollout"], 4) if not self.algorithm.supervised else None,
        )
        values["step_time_s"] = round(time.perf_counter() - started, 4)
        return metrics_row(values)

    def _reduce(self, stats: StepStats) -> dict[str, float]:
        """Means over all processes. Each process may hold different metrics (a batch without a
        static question has no static change rate), so the sums travel as objects, not tensors."""
        if self.accelerator.num_processes == 1:
            return stats.means()
        from accelerate.utils import gather_object

        merged = StepStats()
        for sums, counts in gather_object([(dict(stats.sums), dict(stats.counts))]):
            for name in sums:
                merged.sums[name] += sums[name]
                merged.counts[name] += counts[name]
        return merged.means()

    # -- the loop --

    def _on_interrupt(self, signum: int, frame: Any) -> None:
        """SIGINT and SIGTERM: stop now, or right after the optimizer update when one is under way."""
        note_signal(signum)  # the exit code says which signal it was (130 / 143)
        if self._critical:
            self._interrupt_pending = True
            return
        raise KeyboardInterrupt

    @contextlib.contextmanager
    def _interrupt_handlers(self) -> Iterator[None]:
        if not _in_main_thread():
            yield
            return
        previous = {signum: signal.signal(signum, self._on_interrupt) for signum in INTERRUPT_SIGNALS}
        try:
            yield
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)

    def train(self) -> Path:
        """Run to `max_steps` (or resume there); returns the output folder with the HF checkpoint.

        An interrupt (Ctrl-C, SIGTERM) at any point stops the run: once a step has finished it is
        saved as a checkpoint for --resume; before that the folder is left to start over."""
        c = self.config
        saved_rng: dict[str, Any] = {}
        callbacks_done = True
        with self._interrupt_handlers():
            try:
                self.setup()
                saved_rng = rng_state()
                if self._pending_row is not None:  # the interrupted run stopped inside this step's callbacks
                    callbacks_done = False
                    self._run_callbacks(self._pending_row)
                    callbacks_done = True
                with self._progress() as progress:
                    while self.step < c.max_steps:
                        saved_rng = rng_state()  # the state this step starts from (what a resume needs)
                        row = self.train_step(self.step)
                        self._critical = True
                        if self.accelerator.is_main_process:
                            self.log.append(row)
                            log_row(self.accelerator, c.report_to, row)
                        self.optimizer.step()
                        self.scheduler.step()
                        self.optimizer.zero_grad(set_to_none=True)
                        self.engine.sync_weights(self.model)
                        self.step += 1
                        self._record_ranks(self.step)
                        saved_rng = rng_state()
                        callbacks_done = False
                        self._critical = False
                        if self._interrupt_pending:
                            raise KeyboardInterrupt
                        if self.step % c.save_every == 0 and self.step < c.max_steps:
                            self.save(saved_rng, callbacks_pending=True)
                        progress(self.step, row)
                        self._run_callbacks(row)
                        callbacks_done = True
                # The final checkpoint and export are not cut short (an interrupt now lets them finish).
                self._critical = True
                self.save(rng_state())
                self.export()
            except KeyboardInterrupt:
                raise self._stop(saved_rng, callbacks_pending=not callbacks_done) from None
            finally:
                if hasattr(self, "accelerator"):
                    finish_trackers(self.accelerator)
                engine = getattr(self, "engine", None)
                if engine is not None:
                    engine.close()
        return c.out

    def _record_ranks(self, step: int) -> None:
        """With several processes (and whole, unsharded weights): which questions each rank trained
        on in update `step` and a digest of each rank's weights after it, to ranks.jsonl. Equal
        digests show the gradients were averaged; disjoint question lists, that the ranks shared
        out the global batch."""
        if self.accelerator.num_processes == 1 or self.sharded:
            return
        from accelerate.utils import gather_object

        questions = [question.id for batch in self.micro_batches(step - 1) for question in batch]
        entries = gather_object([(questions, weights_digest(self.accelerator.unwrap_model(self.model)))])
        if self.accelerator.is_main_process:
            self.rank_log.append({"step": step, "questions": [e[0] for e in entries],
                                  "weights": [e[1] for e in entries]})

    def _run_callbacks(self, row: dict[str, Any]) -> None:
        for callback in self.callbacks:
            callback(self.step, row, self)

    def _stop(self, rng: dict[str, Any], callbacks_pending: bool) -> TrainingInterrupted:
        """Save what an interrupt leaves (a second signal while saving is deferred) and say what next."""
        self._critical = True
        out = self.config.out
        if self.step == 0:
            return TrainingInterrupted(
                "interrupted before the first update finished: nothing to save; "
                "rerun the same command (with or without --resume) to start over"
            )
        self.optimizer.zero_grad(set_to_none=True)
        self.save(rng, callbacks_pending=callbacks_pending)
        return TrainingInterrupted(
            f"interrupted: checkpoint at step {self.step} saved in {out}; "
            "rerun the same command with --resume to continue"
        )

    @property
    def sharded(self) -> bool:
        """FSDP / DeepSpeed: model and optimizer state live in shards (accelerate's own format)."""
        return self.accelerator.distributed_type.name in ("FSDP", "DEEPSPEED")

    def save(self, rng: dict[str, Any], callbacks_pending: bool = False) -> Path:
        """A resumable checkpoint at the current step (see dybench.train.checkpoint).
        `callbacks_pending`: the step's callbacks have not all run (a resume runs them first)."""
        accelerator, out = self.accelerator, self.config.out
        if accelerator.is_main_process:
            start_checkpoint(out, self.step)
        accelerator.wait_for_everyone()
        state: dict[str, Any] = {"scheduler": self.scheduler.state_dict(), "rng": rng,
                                 "callbacks_pending": callbacks_pending}
        if not accelerator.is_main_process:  # every process samples from its own generators
            torch.save(rng, staging_dir(out, self.step) / f"rng-rank{accelerator.process_index}.pt")
        if self.sharded:
            accelerator.save_state(str(staging_dir(out, self.step) / "accelerate"))
        else:
            state["model"] = trainable_state(accelerator.unwrap_model(self.model))
            state["optimizer"] = self.optimizer.state_dict()
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:
            finish_checkpoint(out, self.step, state, self.config.keep_checkpoints)
        accelerator.wait_for_everyone()
        return checkpoint_dir(out, self.step)

    def export(self, folder: Path | None = None) -> Path:
        """Write the current policy as a HF checkpoint (default: the output folder). A step callback
        can call this with another folder to evaluate intermediate models."""
        folder = Path(folder) if folder is not None else self.config.out
        accelerator = self.accelerator
        accelerator.wait_for_everyone()
        state_dict = None
        if accelerator.distributed_type.name in ("FSDP", "DEEPSPEED"):
            state_dict = accelerator.get_state_dict(self.model)
        if accelerator.is_main_process:
            export_hf(accelerator.unwrap_model(self.model), self.policy.processor, folder, state_dict)
        accelerator.wait_for_everyone()
        return folder

    @contextlib.contextmanager
    def _progress(self) -> Iterator[Callable[[int, dict[str, Any]], None]]:
        if self.display is None or not self.accelerator.is_main_process:
            yield lambda step, row: None
            return
        with self.display(self.config, self.step) as update:
            yield update


ROLLOUT_ENGINES: dict[str, Callable[[Trainer], RolloutEngine]] = {
    "hf": Trainer._hf_rollout_engine,
    "vllm": Trainer._vllm_rollout_engine,
}
"""Config `rollout_engine` -> the method that starts it (the keys are TrainConfig's choices)."""


def _repeat(items: list[Any], times: int) -> list[Any]:
    return [item for item in items for _ in range(times)]


def _in_main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def train(config: TrainConfig, resume: bool = False, **kwargs: Any) -> Path:
    """Train with `config` (see `Trainer` for reward_fn, callbacks, engine, display)."""
    return Trainer(config, resume=resume, **kwargs).train()


__all__ = ["Trainer", "TrainingInterrupted", "train"]
