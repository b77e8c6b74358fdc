"""`dybench lab shortcut`: does correctness-only RL keep a static shortcut that CRPO removes?

The paper's mechanism, at CPU scale, with the project's own builder, trainer, eval and scorer:

1. data (`shortcut_data`): a training view where the moving object's colour names its direction
   on every clip, and a decorrelated test split of counterfactual pairs;
2. warm start: a short supervised run (`sft`) on the training view, so the tiny model answers the
   colour and direction questions the cheap way (colour is learned several times faster than
   motion), standing in for an instruct model with a shortcut habit (`warm_motion_pairs` adds
   motion examples where the colour says nothing, for a warm start that sees some motion);
3. RL from that same warm start with grpo, t-grpo and crpo, the same steps, questions per step and
   rollouts per question (CRPO and T-GRPO sample G per branch, so GRPO gets 2G), several seeds;
   the policy is exported and evaluated on the test split every `eval_every` steps;
4. each final policy is evaluated on the test split (`dybench eval --backend hf`): Acc, P-Acc and
   the shortcut rate (how often the answer is the one the colour predicts), plus the single-frame
   probe (P-Acc when the clip shows one moment, i.e. no motion at all).

Every stage leaves its result on disk and is skipped when a rerun finds it (training runs resume
from their last checkpoint, evals from their last stored batch), so an experiment interrupted at
any point (Ctrl-C, SIGTERM) continues where it stopped when the same command is run again. `dybench.lab.report` turns the folder into results.csv, curves.png and summary.md.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any, Callable

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from rich.console import Console

from dybench.atomic import write_text_atomic
from dybench.errors import DyBenchError, pydantic_message
from dybench.escaping import rich_text
from dybench.lab.shortcut_data import build_splits, shortcut_rate
from dybench.train.algorithms import ALGORITHMS
from dybench.train.config import AdvantageMode, RewardWeights
from dybench.yaml_files import read_yaml_mapping

SETTINGS = "lab.json"
DONE = "lab-done"
"""Marker written into a training run's folder once it has finished and been exported."""
CURVE = "curve.jsonl"
INTERRUPTED = "interrupted: finished stages and the last checkpoint are saved; rerun the same command to continue"
WALL_TIME = "wall_time.txt"
"""Seconds taken by each invocation, one per line (the budget is judged on their sum)."""


class LabInterrupted(DyBenchError):
    """Ctrl-C or SIGTERM during the experiment (the command exits 130 / 143)."""


class ShortcutSettings(BaseModel):
    """Everything the experiment depends on; a rerun into the same folder must match it."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field("tiny-random-qwen3-vl", description="base model (alias or checkpoint folder)")
    seeds: int = Field(3, ge=1, le=20, description="RL seeds per algorithm (0 .. seeds-1)")
    algos: list[str] = Field(default_factory=lambda: ["grpo", "t-grpo", "crpo"], min_length=1,
                             description="RL algorithms compared (names from dybench/train/algorithms.py)")
    cue: dict[str, str] = Field(
        default_factory=lambda: {"right": "red", "left": "blue", "up": "green", "down": "yellow"},
        description="training clips: colour of the moving object per direction (the shortcut)",
    )
    data_seed: int = 0
    size: int = Field(64, ge=48, description="frame size in pixels (the tiny model keeps 64 x 64)")
    frames: int = Field(8, ge=8, description="frames per clip")
    train_pairs: int = Field(128, ge=1, description="training pairs rendered (their original clips are used)")
    test_pairs: int = Field(48, ge=1, description="decorrelated test pairs")
    warm_steps: int = Field(1000, ge=1, description="supervised warm-start updates")
    warm_motion_pairs: int = Field(0, ge=0, description="warm start also sees both clips of this many motion "
                                   "pairs rendered without the cue (only objects of a non-cue colour kept)")
    warm_lr: float = Field(3e-4, gt=0)
    warm_batch: int = Field(16, ge=1)
    rl_steps: int = Field(150, ge=1, description="RL updates per run (the same for every algorithm)")
    rl_lr: float = Field(1e-4, gt=0)
    rl_batch: int = Field(4, ge=1, description="questions per RL update")
    group_size: int = Field(4, ge=1, description="G: rollouts per question and branch (GRPO gets 2G)")
    beta: float = Field(0.0, ge=0, description="KL penalty to the warm start")
    rewards: RewardWeights = Field(default_factory=RewardWeights, description="reward-term weights (every RL run)")
    advantage: AdvantageMode = Field("per_branch", description="CRPO: normalise each branch, or both jointly")
    temperature: float = Field(1.0, gt=0)
    eval_every: int = Field(50, ge=1, description="test evaluations during RL, every N updates")
    probes: bool = Field(True, description="also evaluate each final policy under the single-frame probe")

    @classmethod
    def quick(cls) -> ShortcutSettings:
        """A few steps of everything: checks that the experiment runs (CI), not what it shows."""
        return cls(seeds=1, train_pairs=4, test_pairs=4, warm_steps=2, warm_batch=4, rl_steps=2, rl_batch=2,
                   group_size=2, eval_every=1, probes=False)

    @field_validator("algos")
    @classmethod
    def _rl_algorithms(cls, names: list[str]) -> list[str]:
        for name in names:
            if name not in ALGORITHMS or ALGORITHMS.get(name).supervised:
                rl = [n for n, a in ALGORITHMS.items() if not a.supervised]
                raise ValueError(f"{name!r} is not an RL algorithm; known: {', '.join(rl)}")
        return names

    def group_for(self, algo: str) -> int:
        """Rollouts per question and branch: equal rollouts per question for every algorithm (one
        that rolls out a single branch gets twice the group)."""
        return self.group_size * 2 // ALGORITHMS.get(algo).branches


class RunResult(BaseModel):
    """One evaluated policy: the warm start, or one algorithm and seed after RL."""

    algo: str
    seed: int | None
    steps: int
    acc: float | None
    p_acc: float | None
    shortcut_rate: float | None
    same_answer_rate: float | None
    acc_original: float | None
    acc_counterfactual: float | None
    invalid_rate: float | None
    single_frame_p_acc: float | None = None
    train_acc_last: float | None = Field(None, description="mean acc/orig over the last 10 RL updates")


class CurvePoint(BaseModel):
    step: int
    acc: float | None
    p_acc: float | None
    shortcut_rate: float | None


# --- folders and settings ------------------------------------------------------------------------


def load_settings(path: Path | None = None, quick: bool = False, **overrides: Any) -> ShortcutSettings:
    """Defaults (or the --quick preset) < YAML file < options (None values ignored); one-line errors."""
    data: dict[str, Any] = ShortcutSettings.quick().model_dump() if quick else {}
    if path is not None:
        data.update(read_yaml_mapping(path, "config file", "expected a mapping of setting: value"))
    data.update({key: value for key, value in overrides.items() if value is not None})
    try:
        return ShortcutSettings.model_validate(data)
    except ValidationError as exc:
        raise DyBenchError(f"{path or 'shortcut lab settings'}: {pydantic_message(exc)}") from None


def run_name(algo: str, seed: int) -> str:
    return f"{algo}-seed{seed}"


def prepare_folder(out: Path, settings: ShortcutSettings) -> None:
    """Create `out` or check that it holds this same experiment."""
    saved = out / SETTINGS
    if saved.is_file():
        try:
            previous = ShortcutSettings.model_validate_json(saved.read_text())
        except ValidationError as exc:
            raise DyBenchError(f"{saved}: {pydantic_message(exc)}; use a new --out folder") from None
        if previous != settings:
            changed = [k for k in ShortcutSettings.model_fields if getattr(previous, k) != getattr(settings, k)]
            raise DyBenchError(f"{out} holds a shortcut experiment with other settings ({', '.join(changed)}); "
                               "rerun with the same options to continue it, or use a new --out folder")
        return
    if out.exists() and any(out.iterdir()):
        raise DyBenchError(f"{out} is not empty and holds no shortcut experiment; use a new --out folder")
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(saved, settings.model_dump_json(indent=2) + "\n")


# --- training ------------------------------------------------------------------------------------

StepCallback = Callable[[int, dict[str, Any], Any], None]


def train_stage(config: Any, callbacks: list[StepCallback], progress: bool) -> Path:
    """Run (or finish, or skip) one training run of the project's trainer."""
    from dybench.train.checkpoint import latest_checkpoint
    from dybench.train.display import live_display
    from dybench.train.trainer import Trainer, TrainingInterrupted

    out = Path(config.out)
    if (out / DONE).is_file():
        return out
    resume = latest_checkpoint(out) is not None
    if not resume and out.exists():
        shutil.rmtree(out)  # killed before its first checkpoint: nothing worth keeping
    try:
        Trainer(config, resume=resume, callbacks=callbacks, display=live_display if progress else None).train()
    except TrainingInterrupted:
        raise LabInterrupted(INTERRUPTED) from None
    (out / DONE).write_text("")
    return out


def train_config(settings: ShortcutSettings, algo: str, data: Path, model: str, out: Path, seed: int) -> Any:
    """The trainer's config for one run; RL and warm start share the prompt (the eval's own, the
    letter alone, no null option: all four directions are shown, so the task table labels every
    counterfactual, and the trained prompt is exactly the evaluated one)."""
    from dybench.train.config import load_config

    common = dict(model=model, data=str(data), out=out, seed=seed, answer_format="letter", null_option=False,
                  max_new_tokens=2, beta=settings.beta, display=False, save_every=25, keep_checkpoints=1)
    if ALGORITHMS.get(algo).supervised:
        return load_config(**common, algo="sft", max_steps=settings.warm_steps, batch_size=settings.warm_batch,
                           lr=settings.warm_lr, group_size=1)
    return load_config(**common, algo=algo, max_steps=settings.rl_steps, batch_size=settings.rl_batch,
                       lr=settings.rl_lr, group_size=settings.group_for(algo), temperature=settings.temperature,
                       rewards=settings.rewards.model_dump(), advantage=settings.advantage)


# --- evaluation ----------------------------------------------------------------------------------


def evaluate(model: Path, test: Path, run_dir: Path, cue: dict[str, str], probe: str | None = None) -> dict[str, Any]:
    """`dybench eval --backend hf` of `model` on the test split (resumable), plus the shortcut rate."""
    from dybench.evaluate import run_eval

    options: dict[str, Any] = {"probe": probe} if probe else {}
    scores = run_eval(str(model), str(test), run_dir, backend="hf", batch_size=16, progress=False, **options)
    rate, counted = shortcut_rate(run_dir, test, cue)
    return {**scores, "shortcut_rate": rate, "n_shortcut_items": counted}


def curve_point(step: int, scores: dict[str, Any]) -> CurvePoint:
    return CurvePoint(step=step, acc=scores["acc"], p_acc=scores["p_acc"], shortcut_rate=scores["shortcut_rate"])


def append_point(path: Path, point: CurvePoint) -> None:
    with path.open("a") as handle:
        handle.write(point.model_dump_json() + "\n")


def read_curve(path: Path) -> list[CurvePoint]:
    """The curve, one point per step (a resumed run may have written a step twice: the last wins)."""
    if not path.is_file():
        return []
    points: dict[int, CurvePoint] = {}
    for line in path.read_text().splitlines():
        if line.strip():
            try:
                point = CurvePoint.model_validate_json(line)
            except ValidationError:
                continue  # a line torn by a kill
            points[point.step] = point
    return [points[step] for step in sorted(points)]


def eval_callback(run: Path, test: Path, settings: ShortcutSettings) -> StepCallback:
    """Every `eval_every` updates (not the last, evaluated as the final policy): export the policy,
    evaluate it on the test split and append the point to the run's curve."""

    from dybench.evaluate import EvalInterrupted

    def callback(step: int, row: dict[str, Any], trainer: Any) -> None:
        if step % settings.eval_every or step >= settings.rl_steps:
            return
        if any(point.step == step for point in read_curve(run / CURVE)):
            return
        folder = run / "evals" / f"step-{step:05d}"
        trainer.export(folder / "model")
        try:
            scores = evaluate(folder / "model", test, folder / "eval", settings.cue)
        except EvalInterrupted:
            # An interrupt of the training run: it saves this step and runs this callback again on resume.
            raise KeyboardInterrupt from None
        append_point(run / CURVE, curve_point(step, scores))
        shutil.rmtree(folder / "model")  # the scores are what matter; the weights can be remade

    return callback


def result_of(algo: str, seed: int | None, steps: int, scores: dict[str, Any], probe: dict[str, Any] | None,
              train_acc: float | None) -> RunResult:
    diagnostics = scores.get("diagnostics", {})
    return RunResult(
        algo=algo, seed=seed, steps=steps, acc=scores["acc"], p_acc=scores["p_acc"],
        shortcut_rate=scores["shortcut_rate"], same_answer_rate=diagnostics.get("same_answer_rate"),
        acc_original=diagnostics.get("acc_original"), acc_counterfactual=diagnostics.get("acc_counterfactual"),
        invalid_rate=scores.get("invalid_rate"), single_frame_p_acc=None if probe is None else probe["p_acc"],
        train_acc_last=train_acc,
    )


def last_train_acc(run: Path, last: int = 10) -> float | None:
    from dybench.train.metrics import read_metrics

    values = [row["acc/orig"] for row in read_metrics(run)[-last:] if row.get("acc/orig") is not None]
    return sum(values) / len(values) if values else None


# --- the experiment ------------------------------------------------------------------------------


def run_shortcut_lab(out: Path, settings: ShortcutSettings, progress: bool = True,
                     console: Console | None = None) -> list[RunResult]:
    """Run (or continue) the whole experiment in `out`; write the report; return every result."""
    from transformers.utils import logging as transformers_logging

    from dybench.lab.report import write_report

    transformers_logging.disable_progress_bar()  # dozens of model loads: the stage lines say what runs
    console = console or Console(stderr=True)
    out = Path(out)
    prepare_folder(out, settings)
    say = console.print if progress else (lambda *args, **kwargs: None)
    from dybench.evaluate import EvalInterrupted

    started = time.perf_counter()
    try:
        results, warm_point = run_stages(out, settings, progress, say)
    except (KeyboardInterrupt, EvalInterrupted):
        raise LabInterrupted(INTERRUPTED) from None
    finally:  # an interrupted invocation's time counts too
        record_wall_time(out, time.perf_counter() - started)
    total, invocations = wall_time(out)
    write_report(out, settings, results, warm_point, total, invocations)
    say(f"[green]done[/] ({total / 60:.1f} min in all): "
        + rich_text(f"{out / 'results.csv'}, {out / 'curves.png'}, {out / 'summary.md'}"))
    return results


def record_wall_time(out: Path, seconds: float) -> None:
    with (out / WALL_TIME).open("a") as handle:
        handle.write(f"{seconds:.1f}\n")


def wall_time(out: Path) -> tuple[float, int]:
    """(seconds over every invocation so far, number of invocations)."""
    path = out / WALL_TIME
    values = [float(line) for line in path.read_text().split() if line] if path.is_file() else []
    return sum(values), len(values)


def run_stages(out: Path, settings: ShortcutSettings, progress: bool,
               say: Callable[..., None]) -> tuple[list[RunResult], CurvePoint]:
    """Every stage in order, each skipped where its result is already on disk."""

    say("[bold]data[/]: training view with the colour cue, decorrelated test split")
    splits = build_splits(out / "data", settings.cue, settings.train_pairs, settings.test_pairs, settings.data_seed,
                          settings.size, settings.frames, progress, settings.warm_motion_pairs)
    train, test = splits.train, splits.test

    say(f"[bold]warm start[/]: sft, {settings.warm_steps} updates of {settings.warm_batch} questions")
    warm = train_stage(train_config(settings, "sft", splits.warm, settings.model, out / "warm", settings.data_seed),
                       [], progress)
    warm_scores = evaluate(warm, test, out / "warm" / "eval", settings.cue)
    warm_probe = evaluate(warm, test, out / "warm" / "eval-single-frame", settings.cue, "single-frame") \
        if settings.probes else None
    results = [result_of("warm-start", None, 0, warm_scores, warm_probe, None)]
    say(f"  warm start on the test split: P-Acc {_fmt(warm_scores['p_acc'])}, "
        f"shortcut rate {_fmt(warm_scores['shortcut_rate'])}")

    runs = [(algo, seed) for seed in range(settings.seeds) for algo in settings.algos]
    for number, (algo, seed) in enumerate(runs, start=1):
        run = out / "runs" / run_name(algo, seed)
        say(f"[bold]RL {number}/{len(runs)}[/]: {algo}, seed {seed}, {settings.rl_steps} updates of "
            f"{settings.rl_batch} questions x {settings.group_for(algo) * (1 if algo == 'grpo' else 2)} rollouts")
        config = train_config(settings, algo, train, str(warm), run, seed)
        train_stage(config, [eval_callback(run, test, settings)], progress)
        scores = evaluate(run, test, run / "eval", settings.cue)
        probe = evaluate(run, test, run / "eval-single-frame", settings.cue, "single-frame") if settings.probes else None
        if not any(point.step == settings.rl_steps for point in read_curve(run / CURVE)):
            append_point(run / CURVE, curve_point(settings.rl_steps, scores))
        results.append(result_of(algo, seed, settings.rl_steps, scores, probe, last_train_acc(run)))
        say(f"  test: P-Acc {_fmt(scores['p_acc'])}, shortcut rate {_fmt(scores['shortcut_rate'])}")

    return results, curve_point(0, warm_scores)


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


__all__ = ["LabInterrupted", "ShortcutSettings", "load_settings", "RunResult", "CurvePoint", "run_shortcut_lab", "read_curve", "run_name"]
