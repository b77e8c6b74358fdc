"""Every reader of a user's file (manifest, annotations, predictions, YAML) takes UTF-8 with or
without a byte-order mark, and answers bytes that are not UTF-8, a NUL byte in a path, or a pair
with more than two members with one line that names the file and line."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from cli_errors import assert_one_line_error
from dybench.build import build_from_videos, build_synthetic
from dybench.families import load_data
from dybench.errors import DyBenchError
from dybench.external_predictions import score_prediction_file
from dybench.yaml_files import read_yaml_mapping

CLI = [sys.executable, "-c", "from dybench.cli import main; main()"]
BOM = b"\xef\xbb\xbf"


def dybench(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "COLUMNS": "200"})


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    """Two moving-direction pairs (four rows)."""
    folder = tmp_path_factory.mktemp("readers") / "ds"
    build_synthetic(folder, tasks=["moving_direction"], pairs_per_task=2, seed=0, progress=False)
    return folder


def copy_with_manifest(dataset: Path, target: Path, manifest: bytes) -> Path:
    shutil.copytree(dataset, target)
    (target / "manifest.jsonl").write_bytes(manifest)
    return target


def manifest_rows(dataset: Path) -> list[dict]:
    return [json.loads(line) for line in (dataset / "manifest.jsonl").read_text().splitlines()]


def not_utf8_on_line_2(text: str) -> bytes:
    """`text` as Latin-1 bytes with an 'é' on its second line: valid JSON, not UTF-8."""
    lines = text.splitlines(keepends=True)
    lines[1] = lines[1].replace('"', '"\xe9', 1)
    return "".join(lines).encode("latin-1")


def annotations_text() -> str:
    good = {"video": "clip.mp4", "task": "moving_direction", "options": ["left", "right"], "answer": "right"}
    return "".join(json.dumps({**good, "question": q}) + "\n" for q in ("Where does it go?", "Which way?"))


@pytest.fixture
def user_videos(dataset, tmp_path) -> Path:
    folder = tmp_path / "videos"
    folder.mkdir()
    shutil.copyfile(dataset / manifest_rows(dataset)[0]["video"], folder / "clip.mp4")
    return folder


def predictions_text(dataset: Path) -> str:
    return "".join(json.dumps({"id": row["id"], "pred": row["answer"]}) + "\n" for row in manifest_rows(dataset))


# --- bytes that are not UTF-8 ----------------------------------------------------------------------


def test_a_manifest_that_is_not_utf8_is_one_line_naming_file_and_line(dataset, tmp_path):
    folder = copy_with_manifest(dataset, tmp_path / "ds", not_utf8_on_line_2((dataset / "manifest.jsonl").read_text()))
    result = dybench("eval", "--model", "baseline:constant", "--data", str(folder), "--out", str(tmp_path / "run"),
                     "--no-progress")
    assert_one_line_error(result, "manifest.jsonl:2", "not UTF-8")


def test_annotations_that_are_not_utf8_are_one_line_naming_file_and_line(user_videos, tmp_path):
    annotations = tmp_path / "ann.jsonl"
    annotations.write_bytes(not_utf8_on_line_2(annotations_text()))
    result = dybench("build-pairs", "--from-videos", str(user_videos), "--annotations", str(annotations),
                     "--out", str(tmp_path / "out"), "--no-progress")
    assert_one_line_error(result, "ann.jsonl:2", "not UTF-8")
    assert not (tmp_path / "out").exists()


def test_predictions_that_are_not_utf8_are_one_line_naming_file_and_line(dataset, tmp_path):
    predictions = tmp_path / "preds.jsonl"
    predictions.write_bytes(not_utf8_on_line_2(predictions_text(dataset)))
    result = dybench("score", "--data", str(dataset), "--predictions", str(predictions), "--out", str(tmp_path / "s"))
    assert_one_line_error(result, "preds.jsonl:2", "not UTF-8")


def test_a_yaml_file_that_is_not_utf8_is_one_line_naming_file_and_line(tmp_path):
    config = tmp_path / "train.yaml"
    config.write_bytes("lr: 0.001\nname: caf\xe9\n".encode("latin-1"))
    with pytest.raises(DyBenchError, match=r"train.yaml:2: not UTF-8"):
        read_yaml_mapping(config, "config file", "expected a mapping")
    result = dybench("train-crpo", "--config", str(config), "--data", "nowhere", "--out", str(tmp_path / "run"))
    assert_one_line_error(result, "train.yaml:2", "not UTF-8")


# --- a byte-order mark is accepted ---------------------------------------------------------------


def test_a_manifest_with_a_byte_order_mark_loads_like_one_without(dataset, tmp_path):
    folder = copy_with_manifest(dataset, tmp_path / "ds", BOM + (dataset / "manifest.jsonl").read_bytes())
    assert load_data(str(folder)).items == load_data(str(dataset)).items


def test_annotations_with_a_byte_order_mark_build_like_ones_without(user_videos, tmp_path):
    plain, marked = tmp_path / "plain.jsonl", tmp_path / "marked.jsonl"
    plain.write_text(annotations_text())
    marked.write_bytes(BOM + annotations_text().encode())
    a = build_from_videos(user_videos, plain, tmp_path / "a", progress=False)
    b = build_from_videos(user_videos, marked, tmp_path / "b", progress=False)
    assert (a.n_pairs, b.n_pairs) == (2, 2)
    assert (tmp_path / "a" / "manifest.jsonl").read_bytes() == (tmp_path / "b" / "manifest.jsonl").read_bytes()


@pytest.mark.parametrize("as_list", [False, True])
def test_predictions_with_a_byte_order_mark_score_like_ones_without(dataset, tmp_path, as_list):
    text = predictions_text(dataset)
    if as_list:
        text = json.dumps([json.loads(line) for line in text.splitlines()])
    plain, marked = tmp_path / "plain.jsonl", tmp_path / "marked.jsonl"
    plain.write_text(text)
    marked.write_bytes(BOM + text.encode())
    a = score_prediction_file(str(dataset), plain, tmp_path / "a")
    b = score_prediction_file(str(dataset), marked, tmp_path / "b")
    assert (a["acc"], a["p_acc"], a["n_items"]) == (b["acc"], b["p_acc"], b["n_items"]) == (1.0, 1.0, 4)


def test_a_yaml_file_with_a_byte_order_mark_reads_like_one_without(tmp_path):
    config = tmp_path / "train.yaml"
    config.write_bytes(BOM + b"lr: 0.001\nname: caf\xc3\xa9\n")
    assert read_yaml_mapping(config, "config file", "expected a mapping") == {"lr": 0.001, "name": "café"}


# --- NUL bytes in paths ----------------------------------------------------------------------------


def test_a_nul_byte_in_a_manifest_video_path_is_one_line_naming_the_line(dataset, tmp_path):
    rows = manifest_rows(dataset)
    rows[2]["video"] = "videos/a\u0000b.mp4"
    folder = copy_with_manifest(dataset, tmp_path / "ds", "".join(json.dumps(r) + "\n" for r in rows).encode())
    result = dybench("eval", "--model", "baseline:constant", "--data", str(folder), "--out", str(tmp_path / "run"),
                     "--no-progress")
    assert_one_line_error(result, "manifest.jsonl:3", "NUL")


def test_a_nul_byte_in_an_annotation_video_path_is_one_line_naming_the_line(user_videos, tmp_path):
    annotations = tmp_path / "ann.jsonl"
    lines = annotations_text().splitlines()
    lines[1] = lines[1].replace("clip.mp4", "cl\\u0000ip.mp4")
    annotations.write_text("\n".join(lines) + "\n")
    result = dybench("build-pairs", "--from-videos", str(user_videos), "--annotations", str(annotations),
                     "--out", str(tmp_path / "out"), "--no-progress")
    assert_one_line_error(result, "ann.jsonl:2", "NUL")


def test_a_nul_byte_in_the_out_or_videos_folder_is_a_clear_error(user_videos, tmp_path):
    """A command line cannot carry a NUL byte; the library's callers can."""
    annotations = tmp_path / "ann.jsonl"
    annotations.write_text(annotations_text())
    with pytest.raises(DyBenchError, match="--out.*NUL"):
        build_synthetic(tmp_path / "o\x00ut", tasks=["moving_direction"], pairs_per_task=1, progress=False)
    with pytest.raises(DyBenchError, match="--out.*NUL"):
        build_from_videos(user_videos, annotations, tmp_path / "o\x00ut", progress=False)
    with pytest.raises(DyBenchError, match="--from-videos.*NUL"):
        build_from_videos(Path(f"{user_videos}\x00"), annotations, tmp_path / "out", progress=False)
    with pytest.raises(DyBenchError, match="--annotations.*NUL"):
        build_from_videos(user_videos, Path(f"{annotations}\x00"), tmp_path / "out", progress=False)


# --- pairs ---------------------------------------------------------------------------------------------


def test_three_rows_sharing_a_pair_id_are_one_line_naming_the_pair_and_its_lines(dataset, tmp_path):
    rows = manifest_rows(dataset)
    third = {**rows[0], "id": rows[0]["id"] + "-again"}
    rows.insert(3, third)
    folder = copy_with_manifest(dataset, tmp_path / "ds", "".join(json.dumps(r) + "\n" for r in rows).encode())
    result = dybench("eval", "--model", "baseline:constant", "--data", str(folder), "--out", str(tmp_path / "run"),
                     "--no-progress")
    assert_one_line_error(result, "manifest.jsonl", repr(rows[0]["pair_id"]), "lines 1, 2, 4")
