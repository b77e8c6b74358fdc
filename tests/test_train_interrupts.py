"""SIGINT and SIGTERM at any point of `dybench train-crpo` leave a folder that the same command
(with --resume) finishes, with the same metrics and weights as an uninterrupted run, and no process
of the command outlives it. Real subprocesses, real signals, the tiny Qwen3-VL on CPU.

A test plugin (tests/plugins/pause_points.py, `pause=PHASE:SECONDS`) makes the trainer stop once at a known
point and say so with a marker file, so a signal lands in model loading, in the first step's
rollouts or in the optimizer update rather than wherever the scheduler happens to be.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from dybench.train.metrics import TIMING_COLUMNS, read_metrics
from signal_runs import interrupt

MODEL = "tiny-random-qwen3-vl"
STEPS = 5


def command(data: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "dybench.cli", "train-crpo", "--model", MODEL, "--data", str(data), "--out",
            str(out), "--max-steps", str(STEPS), "--group-size", "2", "--max-new-tokens", "4", "--save-every",
            "1000", "--no-progress", *extra]


def metrics_rows(out: Path) -> int:
    path = out / "metrics.jsonl"
    return path.read_text().count("\n") if path.is_file() else 0


def without_timing(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in row.items() if k not in TIMING_COLUMNS} for row in rows]


@pytest.mark.slow
def test_signals_at_every_stage_then_resume_give_the_uninterrupted_run(small_train_set: Path, tmp_path: Path,
                                                                        model_cache) -> None:
    straight, out = tmp_path / "straight", tmp_path / "interrupted"
    done = subprocess.run(command(small_train_set, straight), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    resume = command(small_train_set, out, "--resume")
    marker = lambda phase: (lambda: (out / f".paused-{phase}").is_file())  # noqa: E731

    # 1. SIGTERM while the model loads: nothing to save, and the folder says how to start over.
    message = interrupt(command(small_train_set, out), signal.SIGTERM, marker("load"), "model loading",
                        pause="load:60")
    assert "start over" in message
    # 2. Ctrl-C in the first step's rollouts, on the rerun with --resume (it starts from step 0).
    message = interrupt(resume, signal.SIGINT, marker("rollout"), "the first rollouts", pause="rollout:60")
    assert "start over" in message and not (out / "checkpoints").exists()
    # 3. SIGTERM during the optimizer update: the update finishes, then step 1 is saved.
    message = interrupt(resume, signal.SIGTERM, marker("update"), "the first update", pause="update:3")
    assert "checkpoint at step 1" in message and "--resume" in message
    # 4. Ctrl-C mid-run.
    message = interrupt(resume, signal.SIGINT, lambda: metrics_rows(out) >= 3, "step 2")
    assert "--resume" in message
    # Without --resume the message says to pass it (the folder holds a saved run).
    refused = subprocess.run(command(small_train_set, out), capture_output=True, text=True)
    assert refused.returncode == 2 and "--resume" in refused.stderr

    finished = subprocess.run(resume, capture_output=True, text=True)
    assert finished.returncode == 0, finished.stderr[-2000:]
    assert without_timing(read_metrics(out)) == without_timing(read_metrics(straight))
    a, b = load_file(straight / "model.safetensors"), load_file(out / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
