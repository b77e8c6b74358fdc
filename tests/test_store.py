"""The run directory: resumable append-only predictions, run.json, shards and merging."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cli_errors import assert_one_line_error
from dybench.families import load_data
from dybench.errors import DyBenchError
from slow_runs import slow_batches
from dybench.families import template_for
from dybench.schema import Item, Prediction
from dybench.store import (
    DatasetRef,
    PredictionStore,
    RunConfig,
    ShardSpec,
    VideoSettings,
    merge_runs,
    open_run,
    parse_shard,
    read_run_config,
    shard_items,
)


def make_config(**overrides) -> RunConfig:
    values = dict(
        model="baseline:constant",
        backend="baseline:constant",
        backend_settings={"baseline": "constant"},
        video=VideoSettings(num_frames=8),
        prompt=template_for("synthetic"),
        sampling={"max_tokens": 64, "temperature": 0.0, "top_p": 1.0, "seed": 0},
        dataset=DatasetRef(spec="/data/ds", name="ds", family="synthetic", n_items=4),
        dataset_fingerprint="abc123",
    )
    values.update(overrides)
    return RunConfig(**values)


def rows(store: PredictionStore, ids: list[str]) -> list[Prediction]:
    return [Prediction(id=i, key=store.key(i), output="Answer: A", pred="A") for i in ids]


def make_items(n_pairs: int) -> list[Item]:
    items = []
    for p in range(n_pairs):
        for side, answer in (("a", "A"), ("b", "B")):
            items.append(Item(id=f"p{p:02d}{side}", pair_id=f"p{p:02d}", task="t", category="c", video="v.mp4",
                              question="q", options=["x", "y"], answer=answer))
    return items


def test_appended_batches_are_read_back_by_item_id(tmp_path):
    store = open_run(tmp_path / "run", make_config())
    store.append(rows(store, ["a", "b"]))
    store.append(rows(store, ["c"]))
    assert sorted(store.load()) == ["a", "b", "c"]


def test_a_batch_is_on_disk_as_soon_as_append_returns(tmp_path):
    store = open_run(tmp_path / "run", make_config())
    with store.appender() as appender:
        appender.append(rows(store, ["a", "b"]))
        # Another process (a rerun after SIGKILL) would see the batch now, before any close.
        assert sorted(PredictionStore(store.run_dir, store.fingerprint).load()) == ["a", "b"]


def test_truncated_last_line_is_ignored_and_cut_before_the_next_append(tmp_path):
    run = tmp_path / "run"
    store = open_run(run, make_config())
    store.append(rows(store, ["a", "b"]))
    with store.path.open("a") as handle:
        handle.write('{"id": "c", "key": "')  # a crash in the middle of a write
    assert sorted(store.load()) == ["a", "b"]

    resumed = open_run(run, make_config())
    resumed.append(rows(resumed, ["c"]))
    lines = store.path.read_text().splitlines()
    assert [json.loads(line)["id"] for line in lines] == ["a", "b", "c"]


def test_corrupt_line_in_the_middle_stops_with_file_and_line(tmp_path):
    store = open_run(tmp_path / "run", make_config())
    store.append(rows(store, ["a"]))
    with store.path.open("a") as handle:
        handle.write("garbage\n")
    store.append(rows(store, ["b"]))
    with pytest.raises(DyBenchError, match=r"predictions.jsonl:2: not a prediction row"):
        store.load()


def test_rows_made_with_other_settings_are_refused(tmp_path):
    store = open_run(tmp_path / "run", make_config())
    other = PredictionStore(store.run_dir, "0" * 16)
    store.append(rows(other, ["a"]))
    with pytest.raises(DyBenchError, match="different settings"):
        store.load()


def test_same_settings_resume_and_keep_the_creation_time(tmp_path):
    run = tmp_path / "run"
    first = open_run(run, make_config())
    created = read_run_config(run).created
    second = open_run(run, make_config(command=["dybench", "eval", "again"]))
    assert second.fingerprint == first.fingerprint
    assert read_run_config(run).created == created


def test_different_settings_in_the_same_directory_are_refused_naming_what_changed(tmp_path):
    run = tmp_path / "run"
    open_run(run, make_config())
    with pytest.raises(DyBenchError, match=r"changed: sampling.max_tokens, video.num_frames.*new --out"):
        open_run(run, make_config(sampling={"max_tokens": 8, "temperature": 0.0, "top_p": 1.0, "seed": 0},
                                  video=VideoSettings(num_frames=16)))


def test_shard_versions_command_and_speed_settings_do_not_change_the_fingerprint():
    base = make_config().sealed().fingerprint
    other = make_config(shard=ShardSpec(index=1, count=4), versions={"torch": "9"}, command=["x"]).sealed()
    assert other.fingerprint == base
    assert make_config(probe="blank").sealed().fingerprint != base
    faster = make_config(backend_settings={"baseline": "constant", "concurrency": 64}).sealed()
    assert faster.fingerprint == base  # speed settings do not change the answers


def test_where_the_weights_were_found_does_not_change_the_fingerprint_but_their_settings_do():
    def hf(**settings):
        return make_config(model="qwen3-vl-8b", backend="hf", backend_settings={"dtype": "bfloat16", **settings}).sealed()

    here = hf(weights="/root/.cache/huggingface/hub/models--Qwen--Qwen3-VL-8B-Instruct/snapshots/1")
    elsewhere = hf(weights="/data/models/Qwen3-VL-8B-Instruct")
    assert here.fingerprint == elsewhere.fingerprint  # the same leaderboard row on every machine
    assert hf(weights="/data/models/x", dtype="float32").fingerprint != here.fingerprint


def test_a_run_resumes_under_the_fingerprint_it_started_with(tmp_path):
    config = make_config()
    store = open_run(tmp_path, config)
    store.append(rows(store, ["a", "b"]))
    run = json.loads((tmp_path / "run.json").read_text())
    run["fingerprint"] = "0123456789abcdef"  # as written by an older recipe for the same settings
    (tmp_path / "run.json").write_text(json.dumps(run))
    (tmp_path / "predictions.jsonl").write_text(
        (tmp_path / "predictions.jsonl").read_text().replace(config.sealed().fingerprint, "0123456789abcdef")
    )
    assert set(open_run(tmp_path, config).load()) == {"a", "b"}


def test_run_json_records_what_is_needed_to_reproduce(tmp_path):
    run = tmp_path / "run"
    open_run(run, make_config(versions={"dybench": "0.1.0"}, command=["dybench", "eval"]))
    saved = json.loads((run / "run.json").read_text())
    for field in ("model", "backend", "backend_settings", "video", "prompt", "sampling", "dataset",
                  "dataset_fingerprint", "versions", "command", "fingerprint", "shard"):
        assert field in saved
    assert saved["prompt"]["instruction"].startswith("Answer with the option's letter")


@pytest.mark.parametrize("text", ["4/4", "1", "a/b", "-1/2", "0/0"])
def test_bad_shard_specs_are_refused(text):
    with pytest.raises(DyBenchError, match="--shard"):
        parse_shard(text)


def test_shards_partition_the_items_and_keep_pairs_together():
    items = make_items(10)
    shards = [shard_items(items, parse_shard(f"{i}/3")) for i in range(3)]
    ids = [item.id for shard in shards for item in shard]
    assert sorted(ids) == sorted(item.id for item in items)  # every item once
    for shard in shards:
        pairs = [item.pair_id for item in shard]
        assert all(pairs.count(p) == 2 for p in pairs)
    assert shards[1] == shard_items(list(reversed(items)), parse_shard("1/3"))[::-1]  # order-independent


def test_merge_joins_shards_and_refuses_overlaps_or_other_settings(tmp_path):
    stores = []
    for i, ids in enumerate((["a", "b"], ["c"])):
        store = open_run(tmp_path / f"s{i}", make_config(shard=ShardSpec(index=i, count=2)))
        store.append(rows(store, ids))
        stores.append(store)
    config, merged = merge_runs([tmp_path / "s0", tmp_path / "s1"], tmp_path / "all")
    assert sorted(merged) == ["a", "b", "c"]
    assert config.shard is None and len(config.merged_from) == 2
    assert sorted(PredictionStore(tmp_path / "all", config.fingerprint).load()) == ["a", "b", "c"]

    stores[1].append(rows(stores[1], ["a"]))
    with pytest.raises(DyBenchError, match="must not overlap"):
        merge_runs([tmp_path / "s0", tmp_path / "s1"], tmp_path / "all2")

    odd = open_run(tmp_path / "odd", make_config(model="baseline:random", shard=ShardSpec(index=1, count=2)))
    odd.append(rows(odd, ["z"]))
    with pytest.raises(DyBenchError, match="different settings"):
        merge_runs([tmp_path / "s0", tmp_path / "odd"], tmp_path / "all3")


# --- one writer per run directory -------------------------------------------------------------

CLI = [sys.executable, "-c", "from dybench.cli import main; main()"]


def prediction_ids(run: Path) -> list[str]:
    return [json.loads(line)["id"] for line in (run / "predictions.jsonl").read_text().splitlines() if line.strip()]


def eval_args(data: Path, run: Path) -> list[str]:
    return [*CLI, "eval", "--model", "baseline:random", "--data", str(data), "--out", str(run), "--batch-size", "2",
            "--no-progress"]


def test_a_second_eval_into_a_busy_run_directory_fails_at_once_naming_the_writer(synthetic_test_set, tmp_path):
    run = tmp_path / "run"
    n_items = len(load_data(str(synthetic_test_set)).items)
    first = subprocess.Popen(eval_args(synthetic_test_set, run), env={**os.environ, **slow_batches(1.0)},
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    predictions = run / "predictions.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (predictions.exists() and predictions.read_text().count("\n") >= 2):
        time.sleep(0.05)
    second = subprocess.run(eval_args(synthetic_test_set, run), capture_output=True, text=True, timeout=120,
                            env={**os.environ, "COLUMNS": "300"})
    assert first.poll() is None, "the second eval waited for the first instead of failing at once"
    assert_one_line_error(second, f"another dybench eval is writing to {run} (pid {first.pid})")
    _, stderr = first.communicate(timeout=300)
    assert first.returncode == 0, stderr
    assert sorted(prediction_ids(run)) == sorted(item.id for item in load_data(str(synthetic_test_set)).items)
    assert len(prediction_ids(run)) == n_items
    rerun = subprocess.run(eval_args(synthetic_test_set, run), capture_output=True, text=True, timeout=120)
    assert rerun.returncode == 0, rerun.stderr  # the lock went with the first process
    assert len(prediction_ids(run)) == n_items


def test_two_evals_started_together_never_duplicate_or_lose_a_prediction(synthetic_test_set, tmp_path):
    items = sorted(item.id for item in load_data(str(synthetic_test_set)).items)
    for trial in range(3):
        run = tmp_path / f"run{trial}"
        both = [subprocess.Popen(eval_args(synthetic_test_set, run), env={**os.environ, **slow_batches(0.2)},
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for _ in range(2)]
        errors = [process.communicate(timeout=300)[1] for process in both]
        codes = sorted(process.returncode for process in both)
        assert codes == [0, 2], errors
        assert any(f"another dybench eval is writing to {run}" in error for error in errors), errors
        assert sorted(prediction_ids(run)) == items


def test_a_lock_holder_is_named_and_the_lock_is_free_again_after_it_is_released(tmp_path):
    from dybench.locks import LockBusy, file_lock

    path = tmp_path / ".board.csv.lock"
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time\nfrom dybench.locks import file_lock\n"
                               f"with file_lock({str(path)!r}):\n    print('held', flush=True)\n    time.sleep(60)"],
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    with pytest.raises(LockBusy) as busy:
        with file_lock(path, wait=False):
            pass
    assert busy.value.holder_pid == holder.pid
    holder.kill()  # SIGKILL: the operating system drops the lock with the process
    holder.wait()
    with file_lock(path, wait=False):
        assert path.read_text().strip() == str(os.getpid())


# --- predictions made elsewhere ---------------------------------------------------------------


def test_an_external_predictions_file_giving_one_item_twice_is_refused_naming_line_and_id(synthetic_test_set, tmp_path):
    ids = [item.id for item in load_data(str(synthetic_test_set)).items]
    preds = tmp_path / "preds.jsonl"
    rows = [{"id": ids[0], "pred": "A"}, {"id": ids[1], "pred": "B"}, {"id": ids[0], "pred": "B"}]
    preds.write_text("".join(json.dumps(row) + "\n" for row in rows))
    result = subprocess.run([*CLI, "score", "--data", str(synthetic_test_set), "--predictions", str(preds),
                             "--out", str(tmp_path / "scored")], capture_output=True, text=True, timeout=120,
                            env={**os.environ, "COLUMNS": "300"})
    assert_one_line_error(result, f"{preds}:3: id {ids[0]!r} was already given at {preds}:1")
    assert not (tmp_path / "scored" / "scores.json").exists()
