"""`dybench eval` end to end: resumable after SIGKILL, bad input fails fast, shards merge exactly.

Runs go through the real command line in a subprocess where the behaviour is about the process
(exit code, one-line errors, being killed). The test hook DYBENCH_TEST_SLEEP_AFTER_BATCH makes a
run slow enough to be killed halfway.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cli_errors import assert_one_line_error
from dybench.data import load_data
from dybench.evaluate import TEST_SLEEP_ENV, run_eval

CLI = [sys.executable, "-c", "from dybench.cli import main; main()"]


def dybench(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "COLUMNS": "200", **(env or {})})


def prediction_ids(run: Path) -> list[str]:
    return [json.loads(line)["id"] for line in (run / "predictions.jsonl").read_text().splitlines() if line.strip()]


def scores_of(run: Path) -> dict:
    return json.loads((run / "scores.json").read_text())


@pytest.fixture
def dataset_copy(synthetic_test_set, tmp_path) -> Path:
    """A private copy of the synthetic test set that a test may damage."""
    target = tmp_path / "data"
    shutil.copytree(synthetic_test_set, target)
    return target


def manifest_rows(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "manifest.jsonl").read_text().splitlines() if line.strip()]


def write_rows(folder: Path, rows: list[dict]) -> None:
    (folder / "manifest.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))


def test_constant_baseline_has_pair_accuracy_exactly_zero(synthetic_test_set, tmp_path):
    result = dybench("eval", "--model", "baseline:constant", "--data", str(synthetic_test_set),
                     "--out", str(tmp_path / "run"), "--no-progress")
    assert result.returncode == 0, result.stderr
    scores = scores_of(tmp_path / "run")
    assert scores["p_acc"] == 0.0
    assert scores["acc"] > 0.0  # it is right on one clip of many pairs: P-Acc, not Acc, exposes it
    assert sorted(prediction_ids(tmp_path / "run")) == sorted(i.id for i in load_data(str(synthetic_test_set)).items)
    assert "P-Acc" in result.stdout


def test_rerun_skips_finished_items_and_limit_keeps_pairs_whole(synthetic_test_set, tmp_path):
    run = tmp_path / "run"
    first = run_eval("baseline:random", str(synthetic_test_set), run, limit=3, progress=False)
    assert first["n_items"] == 4  # three items rounded up to two whole pairs
    run_eval("baseline:random", str(synthetic_test_set), run, progress=False)
    again = run_eval("baseline:random", str(synthetic_test_set), run, progress=False)
    ids = prediction_ids(run)
    assert len(ids) == len(set(ids)) == len(load_data(str(synthetic_test_set)).items)
    assert again["n_items"] == len(ids)


def test_sigkill_halfway_then_rerun_gives_every_item_once_and_the_same_scores(synthetic_test_set, tmp_path):
    args = ["eval", "--model", "baseline:random", "--data", str(synthetic_test_set), "--batch-size", "2", "--no-progress"]
    n_items = len(load_data(str(synthetic_test_set)).items)
    reference = dybench(*args, "--out", str(tmp_path / "whole"))
    assert reference.returncode == 0, reference.stderr

    run = tmp_path / "killed"
    process = subprocess.Popen([*CLI, *args, "--out", str(run)], env={**os.environ, TEST_SLEEP_ENV: "0.3"},
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    predictions = run / "predictions.jsonl"
    while time.monotonic() < deadline:
        done = len(predictions.read_text().splitlines()) if predictions.exists() else 0
        if done >= n_items // 2:
            break
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    partial = prediction_ids(run)
    assert 0 < len(partial) < n_items, "the run was not killed halfway"
    with predictions.open("a") as handle:
        handle.write('{"id": "half-written')  # what a kill in the middle of a write leaves

    rerun = dybench(*args, "--out", str(run))
    assert rerun.returncode == 0, rerun.stderr
    ids = prediction_ids(run)
    assert sorted(ids) == sorted(set(ids)) and len(ids) == n_items
    assert scores_of(run) == scores_of(tmp_path / "whole")


def test_ctrl_c_keeps_finished_batches_and_says_how_to_resume(synthetic_test_set, tmp_path):
    run = tmp_path / "run"
    process = subprocess.Popen(
        [*CLI, "eval", "--model", "baseline:constant", "--data", str(synthetic_test_set), "--out", str(run),
         "--batch-size", "1", "--no-progress"],
        env={**os.environ, TEST_SLEEP_ENV: "0.3", "COLUMNS": "200"}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )
    predictions = run / "predictions.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (predictions.exists() and predictions.read_text().count("\n") >= 2):
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130
    assert "Traceback" not in stderr and "rerun the same command to resume" in stderr
    assert len(prediction_ids(run)) >= 2


def test_corrupt_and_missing_clips_are_recorded_as_errors_and_scored_wrong(dataset_copy, tmp_path):
    rows = manifest_rows(dataset_copy)
    corrupt, missing = rows[0], rows[1]
    (dataset_copy / corrupt["video"]).write_bytes(b"\x00not a video at all" * 100)
    (dataset_copy / missing["video"]).unlink()
    result = dybench("eval", "--model", "baseline:motion", "--data", str(dataset_copy), "--out", str(tmp_path / "run"),
                     "--no-progress")
    assert result.returncode == 0, result.stderr
    by_id = {json.loads(line)["id"]: json.loads(line) for line in (tmp_path / "run" / "predictions.jsonl").open()}
    assert len(by_id) == len(rows)  # nothing dropped
    for row, words in ((corrupt, "cannot"), (missing, "not found")):
        assert by_id[row["id"]]["pred"] is None
        assert words in by_id[row["id"]]["error"]
    assert scores_of(tmp_path / "run")["n_items"] == len(rows)


def test_path_traversal_row_stops_the_run_before_any_work(dataset_copy, tmp_path):
    rows = manifest_rows(dataset_copy)
    rows[2]["video"] = "../../etc/passwd"
    write_rows(dataset_copy, rows)
    result = dybench("eval", "--model", "baseline:constant", "--data", str(dataset_copy), "--out", str(tmp_path / "run"))
    assert_one_line_error(result, "manifest.jsonl:3", "leaves the dataset folder")
    assert not (tmp_path / "run").exists()


def test_malformed_row_stops_the_run_naming_its_line(dataset_copy, tmp_path):
    rows = manifest_rows(dataset_copy)
    del rows[1]["question"]
    write_rows(dataset_copy, rows)
    result = dybench("eval", "--model", "baseline:constant", "--data", str(dataset_copy), "--out", str(tmp_path / "run"))
    assert_one_line_error(result, "manifest.jsonl:2", "question")
    assert not (tmp_path / "run").exists()


def test_unknown_model_fails_fast_with_one_line(synthetic_test_set, tmp_path):
    result = dybench("eval", "--model", "no-such-model-xyz", "--data", str(synthetic_test_set),
                     "--out", str(tmp_path / "run"))
    assert_one_line_error(result, "no-such-model-xyz")
    assert not (tmp_path / "run").exists()


def test_changed_settings_in_an_existing_run_directory_are_refused(synthetic_test_set, tmp_path):
    run = tmp_path / "run"
    run_eval("baseline:random", str(synthetic_test_set), run, limit=2, progress=False)
    result = dybench("eval", "--model", "baseline:random", "--data", str(synthetic_test_set), "--out", str(run),
                     "--seed", "7")
    assert_one_line_error(result, "sampling.seed", "new --out")


def test_shards_merged_equal_the_unsharded_run(synthetic_test_set, tmp_path):
    data = str(synthetic_test_set)
    whole = run_eval("baseline:random", data, tmp_path / "whole", progress=False)
    for index in range(3):
        run_eval("baseline:random", data, tmp_path / f"shard{index}", shard=f"{index}/3", progress=False)
    result = dybench("merge", *(str(tmp_path / f"shard{i}") for i in range(3)), "--out", str(tmp_path / "merged"))
    assert result.returncode == 0, result.stderr
    assert scores_of(tmp_path / "merged") == whole
    assert sorted(prediction_ids(tmp_path / "merged")) == sorted(prediction_ids(tmp_path / "whole"))
    overlap = dybench("merge", str(tmp_path / "shard0"), str(tmp_path / "whole"), "--out", str(tmp_path / "bad"))
    assert_one_line_error(overlap, "must not overlap")
