"""Paths and names are printed as written: rich markup in them (`[/]`, `[bold]`) neither crashes
a command nor turns into styling (dybench/escaping.py's `rich_text`)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

CLI = [sys.executable, "-c", "from dybench.entry import main; main()"]
MARKUP = "odd[/]name[bold]x"


def dybench(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "2000"}  # one path per line, not wrapped
    return subprocess.run([*CLI, *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=1200)


def assert_printed_as_written(result: subprocess.CompletedProcess, *texts: str) -> None:
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    for text in texts:
        assert text in result.stdout + result.stderr, result.stdout


@pytest.mark.slow
def test_train_crpo_prints_a_data_and_out_path_holding_markup(small_train_set: Path, tmp_path: Path, model_cache) -> None:
    data = tmp_path / f"data-{MARKUP}"
    data.parent.mkdir(parents=True)
    data.symlink_to(small_train_set, target_is_directory=True)
    out = tmp_path / f"ckpt-{MARKUP}"
    result = dybench("train-crpo", "--model", "tiny-random-qwen3-vl", "--data", str(data), "--out", str(out),
                     "--max-steps", "1", "--group-size", "2", "--batch-size", "1", "--max-new-tokens", "2",
                     "--no-progress", cwd=tmp_path)
    assert_printed_as_written(result, f"questions from {data}", f"-> {out}", f"checkpoint in {out}")


@pytest.mark.slow
def test_demo_prints_an_out_folder_holding_markup(tmp_path: Path, model_cache) -> None:
    out = tmp_path / f"demo-{MARKUP}"
    board = tmp_path / f"boards-{MARKUP}" / "demo.csv"
    result = dybench("demo", "--out", str(out), "--leaderboard", str(board), "--pairs-per-task", "1", cwd=tmp_path)
    assert_printed_as_written(result, f"pairs in {out}", f"wrote {board}", f"--data {out}")
    assert board.is_file()


@pytest.mark.slow
def test_lab_prints_an_out_folder_holding_markup(tmp_path: Path, model_cache) -> None:
    out = tmp_path / f"lab-{MARKUP}"
    with_progress = dybench("lab", "shortcut", "--out", str(out), "--quick", cwd=tmp_path)
    assert_printed_as_written(with_progress, f"{out / 'results.csv'}")
    again = dybench("lab", "shortcut", "--out", str(out), "--quick", "--no-progress", cwd=tmp_path)
    assert_printed_as_written(again, f"done: {out / 'summary.md'}")


def test_a_data_parallel_eval_prints_an_out_folder_holding_markup(synthetic_test_set: Path, tmp_path: Path) -> None:
    out = tmp_path / f"eval-{MARKUP}"
    result = dybench("eval", "--model", "baseline:constant", "--data", str(synthetic_test_set), "--out", str(out),
                     "--data-parallel", "2", "--no-progress", cwd=tmp_path)
    assert_printed_as_written(result, f"wrote {out / 'predictions.jsonl'}", f"(shards in {out / 'shards'})")
