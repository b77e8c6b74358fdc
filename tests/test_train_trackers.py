"""Training in the ecosystem: `--report-to` mirrors metrics.jsonl into TensorBoard / W&B,
`--export-every` writes HF checkpoints that `dybench eval` loads, and train_config.yaml records
where the run came from (versions, git commit, command line)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from dybench.cli import app
from dybench.errors import DyBenchError
from dybench.train.config import load_config
from dybench.train.metrics import TIMING_COLUMNS, read_metrics
from dybench.train.provenance import git_commit
from dybench.train.trainer import Trainer, TrainingInterrupted
from tests.cli_errors import assert_one_line_error

MODEL = "tiny-random-qwen3-vl"
FAST = ["--group-size", "2", "--batch-size", "2", "--max-new-tokens", "6", "--lr", "1e-4", "--no-progress"]
FAST_CONFIG = dict(group_size=2, batch_size=2, max_new_tokens=6, lr=1e-4, display=False)


def without_timing(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in row.items() if k not in TIMING_COLUMNS} for row in rows]


def train_cli(data: Path, out: Path, *options: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "dybench.cli", "train-crpo", "--model", MODEL, "--data", str(data),
               "--out", str(out), "--max-steps", "2", *FAST, *options]
    return subprocess.run(command, capture_output=True, text=True, timeout=600)


def tensorboard_scalars(folder: Path) -> dict[str, dict[int, float]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(folder))
    events.Reload()
    return {tag: {e.step: e.value for e in events.Scalars(tag)} for tag in events.Tags()["scalars"]}


def expected_scalars(rows: list[dict]) -> dict[str, dict[int, float]]:
    """metrics.jsonl as TensorBoard stores it: numeric values as float32, nulls absent."""
    expected: dict[str, dict[int, float]] = {}
    for row in rows:
        for name, value in row.items():
            if name != "step" and isinstance(value, (int, float)):
                expected.setdefault(name, {})[row["step"]] = float(np.float32(value))
    return expected


@pytest.fixture(scope="module")
def tracked_run(small_train_set: Path, tmp_path_factory: pytest.TempPathFactory, model_cache) -> Path:
    out = tmp_path_factory.mktemp("tracked") / "run"
    # save_every 1 / keep 1: the resumable step-000001 is pruned, the export step-1 must stay.
    result = train_cli(small_train_set, out, "--report-to", "tensorboard", "--export-every", "1", "--save-every", "1",
                       "--config", str(write_yaml(out.parent / "keep.yaml", {"keep_checkpoints": 1})))
    assert result.returncode == 0, result.stdout + result.stderr
    return out


def wandb_history(folder: Path) -> list[dict]:
    """The history rows of the one offline W&B run under `folder`, read from its .wandb file
    (a leveldb-style log of protobuf records: 32 KiB blocks, each record in 7-byte-headed chunks)."""
    import struct

    from wandb.proto import wandb_internal_pb2

    (path,) = folder.glob("wandb/offline-run-*/run-*.wandb")
    data, records, chunk, offset = path.read_bytes(), [], b"", 7  # after the file header (":W&B", magic, version)
    while offset + 7 <= len(data):
        if 32768 - offset % 32768 < 7:  # a block's tail too short for a header is padding
            offset += 32768 - offset % 32768
            continue
        _, length, kind = struct.unpack("<IHB", data[offset:offset + 7])
        chunk += data[offset + 7:offset + 7 + length]
        offset += 7 + length
        if kind in (1, 4):  # FULL or LAST: a whole record
            records.append(chunk)
            chunk = b""
    rows = []
    for raw in records:
        record = wandb_internal_pb2.Record()
        record.ParseFromString(raw)
        if record.WhichOneof("record_type") == "history":
            rows.append({item.key or "/".join(item.nested_key): json.loads(item.value_json)
                         for item in record.history.item})
    return rows


def write_yaml(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.slow
def test_tensorboard_scalars_equal_metrics_jsonl_and_trackers_change_nothing(tracked_run: Path, small_train_set: Path,
                                                                             tmp_path: Path) -> None:
    rows = read_metrics(tracked_run)
    assert [row["step"] for row in rows] == [1, 2]
    assert tensorboard_scalars(tracked_run / "tensorboard" / "dybench") == expected_scalars(rows)

    plain = Trainer(load_config(model=MODEL, data=str(small_train_set), out=tmp_path / "plain", max_steps=2,
                                save_every=1, keep_checkpoints=1, **FAST_CONFIG)).train()
    assert without_timing(read_metrics(plain)) == without_timing(rows)
    assert not (plain / "tensorboard").exists() and not (plain / "checkpoints" / "step-1").exists()


@pytest.mark.slow
def test_every_export_is_a_whole_hf_checkpoint_kept_beside_the_resumable_ones(tracked_run: Path) -> None:
    checkpoints = tracked_run / "checkpoints"
    assert sorted(p.name for p in checkpoints.iterdir()) == ["step-000002", "step-1", "step-2"]
    for step in ("step-1", "step-2"):
        names = {p.name for p in (checkpoints / step).iterdir()}
        assert {"config.json", "model.safetensors", "processor_config.json", "tokenizer_config.json"} <= names
        assert "state.pt" not in names


@pytest.mark.slow
def test_an_export_evaluates_with_the_hf_backend(tracked_run: Path, small_train_set: Path, tmp_path: Path) -> None:
    run = tmp_path / "eval"
    result = CliRunner().invoke(app, ["eval", "--model", str(tracked_run / "checkpoints" / "step-1"), "--backend", "hf",
                                      "--data", str(small_train_set), "--out", str(run), "--max-tokens", "4",
                                      "--no-progress"])
    assert result.exit_code == 0, result.output
    predictions = [json.loads(line) for line in (run / "predictions.jsonl").read_text().splitlines()]
    assert len(predictions) == len((small_train_set / "manifest.jsonl").read_text().splitlines())
    assert all(p["error"] is None for p in predictions)


@pytest.mark.slow
def test_an_export_evaluates_with_the_vllm_backend(tracked_run: Path, small_train_set: Path, tmp_path: Path) -> None:
    pytest.importorskip("vllm")
    run = tmp_path / "eval"
    result = subprocess.run(
        [sys.executable, "-m", "dybench.cli", "eval", "--model", str(tracked_run / "checkpoints" / "step-1"),
         "--backend", "vllm", "--data", str(small_train_set), "--out", str(run), "--max-tokens", "4", "--no-progress"],
        capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    predictions = [json.loads(line) for line in (run / "predictions.jsonl").read_text().splitlines()]
    assert len(predictions) == len((small_train_set / "manifest.jsonl").read_text().splitlines())
    assert all(p["error"] is None for p in predictions)


@pytest.mark.slow
def test_train_config_records_versions_commit_and_the_redacted_command(tracked_run: Path, small_train_set: Path,
                                                                        tmp_path: Path) -> None:
    import torch
    import transformers

    saved = yaml.safe_load((tracked_run / "train_config.yaml").read_text())
    record = saved["provenance"]
    assert record["versions"]["torch"] == torch.__version__
    assert record["versions"]["transformers"] == transformers.__version__
    assert {"dybench", "accelerate"} <= set(record["versions"])
    assert record["git_commit"] == git_commit(Path.cwd())  # the tests run from the project's checkout
    assert "train-crpo" in record["command"] and "--report-to tensorboard --export-every 1" in record["command"]
    # The saved file repeats the run: --config takes it back, its record ignored.
    again = load_config(tracked_run / "train_config.yaml", out=tmp_path / "again")
    assert again.report_to == "tensorboard" and again.export_every == 1 and again.max_steps == 2


def test_the_command_line_is_recorded_redacted() -> None:
    from dybench.train.provenance import command_line

    line = command_line(["dybench", "train-crpo", "--config", "https://user:hunter2secret@example.org/c.yaml"])
    assert "hunter2secret" not in line and line.startswith("dybench train-crpo --config")


def test_no_git_checkout_records_no_commit(tmp_path: Path) -> None:
    assert git_commit(tmp_path) is None


def test_a_missing_tracker_package_is_one_line_naming_the_install(synthetic_train_set: Path, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    # A None entry in sys.modules is how Python marks a module as not importable.
    for module in ("tensorboard", "tensorboardX"):
        monkeypatch.setitem(sys.modules, module, None)
    config = load_config(model=MODEL, data=str(synthetic_train_set), out=tmp_path / "ck", report_to="tensorboard")
    with pytest.raises(DyBenchError) as error:
        Trainer(config)
    assert "pip install -e '.[trackers]'" in str(error.value) and "\n" not in str(error.value)


def test_an_unknown_tracker_is_one_line(synthetic_train_set: Path, tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "dybench.cli", "train-crpo", "--model", MODEL, "--data", str(synthetic_train_set),
         "--out", str(tmp_path / "ck"), "--report-to", "mlflow"], capture_output=True, text=True, timeout=300,
    )
    assert_one_line_error(result, "report_to")


@pytest.mark.slow
def test_an_export_cut_short_leaves_no_step_folder_and_resume_writes_it(small_train_set: Path, tmp_path: Path,
                                                                       model_cache, monkeypatch) -> None:
    import dybench.train.trainer as trainer_module

    real_export = trainer_module.export_hf

    def interrupted_after_writing(model, processor, folder, state_dict=None):
        real_export(model, processor, folder, state_dict)
        raise KeyboardInterrupt  # after every file is written, before the folder is renamed into place

    out = tmp_path / "ck"
    config = load_config(model=MODEL, data=str(small_train_set), out=out, max_steps=1, export_every=1, **FAST_CONFIG)
    monkeypatch.setattr(trainer_module, "export_hf", interrupted_after_writing)
    with pytest.raises(TrainingInterrupted, match="step 1 saved"):
        Trainer(config).train()
    assert not (out / "checkpoints" / "step-1").exists()
    assert (out / "checkpoints" / ".step-1.partial" / "config.json").is_file()

    monkeypatch.setattr(trainer_module, "export_hf", real_export)
    Trainer(config, resume=True).train()
    assert (out / "checkpoints" / "step-1" / "model.safetensors").is_file()
    assert not (out / "checkpoints" / ".step-1.partial").exists()


@pytest.mark.slow
def test_wandb_offline_run_logs_the_metrics_rows(small_train_set: Path, tmp_path: Path, model_cache,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    out = tmp_path / "ck"
    result = train_cli(small_train_set, out, "--report-to", "wandb")
    assert result.returncode == 0, result.stdout + result.stderr
    rows = read_metrics(out)
    logged = wandb_history(out / "wandb")
    assert [entry["_step"] for entry in logged] == [row["step"] for row in rows]
    for entry, row in zip(logged, rows):
        assert {k: v for k, v in entry.items() if not k.startswith("_")} == {
            k: v for k, v in row.items() if k != "step" and isinstance(v, (int, float))
        }
