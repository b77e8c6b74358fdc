"""Entries added from modules outside the package (tests/plugins/), through the public command
line, with no edit inside dybench/: what docs/architecture.md promises a plugin author."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

PLUGINS = Path(__file__).parent / "plugins"


def dybench(*args: str, plugin: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DYBENCH_PLUGINS": str(PLUGINS / plugin)}
    return subprocess.run([sys.executable, "-m", "dybench.cli", *args], capture_output=True, text=True, env=env)


def test_a_plugin_algorithm_is_offered_by_train_crpo_help() -> None:
    done = dybench("train-crpo", "--help", plugin="short_answer_grpo.py")
    assert done.returncode == 0, done.stderr
    assert "grpo-short" in done.stdout


@pytest.mark.slow
def test_a_plugin_rl_algorithm_trains_with_its_own_reward(small_train_set: Path, tmp_path: Path, model_cache) -> None:
    out = tmp_path / "run"
    done = dybench("train-crpo", "--model", "tiny-random-qwen3-vl", "--data", str(small_train_set), "--out", str(out),
                   "--algo", "grpo-short", "--max-steps", "2", "--group-size", "2", "--max-new-tokens", "4",
                   "--no-progress", plugin="short_answer_grpo.py")
    assert done.returncode == 0, done.stderr[-2000:]
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 2
    for row in rows:
        # The plugin's term is logged, and the total is GRPO's terms plus its weighted bonus.
        short = row["reward/orig/short"]
        assert 0.0 <= short <= 1.0
        expected = row["reward/orig/correct"] + row["reward/orig/format"] + 0.5 * short
        assert row["reward/orig/total"] == pytest.approx(expected)
        assert row["acc/cf"] is None  # one branch, like GRPO
    assert "algo: grpo-short" in (out / "train_config.yaml").read_text()


def test_an_unknown_algorithm_names_the_known_ones_including_plugins(small_train_set: Path, tmp_path: Path) -> None:
    done = dybench("train-crpo", "--model", "tiny-random-qwen3-vl", "--data", str(small_train_set), "--out",
                   str(tmp_path / "run"), "--algo", "nope", plugin="short_answer_grpo.py")
    assert done.returncode == 2
    assert "unknown algorithm 'nope'" in done.stderr and "grpo-short" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_plugin_backend_answers_through_dybench_eval_and_its_answers_are_scored(synthetic_test_set: Path,
                                                                                 tmp_path: Path) -> None:
    from dybench.families import load_data

    items = load_data(str(synthetic_test_set)).items
    # Right on the first half, wrong on the next quarter, no answer on the rest.
    half, three_quarters = len(items) // 2, 3 * len(items) // 4
    wrong = {item.id: "A" if item.answer != "A" else "B" for item in items[half:three_quarters]}
    script = {**{item.id: item.answer for item in items[:half]}, **wrong}
    (tmp_path / "script.json").write_text(json.dumps(script))
    env_plugin = {"SCRIPTED_ANSWERS": str(tmp_path / "script.json")}
    out = tmp_path / "run"
    done = subprocess.run([sys.executable, "-m", "dybench.cli", "eval", "--model", "scripted", "--data",
                           str(synthetic_test_set), "--out", str(out), "--no-progress"], capture_output=True, text=True,
                          env={**os.environ, **env_plugin, "DYBENCH_PLUGINS": str(PLUGINS / "scripted_backend.py")})
    assert done.returncode == 0, done.stderr[-2000:]
    rows = {row["id"]: row for row in map(json.loads, (out / "predictions.jsonl").read_text().splitlines())}
    assert set(rows) == {item.id for item in items}
    assert all(rows[item_id]["pred"] == letter for item_id, letter in script.items())
    scores = json.loads((out / "scores.json").read_text())
    assert scores["n_correct"] == half
    assert scores["n_invalid"] == len(items) - three_quarters
    assert json.loads((out / "run.json").read_text())["backend"] == "scripted"


def test_a_plugin_metric_lands_in_scores_json_and_in_the_leaderboard_csv(synthetic_test_set: Path,
                                                                          tmp_path: Path) -> None:
    import pandas as pd

    run, board = tmp_path / "run", tmp_path / "board.csv"
    done = dybench("eval", "--model", "baseline:motion", "--data", str(synthetic_test_set), "--out", str(run),
                   "--no-progress", plugin="first_option_metric.py")
    assert done.returncode == 0, done.stderr[-2000:]
    rows = [json.loads(line) for line in (run / "predictions.jsonl").read_text().splitlines()]
    answered = [row["pred"] for row in rows if row["pred"] is not None]
    expected = sum(pred == "A" for pred in answered) / len(answered)
    assert 0 < expected < 1  # a check that can tell a wrong share from the right one
    block = json.loads((run / "scores.json").read_text())["first_option"]
    assert block == {"rate": pytest.approx(expected), "n_answered": len(answered)}

    published = dybench("leaderboard", "publish", str(run), "--out", str(board), plugin="first_option_metric.py")
    assert published.returncode == 0, published.stderr[-2000:]
    assert pd.read_csv(board)["first_option_rate"].tolist() == [pytest.approx(expected)]
