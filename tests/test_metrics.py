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
    assert scores["n_invalid"] == 1 and scores["n_errors"] == 1  # a failed request is an error, not also invalid
    assert scores["invalid_rate"] == 1 / 13  # of the 13 items that got a reply
    assert scores["acc"] == 12 / 16 and scores["p_acc"] == 6 / 8
    assert scores["missing_examples"] == ["moving_direction-0-original", "moving_direction-0-hflip"]
    # a pair with an unanswered item has no "same answer" verdict
    assert scores["diagnostics"]["n_pairs_answered"] == 6


def test_every_item_is_counted_in_exactly_one_outcome():
    dataset = make_dataset()
    rows = {row.id: row for row in answers(dataset, lambda i: i.answer)}
    ids = [item.id for item in dataset.items]
    del rows[ids[0]]                                                                  # missing
    rows[ids[1]] = Prediction(id=ids[1], key="k", output=None, error="timeout")     # error, no answer
    rows[ids[2]] = Prediction(id=ids[2], key="k", output="A", pred="A", error="x")  # error beside an answer
    rows[ids[3]] = Prediction(id=ids[3], key="k", output="hm", pred=None)            # invalid
    rows[ids[4]] = Prediction(id=ids[4], key="k", output="Z", pred="Z")              # invalid: no such option
    wrong = next(letter for letter in "ABCD" if letter != dataset.items[5].answer)
    rows[ids[5]] = Prediction(id=ids[5], key="k", output=wrong, pred=wrong)          # wrong
    scores = score_predictions(dataset, rows)
    outcomes = {name: scores[name] for name in ("n_correct", "n_wrong", "n_invalid", "n_errors", "n_missing")}
    assert outcomes == {"n_correct": 10, "n_wrong": 1, "n_invalid": 2, "n_errors": 2, "n_missing": 1}
    assert sum(outcomes.values()) == scores["n_items"] == 16
    assert scores["acc"] == 10 / 16  # an errored row counts as wrong even when it carries a letter
    assert scores["invalid_rate"] == 2 / 13


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


def _binomial_quantile(n: int, p: float, q: float) -> float:
    """The q-quantile of Binomial(n, p) / n, summed exactly from the probability mass function."""
    from math import comb

    total = 0.0
    for k in range(n + 1):
        total += comb(n, k) * p ** k * (1 - p) ** (n - k)
        if total >= q:
            return k / n
    return 1.0


def test_intervals_resample_whole_pairs_not_single_items():
    """40 pairs, 20 with both items right and 20 with both wrong. Drawing pairs, Acc over a resample
    is Binomial(40, 1/2) / 40 (95% within about [0.35, 0.65]); drawing the 80 items one by one
    would give Binomial(80, 1/2) / 80, about [0.39, 0.61]. The interval must be the pairs' one."""
    items = []
    for pair in range(40):
        items += [item(pair, "original", "A", n_options=2), item(pair, "hflip", "B", n_options=2)]
    dataset = Dataset("pairs", "synthetic", Path("."), items, "fp")
    half_right = answers(dataset, lambda i: i.answer if int(i.pair_id.split("-")[-1]) < 20 else "BA"[i.answer == "B"])
    scores = score_predictions(dataset, half_right)
    assert scores["acc"] == 0.5 and scores["p_acc"] == 0.5 and scores["n_pairs"] == 40
    pair_low, pair_high = _binomial_quantile(40, 0.5, 0.025), _binomial_quantile(40, 0.5, 0.975)
    item_low, item_high = _binomial_quantile(80, 0.5, 0.025), _binomial_quantile(80, 0.5, 0.975)
    assert (pair_low, pair_high) == (0.35, 0.65) and (item_low, item_high) == (0.3875, 0.6125)
    step = 1 / 40  # 1000 draws put the empirical quantiles within one pair of the exact ones
    for name in ("acc_ci", "p_acc_ci"):
        low, high = scores[name]
        assert abs(low - pair_low) <= step and abs(high - pair_high) <= step, (name, low, high)
        assert high - low > (item_high - item_low) + step, (name, low, high)


def test_static_control_pairs_are_reported_apart_from_pair_accuracy():
    dataset = make_dataset()
    static = [item(9, "original", "A", "static", kind="static", task="static_color"),
              item(9, "hflip", "A", "static", kind="static", task="static_color")]
    dataset.items.extend(static)
    scores = score_predictions(dataset, answers(dataset, lambda i: "A"))
    assert scores["p_acc"] == 0.0 and scores["n_pairs"] == 8
    assert scores["control"] == {"n_pairs": 1, "pair_consistency": 1.0}
    assert scores["per_category"]["static"]["n_pairs"] == 0 and scores["per_category"]["static"]["p_acc"] is None


def test_original_versus_counterfactual_is_reported_where_the_data_records_transforms():
    scores = score_predictions(make_dataset(), answers(make_dataset(), lambda i: i.answer))
    assert scores["diagnostics"]["transforms_known"] is True
    assert scores["diagnostics"]["n_original"] == 8 and scores["diagnostics"]["n_counterfactual"] == 8


def _pair(options_a: list[str], answer_a: str, options_b: list[str], answer_b: str) -> Dataset:
    common = {"pair_id": "p", "task": "t", "category": "c", "question": "?"}
    return Dataset("two", "synthetic", Path("."), [
        Item(id="a", video="a.mp4", options=options_a, answer=answer_a, **common),
        Item(id="b", video="b.mp4", options=options_b, answer=answer_b, transform="hflip", **common),
    ], "fp")


def _verdict(dataset: Dataset, pred_a: str, pred_b: str) -> tuple[int, int, float]:
    scores = score_predictions(dataset, [Prediction(id="a", key="k", pred=pred_a), Prediction(id="b", key="k", pred=pred_b)])
    return scores["n_pairs"], scores["control"]["n_pairs"], scores["diagnostics"]["same_answer_rate"]


def test_a_pair_whose_options_are_reordered_is_judged_by_option_text():
    reordered = _pair(["left", "right"], "A", ["Right", "left"], "A")  # answers "left" and "Right"
    assert _verdict(reordered, "A", "A") == (1, 0, 0.0)  # different texts: a contrast pair, answers differ
    assert _verdict(reordered, "A", "B") == (1, 0, 1.0)  # "left" twice: the same answer
    static = _pair(["red", "blue"], "A", ["blue", "red"], "B")  # "red" on both clips: a control pair
    assert _verdict(static, "A", "B")[:2] == (0, 1)


def test_a_pair_with_different_option_texts_is_judged_by_letter():
    # TimeBlind-style: the same choice written Yes/No on one clip and A/B on the other
    mixed = _pair(["Yes", "No"], "A", ["A", "B"], "B")
    assert _verdict(mixed, "A", "A") == (1, 0, 1.0)
    same_order = _pair(["left", "right"], "A", ["left", "right"], "B")
    assert _verdict(same_order, "B", "B") == (1, 0, 1.0)


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
