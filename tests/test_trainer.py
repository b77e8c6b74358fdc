"""The trainer runs for real on the tiny Qwen3-VL (CPU): every algorithm end to end through the CLI,
a policy that measurably learns, exact resumption after Ctrl-C, LoRA, and checks before compute."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from dybench.cli import app
from dybench.errors import DyBenchError
from dybench.train.config import LoraSettings, load_config
from dybench.train.metrics import TIMING_COLUMNS, read_metrics
from dybench.train.rewards import GroupRewards
from dybench.train.trainer import Trainer, TrainingInterrupted

MODEL = "tiny-random-qwen3-vl"
# Small settings so each run takes seconds on two cores.
FAST = dict(group_size=2, batch_size=2, max_new_tokens=6, lr=1e-4, display=False)


def config(data: Path, out: Path, **overrides):
    return load_config(**{"model": MODEL, "data": str(data), "out": out, **FAST, **overrides})


def without_timing(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in row.items() if k not in TIMING_COLUMNS} for row in rows]


# --- checks before compute (fast) -------------------------------------------------------------


def test_missing_video_fails_before_the_model_loads(synthetic_train_set: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    rows = (Path(synthetic_train_set) / "manifest.jsonl").read_text().splitlines()
    broken = json.loads(rows[0])
    broken["video"] = "videos/not-there.mp4"
    (data / "manifest.jsonl").write_text(json.dumps(broken) + "\n")
    with pytest.raises(DyBenchError, match="not-there.mp4 not found"):
        Trainer(config(data, tmp_path / "out", model="no-such-model"))
    assert not (tmp_path / "out").exists()


def test_a_saved_run_needs_resume_and_an_unsaved_one_starts_over(synthetic_train_set: Path, tmp_path: Path) -> None:
    from dybench.train.checkpoint import finish_checkpoint, start_checkpoint

    out = tmp_path / "out"
    out.mkdir()
    (out / "train_config.yaml").write_text(config(synthetic_train_set, out).to_yaml())
    Trainer(config(synthetic_train_set, out))  # nothing saved yet: restartable as it is
    Trainer(config(synthetic_train_set, out), resume=True)  # ... and with --resume (from step 0)
    with pytest.raises(DyBenchError, match="drop --resume to start over"):
        Trainer(config(synthetic_train_set, out, lr=1e-3), resume=True)
    start_checkpoint(out, 3)
    finish_checkpoint(out, 3, {}, keep=1)
    with pytest.raises(DyBenchError, match="saved at step 3; pass --resume"):
        Trainer(config(synthetic_train_set, out))
    with pytest.raises(DyBenchError, match="use the original options"):
        Trainer(config(synthetic_train_set, out, lr=1e-3), resume=True)
    with pytest.raises(DyBenchError, match="nothing to resume.*drop --resume"):
        Trainer(config(synthetic_train_set, tmp_path / "empty"), resume=True)


def test_cli_reports_a_bad_option_in_one_line(synthetic_train_set: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("advantage: sideways\n")
    result = subprocess.run(
        [sys.executable, "-m", "dybench.cli", "train-crpo", "--model", MODEL, "--data", str(synthetic_train_set),
         "--out", str(tmp_path / "out"), "--config", str(bad)],
        capture_output=True, text=True,
    )
    assert result.returncode == 2
    assert "bad.yaml: field advantage" in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


# --- real training (slow) ---------------------------------------------------------------------


def assert_rate(value) -> None:
    assert isinstance(value, float) and math.isfinite(value) and 0.0 <= value <= 1.0, value


@pytest.mark.slow
@pytest.mark.parametrize("algo", ["crpo", "grpo", "t-grpo"])
def test_cli_trains_and_logs_every_reward_term(algo: str, synthetic_train_set: Path, tmp_path: Path, model_cache) -> None:
    out = tmp_path / "ck"
    result = CliRunner().invoke(
        app,
        ["train-crpo", "--model", MODEL, "--data", str(synthetic_train_set), "--out", str(out), "--algo", algo,
         "--max-steps", "3", "--group-size", "2", "--batch-size", "2", "--max-new-tokens", "6", "--no-progress"],
    )
    assert result.exit_code == 0, result.output
    rows = read_metrics(out)
    n_questions = len((synthetic_train_set / "manifest.jsonl").read_text().splitlines())
    assert [row["step"] for row in rows] == [1, 2, 3]
    for row in rows:
        assert row["epoch"] == round(row["step"] * 2 / n_questions, 4)
        assert math.isfinite(row["loss"]) and 0.0 <= row["kl"] < 1.0  # k3 KL >= 0; small after 3 steps at lr 1e-6
        assert 0.0 <= row["entropy"] and math.isfinite(row["grad_norm"]) and row["grad_norm"] >= 0.0
        assert row["lr"] == pytest.approx(1e-6) and 1.0 <= row["completion_length"] <= 6.0
        assert 0.0 < row["rollout_time_s"] <= row["step_time_s"]
        for name in ("acc/orig", "invalid_rate/orig", "reward/orig/correct", "reward/orig/format", "clip_fraction"):
            assert_rate(row[name])
        # The correctness term is the accuracy; a correct answer is a parsed one.
        assert row["reward/orig/correct"] == pytest.approx(row["acc/orig"])
        assert row["acc/orig"] <= 1.0 - row["invalid_rate/orig"] + 1e-9
        extra = {"crpo": row["reward/orig/crr"], "grpo": 0.0, "t-grpo": row["reward/orig/temporal"]}[algo]
        assert row["reward/orig/total"] == pytest.approx(row["reward/orig/correct"] + row["reward/orig/format"] + extra)
        # The spread of a group's total reward: totals lie in [0, 3] at most (correct + format + crr, or
        # format + behave + crr), and values in [0, M] have a standard deviation of at most M / 2.
        assert 0.0 <= row["reward_std/orig"] <= 1.5
        if algo == "crpo":
            assert 0.0 <= row["reward_std/cf"] <= 1.5
            for name in ("reward/cf/behave", "reward/cf/format", "reward/cf/crr", "reward/cf/correct", "acc/cf",
                         "answer_change_rate", "invalid_rate/cf"):
                assert_rate(row[name])
            # R_CRR^orig = [correct] x share that behaved <= [correct]; R_CRR^aug = [behaved] x acc <= [behaved]
            assert row["reward/orig/crr"] <= row["reward/orig/correct"] + 1e-9
            assert row["reward/cf/crr"] <= row["reward/cf/behave"] + 1e-9
            assert row["reward/cf/total"] == pytest.approx(
                row["reward/cf/format"] + row["reward/cf/behave"] + row["reward/cf/crr"])
        else:
            assert all(row[name] is None for name in ("reward/orig/crr", "reward/cf/behave", "reward/cf/total", "reward_std/cf",
                                                      "acc/cf", "answer_change_rate"))
        if algo == "t-grpo":
            assert_rate(row["acc/shuffled"])
            assert 0.0 <= row["reward/orig/temporal"] <= 0.3 * row["acc/orig"] + 1e-9  # alpha x correct, or 0
        else:
            assert row["reward/orig/temporal"] is None and row["acc/shuffled"] is None
    routes = json.loads((out / "routes.json").read_text())
    assert routes["router"] == "rules" and sum(routes["by_kind"].values()) == n_questions == len(routes["routes"])
    assert routes["by_source"] == {"task": n_questions}  # DyBench's own items: every route from the task table
    assert "routes:" in result.output and "by the task table" in result.output
    assert (out / "model.safetensors").is_file() and (out / "processor_config.json").is_file()
    assert (out / "train_config.yaml").is_file() and (out / "checkpoints" / "step-000003" / "state.pt").is_file()


@pytest.mark.slow
def test_trained_checkpoint_is_evaluated_by_dybench_eval_with_the_hf_backend(small_train_set: Path, tmp_path: Path, model_cache) -> None:
    from dybench.backends.registry import resolve_model

    out = Trainer(config(small_train_set, tmp_path / "ck", max_steps=1)).train()
    # Evaluated with the video settings it was trained with (frames, pixel budget).
    spec, trained_on = resolve_model(str(out)), resolve_model(MODEL)
    assert (spec.num_frames, spec.min_pixels, spec.max_pixels) == (trained_on.num_frames, trained_on.min_pixels, trained_on.max_pixels)
    run = tmp_path / "run"
    result = CliRunner().invoke(app, ["eval", "--model", str(out), "--backend", "hf", "--data", str(small_train_set),
                                      "--out", str(run), "--max-tokens", "4", "--no-progress"])
    assert result.exit_code == 0, result.output
    predictions = [json.loads(line) for line in (run / "predictions.jsonl").read_text().splitlines()]
    assert len(predictions) == len((small_train_set / "manifest.jsonl").read_text().splitlines())
    assert all(p["error"] is None and isinstance(p["output"], str) for p in predictions)
    assert json.loads((run / "scores.json").read_text())["n_items"] == len(predictions)


@pytest.mark.slow
def test_policy_learns_a_reward_that_favours_one_letter(small_train_set: Path, tmp_path: Path, model_cache) -> None:
    """Real optimisation, no mocks: reward 1 for answering "A" (one token), GRPO, lr 3e-4."""

    def favour_a(group) -> GroupRewards:
        rewards = [float(text.strip() == "A") for text in group.orig_texts]
        return GroupRewards(orig=rewards, second=[], terms={"orig/favoured": rewards})

    def prob_a(trainer: Trainer) -> float:
        tokenizer = trainer.tokenizer
        a_tokens = [i for i in range(len(tokenizer)) if tokenizer.decode([i]).strip() == "A"]
        prompts = trainer.encode(trainer.branches(trainer.questions[:4], 0)[0])
        with torch.no_grad():
            logits = trainer.accelerator.unwrap_model(trainer.model)(**prompts.inputs).logits[:, -1]
        return logits.softmax(-1)[:, a_tokens].sum(-1).mean().item()

    settings = config(small_train_set, tmp_path / "ck", algo="grpo", group_size=32, max_new_tokens=1,
                      lr=3e-4, beta=0.0, max_steps=40, save_every=1000)
    probabilities: list[float] = []
    trainer = Trainer(settings, reward_fn=favour_a,
                      callbacks=[lambda step, row, t: step in (1, 40) and probabilities.append(prob_a(t))])
    trainer.train()
    before, after = probabilities
    rows = read_metrics(tmp_path / "ck")
    early = sum(r["reward/orig/favoured"] for r in rows[:10]) / 10
    late = sum(r["reward/orig/favoured"] for r in rows[-10:]) / 10
    assert after > 3 * before and after > 0.02, (before, after)
    assert late > early


@pytest.mark.slow
def test_sft_lowers_the_loss_of_the_answer_tokens(small_train_set: Path, tmp_path: Path, model_cache) -> None:
    Trainer(config(small_train_set, tmp_path / "sft", algo="sft", lr=3e-4, batch_size=4, max_steps=12)).train()
    rows = read_metrics(tmp_path / "sft")
    assert rows[-1]["loss"] < 0.7 * rows[0]["loss"]
    assert rows[0]["kl"] is None and rows[0]["reward/orig/crr"] is None  # not produced by sft: null, not zero


@pytest.mark.slow
def test_resume_after_ctrl_c_repeats_the_uninterrupted_run_exactly(small_train_set: Path, tmp_path: Path, model_cache) -> None:
    straight, interrupted = tmp_path / "straight", tmp_path / "interrupted"
    Trainer(config(small_train_set, straight, max_steps=4, save_every=1)).train()

    def ctrl_c_after_step_2(step, row, trainer):
        if step == 2:
            raise KeyboardInterrupt

    with pytest.raises(TrainingInterrupted, match="step 2 saved"):
        Trainer(config(small_train_set, interrupted, max_steps=4, save_every=1),
                callbacks=[ctrl_c_after_step_2]).train()
    assert len(read_metrics(interrupted)) == 2
    Trainer(config(small_train_set, interrupted, max_steps=4, save_every=1), resume=True).train()
    assert without_timing(read_metrics(interrupted)) == without_timing(read_metrics(straight))
    a, b = load_file(straight / "model.safetensors"), load_file(interrupted / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow
def test_sigint_saves_a_checkpoint_and_resume_finishes(small_train_set: Path, tmp_path: Path, model_cache) -> None:
    out = tmp_path / "ck"
    command = [sys.executable, "-m", "dybench.cli", "train-crpo", "--model", MODEL, "--data", str(small_train_set),
               "--out", str(out), "--group-size", "2", "--max-new-tokens", "4", "--no-progress", "--save-every", "1000"]
    process = subprocess.Popen([*command, "--max-steps", "1000"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, env=os.environ.copy())
    deadline = time.time() + 120
    while time.time() < deadline and not ((out / "metrics.jsonl").is_file() and (out / "metrics.jsonl").read_text().count("\n") >= 2):
        time.sleep(0.2)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130 and "interrupted: checkpoint at step" in stderr
    saved = sorted((out / "checkpoints").iterdir())
    assert len(saved) == 1
    step = int(saved[0].name.split("-")[1])
    assert step >= 2
    resumed = subprocess.run([*command, "--max-steps", str(step + 1), "--resume"], capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert [row["step"] for row in read_metrics(out)] == list(range(1, step + 2))


@pytest.mark.slow
def test_lora_trains_adapters_and_exports_a_merged_model(small_train_set: Path, tmp_path: Path, model_cache) -> None:
    out = tmp_path / "lora"
    trainer = Trainer(config(small_train_set, out, algo="sft", lr=1e-3, max_steps=2, lora=LoraSettings(r=4, alpha=8)))
    trainer.train()
    state = torch.load(out / "checkpoints" / "step-000002" / "state.pt", weights_only=True)
    assert state["model"] and all("lora_" in key for key in state["model"])
    exported = load_file(out / "model.safetensors")
    base = load_file(trainer.policy.weights / "model.safetensors")
    assert not any("lora" in key for key in exported) and exported.keys() == base.keys()
    changed = [k for k in base if not torch.equal(base[k], exported[k])]
    assert changed and all("language_model" in k and "_proj" in k for k in changed)


@pytest.mark.slow
def test_two_processes_train_data_parallel_on_cpu(small_train_set: Path, tmp_path: Path, model_cache) -> None:
    """torchrun with 2 CPU processes (gloo): each takes its own questions; metrics are reduced over both."""
    out = tmp_path / "ddp"
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "-m", "dybench.cli", "train-crpo",
         "--model", MODEL, "--data", str(small_train_set), "--out", str(out), "--max-steps", "2", "--batch-size", "1",
         "--group-size", "2", "--max-new-tokens", "4", "--no-progress"],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    rows = read_metrics(out)
    n_questions = len((small_train_set / "manifest.jsonl").read_text().splitlines())
    assert [row["step"] for row in rows] == [1, 2]
    assert rows[-1]["epoch"] == round(2 * 2 / n_questions, 4)  # 2 steps x 1 question x 2 processes
    assert (out / "checkpoints" / "step-000002" / "rng-rank1.pt").is_file() and (out / "model.safetensors").is_file()
    assert result.stdout.count("done: checkpoint") == 1


@pytest.mark.slow
def test_ctrl_c_in_the_first_step_leaves_a_folder_that_starts_over(small_train_set: Path, tmp_path: Path, model_cache) -> None:
    """Nothing is saved before the first update, but the folder must not be stuck: with or without
    --resume the same command starts the run again from step 0."""

    def ctrl_c_in_rewards(group) -> GroupRewards:
        raise KeyboardInterrupt

    out = tmp_path / "ck"
    with pytest.raises(TrainingInterrupted, match="start over"):
        Trainer(config(small_train_set, out, algo="grpo", max_steps=1), reward_fn=ctrl_c_in_rewards).train()
    Trainer(config(small_train_set, out, algo="grpo", max_steps=1), resume=True).train()
    assert [row["step"] for row in read_metrics(out)] == [1]
    again = tmp_path / "again"
    with pytest.raises(TrainingInterrupted):
        Trainer(config(small_train_set, again, algo="grpo", max_steps=1), reward_fn=ctrl_c_in_rewards).train()
    Trainer(config(small_train_set, again, algo="grpo", max_steps=1)).train()  # without --resume
    assert [row["step"] for row in read_metrics(again)] == [1]


def test_a_swap_boundary_lost_by_frame_sampling_fails_before_the_model_loads(small_train_set: Path, tmp_path: Path,
                                                                             model_cache) -> None:
    """A first event shorter than half a sampling bin leaves no sampled frame before the boundary:
    the swapped clip cannot be made, which must be said before training, not at that item's step."""
    import shutil

    from dybench.families import load_data
    from dybench.train.trainer import prepare_questions

    data = tmp_path / "data"
    shutil.copytree(small_train_set, data)
    settings = config(data, tmp_path / "out", num_frames=2)  # frames 2 and 6 of the 8
    swapped = {q.id for q in prepare_questions(settings, load_data(str(data))) if q.route.transform == "swap_segments"}
    assert swapped
    rows = [json.loads(line) for line in (data / "manifest.jsonl").read_text().splitlines()]
    for row in rows:
        if row["id"] in swapped:
            row["meta"]["segment_boundary"] = 1  # no sampled frame before it
    (data / "manifest.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    with pytest.raises(DyBenchError, match=r"segment_boundary 1 .*no sampled frame before it"):
        Trainer(settings)
    assert not (tmp_path / "out").exists()


def test_swap_boundaries_are_checked_against_the_frames_sampling_by_fps_picks(small_train_set: Path, tmp_path: Path,
                                                                             model_cache) -> None:
    """Models whose default samples by rate (Qwen: 2 fps) get the same check, on the picks
    `dybench.video.load_clip` makes from the stream's timestamps (8 frames at 8 fps -> 2 at 2 fps)."""
    import shutil

    from dybench.families import load_data
    from dybench.store import VideoSettings
    from dybench.train.trainer import check_swap_boundaries, prepare_questions

    data = tmp_path / "data"
    shutil.copytree(small_train_set, data)
    by_rate = VideoSettings(fps=2.0)
    questions = prepare_questions(config(data, tmp_path / "out"), load_data(str(data)))
    assert any(q.route.transform == "swap_segments" for q in questions)
    check_swap_boundaries(load_data(str(data)), questions, by_rate)  # the built boundaries survive 2 fps
    rows = [json.loads(line) for line in (data / "manifest.jsonl").read_text().splitlines()]
    swapped = {q.id for q in questions if q.route.transform == "swap_segments"}
    for row in rows:
        if row["id"] in swapped:
            row["meta"]["segment_boundary"] = 7  # 2 fps picks frames 0 and 4: none from 7 on
    (data / "manifest.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    dataset = load_data(str(data))
    with pytest.raises(DyBenchError, match=r"segment_boundary 7 .*no sampled frame after it \(2 of 8"):
        check_swap_boundaries(dataset, prepare_questions(config(data, tmp_path / "out"), dataset), by_rate)


@pytest.mark.slow
def test_crpo_trains_a_question_of_unknown_kind_without_a_counterfactual_branch(small_train_set: Path, tmp_path: Path,
                                                                                model_cache) -> None:
    """User questions: one the rules route as temporal, one they cannot tell. Only the first gets a
    counterfactual clip and the relation reward; both are trained on their original clip."""
    data = tmp_path / "data"
    (data / "videos").mkdir(parents=True)
    source = [json.loads(line) for line in (small_train_set / "manifest.jsonl").read_text().splitlines()][:2]
    rows = []
    for index, (row, question) in enumerate(zip(source, ["Which event happens first?", "What does the woman pick up?"])):
        (data / row["video"]).write_bytes((small_train_set / row["video"]).read_bytes())
        rows.append(dict(id=f"user{index}", pair_id=f"user-pair{index}", task="user", category="user",
                         video=row["video"], question=question, options=["the cup", "the book"], answer="A"))
    (data / "manifest.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    trainer = Trainer(config(data, tmp_path / "ck", algo="crpo", max_steps=1))
    assert trainer.routes["by_kind"] == {"temporal": 1, "unknown": 1}
    orig, aux = trainer.branches(trainer.questions, 0)
    kinds = [q.route.kind for q in trainer.questions]
    temporal, unknown = kinds.index("temporal"), kinds.index("unknown")
    assert aux[unknown] is None
    assert aux[temporal] is not None and (aux[temporal].clip.frames == orig[temporal].clip.frames[::-1]).all()
    trainer.train()
    (row,) = read_metrics(tmp_path / "ck")
    assert 0.0 <= row["answer_change_rate/dynamic"] <= 1.0 and row["answer_change_rate/static"] is None
    assert json.loads((tmp_path / "ck" / "routes.json").read_text())["routes"]["user1"]["kind"] == "unknown"


@pytest.mark.slow
def test_a_step_whose_callbacks_were_interrupted_runs_them_again_on_resume(small_train_set: Path, tmp_path: Path,
                                                                          model_cache) -> None:
    """An interrupt inside a step callback (the lab evaluates the policy there) saves the step, and
    --resume runs that step's callbacks before training on, so no evaluation point is lost."""
    out = tmp_path / "ck"
    calls: list[tuple[int, int]] = []

    def interrupted_at_step_1(step, row, trainer):
        if step == 1:
            raise KeyboardInterrupt

    with pytest.raises(TrainingInterrupted, match="step 1 saved"):
        Trainer(config(small_train_set, out, algo="grpo", max_steps=2), callbacks=[interrupted_at_step_1]).train()
    Trainer(config(small_train_set, out, algo="grpo", max_steps=2), resume=True,
            callbacks=[lambda step, row, trainer: calls.append((step, row["step"]))]).train()
    assert calls == [(1, 1), (2, 2)]
