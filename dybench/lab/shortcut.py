"""`dybench lab shortcut`: does correctness-only RL keep a visual shortcut that CRPO removes?

The paper's mechanism, at CPU scale, with the project's own builder, trainer, eval and scorer. The
data (`shortcut_data`): two-way left/right clips of one object whose colour can be a cue. Stages,
in order:

1. positive control: supervised training (`sft`) on decorrelated counterfactual pairs. Unless it
   reaches test P-Acc `control_min_p_acc` (mean of its seeds), the model cannot see the motion at
   these settings, no RL comparison could mean anything, and the experiment stops there;
2. warm start, the paper's regime: the control policy (seed 0), then a short `sft` lesson on clips
   of the cue colours labelled with the colour's direction whatever the motion. It keeps some of
   its perception (P-Acc on `test-other`, where colour says nothing) and prefers the colour when
   the two disagree (shortcut rate on the test's conflicting clips);
3. RL from that warm start (grpo, t-grpo, crpo; the same updates, questions and rollouts per
   question; several seeds) on the cued originals, where the colour is always right, so a
   correctness-only reward pays the shortcut in full; the test split is evaluated every
   `eval_every` updates;
4. every policy (control, warm start, each RL run) is evaluated on `test` (with the single-frame,
   shuffled and reversed probes, `dybench probe`) and on `test-other`.

Every stage leaves its result on disk and is skipped when a rerun finds it (training runs resume
from their last checkpoint, evals from their last stored batch), so an experiment interrupted at
any point (Ctrl-C, SIGTERM) continues where it stopped when the same command is run again.
`dybench.lab.report` writes results.csv, curves.png, summary.md and the leaderboard.
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
from dybench.lab.shortcut_data import (
    DIRECTIONS,
    DataSizes,
    LabScene,
    Splits,
    build_splits,
    lab_tasks,
    shortcut_rate,
    write_task_table,
)
from dybench.locks import describe_holder, file_lock, lock_path_for
from dybench.synth.scene import COLORS
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
PROBES = ("single-frame", "shuffled", "reversed")
"""Probes every final policy is evaluated under (`dybench probe`)."""
CONTROL = "control"
WARM = "warm-start"


class LabInterrupted(DyBenchError):
    """Ctrl-C or SIGTERM during the experiment (the command exits 130 / 143)."""


class ShortcutSettings(BaseModel):
    """Everything the experiment depends on; a rerun into the same folder must match it."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field("tiny-random-qwen3-vl", description="base model (alias or checkpoint folder)")
    seeds: int = Field(3, ge=1, le=20, description="seeds per RL algorithm and of the control (0 .. seeds-1)")
    algos: list[str] = Field(default_factory=lambda: ["grpo", "t-grpo", "crpo"], min_length=1,
                             description="RL algorithms compared (names from dybench/train/algorithms.py)")
    cue: dict[str, str] = Field(default_factory=lambda: {"right": "red", "left": "blue"},
                                description="the colour that names each direction on the RL clips (the shortcut)")
    data_seed: int = 0
    scene: LabScene = Field(default_factory=LabScene, description="how every lab clip looks")
    control_pairs: int = Field(1000, ge=1, description="decorrelated training pairs of the control (both clips)")
    control_steps: int = Field(300, ge=1, description="supervised updates of the control")
    control_min_p_acc: float = Field(0.8, ge=0, le=1, description="the control's mean test P-Acc below which "
                                     "no RL is run (the model does not see the motion)")
    cue_pairs: int = Field(300, ge=1, description="pairs of the warm start's cue lesson (both clips, cue colours)")
    cue_steps: int = Field(50, ge=1, description="supervised updates of the cue lesson")
    sft_lr: float = Field(3e-4, gt=0, description="learning rate of the control and the cue lesson")
    sft_batch: int = Field(16, ge=1)
    rl_pairs: int = Field(600, ge=1, description="cued clips RL trains on (originals)")
    static_share: float = Field(0.1, ge=0, le=0.2, description="share of RL questions that are static colour questions")
    test_pairs: int = Field(200, ge=1, description="test pairs in the cue colours (one agreeing, one conflicting clip)")
    other_pairs: int = Field(100, ge=1, description="test pairs in colours never used as cues (reported apart)")
    rl_steps: int = Field(100, ge=1, description="RL updates per run (the same for every algorithm)")
    rl_lr: float = Field(1e-4, gt=0)
    rl_batch: int = Field(4, ge=1, description="questions per RL update")
    group_size: int = Field(8, ge=1, description="G: rollouts per question and branch (a one-branch algorithm gets 2G)")
    beta: float = Field(0.0, ge=0, description="KL penalty to the warm start")
    rewards: RewardWeights = Field(default_factory=RewardWeights, description="reward-term weights (every RL run)")
    advantage: AdvantageMode = Field("per_branch", description="CRPO: normalise each branch, or both jointly")
    temperature: float = Field(1.0, gt=0)
    eval_every: int = Field(25, ge=1, description="test evaluations during RL, every N updates")
    probes: bool = Field(True, description="evaluate each final policy under the probes too")

    @classmethod
    def quick(cls) -> ShortcutSettings:
        """A few steps of everything, the control's gate open: checks that the experiment runs (CI),
        not what it shows."""
        return cls(seeds=1, control_pairs=4, control_steps=2, control_min_p_acc=0.0, cue_pairs=4, cue_steps=2,
                   sft_batch=4, rl_pairs=4, test_pairs=4, other_pairs=2, rl_steps=2, rl_batch=2, group_size=2,
                   eval_every=1, probes=False)

    @field_validator("algos")
    @classmethod
    def _rl_algorithms(cls, names: list[str]) -> list[str]:
        for name in names:
            if name not in ALGORITHMS or ALGORITHMS.get(name).supervised:
                rl = [n for n, a in ALGORITHMS.items() if not a.supervised]
                raise ValueError(f"{name!r} is not an RL algorithm; known: {', '.join(rl)}")
        return names

    @field_validator("cue")
    @classmethod
    def _two_way_cue(cls, cue: dict[str, str]) -> dict[str, str]:
        if sorted(cue) != sorted(DIRECTIONS):
            raise ValueError(f"give one colour for each of {' and '.join(DIRECTIONS)}, e.g. {{right: red, left: blue}}")
        unknown = [color for color in cue.values() if color not in COLORS]
        if unknown or len(set(cue.values())) != 2:
            raise ValueError(f"two different colours from {', '.join(COLORS)}")
        return cue

    def group_for(self, algo: str) -> int:
        """Rollouts per question and branch: equal rollouts per question for every algorithm (one
        that rolls out a single branch gets twice the group)."""
        return self.group_size * 2 // ALGORITHMS.get(algo).branches

    def data_sizes(self) -> DataSizes:
        return DataSizes(self.control_pairs, self.cue_pairs, self.rl_pairs, self.test_pairs, self.other_pairs,
                         self.static_share)


class RunResult(BaseModel):
    """One evaluated policy: a control seed, the warm start, or one algorithm and seed after RL.
    Scores are on `test` (cue colours) unless the name says `other` (colours never used as cues)."""

    policy: str
    seed: int | None
    steps: int
    acc: float | None
    p_acc: float | None
    shortcut_rate: float | None = Field(description="conflicting test clips answered with the colour's direction")
    same_answer_rate: float | None
    acc_original: float | None
    acc_counterfactual: float | None
    invalid_rate: float | None
    other_p_acc: float | None = Field(None, description="P-Acc on test-other (colour says nothing)")
    single_frame_p_acc: float | None = None
    shuffled_p_acc: float | None = None
    reversed_answer_change: float | None = None
    train_acc_last: float | None = Field(None, description="RL: mean acc/orig over the last 10 updates")


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


def train_config(settings: ShortcutSettings, algo: str, data: Path, model: str, out: Path, seed: int,
                 steps: int | None = None) -> Any:
    """The trainer's config for one run. Every run uses the evaluation's own prompt (the letter
    alone, no null option), so the trained prompt is exactly the evaluated one."""
    from dybench.train.config import load_config

    common = dict(model=model, data=str(data), out=out, seed=seed, answer_format="letter", null_option=False,
                  max_new_tokens=2, beta=settings.beta, display=False, save_every=25, keep_checkpoints=1)
    if ALGORITHMS.get(algo).supervised:
        return load_config(**common, algo="sft", max_steps=steps, batch_size=settings.sft_batch,
                           lr=settings.sft_lr, group_size=1)
    return load_config(**common, algo=algo, max_steps=settings.rl_steps, batch_size=settings.rl_batch,
                       lr=settings.rl_lr, group_size=settings.group_for(algo), temperature=settings.temperature,
                       rewards=settings.rewards.model_dump(), advantage=settings.advantage)


# --- evaluation ----------------------------------------------------------------------------------


def evaluate(model: Path, data: Path, run_dir: Path, cue: dict[str, str]) -> dict[str, Any]:
    """`dybench eval --backend hf` of `model` on `data` (resumable), plus the shortcut rate."""
    from dybench.evaluate import run_eval

    scores = run_eval(str(model), str(data), run_dir, backend="hf", batch_size=16, progress=False)
    rate, counted = shortcut_rate(run_dir, data, cue)
    return {**scores, "shortcut_rate": rate, "n_shortcut_items": counted}


def full_run_dir(folder: Path, settings: ShortcutSettings) -> Path:
    """Where a policy's full-video run on `test` is (inside its probe-suite folder when probes run)."""
    from dybench.probe_suite import FULL

    return folder / "test" / FULL if settings.probes else folder / "test"


def evaluate_policy(model: Path, splits: Splits, folder: Path, settings: ShortcutSettings) -> dict[str, Any]:
    """A final policy on `test` (under the probes too: `dybench probe`) and on `test-other`."""
    from dybench.evaluate import score_run
    from dybench.probe_suite import run_probe_suite

    scores: dict[str, Any] = {}
    if settings.probes:
        summary = run_probe_suite(str(model), str(splits.test), folder / "test", probes=PROBES, backend="hf",
                                  batch_size=16, progress=False)
        scores["probes"] = summary.leaderboard_columns()
        full = full_run_dir(folder, settings)
        rate, counted = shortcut_rate(full, splits.test, settings.cue)
        # The suite already ran the full video: score it, rather than start the model again.
        scores["test"] = {**score_run(full)[0], "shortcut_rate": rate, "n_shortcut_items": counted}
    else:
        scores["test"] = evaluate(model, splits.test, full_run_dir(folder, settings), settings.cue)
    scores["other"] = evaluate(model, splits.test_other, folder / "test-other", settings.cue)
    return scores


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


def result_of(policy: str, seed: int | None, steps: int, scores: dict[str, Any], train_acc: float | None) -> RunResult:
    test, probes = scores["test"], scores.get("probes", {})
    diagnostics = test.get("diagnostics", {})
    return RunResult(
        policy=policy, seed=seed, steps=steps, acc=test["acc"], p_acc=test["p_acc"],
        shortcut_rate=test["shortcut_rate"], same_answer_rate=diagnostics.get("same_answer_rate"),
        acc_original=diagnostics.get("acc_original"), acc_counterfactual=diagnostics.get("acc_counterfactual"),
        invalid_rate=test.get("invalid_rate"), other_p_acc=scores["other"]["p_acc"],
        single_frame_p_acc=probes.get("p_acc_single_frame"), shuffled_p_acc=probes.get("p_acc_shuffled"),
        reversed_answer_change=probes.get("answer_change_reversed"), train_acc_last=train_acc,
    )


def last_train_acc(run: Path, last: int = 10) -> float | None:
    from dybench.train.metrics import read_metrics

    values = [row["acc/orig"] for row in read_metrics(run)[-last:] if row.get("acc/orig") is not None]
    return sum(values) / len(values) if values else None


# --- the experiment ------------------------------------------------------------------------------


class Outcome(BaseModel):
    """What the stages produced: every evaluated policy, and where each one's folder is."""

    results: list[RunResult]
    folders: dict[str, str] = Field(description="policy name (control-seed0, warm-start, crpo-seed1) -> its folder")
    warm_point: CurvePoint | None = None
    control_passed: bool


def run_shortcut_lab(out: Path, settings: ShortcutSettings, progress: bool = True,
                     console: Console | None = None) -> list[RunResult]:
    """Run (or continue) the whole experiment in `out`; write the report; return every result."""
    from transformers.utils import logging as transformers_logging

    from dybench.evaluate import EvalInterrupted
    from dybench.lab.report import write_report

    transformers_logging.disable_progress_bar()  # dozens of model loads: the stage lines say what runs
    console = console or Console(stderr=True)
    out = Path(out)
    say = console.print if progress else (lambda *args, **kwargs: None)
    out.parent.mkdir(parents=True, exist_ok=True)
    # One experiment per folder: a second one would clear the first's run that has no checkpoint yet.
    with file_lock(lock_path_for(out), wait=False, busy_message=lambda pid: (
            f"{out} is being run by another `dybench lab shortcut` ({describe_holder(pid)}); wait for it to "
            "finish or use another --out")):
        prepare_folder(out, settings)
        with lab_tasks(write_task_table(out / "tasks")):
            started = time.perf_counter()
            try:
                outcome = run_stages(out, settings, progress, say)
            except (KeyboardInterrupt, EvalInterrupted):
                raise LabInterrupted(INTERRUPTED) from None
            finally:  # an interrupted invocation's time counts too
                record_wall_time(out, time.perf_counter() - started)
            total, invocations = wall_time(out)
            write_report(out, settings, outcome, total, invocations)
    say(f"[green]done[/] ({total / 60:.1f} min in all): "
        + rich_text(f"{out / 'results.csv'}, {out / 'curves.png'}, {out / 'summary.md'}, {out / 'leaderboard.csv'}"))
    return outcome.results


def record_wall_time(out: Path, seconds: float) -> None:
    with (out / WALL_TIME).open("a") as handle:
        handle.write(f"{seconds:.1f}\n")


def wall_time(out: Path) -> tuple[float, int]:
    """(seconds over every invocation so far, number of invocations)."""
    path = out / WALL_TIME
    values = [float(line) for line in path.read_text().split() if line] if path.is_file() else []
    return sum(values), len(values)


def run_stages(out: Path, settings: ShortcutSettings, progress: bool, say: Callable[..., None]) -> Outcome:
    """Every stage in order, each skipped where its result is already on disk."""
    from dybench.lab.report import mean_of

    say("[bold]data[/]: control pairs, cue lesson, cued RL clips, test (cue colours), test-other")
    splits = build_splits(out / "data", settings.cue, settings.data_sizes(), settings.data_seed, settings.scene,
                          progress)
    results: list[RunResult] = []
    folders: dict[str, str] = {}

    def record(policy: str, seed: int | None, steps: int, model: Path, folder: Path,
               train_acc: float | None = None) -> RunResult:
        result = result_of(policy, seed, steps, evaluate_policy(model, splits, folder, settings), train_acc)
        results.append(result)
        folders[policy if seed is None else run_name(policy, seed)] = str(folder)
        return result

    for seed in range(settings.seeds):
        say(f"[bold]control {seed + 1}/{settings.seeds}[/]: sft on decorrelated pairs, {settings.control_steps} "
            f"updates of {settings.sft_batch} questions")
        control = out / CONTROL / f"seed{seed}"
        train_stage(train_config(settings, "sft", splits.control, settings.model, control, seed,
                                 settings.control_steps), [], progress)
        result = record(CONTROL, seed, settings.control_steps, control, control / "eval")
        say(f"  test P-Acc {_fmt(result.p_acc)}, test-other P-Acc {_fmt(result.other_p_acc)}")
    control_p_acc = mean_of(results, CONTROL, "p_acc")
    if control_p_acc is None or control_p_acc < settings.control_min_p_acc:
        say(f"[yellow]the control reaches test P-Acc {_fmt(control_p_acc)} < {settings.control_min_p_acc}[/]: the model "
            "does not see the motion at these settings, so no RL is run (see summary.md)")
        return Outcome(results=results, folders=folders, control_passed=False)

    say(f"[bold]warm start[/]: the control (seed 0), then {settings.cue_steps} sft updates of the cue lesson")
    warm = out / "warm"
    train_stage(train_config(settings, "sft", splits.cue_sft, str(out / CONTROL / "seed0"), warm,
                             settings.data_seed, settings.cue_steps), [], progress)
    warm_result = record(WARM, None, 0, warm, warm / "eval")
    say(f"  test P-Acc {_fmt(warm_result.p_acc)}, shortcut rate {_fmt(warm_result.shortcut_rate)}, "
        f"test-other P-Acc {_fmt(warm_result.other_p_acc)}")

    runs = [(algo, seed) for seed in range(settings.seeds) for algo in settings.algos]
    for number, (algo, seed) in enumerate(runs, start=1):
        run = out / "runs" / run_name(algo, seed)
        rollouts = settings.group_for(algo) * ALGORITHMS.get(algo).branches
        say(f"[bold]RL {number}/{len(runs)}[/]: {algo}, seed {seed}, {settings.rl_steps} updates of "
            f"{settings.rl_batch} questions x {rollouts} rollouts")
        config = train_config(settings, algo, splits.rl, str(warm), run, seed)
        train_stage(config, [eval_callback(run, splits.test, settings)], progress)
        result = record(algo, seed, settings.rl_steps, run, run / "eval", last_train_acc(run))
        if not any(point.step == settings.rl_steps for point in read_curve(run / CURVE)):
            append_point(run / CURVE, CurvePoint(step=settings.rl_steps, acc=result.acc, p_acc=result.p_acc,
                                                 shortcut_rate=result.shortcut_rate))
        say(f"  test P-Acc {_fmt(result.p_acc)}, shortcut rate {_fmt(result.shortcut_rate)}")
    warm_point = CurvePoint(step=0, acc=warm_result.acc, p_acc=warm_result.p_acc, shortcut_rate=warm_result.shortcut_rate)
    return Outcome(results=results, folders=folders, warm_point=warm_point, control_passed=True)


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


__all__ = ["LabInterrupted", "ShortcutSettings", "load_settings", "RunResult", "CurvePoint", "Outcome",
           "run_shortcut_lab", "read_curve", "run_name"]
