"""`dybench eval --data-parallel N`: N shard workers in one command, merged into one run folder that
equals a single-process run; a killed worker's shard resumes on rerun; signals reach every worker."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from cli_errors import assert_one_line_error
from dybench.data_parallel import shard_dir, worker_environments
from dybench.errors import DyBenchError

CLI = [sys.executable, "-c", "from dybench.cli import main; main()"]
TINY = ["--model", "tiny-random-qwen3-vl", "--backend", "hf", "--device", "cpu", "--num-frames", "4",
        "--max-tokens", "4", "--no-progress"]


def dybench(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=600,
                          env={**os.environ, "COLUMNS": "200"})


def answers(run: Path) -> dict[str, tuple]:
    rows = [json.loads(line) for line in (run / "predictions.jsonl").read_text().splitlines() if line.strip()]
    return {row["id"]: (row["key"], row.get("output"), row.get("pred"), row.get("error"), row.get("target"),
                        row.get("correct"), row.get("frame_indices"), row.get("frame_timestamps_s")) for row in rows}


def line_count(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.is_file() else 0


@pytest.fixture(scope="module")
def single_run(synthetic_test_set, tmp_path_factory, model_cache) -> Path:
    out = tmp_path_factory.mktemp("single") / "run"
    result = dybench("eval", *TINY, "--data", str(synthetic_test_set), "--out", str(out))
    assert result.returncode == 0, result.stderr
    return out


def test_two_workers_give_the_single_process_answers_in_one_folder(single_run, synthetic_test_set, tmp_path):
    out = tmp_path / "dp"
    result = dybench("eval", *TINY, "--data", str(synthetic_test_set), "--out", str(out), "--data-parallel", "2")
    assert result.returncode == 0, result.stderr
    assert answers(out) == answers(single_run)
    # The merged rows keep what each shard recorded: target, correctness, the 4 frames sent.
    assert all(row[4] and row[5] is not None and len(row[6]) == 4 for row in answers(out).values())
    assert json.loads((out / "scores.json").read_text()) == json.loads((single_run / "scores.json").read_text())
    merged = json.loads((out / "run.json").read_text())
    single = json.loads((single_run / "run.json").read_text())
    assert merged["fingerprint"] == single["fingerprint"] and merged["shard"] is None
    assert [Path(p).name for p in merged["merged_from"]] == ["0-of-2", "1-of-2"]
    shard_ids = [set(answers(shard_dir(out, i, 2))) for i in range(2)]
    assert shard_ids[0] and shard_ids[1] and not shard_ids[0] & shard_ids[1]


def _wait_for_first_answers(out: Path, parent: subprocess.Popen) -> list[psutil.Process]:
    """The parent's worker processes, once some shard has stored an answer."""
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        assert parent.poll() is None, parent.communicate()
        if any(line_count(shard_dir(out, i, 2) / "predictions.jsonl") for i in range(2)):
            workers = [p for p in psutil.Process(parent.pid).children() if "spawn" in " ".join(p.cmdline())]
            if len(workers) == 2:
                return workers
        time.sleep(0.05)
    raise AssertionError("no worker stored an answer in time")


def test_a_killed_worker_fails_the_command_and_its_shard_resumes(single_run, synthetic_test_set, tmp_path):
    out = tmp_path / "dp"
    args = ["eval", *TINY, "--data", str(synthetic_test_set), "--out", str(out), "--data-parallel", "2",
            "--batch-size", "1"]
    parent = subprocess.Popen([*CLI, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    workers = _wait_for_first_answers(out, parent)
    workers[0].kill()
    _, stderr = parent.communicate(timeout=300)
    assert parent.returncode == 2 and "Traceback" not in stderr
    [error] = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert "shard" in error and "worker died (killed by signal 9)" in error
    assert "rerun the same command to resume" in error
    total = len(answers(single_run))
    assert sum(line_count(shard_dir(out, i, 2) / "predictions.jsonl") for i in range(2)) < total
    assert not (out / "predictions.jsonl").exists()

    rerun = dybench(*args)
    assert rerun.returncode == 0, rerun.stderr
    assert answers(out) == answers(single_run)


@pytest.mark.parametrize("signum, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_stops_every_worker_and_the_rerun_finishes(single_run, synthetic_test_set, tmp_path, signum, code):
    out = tmp_path / "dp"
    args = ["eval", *TINY, "--data", str(synthetic_test_set), "--out", str(out), "--data-parallel", "2",
            "--batch-size", "1"]
    parent = subprocess.Popen([*CLI, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    workers = _wait_for_first_answers(out, parent)
    parent.send_signal(signum)
    _, stderr = parent.communicate(timeout=120)
    assert parent.returncode == code, stderr
    assert "Traceback" not in stderr and "rerun the same command to resume" in stderr
    assert not [w for w in workers if w.is_running() and w.status() != psutil.STATUS_ZOMBIE]

    rerun = dybench(*args)
    assert rerun.returncode == 0, rerun.stderr
    assert answers(out) == answers(single_run)


def test_bad_settings_fail_before_any_worker_starts(synthetic_test_set, tmp_path):
    out = tmp_path / "dp"
    result = dybench("eval", "--model", "baseline:motion", "--data", str(synthetic_test_set), "--out", str(out),
                     "--data-parallel", "2", "--limit", "4")
    assert_one_line_error(result, "--limit with --data-parallel")
    result = dybench("eval", "--model", "baseline:motion", "--data", str(tmp_path / "nowhere"), "--out", str(out),
                     "--data-parallel", "2")
    assert_one_line_error(result, "nowhere")
    assert not (out / "shards").exists()


def test_each_worker_is_pinned_to_its_own_gpus_or_its_share_of_the_cpu():
    assert worker_environments(2, 2, ["0", "1", "2", "3"], cpu_count=16) == [
        {"CUDA_VISIBLE_DEVICES": "0,1"}, {"CUDA_VISIBLE_DEVICES": "2,3"}]
    assert worker_environments(2, 1, ["4", "6"], cpu_count=16) == [
        {"CUDA_VISIBLE_DEVICES": "4"}, {"CUDA_VISIBLE_DEVICES": "6"}]
    cpu = worker_environments(2, 1, [], cpu_count=2)
    assert [env["OMP_NUM_THREADS"] for env in cpu] == ["1", "1"]
    with pytest.raises(DyBenchError, match="needs 4 GPUs; 2 visible"):
        worker_environments(2, 2, ["0", "1"], cpu_count=16)
