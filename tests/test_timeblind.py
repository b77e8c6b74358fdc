"""TimeBlind: loading data.jsonl, and Acc / Q-Acc / V-Acc / I-Acc equal to the reference scorer's.

Two kinds of checks: hand-computed expected values on small noisy cases, and equality (to the last
digit) with `Oracle`, a line-by-line transcription of the reference scorer's logic
(Baiqi-Li/TimeBlind utils.py: extract_answer, build_answers, get_scores) kept here as the yardstick.
"""

from __future__ import annotations

import json
import random
import re
import unicodedata
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dybench.cli import app
from dybench.families import load_data
from dybench.errors import DyBenchError
from dybench.metrics import score_predictions
from dybench.schema import Prediction
from dybench.timeblind import extract_choice, load_timeblind

# --- the oracle: a transcription of the reference scorer --------------------------------------


class Oracle:
    """The reference scorer's behaviour, transcribed as plainly as possible (not our code path)."""

    @staticmethod
    def normalize(s):
        s = unicodedata.normalize("NFKC", s or "")
        return re.sub(r"\s+", " ", s).strip()

    @classmethod
    def extract(cls, output, task_type):
        if not output or not str(output).strip():
            return -1
        if task_type not in ("yes_no", "multiple_choice"):
            raise ValueError(task_type)
        text = cls.normalize(output)
        if task_type == "yes_no":
            for pat in (r"(?i)(?:final(?: answer)?|answer|prediction)\s*[:：]\s*(yes|no)\b",
                        r"(?i)\b(yes|no)\b(?=[\s\.\,\!\?\)]|$)"):
                m = re.search(pat, text)
                if m:
                    return 1 if m.group(1).lower() == "yes" else 0
            return -1
        anchor = r"(?i)(?:final(?: answer)?|answer|prediction)\s*[:：]\s*([AB])\b"
        for pat in (anchor, r"(?i)(?:option|choice)\s*[:：]?\s*([AB])\b", r"(?i)[\(\[\{]\s*([AB])\s*[\)\]\}]",
                    r"(?i)\b([AB])\s*[\.\)]\b"):
            m = re.search(pat, text)
            if m:
                return 1 if m.group(1).upper() == "A" else 0
        last = r"(?i)(?<![A-Za-z0-9/])([AB])(?![A-Za-z0-9/])"
        m = re.search(anchor, text)
        if m:
            return 1 if m.group(1).upper() == "A" else 0
        kw = re.search(r"(?i)\b(final(?: answer)?|answer|prediction)\b", text)
        if kw:
            m = re.search(last, text[: kw.start()])
            if m:
                return 1 if m.group(1).upper() == "A" else 0
            m = re.search(last, text[kw.end():])
            if m:
                return 1 if m.group(1).upper() == "A" else 0
        m = re.search(last, text)
        if m:
            return 1 if m.group(1).upper() == "A" else 0
        return -1

    @classmethod
    def build_answers(cls, predictions, dataset):
        groups = {}
        for pred in predictions:
            idx = pred.get("index")
            if idx is None:
                continue
            groups.setdefault(idx // 4, {})[idx % 4] = pred
        max_idx = len(dataset) - 1
        answers = {}
        for sample_id, group in groups.items():
            try:
                if len(group) != 4 or not all(r in group for r in [0, 1, 2, 3]):
                    raise ValueError("incomplete")
                idxs = [group[r].get("index") for r in range(4)]
                if not all(0 <= i <= max_idx for i in idxs):
                    raise IndexError("out of bounds")
                vals = [cls.extract(group[r].get("model_output"), dataset[idxs[r]]["type"]) for r in range(4)]
            except Exception:
                vals = [-1, -1, -1, -1]
            answers[str(sample_id)] = dict(zip(["q0_i0", "q0_i1", "q1_i0", "q1_i1"], map(float, vals)))
        return answers

    @staticmethod
    def get_scores(answers):
        q = v = a = i_ = 0.0
        n = len(answers)
        for r in answers.values():
            qs = int(r["q0_i0"] == 1.0 and r["q0_i1"] == 0.0) + int(r["q1_i1"] == 1.0 and r["q1_i0"] == 0.0)
            vs = int(r["q0_i0"] == 1.0 and r["q1_i0"] == 0.0) + int(r["q1_i1"] == 1.0 and r["q0_i1"] == 0.0)
            q += qs
            v += vs
            a += sum([r["q0_i0"] == 1.0, r["q0_i1"] == 0.0, r["q1_i0"] == 0.0, r["q1_i1"] == 1.0])
            i_ += 1 if qs == 2 and vs == 2 else 0
        return {"Q_Acc": q / (n * 2), "V_Acc": v / (n * 2), "Acc": a / (n * 4), "I_Acc": i_ / n}


# --- fixtures ----------------------------------------------------------------------------------

TYPES = ["yes_no", "multiple_choice", "yes_no", "multiple_choice"]
EXPECTED_TEXT = {"yes_no": ["Yes", "No", "No", "Yes"], "multiple_choice": ["A", "B", "B", "A"]}


def write_timeblind(folder: Path, n_instances: int = 4, types=None) -> Path:
    """A TimeBlind-layout folder named like the release (`TimeBlind/data.jsonl`, paths from its parent)."""
    folder.mkdir(parents=True, exist_ok=True)
    types = types or [TYPES[i % len(TYPES)] for i in range(n_instances)]
    rows = []
    for instance in range(n_instances):
        for role in range(4):
            index = instance * 4 + role
            rows.append({
                "index": index,
                "video_path": f"{folder.name}/videos/vid_{instance:05d}_{role // 2 if role < 2 else role - 2}.mp4",
                "question": f"Question {role // 2} of instance {instance}?",
                "answer": EXPECTED_TEXT[types[instance]][role],
                "type": types[instance],
            })
    path = folder / "data.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def reference_dataset(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def ours(path: Path, rows: list[dict]) -> dict:
    dataset = load_timeblind(path)
    from dybench.external_predictions import timeblind_predictions

    return score_predictions(dataset, timeblind_predictions(dataset, rows), timeblind_rows=rows)["timeblind"]


def oracle(path: Path, rows: list[dict]) -> dict:
    return Oracle.get_scores(Oracle.build_answers(rows, reference_dataset(path)))


def assert_same_as_reference(path: Path, rows: list[dict]) -> dict:
    mine, theirs = ours(path, rows), oracle(path, rows)
    assert (mine["acc"], mine["q_acc"], mine["v_acc"], mine["i_acc"]) == (
        theirs["Acc"], theirs["Q_Acc"], theirs["V_Acc"], theirs["I_Acc"])
    return mine


# --- extraction ------------------------------------------------------------------------------

ADVERSARIAL = [
    # (output, type, expected) -- what the reference makes of awkward replies
    ("Yes", "yes_no", 1),
    ("no.", "yes_no", 0),
    ("YES!", "yes_no", 1),
    ("Ｎｏ", "yes_no", 0),  # full-width letters fold to "No"
    ("Final answer：yes", "yes_no", 1),  # full-width colon
    ("I think yes. Final answer: no", "yes_no", 0),  # an explicit answer beats an earlier token
    ("Nope", "yes_no", -1),
    ("No-one can tell; yes.", "yes_no", 1),  # "No-" is not a standalone token
    ("Yes: the ball rolls", "yes_no", -1),  # a colon after the token is not an allowed follower
    ("I cannot say", "yes_no", -1),
    ("", "yes_no", -1),
    ("   \n ", "multiple_choice", -1),
    ("Answer: b", "multiple_choice", 0),
    ("(A)", "multiple_choice", 1),
    ("[ b ]", "multiple_choice", 0),
    ("Option B is right", "multiple_choice", 0),
    ("It is a cat", "multiple_choice", 1),  # the article "a" counts as A, as in the reference
    ("A/B testing is hard", "multiple_choice", -1),  # letters next to "/" are not standalone
    ("The answer is B.", "multiple_choice", 0),
    ("B. because the answer: A", "multiple_choice", 1),  # "answer: A" is checked first
    ("at 3 a.m.", "multiple_choice", 1),  # "a.m" matches the "A." pattern
    ("Neither", "multiple_choice", -1),
    ("adoption b", "multiple_choice", 0),  # "option b" inside a longer word still matches
]


@pytest.mark.parametrize("output,kind,expected", ADVERSARIAL)
def test_extraction_matches_the_reference_on_adversarial_strings(output, kind, expected):
    assert extract_choice(output, kind) == expected
    assert Oracle.extract(output, kind) == expected


def test_extraction_agrees_with_the_reference_on_random_noisy_replies():
    rng = random.Random(7)
    words = ["Yes", "yes", "No", "no", "A", "a", "B", "b", "(A)", "[b]", "answer:", "Answer：", "final", "option",
             "choice:", "prediction:", "maybe", "not", "a.m.", "A/B", "B)", "x", ".", ",", "!", "?", "Ｙｅｓ", "\n", "\t"]
    for _ in range(3000):
        text = " ".join(rng.choice(words) for _ in range(rng.randint(0, 6)))
        for kind in ("yes_no", "multiple_choice"):
            assert extract_choice(text, kind) == Oracle.extract(text, kind), (text, kind)


# --- loading -----------------------------------------------------------------------------------


def test_load_maps_rows_to_items_with_pairs_per_instance_question(tmp_path):
    path = write_timeblind(tmp_path / "TimeBlind", n_instances=2)
    dataset = load_data(f"timeblind:{path}")
    assert dataset.family == "timeblind" and len(dataset.items) == 8
    first, second = dataset.items[0], dataset.items[4]
    assert first.options == ["Yes", "No"] and first.answer == "A" and first.meta["role"] == "q0_i0"
    assert second.options == ["A", "B"] and dataset.items[5].answer == "B"
    assert first.video == "videos/vid_00000_0.mp4"  # the release's leading "TimeBlind/" is dropped
    assert dataset.video_path(first) == (tmp_path / "TimeBlind" / "videos" / "vid_00000_0.mp4").resolve()
    pairs = {}
    for item in dataset.items:
        pairs.setdefault(item.pair_id, []).append(item.answer)
    assert len(pairs) == 4 and all(sorted(a) == ["A", "B"] for a in pairs.values())
    assert dataset.notes == []


def test_load_rejects_a_video_path_outside_the_folder(tmp_path):
    path = write_timeblind(tmp_path / "TimeBlind", n_instances=1)
    rows = reference_dataset(path)
    rows[2]["video_path"] = "../../etc/passwd"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(DyBenchError, match=r"data.jsonl:3: .*leaves the dataset folder"):
        load_timeblind(path)


def test_load_names_the_line_of_a_bad_type(tmp_path):
    path = write_timeblind(tmp_path / "TimeBlind", n_instances=1)
    rows = reference_dataset(path)
    rows[1]["type"] = "open_ended"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(DyBenchError, match=r"data.jsonl:2: field type"):
        load_timeblind(path)


# --- scores ------------------------------------------------------------------------------------


def test_hand_computed_scores_with_noisy_outputs_and_an_incomplete_instance(tmp_path):
    path = write_timeblind(tmp_path / "TimeBlind", n_instances=4)
    rows = [
        # instance 0 (yes/no): all right, chatty
        {"index": 0, "model_output": "Yes, it does."}, {"index": 1, "model_output": "no"},
        {"index": 2, "model_output": "Answer: No"}, {"index": 3, "model_output": "YES!"},
        # instance 1 (A/B): q0 right on both videos, q1 wrong on i1 (invalid reply)
        {"index": 4, "model_output": "(A)"}, {"index": 5, "model_output": "The answer is B."},
        {"index": 6, "model_output": "B) the second"}, {"index": 7, "model_output": "Neither"},
        # instance 2 (yes/no): role 3 missing -> all four wrong, still in the denominator
        {"index": 8, "model_output": "Yes"}, {"index": 9, "model_output": "No"}, {"index": 10, "model_output": "No"},
        # instance 3: no rows at all -> outside the denominator (reported)
    ]
    scores = assert_same_as_reference(path, rows)
    # 3 instances: correct items 4 + 3 + 0 = 7 of 12; questions 2 + 1 + 0 of 6; videos 2 + 1 + 0 of 6
    assert scores["acc"] == 7 / 12
    assert scores["q_acc"] == 3 / 6
    assert scores["v_acc"] == 3 / 6
    assert scores["i_acc"] == 1 / 3
    assert scores["n_instances"] == 3
    assert scores["n_incomplete_instances"] == 1
    assert scores["n_instances_without_predictions"] == 1
    assert scores["n_instances_dataset"] == 4


def test_unordered_rows_duplicates_and_stray_indices_follow_the_reference(tmp_path):
    path = write_timeblind(tmp_path / "TimeBlind", n_instances=2)
    rows = [
        {"index": 3, "model_output": "Yes"}, {"index": 0, "model_output": "No"},  # index 0 answered again below
        {"index": 2, "model_output": "No"}, {"index": 1, "model_output": "No"},
        {"index": 0, "model_output": "Yes"},  # a later row with the same index wins
        {"index": None, "model_output": "Yes"},  # no index: ignored
        {"index": 41, "model_output": "A"},  # beyond the data: its own instance, scored all wrong
        {"index": 4, "model_output": 7}, {"index": 5, "model_output": "B"},  # non-text output: instance wrong
        {"index": 6, "model_output": "B"}, {"index": 7, "model_output": "A"},
    ]
    scores = assert_same_as_reference(path, rows)
    assert scores["n_instances"] == 3 and scores["i_acc"] == 1 / 3 and scores["acc"] == 4 / 12


def test_random_prediction_files_score_exactly_like_the_reference(tmp_path):
    path = write_timeblind(tmp_path / "TimeBlind", n_instances=12)
    rng = random.Random(3)
    replies = ["Yes", "No", "yes.", "no!", "A", "B", "(a)", "Answer: B", "maybe", "", None, "a cat", "Option A",
               "final answer: yes", "B.", "Ｂ"]
    for trial in range(60):
        rows = [{"index": i, "model_output": rng.choice(replies)} for i in range(48) if rng.random() > 0.1]
        rng.shuffle(rows)
        if trial % 5 == 0:
            rows.append({"index": rng.randrange(48), "model_output": rng.choice(replies)})
        if rows:
            assert_same_as_reference(path, rows)


def test_a_constant_model_scores_zero_pair_accuracy_on_timeblind(tmp_path):
    path = write_timeblind(tmp_path / "TimeBlind", n_instances=4)
    dataset = load_timeblind(path)
    for reply in ("Yes", "A"):
        scores = score_predictions(dataset, [Prediction(id=i.id, key="k", output=reply) for i in dataset.items])
        assert scores["p_acc"] == 0.0 and scores["timeblind"]["i_acc"] == 0.0 and scores["timeblind"]["q_acc"] == 0.0


def test_score_command_reads_timeblinds_own_prediction_format(tmp_path):
    path = write_timeblind(tmp_path / "TimeBlind", n_instances=3)
    rows = [{"index": i, "video_path": "x", "question": "q", "model_output": EXPECTED_TEXT[TYPES[i // 4]][i % 4]}
            for i in range(12) if i != 11]
    preds = tmp_path / "preds.json"
    preds.write_text(json.dumps(rows, indent=2))
    out = tmp_path / "scored"
    result = CliRunner().invoke(app, ["score", "--data", f"timeblind:{path}", "--predictions", str(preds),
                                      "--out", str(out), "--model", "perfect-but-one"])
    assert result.exit_code == 0, result.output
    assert "I-Acc" in result.output
    scores = json.loads((out / "scores.json").read_text())
    expected = oracle(path, rows)
    tb = scores["timeblind"]
    assert (tb["acc"], tb["q_acc"], tb["v_acc"], tb["i_acc"]) == (
        expected["Acc"], expected["Q_Acc"], expected["V_Acc"], expected["I_Acc"])
    assert tb["i_acc"] == 2 / 3
    assert scores["n_missing"] == 1 and scores["source"]["model"] == "perfect-but-one"


def test_original_versus_counterfactual_is_not_reported_on_timeblind(tmp_path):
    dataset = load_timeblind(write_timeblind(tmp_path / "TimeBlind", n_instances=2))
    scores = score_predictions(dataset, [Prediction(id=i.id, key="k", output="Yes") for i in dataset.items])
    diagnostics = scores["diagnostics"]
    # both videos of an instance are real clips: neither is "the counterfactual"
    assert diagnostics["transforms_known"] is False
    assert diagnostics["acc_original"] is None and diagnostics["acc_counterfactual"] is None
    assert diagnostics["same_answer_rate"] == 1.0
