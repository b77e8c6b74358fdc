"""Acc, P-Acc, intervals and shortcut diagnostics (dybench.metrics)."""

from __future__ import annotations

from pathlib import Path

from dybench.data import Dataset
from dybench.metrics import score_predictions
from dybench.schema import Item, Prediction


def item(pair: int, transform: str, answer: str, category: str = "moving_direction", n_options: int = 4,
         task: str | None = None, kind: str = "dynamic") -> Item:
    return Item(
        id=f"{category}-{pair}-{transform}", pair_id=f"{category}-{pair}", task=task or category, category=category,
        video=f"videos/{pair}-{transform}.mp4", question="Which way?", options=["left", "right", "up", "down"][:n_options],
        answer=answer, transform=transform, kind=kind,
    )


def make_dataset() -> Dataset:
    """Four direction pairs (4 options) and four event pairs (2 options); every pair's answers differ."""
    items = []
    for pair, (a, b) in enumerate([("A", "B"), ("B", "A"), ("C", "D"), ("D", "C")]):
        items += [item(pair, "original", a), item(pair, "hflip", b)]
    for pair, (a, b) in enumerate([("A", "B"), ("B", "A"), ("A", "B"), ("B", "A")]):
        items += [item(pair, "original", a, "event_sequence", 2), item(pair, "swap_segments", b, "event_sequence", 2)]
    return Dataset("unit", "synthetic", Path("."), items, "fp")


def answers(dataset: Dataset, choose) -> list[Prediction]:
    return [Prediction(id=i.id, key=f"run/{i.id}", output=str(choose(i)), pred=choose(i)) for i in dataset.items]


def test_a_constant_answer_scores_zero_pair_accuracy_whatever_the_letter():
    dataset = make_dataset()
    for constant in "ABCD":
        scores = score_predictions(dataset, answers(dataset, lambda i: constant))
        assert scores["p_acc"] == 0.0
        assert all(block["p_acc"] == 0.0 for block in scores["per_category"].values())
        assert scores["diagnostics"]["same_answer_rate"] == 1.0
        assert scores["diagnostics"]["answer_change_rate"] == 0.0
    assert score_predictions(dataset, answers(dataset, lambda i: "A"))["acc"] == 6 / 16


def test_pair_counts_only_when_both_items_are_right():
    dataset = make_dataset()
    wrong = {"moving_direction-0-hflip", "event_sequence-1-original", "event_sequence-1-swap_segments"}
    scores = score_predictions(dataset, answers(dataset, lambda i: "D" if i.id in wrong and i.answer != "D" else
                                                ("A" if i.id in wrong else i.answer)))
    assert scores["acc"] == 13 / 16
    assert scores["p_acc"] == 6 / 8
    assert scores["per_category"]["moving_direction"] == {**scores["per_category"]["moving_direction"],
                                                          "acc": 7 / 8, "p_acc": 3 / 4, "n_pairs": 4}
    assert scores["per_category"]["event_sequence"]["p_acc"] == 3 / 4
    assert scores["per_task"]["event_sequence"]["n_items"] == 8
    # accuracy on the untouched clips vs their counterfactuals
    assert scores["diagnostics"]["acc_original"] == 7 / 8
    assert scores["diagnostics"]["acc_counterfactual"] == 6 / 8


def test_missing_and_invalid_predictions_count_as_wrong_and_are_reported():
    dataset = make_dataset()
    rows = answers(dataset, lambda i: i.answer)
    rows = rows[2:]  # pair 0 of moving_direction unanswered
    rows[0] = Prediction(id=rows[0].id, key="k", output="I am not sure", pred=None)
    rows[1] = Prediction(id=rows[1].id, key="k", output=None, pred=None, error="unreadable video")
    scores = score_predictions(dataset, rows)
    assert scores["n_items"] == 16 and scores["n_missing"] == 2
    assert scores["n_invalid"] == 2 and scores["n_errors"] == 1
    assert scores["invalid_rate"] == 2 / 14
    assert scores["acc"] == 12 / 16 and scores["p_acc"] == 6 / 8
    assert scores["missing_examples"] == ["moving_direction-0-original", "moving_direction-0-hflip"]
    # a pair with an unanswered item has no "same answer" verdict
    assert scores["diagnostics"]["n_pairs_answered"] == 6


def test_letters_out_of_range_are_invalid_not_right_or_wrong_options():
    dataset = make_dataset()
    scores = score_predictions(dataset, answers(dataset, lambda i: "C" if i.category == "event_sequence" else i.answer))
    assert scores["per_category"]["event_sequence"]["acc"] == 0.0
    assert scores["n_invalid"] == 8


def test_intervals_are_reproducible_and_contain_the_estimate():
    dataset = make_dataset()
    half = answers(dataset, lambda i: i.answer if i.pair_id.endswith(("0", "1")) else "A")
    first = score_predictions(dataset, half)
    second = score_predictions(dataset, list(reversed(half)))
    assert first["p_acc_ci"] == second["p_acc_ci"] and first["acc_ci"] == second["acc_ci"]
    low, high = first["p_acc_ci"]
    assert 0.0 <= low < first["p_acc"] < high <= 1.0
    assert first["intervals"]["n_boot"] == 1000 and first["intervals"]["seed"] == 0
    perfect = score_predictions(dataset, answers(dataset, lambda i: i.answer))
    assert perfect["p_acc_ci"] == [1.0, 1.0]


def test_static_control_pairs_are_reported_apart_from_pair_accuracy():
    dataset = make_dataset()
    static = [item(9, "original", "A", "static", kind="static", task="static_color"),
              item(9, "hflip", "A", "static", kind="static", task="static_color")]
    dataset.items.extend(static)
    scores = score_predictions(dataset, answers(dataset, lambda i: "A"))
    assert scores["p_acc"] == 0.0 and scores["n_pairs"] == 8
    assert scores["control"] == {"n_pairs": 1, "pair_consistency": 1.0}
    assert scores["per_category"]["static"]["n_pairs"] == 0 and scores["per_category"]["static"]["p_acc"] is None


def test_predictions_for_unknown_items_are_counted_not_scored():
    dataset = make_dataset()
    rows = answers(dataset, lambda i: i.answer) + [Prediction(id="stray", key="k", pred="A")]
    scores = score_predictions(dataset, rows)
    assert scores["n_unknown_predictions"] == 1 and scores["acc"] == 1.0


def _official_copy(built: Path, root: Path) -> Path:
    """The built set rewritten in the official layout (json/<category>.json, renamed fields)."""
    import json
    import shutil

    from dybench.data import read_manifest

    rows: dict[str, list[dict]] = {}
    for entry in read_manifest(built / "manifest.jsonl"):
        target = root / "videos" / entry.category / Path(entry.video).name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(built / entry.video, target)
        rows.setdefault(entry.category, []).append(
            {"clip": target.name, "q": entry.question, "opts": entry.options, "gt": entry.answer_text})
    (root / "json").mkdir(parents=True)
    for category, entries in rows.items():
        (root / "json" / f"{category}.json").write_text(json.dumps(entries))
    (root / "mapping.yaml").write_text("fields: {video: clip, question: q, options: opts, answer: gt}\n")
    return root


def _timeblind_copy(built: Path, root: Path) -> Path:
    """Two TimeBlind instances (one yes/no, one A/B) over clips of the built set."""
    import json
    import shutil

    clips = sorted((built / "videos").rglob("*.mp4"))[:4]
    (root / "videos").mkdir(parents=True)
    rows = []
    for instance, kind in enumerate(("yes_no", "multiple_choice")):
        for role in range(4):
            clip = clips[(instance * 2 + role % 2) % len(clips)]
            shutil.copyfile(clip, root / "videos" / clip.name)
            answer = {"yes_no": ["Yes", "No", "No", "Yes"], "multiple_choice": ["A", "B", "B", "A"]}[kind][role]
            rows.append({"index": instance * 4 + role, "video_path": f"videos/{clip.name}",
                         "question": "Does the object move left?" if kind == "yes_no" else "Which first? A. x B. y",
                         "answer": answer, "type": kind})
    (root / "data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root / "data.jsonl"


def test_constant_baseline_scores_exactly_zero_pair_accuracy_on_every_dataset_family(
        synthetic_test_set, synthetic_train_set, tmp_path):
    from dybench.evaluate import run_eval

    specs = {
        "synthetic test": str(synthetic_test_set),
        "synthetic train (with static controls)": str(synthetic_train_set),
        "official layout": f"dybench:{_official_copy(synthetic_test_set, tmp_path / 'DyBench')}",
        "timeblind": f"timeblind:{_timeblind_copy(synthetic_test_set, tmp_path / 'TimeBlind')}",
    }
    for number, (name, spec) in enumerate(specs.items()):
        scores = run_eval("baseline:constant", spec, tmp_path / f"run{number}", progress=False)
        assert scores["n_pairs"] > 0 and scores["n_missing"] == 0, name
        assert scores["p_acc"] == 0.0, name
        assert all(block["p_acc"] in (0.0, None) for block in scores["per_category"].values()), name
        assert scores["diagnostics"]["answer_change_rate"] in (0.0, None), name
    assert scores["timeblind"]["i_acc"] == 0.0 and scores["timeblind"]["n_instances"] == 2


def test_score_command_recomputes_a_runs_scores_file(synthetic_test_set, tmp_path):
    import json

    from typer.testing import CliRunner

    from dybench.cli import app
    from dybench.evaluate import run_eval

    run_dir = tmp_path / "run"
    original = run_eval("baseline:random", str(synthetic_test_set), run_dir, progress=False)
    (run_dir / "scores.json").unlink()
    result = CliRunner().invoke(app, ["score", str(run_dir)])
    assert result.exit_code == 0, result.output
    assert "P-Acc" in result.output and "answer changed" in result.output
    assert json.loads((run_dir / "scores.json").read_text()) == json.loads(json.dumps(original))
    result = CliRunner().invoke(app, ["score", str(run_dir), "--data", str(synthetic_test_set)])
    assert result.exit_code != 0
