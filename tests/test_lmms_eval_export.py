"""`dybench export lmms-eval` and lmms-eval sample logs in `dybench score`, against the real lmms-eval.

lmms-eval (from PyPI, in its own environment: tests/lmms_eval_venv.py) loads the exported task
folder and runs it with a model that replays a DyBench run's replies (tests/lmms_eval_replay.py),
without dybench importable there. Its Acc and P-Acc, and the scores `dybench score` gives its
sample log, must equal the DyBench run's.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cli_errors import assert_one_line_error
from dybench.families import load_data
from dybench.lmms_eval_hooks import aggregate_acc, aggregate_p_acc, process_results
from dybench.lmms_eval_export import task_docs
from dybench.prompts import render_prompt
from dybench.store import read_run_config
from lmms_eval_venv import ensure_lmms_eval_venv

CLI = [sys.executable, "-c", "from dybench.cli import main; main()"]
TESTS = Path(__file__).parent


def dybench(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=600,
                          env={**os.environ, "COLUMNS": "200"})


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def hard_replies(dataset, outputs: dict[str, str]) -> dict[str, str]:
    """The run's replies rewritten into the forms extraction must read alike on both sides:
    reasoning, option text, a lower-case letter, refusals and two letters (invalid)."""
    forms = [
        lambda item, text: text,
        lambda item, text: f"<think>A or B? Let me see.</think>The answer is ({text[-1]})",
        lambda item, text: item.options["ABCDEFGHIJKLMNOPQRSTUVWXYZ".index(text[-1])],
        lambda item, text: text[-1].lower(),
        lambda item, text: "I cannot tell from the video.",
        lambda item, text: "A or B",
        lambda item, text: "<think>unfinished",
    ]
    return {item.id: forms[i % len(forms)](item, outputs[item.id]) for i, item in enumerate(dataset.items)}


@pytest.fixture(scope="module")
def lmms_eval_python() -> Path:
    return ensure_lmms_eval_venv()


@pytest.fixture(scope="module")
def replayed(synthetic_test_set, lmms_eval_python, tmp_path_factory) -> dict:
    """A baseline:random DyBench run, the exported task, and lmms-eval's runs of it on the run's own
    replies and on their hard rewrites, with their sample logs."""
    work = tmp_path_factory.mktemp("lmms-eval")
    run = work / "run"
    # Seed 3 on this set: Acc 0.46, P-Acc 0.25, so neither equality below can hold by accident of 0 or 1.
    result = dybench("eval", "--model", "baseline:random", "--seed", "3", "--data", str(synthetic_test_set),
                     "--out", str(run), "--no-progress")
    assert result.returncode == 0, result.stderr
    task_dir = work / "task"
    result = dybench("export", "lmms-eval", str(synthetic_test_set), "--out", str(task_dir), "--task", "dybench_test")
    assert result.returncode == 0, result.stderr
    dataset = load_data(str(synthetic_test_set))
    outputs = {row["id"]: row["output"] for row in read_jsonl(run / "predictions.jsonl")}
    (work / "run_replies.json").write_text(json.dumps(outputs))
    (work / "hard_replies.json").write_text(json.dumps(hard_replies(dataset, outputs)))
    report = work / "report.json"
    # Without PYTHONPATH the exported utils.py cannot lean on dybench; offline, as in CI.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(HF_HOME=str(work / "hf"), HF_DATASETS_OFFLINE="1", HF_HUB_OFFLINE="1")
    result = subprocess.run(
        [str(lmms_eval_python), str(TESTS / "lmms_eval_replay.py"), str(task_dir), "dybench_test", str(report),
         f"{work / 'run_replies.json'}:{work / 'logs_run'}", f"{work / 'hard_replies.json'}:{work / 'logs_hard'}"],
        capture_output=True, text=True, timeout=900, env=env, cwd=work)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return {"work": work, "run": run, "task_dir": task_dir, "dataset": dataset,
            "report": json.loads(report.read_text()), "data": str(synthetic_test_set)}


def external_scores(data: str, predictions: Path, out: Path) -> dict:
    result = dybench("score", "--data", data, "--predictions", str(predictions), "--out", str(out))
    assert result.returncode == 0, result.stderr
    return json.loads((out / "scores.json").read_text())


def test_lmms_eval_task_manager_lists_the_exported_task(replayed):
    assert replayed["report"]["listed"] is True
    files = sorted(p.name for p in replayed["task_dir"].iterdir())
    assert files == ["dybench_test.jsonl", "dybench_test.yaml", "utils.py"]
    utils = (replayed["task_dir"] / "utils.py").read_text()
    assert not [line for line in utils.splitlines() if line.startswith(("import dybench", "from dybench"))]


def test_doc_to_text_is_the_prompt_dybench_eval_sends_for_every_item(replayed):
    template = read_run_config(replayed["run"]).prompt  # the template the run was asked with
    prompts = replayed["report"]["prompts"]
    assert set(prompts) == {item.id for item in replayed["dataset"].items}
    for item in replayed["dataset"].items:
        assert prompts[item.id] == render_prompt(item, template), item.id
        assert replayed["report"]["visuals"][item.id] == [str(replayed["dataset"].video_path(item).resolve())]


def test_lmms_eval_acc_and_p_acc_equal_the_dybench_run(replayed):
    scores = json.loads((replayed["run"] / "scores.json").read_text())
    assert 0 < scores["acc"] < 1 and 0 < scores["p_acc"] < 1  # a run either metric could get wrong
    metrics = replayed["report"]["runs"][0]["metrics"]
    assert metrics["dybench_acc,none"] == scores["acc"]
    assert metrics["dybench_p_acc,none"] == scores["p_acc"]


def test_lmms_eval_reads_hard_replies_as_dybench_score_does(replayed, tmp_path):
    rows = [{"id": k, "output": v} for k, v in json.loads((replayed["work"] / "hard_replies.json").read_text()).items()]
    (tmp_path / "hard.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    scores = external_scores(replayed["data"], tmp_path / "hard.jsonl", tmp_path / "scored")
    assert scores["n_invalid"] > 0 and 0 < scores["acc"] < 1
    metrics = replayed["report"]["runs"][1]["metrics"]
    assert metrics["dybench_acc,none"] == scores["acc"]
    assert metrics["dybench_p_acc,none"] == scores["p_acc"]


@pytest.mark.parametrize("which", [0, 1], ids=["run-replies", "hard-replies"])
def test_an_lmms_eval_sample_log_scores_like_dybench(replayed, which, tmp_path):
    (log,) = replayed["report"]["runs"][which]["sample_logs"]
    rows = read_jsonl(Path(log))
    assert {"doc_id", "target", "filtered_resps", "doc_hash"} <= set(rows[0])  # lmms-eval's own row shape
    # `input` is the context lmms-eval gave the model: DyBench's prompt.
    assert {row["dybench_acc"]["id"]: row["input"] for row in rows} == replayed["report"]["prompts"]
    scores = external_scores(replayed["data"], Path(log), tmp_path / "scored")
    assert scores["source"]["format"] == "lmms-eval"
    if which == 0:
        expected = json.loads((replayed["run"] / "scores.json").read_text())
    else:
        replies = json.loads((replayed["work"] / "hard_replies.json").read_text())
        hard = [{"id": k, "output": v} for k, v in replies.items()]
        (tmp_path / "hard.jsonl").write_text("".join(json.dumps(row) + "\n" for row in hard))
        expected = external_scores(replayed["data"], tmp_path / "hard.jsonl", tmp_path / "expected")
    for key in ("acc", "p_acc", "n_items", "n_pairs", "n_invalid", "n_missing"):
        assert scores[key] == expected[key], key
    assert {c: (b["acc"], b["p_acc"]) for c, b in scores["per_category"].items()} == \
           {c: (b["acc"], b["p_acc"]) for c, b in expected["per_category"].items()}


# --- without lmms-eval: the hooks' rules and bad sample logs ------------------------------------------


def test_a_pair_missing_a_clip_counts_wrong_in_p_acc(synthetic_test_set):
    docs = task_docs(load_data(str(synthetic_test_set)))
    outcomes = [process_results(doc, [f"Answer: {doc['answer']}"])["dybench_p_acc"] for doc in docs]
    assert aggregate_acc(outcomes) == aggregate_p_acc(outcomes) == 1.0
    first_pair = docs[0]["pair_id"]
    partial = [o for o in outcomes if not (o["pair_id"] == first_pair and o["id"] != docs[0]["id"])]
    assert aggregate_p_acc(partial) == (docs[0]["dataset_pairs"] - 1) / docs[0]["dataset_pairs"]
    assert aggregate_acc(partial) < 1.0


def test_export_refuses_a_family_with_its_own_answer_rule(tmp_path):
    from test_timeblind import write_timeblind

    data = write_timeblind(tmp_path / "TimeBlind")
    result = dybench("export", "lmms-eval", f"timeblind:{data}", "--out", str(tmp_path / "task"))
    assert_one_line_error(result, "timeblind family reads answers its own way")
    assert not (tmp_path / "task").exists()


def test_a_malformed_sample_log_line_is_one_line_naming_file_and_line(synthetic_test_set, tmp_path):
    item = load_data(str(synthetic_test_set)).items[0]
    good = {"doc_id": 0, "target": item.answer, "filtered_resps": "Answer: A", "dybench_acc": {"id": item.id}}
    log = tmp_path / "samples_dybench.jsonl"
    log.write_text(json.dumps(good) + "\n" + '{"doc_id": 1, "filtered_resps": \n')
    assert_one_line_error(dybench("score", "--data", str(synthetic_test_set), "--predictions", str(log),
                                  "--out", str(tmp_path / "s")), f"{log}:2", "not valid JSON")
    log.write_text(json.dumps(good) + "\n" + json.dumps({"doc_id": 1, "filtered_resps": "B"}) + "\n")
    assert_one_line_error(dybench("score", "--data", str(synthetic_test_set), "--predictions", str(log),
                                  "--out", str(tmp_path / "s")), f"{log}:2", "names no DyBench item")
    log.write_text(json.dumps(good) + "\n" + json.dumps({**good, "filtered_resps": ["A", "B"]}) + "\n")
    assert_one_line_error(dybench("score", "--data", str(synthetic_test_set), "--predictions", str(log),
                                  "--out", str(tmp_path / "s")), f"{log}:2", "got 2 replies")
    log.write_text(json.dumps(good) + "\n" + json.dumps(good) + "\n")
    assert_one_line_error(dybench("score", "--data", str(synthetic_test_set), "--predictions", str(log),
                                  "--out", str(tmp_path / "s")), f"{log}:2", "already given")
