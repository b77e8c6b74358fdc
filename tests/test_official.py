"""The official DyBench layout (json/<category>.json + videos) through a field mapping."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli_errors import assert_one_line_error
from dybench.cli import app
from dybench.families import load_data
from dybench.errors import DyBenchError
from dybench.metrics import score_predictions
from dybench.official import answer_letter
from dybench.schema import Prediction

CUSTOM_MAPPING = """
fields:
  video: clip
  question: prompt
  options: choices
  answer: label
  id: uid
"""


def write_release(root: Path, mapping: str | None = CUSTOM_MAPPING) -> Path:
    """A small release with renamed fields: two direction pairs, one event pair, one orphan row."""
    (root / "json").mkdir(parents=True)
    (root / "videos" / "moving_direction").mkdir(parents=True)
    (root / "videos" / "event_sequence").mkdir(parents=True)
    direction = [
        {"uid": "md-1", "clip": "a.mp4", "prompt": "Which way does the car move?", "choices": ["left", "right", "up", "down"], "label": "left"},
        {"uid": "md-2", "clip": "a_flip.mp4", "prompt": "Which way does the car move?", "choices": ["left", "right", "up", "down"], "label": "B"},
        {"uid": "md-3", "clip": "b.mp4", "prompt": "Which way does the ball move?", "choices": ["left", "right", "up", "down"], "label": "(C) up"},
        {"uid": "md-4", "clip": "b_rev.mp4", "prompt": "Which way does the ball move?", "choices": ["left", "right", "up", "down"], "label": "down"},
        {"uid": "md-5", "clip": "c.mp4", "prompt": "Which way does the cat move?", "choices": ["left", "right", "up", "down"], "label": "up"},
    ]
    events = [
        {"uid": "es-1", "clip": "e1.mp4", "prompt": "Which happened first?", "choices": ["pour", "stir"], "label": "pour"},
        {"uid": "es-2", "clip": "e2.mp4", "prompt": "Which happened first?", "choices": ["pour", "stir"], "label": "stir"},
    ]
    for name, rows in (("moving_direction", direction), ("event_sequence", events)):
        (root / "json" / f"{name}.json").write_text(json.dumps(rows))
        for row in rows:
            (root / "videos" / name / row["clip"]).write_bytes(b"")
    if mapping is not None:
        (root / "mapping.yaml").write_text(mapping)
    return root


def test_custom_mapping_loads_items_pairs_and_reports_the_orphan(tmp_path):
    dataset = load_data(f"dybench:{write_release(tmp_path / 'DyBench')}")
    assert dataset.family == "dybench" and len(dataset.items) == 7
    by_id = {item.id: item for item in dataset.items}
    assert [by_id[i].answer for i in ("md-1", "md-2", "md-3", "md-4", "md-5")] == ["A", "B", "C", "D", "C"]
    assert by_id["md-1"].pair_id == by_id["md-2"].pair_id != by_id["md-3"].pair_id
    assert by_id["es-1"].pair_id == by_id["es-2"].pair_id
    assert by_id["md-1"].video == "videos/moving_direction/a.mp4"
    assert any("moving_direction.json: 1 unpaired rows" in note and "rows 4" in note for note in dataset.notes)


def test_scores_exclude_unpaired_rows_from_pair_accuracy_and_count_them(tmp_path):
    dataset = load_data(f"dybench:{write_release(tmp_path / 'DyBench')}")
    right = [Prediction(id=i.id, key="k", output=i.answer, pred=i.answer) for i in dataset.items]
    scores = score_predictions(dataset, right)
    assert scores["p_acc"] == 1.0 and scores["n_pairs"] == 3 and scores["n_unpaired_items"] == 1
    assert scores["per_category"]["moving_direction"]["n_pairs"] == 2
    constant = [Prediction(id=i.id, key="k", output="A", pred="A") for i in dataset.items]
    assert score_predictions(dataset, constant)["p_acc"] == 0.0


def test_mapping_given_in_the_spec_overrides_the_folders(tmp_path):
    root = write_release(tmp_path / "DyBench", mapping="fields: {video: nope}\n")
    other = tmp_path / "my.yaml"
    other.write_text(CUSTOM_MAPPING + "pairing: question\n")
    dataset = load_data(f"dybench:{root}?mapping={other}")
    assert len({i.pair_id for i in dataset.items}) == 4  # question pairing: the orphan stays alone


def test_a_field_missing_from_the_rows_names_the_file_row_and_the_fix(tmp_path):
    root = write_release(tmp_path / "DyBench", mapping=None)  # MVBench defaults do not fit these rows
    with pytest.raises(DyBenchError, match=r"event_sequence.json row 0: no field 'candidates'.*mapping.yaml"):
        load_data(f"dybench:{root}")
    result = CliRunner().invoke(app, ["score", "--data", f"dybench:{root}", "--predictions", str(root / "x.jsonl"),
                                      "--out", str(tmp_path / "o")])
    assert result.exit_code != 0


def test_explicit_pair_field_groups_rows(tmp_path):
    root = tmp_path / "DyBench"
    (root / "json").mkdir(parents=True)
    rows = [
        {"video": "1.mp4", "question": "Opening or closing?", "candidates": ["opening", "closing", "neither"], "answer": "opening", "pid": 7},
        {"video": "9.mp4", "question": "Is it blooming?", "candidates": ["blooming", "closing", "neither"], "answer": "blooming", "pid": 8},
        {"video": "2.mp4", "question": "Opening or closing?", "candidates": ["opening", "closing", "neither"], "answer": "closing", "pid": 7},
    ]
    (root / "json" / "reversible_dynamics.json").write_text(json.dumps(rows))
    (root / "mapping.yaml").write_text("fields: {pair: pid}\n")
    dataset = load_data(f"dybench:{root}")
    assert dataset.items[0].pair_id == dataset.items[2].pair_id != dataset.items[1].pair_id
    assert any("videos not found" in note for note in dataset.notes)


def test_answer_may_be_text_or_letter():
    options = ["left", "right", "up"]
    assert answer_letter("Right", options) == "B"
    assert answer_letter("(C)", options) == "C"
    assert answer_letter("A. left", options) == "A"
    assert answer_letter("D", options) is None
    assert answer_letter("sideways", options) is None


def test_score_command_scores_our_prediction_rows_on_official_data(tmp_path):
    root = write_release(tmp_path / "DyBench")
    preds = tmp_path / "preds.jsonl"
    preds.write_text("".join(json.dumps({"id": i, "output": f"Answer: {a}"}) + "\n"
                             for i, a in [("md-1", "A"), ("md-2", "B"), ("md-3", "C"), ("es-1", "A"), ("es-2", "B")]))
    result = CliRunner().invoke(app, ["score", "--data", f"dybench:{root}", "--predictions", str(preds),
                                      "--out", str(tmp_path / "scored")])
    assert result.exit_code == 0, result.output
    scores = json.loads((tmp_path / "scored" / "scores.json").read_text())
    # md pair 2 lacks md-4: missing counts as wrong; 2 of 3 pairs right
    assert scores["n_missing"] == 2 and scores["p_acc"] == 2 / 3 and scores["acc"] == 5 / 7


def write_shuffled_release(root: Path) -> Path:
    """A release that shuffles the options per video: the car and the event pair have answer "A" on
    both rows, though the answer *texts* differ (left vs right, pour vs stir)."""
    (root / "json").mkdir(parents=True)
    direction = [
        {"video": "car.mp4", "question": "Which way does the car move?", "candidates": ["left", "right", "up", "down"], "answer": "left"},
        {"video": "car_flip.mp4", "question": "Which way does the car move?", "candidates": ["right", "left", "down", "up"], "answer": "right"},
        {"video": "ball.mp4", "question": "Which way does the ball move?", "candidates": ["left", "right", "up", "down"], "answer": "up"},
        {"video": "ball_rev.mp4", "question": "Which way does the ball move?", "candidates": ["down", "up", "left", "right"], "answer": "down"},
    ]
    events = [
        {"video": "e1.mp4", "question": "Which happened first?", "candidates": ["pour", "stir"], "answer": "pour"},
        {"video": "e2.mp4", "question": "Which happened first?", "candidates": ["stir", "pour"], "answer": "stir"},
    ]
    (root / "json" / "moving_direction.json").write_text(json.dumps(direction))
    (root / "json" / "event_sequence.json").write_text(json.dumps(events))
    return root


def letter_of(item, text: str) -> str:
    return "ABCD"[item.options.index(text)]


def test_pairs_with_shuffled_options_are_compared_by_option_text(tmp_path):
    dataset = load_data(f"dybench:{write_shuffled_release(tmp_path / 'DyBench')}")
    assert [item.answer for item in dataset.items] == ["A", "A", "A", "A", "C", "A"]  # event rows first
    right = [Prediction(id=i.id, key="k", output=i.answer, pred=i.answer) for i in dataset.items]
    scores = score_predictions(dataset, right)
    # every pair's answers differ in text, so all three are contrast pairs, none a control pair
    assert scores["n_pairs"] == 3 and scores["p_acc"] == 1.0 and scores["control"]["n_pairs"] == 0
    assert scores["per_category"]["event_sequence"]["n_pairs"] == 1
    # one answer text per question ("left", "up", "pour") is the shortcut: the same answer to both
    # clips, whatever letter it sits under, and it can never get a pair right
    fixed = {"Which way does the car move?": "left", "Which way does the ball move?": "up",
             "Which happened first?": "pour"}
    same_text = [Prediction(id=i.id, key="k", output="x", pred=letter_of(i, fixed[i.question]))
                 for i in dataset.items]
    scores = score_predictions(dataset, same_text)
    assert scores["p_acc"] == 0.0 and scores["diagnostics"]["same_answer_rate"] == 1.0
    # always "A" names different options on the two clips: not the same answer
    letter_a = [Prediction(id=i.id, key="k", output="A", pred="A") for i in dataset.items]
    scores = score_predictions(dataset, letter_a)
    assert scores["p_acc"] == 2 / 3 and scores["diagnostics"]["same_answer_rate"] == 0.0


def test_original_versus_counterfactual_is_not_reported_for_official_data(tmp_path):
    dataset = load_data(f"dybench:{write_release(tmp_path / 'DyBench')}")
    right = [Prediction(id=i.id, key="k", output=i.answer, pred=i.answer) for i in dataset.items]
    diagnostics = score_predictions(dataset, right)["diagnostics"]
    # the release does not say which clip of a pair is the counterfactual one
    assert diagnostics["transforms_known"] is False
    assert diagnostics["acc_original"] is None and diagnostics["acc_counterfactual"] is None
    assert diagnostics["n_original"] is None and diagnostics["n_counterfactual"] is None
    assert diagnostics["same_answer_rate"] == 0.0  # pair diagnostics still apply


def dybench_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", "from dybench.cli import main; main()", *args],
                          capture_output=True, text=True, timeout=120, env={**os.environ, "COLUMNS": "200"})


def score_cli(spec: str, tmp_path: Path) -> subprocess.CompletedProcess:
    preds = tmp_path / "preds.jsonl"
    preds.write_text(json.dumps({"id": "x", "output": "A"}) + "\n")
    return dybench_cli("score", "--data", spec, "--predictions", str(preds), "--out", str(tmp_path / "scored"))


def test_more_options_than_letters_is_a_one_line_error_naming_the_row(tmp_path):
    root = tmp_path / "DyBench"
    (root / "json").mkdir(parents=True)
    options = [f"option {n}" for n in range(27)]
    rows = [{"video": "a.mp4", "question": "Which?", "candidates": options, "answer": "option 0"}]
    (root / "json" / "moving_direction.json").write_text(json.dumps(rows))
    result = score_cli(f"dybench:{root}", tmp_path)
    assert_one_line_error(result, "moving_direction.json row 0", "'candidates'", "27 options", "at most 26")


@pytest.mark.parametrize("root", ["videos/{nope}", "videos/{0}", "videos/{category", "videos/{category.x}"])
def test_an_unknown_placeholder_in_video_roots_is_a_one_line_error(tmp_path, root):
    release = write_release(tmp_path / "DyBench")
    mapping = tmp_path / "roots.yaml"
    mapping.write_text(f"video_roots: [{json.dumps(root)}]\n")
    result = score_cli(f"dybench:{release}?mapping={mapping}", tmp_path)
    assert_one_line_error(result, str(mapping), "video_roots", "{category}")


def test_a_bad_user_mapping_is_named_even_when_another_mapping_follows(tmp_path):
    release = write_release(tmp_path / "DyBench", mapping=CUSTOM_MAPPING + "video_roots: ['{nope}']\n")
    other = tmp_path / "other.yaml"
    other.write_text("pairing: question\n")
    result = score_cli(f"dybench:{release}?mapping={other}", tmp_path)
    assert_one_line_error(result, str(release / "mapping.yaml"), "video_roots")
    assert str(other) not in result.stderr


def test_a_bad_field_name_is_blamed_on_the_mapping_that_set_it(tmp_path):
    release = write_release(tmp_path / "DyBench", mapping=CUSTOM_MAPPING.replace("uid", "[1, 2]"))
    other = tmp_path / "other.yaml"
    other.write_text("fields: {pair: null}\n")
    result = score_cli(f"dybench:{release}?mapping={other}", tmp_path)
    assert_one_line_error(result, str(release / "mapping.yaml"), "fields.id")
    assert str(other) not in result.stderr


@pytest.mark.parametrize("body", ["SECRET_TOKEN=abc123: def: ghi\n", "fields:\n  video: [SECRET_TOKEN\n",
                                  "fields: {video: clip}\npairing: SECRET_TOKEN_abc123\n"])
def test_mapping_errors_name_the_file_and_line_without_echoing_its_content(tmp_path, body):
    release = write_release(tmp_path / "DyBench")
    mapping = tmp_path / "leaky.yaml"
    mapping.write_text(body)
    result = score_cli(f"dybench:{release}?mapping={mapping}", tmp_path)
    assert_one_line_error(result, str(mapping))
    assert "SECRET" not in result.stderr and "abc123" not in result.stderr
