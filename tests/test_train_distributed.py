"""Data-parallel training on two CPU processes (gloo), launched as users launch it: torchrun and
accelerate's multi-process launcher. The ranks share out each global batch, their gradients are
averaged (their weights agree after every update, and equal a one-process run with the same global
batch), a resumed run continues, and the exported checkpoint evaluates."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from dybench.train.metrics import RANKS, read_metrics

MODEL = "tiny-random-qwen3-vl"
# Supervised updates: every question has a non-zero gradient, and the ranks' gradients differ, so
# weights agree across ranks only if the gradients were averaged.
def settings(batch_size: int = 2) -> list[str]:
    return ["--model", MODEL, "--algo", "sft", "--batch-size", str(batch_size), "--group-size", "2",
            "--max-new-tokens", "6", "--lr", "1e-3", "--no-progress"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def launch(launcher: list[str], *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MASTER_ADDR": "127.0.0.1", "COLUMNS": "200"}
    result = subprocess.run([*launcher, "-m", "dybench.cli", "train-crpo", *args], capture_output=True, text=True,
                            timeout=600, env=env)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    return result


def torchrun() -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(free_port())]


def accelerate_multi_process() -> list[str]:
    # accelerate's `--cpu` flag runs ONE process whatever --num_processes says; its multi-process
    # launcher is `--multi_gpu`, which on a machine without GPUs runs the processes on CPUs (gloo).
    return [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
            "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
            "--main_process_port", str(free_port())]


def rank_log(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / RANKS).read_text().splitlines()]


def weights(out: Path) -> dict[str, torch.Tensor]:
    return load_file(out / "model.safetensors")


@pytest.mark.slow
def test_two_processes_share_the_batch_average_gradients_resume_and_export(small_train_set, tmp_path, model_cache):
    out = tmp_path / "two"
    launch(torchrun(), *settings(), "--data", str(small_train_set), "--out", str(out), "--max-steps", "2")
    launch(torchrun(), *settings(), "--data", str(small_train_set), "--out", str(out), "--max-steps", "3", "--resume")

    log = rank_log(out)
    assert [row["step"] for row in log] == [1, 2, 3]
    seen: list[str] = []
    for row in log:
        first, second = row["questions"]
        assert len(first) == len(second) == 2 and not set(first) & set(second)  # each rank its own questions
        seen += first + second
        assert row["weights"][0] == row["weights"][1]  # the same weights on both ranks after the update
    assert len(seen) == len(set(seen))  # 12 of the 18 questions, none twice within the epoch
    assert len({row["weights"][0] for row in log}) == 3  # and they did change at every update
    assert [row["step"] for row in read_metrics(out)] == [1, 2, 3]

    # The same global batch (4 questions) in one process: the same losses and, to float error, weights.
    single = tmp_path / "one"
    launch([sys.executable], *settings(batch_size=4), "--data", str(small_train_set), "--out", str(single), "--max-steps", "3")
    assert not (single / RANKS).exists()
    assert [round(r["loss"], 4) for r in read_metrics(out)] == [round(r["loss"], 4) for r in read_metrics(single)]
    two, one = weights(out), weights(single)
    assert two.keys() == one.keys()
    assert max((two[k].float() - one[k].float()).abs().max().item() for k in two) < 1e-4

    evaluated = subprocess.run(
        [sys.executable, "-m", "dybench.cli", "eval", "--model", str(out), "--backend", "hf", "--device", "cpu",
         "--data", str(small_train_set), "--out", str(tmp_path / "eval"), "--limit", "2", "--no-progress"],
        capture_output=True, text=True, timeout=600)
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    assert json.loads((tmp_path / "eval" / "scores.json").read_text())["n_items"] >= 2


@pytest.mark.slow
def test_accelerates_multi_process_launcher_runs_two_ranks_on_cpus(small_train_set, tmp_path, model_cache):
    out = tmp_path / "accelerate"
    launch(accelerate_multi_process(), *settings(), "--data", str(small_train_set), "--out", str(out), "--max-steps", "1")
    [row] = rank_log(out)
    assert len(row["questions"]) == 2 and row["weights"][0] == row["weights"][1]
