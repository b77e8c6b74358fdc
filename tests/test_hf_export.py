"""`dybench export hf` writes a folder Hugging Face `datasets` reads as a video dataset under the
build's split, and `--data hf:DIR` reads it back as the same items, so a model scores the same on
the export as on its source. Bad folders and an unreachable hub are one-line errors."""

from __future__ import annotations

import hashlib
import json
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from cli_errors import assert_one_line_error
from dybench.build import build_synthetic
from dybench.data import read_manifest
from dybench.errors import DyBenchError
from dybench.families import load_data

datasets = pytest.importorskip("datasets")

CLI = [sys.executable, "-c", "from dybench.cli import main; main()"]
OFFLINE = {"HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1"}


def left_beside(folder: Path) -> list[str]:
    """What an export left in the folder around it, but for its lock file (dybench/locks.py: lock
    files stay, so that no two processes can ever hold "the" lock)."""
    return sorted(p.name for p in folder.iterdir() if not p.name.endswith(".lock"))


def dybench(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    import os

    return subprocess.run([*CLI, *map(str, args)], capture_output=True, text=True, env={**os.environ, **(env or {})})


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def source_clips(folder: Path) -> dict[str, str]:
    """sha256 of each item's clip, by item id, from a built folder's manifest."""
    return {item.id: sha256(folder / item.video) for item in read_manifest(folder / "manifest.jsonl")}


@pytest.fixture(scope="module")
def small_test_build(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("hf") / "small-test"
    build_synthetic(folder, pairs_per_task=2, seed=0, split="test", progress=False, size=64, n_frames=8)
    return folder


@pytest.fixture(scope="module")
def exported_test(small_test_build, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("exports") / "small-test-hf"
    result = dybench("export", "hf", small_test_build, "--out", out)
    assert result.returncode == 0, result.stderr
    assert "as split `test`" in result.stdout
    return out


@pytest.fixture
def offline_hf(monkeypatch, tmp_path):
    for name, value in OFFLINE.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    return tmp_path / "hf-cache"


def load(folder: Path, cache: Path, split: str):
    return datasets.load_dataset(str(folder), split=split, cache_dir=str(cache))


def test_load_dataset_reads_a_test_export_as_split_test_with_a_video_column_of_the_source_clips(
        exported_test, small_test_build, offline_hf):
    ds = load(exported_test, offline_hf, "test")
    source = source_clips(small_test_build)
    assert len(ds) == len(source)
    assert isinstance(ds.features["video"], datasets.Video)
    assert sorted(ds["id"]) == sorted(source)
    paths = ds.cast_column("video", datasets.Video(decode=False))
    for row in paths:
        exported = Path(row["video"]["path"])
        assert exported.is_relative_to(exported_test.resolve())
        assert sha256(exported) == source[row["id"]]
    assert list(datasets.load_dataset(str(exported_test), cache_dir=str(offline_hf)).keys()) == ["test"]
    card = (exported_test / "README.md").read_text()
    assert "license: cc-by-4.0" in card and "- split: test" in card and "video-question-answering" in card


def test_every_manifest_field_is_a_column_and_meta_is_a_json_string(exported_test, small_test_build, offline_hf):
    ds = load(exported_test, offline_hf, "test")
    rows = {row["id"]: row for row in ds.remove_columns("video")}
    for item in read_manifest(small_test_build / "manifest.jsonl"):
        row = rows[item.id]
        for name in ("pair_id", "task", "category", "question", "options", "answer", "transform", "kind",
                     "variant", "option_keys"):
            assert row[name] == getattr(item, name), name
        assert json.loads(row["meta"]) == item.meta


def test_a_train_build_exports_as_split_train_and_a_shared_clip_is_copied_once(
        small_train_set, tmp_path, offline_hf):
    out = tmp_path / "train-hf"
    result = dybench("export", "hf", small_train_set, "--out", out)
    assert result.returncode == 0, result.stderr
    items = read_manifest(small_train_set / "manifest.jsonl")
    clips = {item.video for item in items}
    assert len(clips) < len(items)  # the static questions are asked of the dynamic items' clips
    assert len(list((out / "videos").iterdir())) == len(clips)
    ds = load(out, offline_hf, "train")
    assert len(ds) == len(items)
    source = source_clips(small_train_set)
    for row in ds.cast_column("video", datasets.Video(decode=False)):
        assert sha256(row["video"]["path"]) == source[row["id"]]
    with pytest.raises(ValueError):
        load(out, offline_hf, "test")


def test_a_built_folder_itself_loads_under_its_split(small_train_set, offline_hf):
    ds = load(small_train_set, offline_hf, "train")
    assert len(ds) == len(read_manifest(small_train_set / "manifest.jsonl"))


def test_eval_on_the_export_gives_the_predictions_and_scores_of_the_source(exported_test, small_test_build, tmp_path):
    runs = {}
    for name, spec in (("source", str(small_test_build)), ("hf", f"hf:{exported_test}")):
        out = tmp_path / name
        result = dybench("eval", "--model", "baseline:motion", "--data", spec, "--out", out)
        assert result.returncode == 0, result.stderr
        predictions = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
        runs[name] = ([(p["id"], p["pred"], p["output"]) for p in predictions],
                      json.loads((out / "scores.json").read_text()))
    (source_predictions, source_scores), (hf_predictions, hf_scores) = runs["source"], runs["hf"]
    assert len(source_predictions) == len(read_manifest(small_test_build / "manifest.jsonl"))
    assert hf_predictions == source_predictions
    assert source_scores["p_acc"] > 0  # the motion baseline solves these clips: the comparison has content
    # the fingerprint is the export's own (its metadata file), the rest is the same
    assert hf_scores.pop("dataset_fingerprint") != source_scores.pop("dataset_fingerprint")
    assert hf_scores == source_scores
    assert json.loads((tmp_path / "hf" / "run.json").read_text())["dataset"]["spec"] == f"hf:{exported_test.resolve()}"


def test_hf_data_keeps_ids_pairs_answers_and_transforms(exported_test, small_test_build):
    source, exported = load_data(str(small_test_build)), load_data(f"hf:{exported_test}")
    assert exported.family == source.family == "synthetic"
    fields = lambda item: item.model_dump(exclude={"video"})  # noqa: E731
    assert [fields(i) for i in exported.items] == [fields(i) for i in source.items]
    assert all(exported.video_path(i).is_relative_to(exported_test.resolve()) for i in exported.items)


def test_an_export_exports_again_with_its_split_family_and_licence(small_train_set, tmp_path):
    first, second = tmp_path / "first", tmp_path / "second"
    assert dybench("export", "hf", small_train_set, "--out", first).returncode == 0
    result = dybench("export", "hf", f"hf:{first}", "--out", second)
    assert result.returncode == 0, result.stderr
    assert "as split `train`" in result.stdout
    assert "license: cc-by-4.0" in (second / "README.md").read_text()
    record = json.loads((second / "dybench_export.json").read_text())
    assert (record["family"], record["name"], record["split"]) == ("synthetic", small_train_set.name, "train")
    assert (second / "metadata.jsonl").read_text() == (first / "metadata.jsonl").read_text()


def test_exporting_again_to_the_same_folder_replaces_the_earlier_export(small_test_build, tmp_path):
    out = tmp_path / "again"
    assert dybench("export", "hf", small_test_build, "--out", out).returncode == 0
    (out / "videos" / next((out / "videos").iterdir()).name).write_bytes(b"damaged")
    result = dybench("export", "hf", small_test_build, "--out", out)
    assert result.returncode == 0, result.stderr
    source = source_clips(small_test_build)
    rows = [json.loads(line) for line in (out / "metadata.jsonl").read_text().splitlines()]
    assert all(sha256(out / row["file_name"]) == source[row["id"]] for row in rows)
    assert left_beside(tmp_path) == ["again"]  # nothing left beside it


def test_a_folder_that_is_not_an_export_of_the_same_data_is_refused(small_test_build, small_train_set, tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    assert_one_line_error(dybench("export", "hf", small_test_build, "--out", other), str(other), "not empty")
    assert (other / "notes.txt").read_text() == "mine"
    train_export = tmp_path / "train-hf"
    assert dybench("export", "hf", small_train_set, "--out", train_export).returncode == 0
    assert_one_line_error(dybench("export", "hf", small_test_build, "--out", train_export), "not an export of")
    assert_one_line_error(dybench("export", "hf", small_test_build, "--out", small_test_build / "hf"),
                          "outside the dataset folder")


def test_an_interrupted_export_leaves_no_folder_that_passes_for_an_export(small_test_build, tmp_path, monkeypatch):
    from dybench import hf_export

    copied = []

    def interrupted_copy(source: Path, target: Path) -> int:
        if copied:
            raise KeyboardInterrupt
        copied.append(target)
        return real_copy(source, target)

    real_copy = hf_export._copy
    monkeypatch.setattr(hf_export, "_copy", interrupted_copy)
    out = tmp_path / "interrupted"
    with pytest.raises(KeyboardInterrupt):
        hf_export.export_hf(load_data(str(small_test_build)), str(small_test_build), out)
    assert copied and not out.exists()
    assert left_beside(tmp_path) == []
    # a killed export (no cleanup) leaves a hidden staging folder; the next export removes it
    staging = tmp_path / ".interrupted.abc.exporting"
    (staging / "videos").mkdir(parents=True)
    monkeypatch.setattr(hf_export, "_copy", real_copy)
    hf_export.export_hf(load_data(str(small_test_build)), str(small_test_build), out)
    assert left_beside(tmp_path) == ["interrupted"]


def test_metadata_without_its_export_record_is_not_a_finished_export(exported_test, tmp_path):
    copy = tmp_path / "unfinished"
    shutil.copytree(exported_test, copy)
    (copy / "dybench_export.json").unlink()
    result = dybench("eval", "--model", "baseline:motion", "--data", f"hf:{copy}", "--out", tmp_path / "run")
    assert_one_line_error(result, "dybench_export.json", "not a finished export")


@pytest.mark.parametrize(("line", "change", "fragments"), [
    (2, lambda row: {**row, "answer": "right"}, (":2:", "field answer")),
    (3, lambda row: {**row, "file_name": "../../outside.mp4"}, (":3:", "field file_name", "leaves the dataset folder")),
    (1, lambda row: {**row, "file_name": "videos/missing.mp4"}, (":1:", "field file_name", "not found")),
    (2, lambda row: {**row, "meta": "{not json"}, (":2:", "field meta")),
    (4, lambda row: {k: v for k, v in row.items() if k != "pair_id"}, (":4:", "field pair_id")),
    (2, lambda row: {**row, "id": "moving_direction-00000-original"}, (":2:", "field id", "duplicate")),
])
def test_a_malformed_metadata_row_is_one_line_naming_file_line_and_field(exported_test, tmp_path, line, change,
                                                                          fragments):
    copy = tmp_path / "damaged"
    shutil.copytree(exported_test, copy)
    metadata = copy / "metadata.jsonl"
    rows = [json.loads(text) for text in metadata.read_text().splitlines()]
    rows[line - 1] = change(rows[line - 1])
    metadata.write_text("".join(json.dumps(row) + "\n" for row in rows))
    result = dybench("eval", "--model", "baseline:motion", "--data", f"hf:{copy}", "--out", tmp_path / "run")
    assert_one_line_error(result, "metadata.jsonl", *fragments)


def test_a_folder_that_holds_no_dataset_is_one_line(tmp_path):
    (tmp_path / "empty").mkdir()
    for spec in (f"hf:{tmp_path / 'empty'}", f"hf:{tmp_path / 'absent'}"):
        result = dybench("eval", "--model", "baseline:motion", "--data", spec, "--out", tmp_path / "run")
        assert_one_line_error(result, "hf:")


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_push_to_an_unreachable_hub_is_one_line_and_keeps_the_export(small_test_build, tmp_path):
    out = tmp_path / "pushed"
    token = "hf_" + "x" * 34
    endpoint = f"http://127.0.0.1:{closed_port()}"
    result = dybench("export", "hf", small_test_build, "--out", out, "--push-to-hub", "someone/dybench-small",
                     env={"HF_ENDPOINT": endpoint, "HF_TOKEN": token, "HF_HUB_OFFLINE": "0"})
    assert_one_line_error(result, "push to", endpoint, "someone/dybench-small", "export is kept")
    assert token not in result.stdout + result.stderr
    assert len(load_data(f"hf:{out}").items) == len(read_manifest(small_test_build / "manifest.jsonl"))
    assert token not in "".join(p.read_text(errors="replace") for p in out.rglob("*") if p.is_file())


def test_a_repository_name_the_hub_refuses_is_refused_before_anything_is_written(small_test_build, tmp_path):
    for repo in ("bad name!", "no-owner"):
        result = dybench("export", "hf", small_test_build, "--out", tmp_path / "x", "--push-to-hub", repo)
        assert_one_line_error(result, f"--push-to-hub {repo}")
    assert not (tmp_path / "x").exists()


def test_push_uploads_the_export_folder_to_a_dataset_repository(small_test_build, tmp_path, monkeypatch):
    """Up to the hub: the calls `push_to_hub` makes, recorded by a stand-in for HfApi (no hub here)."""
    import huggingface_hub

    from dybench import hf_export

    calls = []

    class RecordingApi:
        endpoint = "https://hub.example"

        def create_repo(self, repo_id, **options):
            calls.append(("create_repo", repo_id, options))

        def upload_folder(self, **options):
            calls.append(("upload_folder", options["repo_id"], options))
            assert (Path(options["folder_path"]) / "dybench_export.json").is_file()  # a finished export

    monkeypatch.setattr(huggingface_hub, "HfApi", RecordingApi)
    out = tmp_path / "export"
    hf_export.export_hf(load_data(str(small_test_build)), str(small_test_build), out)
    url = hf_export.push_to_hub(out, "someone/dybench-small", private=True)
    assert url == "https://hub.example/datasets/someone/dybench-small"
    assert [(name, repo) for name, repo, _ in calls] == [("create_repo", "someone/dybench-small"),
                                                         ("upload_folder", "someone/dybench-small")]
    assert calls[0][2] == {"repo_type": "dataset", "private": True, "exist_ok": True}
    assert calls[1][2]["repo_type"] == "dataset" and calls[1][2]["folder_path"] == str(out)


def test_parquet_written_by_datasets_reads_back_as_the_same_items(exported_test, small_test_build, offline_hf,
                                                                  tmp_path, monkeypatch):
    """The layout of push_to_hub (data/SPLIT-*.parquet, clips embedded as bytes) and of to_parquet
    (clips as paths, which must stay inside the folder)."""
    from datasets.table import embed_table_storage

    monkeypatch.setenv("DYBENCH_CACHE", str(tmp_path / "cache"))
    ds = load(exported_test, offline_hf, "test")
    embedded = tmp_path / "pushed"
    (embedded / "data").mkdir(parents=True)
    ds.with_format("arrow").map(embed_table_storage, batched=True).to_parquet(
        str(embedded / "data" / "test-00000-of-00001.parquet"))
    source, back = load_data(str(small_test_build)), load_data(f"hf:{embedded}")
    fields = lambda item: item.model_dump(exclude={"video"})  # noqa: E731
    assert [fields(i) for i in back.items] == [fields(i) for i in source.items]
    assert [sha256(back.video_path(i)) for i in back.items] == [sha256(source.video_path(i)) for i in source.items]

    by_path = tmp_path / "by-path"
    by_path.mkdir()
    ds.to_parquet(str(by_path / "test.parquet"))  # absolute paths into the datasets cache's source folder
    with pytest.raises(DyBenchError, match=r"test.parquet:row 0: field video.path: .*absolute"):
        load_data(f"hf:{by_path}")


def test_an_export_of_timeblind_data_is_asked_and_scored_as_timeblind(small_test_build, tmp_path):
    """The export keeps its source's family: TimeBlind's prompt suffixes, answer reading and score block."""
    from test_timeblind import write_timeblind

    data = write_timeblind(tmp_path / "TimeBlind", n_instances=2)
    clips = sorted((small_test_build / "videos").iterdir())
    for number, row in enumerate(json.loads(line) for line in data.read_text().splitlines()):
        target = tmp_path / row["video_path"]
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(clips[number % len(clips)], target)
    out = tmp_path / "timeblind-hf"
    result = dybench("export", "hf", f"timeblind:{data}", "--out", out)
    assert result.returncode == 0, result.stderr
    source, exported = load_data(f"timeblind:{data}"), load_data(f"hf:{out}")
    assert exported.family == "timeblind"
    assert [i.model_dump(exclude={"video"}) for i in exported.items] == [i.model_dump(exclude={"video"}) for i in source.items]
    scores = {}
    for name, spec in (("source", f"timeblind:{data}"), ("hf", f"hf:{out}")):
        run = tmp_path / f"run-{name}"
        result = dybench("eval", "--model", "baseline:random", "--data", spec, "--out", run)
        assert result.returncode == 0, result.stderr
        scores[name] = json.loads((run / "scores.json").read_text())
        scores[name].pop("dataset_fingerprint")
    assert "timeblind" in scores["source"] and scores["hf"] == scores["source"]


def test_a_second_export_into_the_same_folder_is_refused_while_the_first_runs(small_test_build, tmp_path):
    """The first exporter holds the folder's lock; the second stops at once naming it, and never
    touches the first's half-written copy (it would otherwise clear it away as a leftover)."""
    import os

    from dybench.locks import file_lock, lock_path_for

    out = tmp_path / "busy"
    half_written = tmp_path / ".busy.first.exporting"
    half_written.mkdir()
    with file_lock(lock_path_for(out)):
        result = dybench("export", "hf", small_test_build, "--out", out)
    assert_one_line_error(result, str(out), "being exported by another process", f"pid {os.getpid()}")
    assert half_written.is_dir() and not out.exists()
    assert dybench("export", "hf", small_test_build, "--out", out).returncode == 0
    assert not half_written.exists()  # a leftover once nobody holds the lock
