"""`dybench eval` end to end: resumable after SIGKILL, bad input fails fast, shards merge exactly.

Runs go through the real command line in a subprocess where the behaviour is about the process
(exit code, one-line errors, being killed). A test plugin (tests/slow_runs.py) makes a
run slow enough to be killed halfway.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from cli_errors import assert_one_line_error
from trickle import write_trickling
from dybench.families import load_data
from dybench.evaluate import run_eval
from slow_runs import slow_batches

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
    process = subprocess.Popen([*CLI, *args, "--out", str(run)], env={**os.environ, **slow_batches(0.3)},
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
        env={**os.environ, **slow_batches(0.3), "COLUMNS": "200"}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
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


# --- interrupts at any point: SIGINT and SIGTERM, kept answers, no process left behind ---------

EXIT_CODES = {signal.SIGINT: 130, signal.SIGTERM: 143}


def command_line(pid: int) -> str:
    try:
        return f"{pid}: " + Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return f"{pid}: (gone)"


def processes_in_group(group: int) -> list[int]:
    """Live processes of a process group (a command started with start_new_session=True leads one)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if fields[0] != "Z" and int(fields[2]) == group:
            found.append(int(entry.name))
    return found


def wait_until(condition, timeout_s: float = 120.0, step_s: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(step_s)
    return False


def n_stored(run: Path) -> int:
    path = run / "predictions.jsonl"
    return path.read_bytes().count(b"\n") if path.exists() else 0


class Interrupted:
    """A `dybench eval` subprocess in its own process group, stopped with a real signal."""

    def __init__(self, args: list[str], env: dict[str, str] | None = None):
        self.process = subprocess.Popen([*CLI, *args], env={**os.environ, "COLUMNS": "200", **(env or {})},
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                        start_new_session=True)

    def stop(self, signum: int, timeout_s: float = 60.0) -> tuple[int, float, str]:
        """Send `signum`; returns (exit code, seconds until it exited, stderr)."""
        sent = time.monotonic()
        self.process.send_signal(signum)
        _, stderr = self.process.communicate(timeout=timeout_s)
        elapsed = time.monotonic() - sent
        left = processes_in_group(self.process.pid)
        exiting_until = time.monotonic() + 5  # a process already on its way out is not left behind
        while left and time.monotonic() < exiting_until:
            time.sleep(0.1)
            left = processes_in_group(self.process.pid)
        assert not left, f"processes outlived the command: {[command_line(pid) for pid in left]}"
        return self.process.returncode, elapsed, stderr


def assert_complete_and_equal(run: Path, reference: Path, n_items: int) -> None:
    ids = prediction_ids(run)
    assert len(ids) == len(set(ids)) == n_items
    assert scores_of(run) == scores_of(reference)


INTERRUPT_POINTS = ["run folder created", "first batch stored", "halfway", "last batch"]


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
@pytest.mark.parametrize("point", INTERRUPT_POINTS)
def test_baseline_eval_interrupted_at_any_point_resumes_to_the_uninterrupted_result(
        synthetic_test_set, tmp_path, signum, point):
    args = ["eval", "--model", "baseline:random", "--data", str(synthetic_test_set), "--batch-size", "2", "--no-progress"]
    n_items = len(load_data(str(synthetic_test_set)).items)
    reference = dybench(*args, "--out", str(tmp_path / "whole"))
    assert reference.returncode == 0, reference.stderr

    run = tmp_path / "run"
    command = Interrupted([*args, "--out", str(run)], env={**slow_batches(0.1)})
    if point == "run folder created":
        assert wait_until(lambda: (run / "run.json").exists()), "the run did not start"
    else:
        wanted = {"first batch stored": 2, "halfway": n_items // 2, "last batch": n_items - 2}[point]
        assert wait_until(lambda: n_stored(run) >= wanted), "the run did not get that far"
    code, elapsed, stderr = command.stop(signum)
    assert code == EXIT_CODES[signum], stderr
    assert "Traceback" not in stderr and "rerun the same command to resume" in stderr
    assert elapsed < 5.0

    rerun = Interrupted([*args, "--out", str(run)])
    _, stderr = rerun.process.communicate(timeout=300)
    assert rerun.process.returncode == 0, stderr
    assert not processes_in_group(rerun.process.pid)
    assert_complete_and_equal(run, tmp_path / "whole", n_items)


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_hf_eval_interrupted_while_loading_and_while_generating_resumes_to_the_same_result(
        synthetic_test_set, tmp_path, signum):
    cache = {"DYBENCH_CACHE": str(tmp_path / "cache")}
    args = ["eval", "--model", "tiny-random-qwen3-vl", "--backend", "hf", "--device", "cpu", "--data",
            str(synthetic_test_set), "--limit", "6", "--num-frames", "4", "--max-tokens", "2", "--batch-size", "1",
            "--no-progress"]
    reference = dybench(*args, "--out", str(tmp_path / "whole"), env=cache)
    assert reference.returncode == 0, reference.stderr[-2000:]

    run = tmp_path / "run"
    loading = Interrupted([*args, "--out", str(run)], env=cache)
    # torch is imported only when the hf backend starts: from then on the checkpoint is loading
    assert wait_until(lambda: "libtorch" in Path(f"/proc/{loading.process.pid}/maps").read_text(), timeout_s=240)
    code, elapsed, stderr = loading.stop(signum)
    assert code == EXIT_CODES[signum] and "Traceback" not in stderr and elapsed < 10.0, stderr[-2000:]

    generating = Interrupted([*args, "--out", str(run)], env={**cache, **slow_batches(0.5)})
    assert wait_until(lambda: n_stored(run) >= 2, timeout_s=240)
    code, elapsed, stderr = generating.stop(signum)
    assert code == EXIT_CODES[signum] and "rerun the same command to resume" in stderr, stderr[-2000:]
    assert elapsed < 10.0

    rerun = dybench(*args, "--out", str(run), env=cache)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert_complete_and_equal(run, tmp_path / "whole", 6)


class SlowServer(BaseHTTPRequestHandler):
    """An OpenAI-compatible server on 127.0.0.1 that answers the first `n_quick` chat requests at
    once and then misbehaves: "trickle" sends one byte of each reply every 0.2 s, "hang" never replies."""

    n_quick = 0
    behaviour = "trickle"
    answered = 0
    lock = threading.Lock()
    stop = threading.Event()

    def log_message(self, *args) -> None:
        pass

    def _reply(self, body: dict, slow: bool = False) -> None:
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if not slow:
            self.wfile.write(data)
            return
        write_trickling(self.wfile, data, type(self).stop)

    def do_GET(self) -> None:
        self._reply({"object": "list", "data": [{"id": "slow-model", "owned_by": "someone"}]})

    def do_POST(self) -> None:
        server = type(self)
        self.rfile.read(int(self.headers["Content-Length"]))
        with server.lock:
            quick = server.answered < server.n_quick
            server.answered += quick
        reply = {"choices": [{"message": {"role": "assistant", "content": "Answer: B"}}]}
        if quick:
            self._reply(reply)
        elif server.behaviour == "hang":
            server.stop.wait(120)
        else:
            self._reply(reply, slow=True)


@pytest.fixture
def slow_server():
    SlowServer.n_quick, SlowServer.answered, SlowServer.behaviour = 0, 0, "trickle"
    SlowServer.stop = threading.Event()
    server = ThreadingHTTPServer(("127.0.0.1", 0), SlowServer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    SlowServer.stop.set()
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("behaviour", ["trickle", "hang"])
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_interrupting_a_run_against_a_slow_server_exits_at_once_and_keeps_the_answers_that_came(
        synthetic_test_set, slow_server, tmp_path, signum, behaviour):
    n_items = 8
    args = ["eval", "--model", "qwen3-vl-8b", "--backend", "openai", "--base-url", slow_server, "--data",
            str(synthetic_test_set), "--limit", str(n_items), "--batch-size", str(n_items), "--concurrency", "8",
            "--request-timeout", "300", "--no-progress"]
    SlowServer.n_quick, SlowServer.behaviour = 5, behaviour
    run = tmp_path / "run"
    command = Interrupted([*args, "--out", str(run)])
    assert wait_until(lambda: SlowServer.answered >= 5)
    time.sleep(0.5)  # the five answers are in; the other three are trickling in or never coming
    code, elapsed, stderr = command.stop(signum, timeout_s=200)
    assert code == EXIT_CODES[signum], stderr
    assert elapsed < 3.0, f"took {elapsed:.1f} s to stop"
    assert "Traceback" not in stderr and "rerun the same command to resume" in stderr
    kept = prediction_ids(run)
    assert len(kept) == 5 and len(set(kept)) == 5  # every answer that arrived, nothing invented

    SlowServer.n_quick, asked_before = 10**6, SlowServer.answered  # the server recovers
    rerun = dybench(*args, "--out", str(run))
    assert rerun.returncode == 0, rerun.stderr
    assert SlowServer.answered - asked_before == n_items - 5  # only the missing items were asked again
    reference = dybench(*args, "--out", str(tmp_path / "whole"))
    assert reference.returncode == 0, reference.stderr
    assert_complete_and_equal(run, tmp_path / "whole", n_items)


def test_request_timeout_bounds_every_request_of_a_run(synthetic_test_set, slow_server, tmp_path):
    SlowServer.behaviour = "trickle"
    start = time.monotonic()
    result = dybench("eval", "--model", "qwen3-vl-8b", "--backend", "openai", "--base-url", slow_server,
                     "--data", str(synthetic_test_set), "--limit", "2", "--concurrency", "2",
                     "--request-timeout", "1", "--out", str(tmp_path / "run"), "--no-progress")
    assert result.returncode == 0, result.stderr
    assert time.monotonic() - start < 60
    rows = [json.loads(line) for line in (tmp_path / "run" / "predictions.jsonl").read_text().splitlines()]
    assert len(rows) == 2 and all(row["pred"] is None and "1 s" in row["error"] for row in rows)


def descendants(pid: int) -> list[int]:
    """Every live process whose chain of parents leads to `pid`."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            fields = stat[stat.rindex(")") + 2 :].split()
            if fields[0] != "Z":
                parents[int(entry.name)] = int(fields[1])
    found, frontier = [], [pid]
    while frontier:
        parent = frontier.pop()
        children = [child for child, ppid in parents.items() if ppid == parent]
        found.extend(children)
        frontier.extend(children)
    return found


@pytest.mark.slow
def test_a_sigtermed_vllm_eval_leaves_no_engine_process_behind(synthetic_test_set, tmp_path):
    pytest.importorskip("vllm")
    run = tmp_path / "run"
    command = Interrupted(
        ["eval", "--model", "tiny-random-qwen3-vl", "--backend", "vllm", "--max-model-len", "2048", "--data",
         str(synthetic_test_set), "--limit", "6", "--num-frames", "4", "--max-tokens", "2", "--batch-size", "1",
         "--no-progress", "--out", str(run)],
        env={"DYBENCH_CACHE": str(tmp_path / "cache"), **slow_batches(1.0)},
    )
    assert wait_until(lambda: n_stored(run) >= 1 or command.process.poll() is not None, timeout_s=500)
    assert command.process.poll() is None, command.process.communicate()[1][-3000:]
    engine = descendants(command.process.pid)
    assert engine, "the vLLM engine runs in a process of its own"
    code, elapsed, stderr = command.stop(signal.SIGTERM, timeout_s=120)
    assert code == 143 and "rerun the same command to resume" in stderr, stderr[-3000:]
    alive = [pid for pid in engine if is_alive(pid)]  # also those that left the process group
    assert not alive, f"engine processes outlived the command: {alive}"


def is_alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2 :].split()[0] != "Z"
