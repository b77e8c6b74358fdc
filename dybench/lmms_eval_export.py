"""`dybench export lmms-eval`: a dataset as an lmms-eval task folder (load it with `--include_path DIR`).

The folder holds `NAME.yaml` (the task), `utils.py` (dybench/lmms_eval_hooks.py with the answer
reader of dybench/choice_extraction.py inlined: no dybench import) and `NAME.jsonl` (one doc per
item, with DyBench's rendered prompt, the clip's absolute path and the pair facts P-Acc needs).
lmms-eval's Acc and P-Acc then equal `dybench score`'s for the same replies; its sample logs come
back through `dybench score --predictions` (dybench/external_predictions.py).
"""

from __future__ import annotations

import inspect
import json
import re
from pathlib import Path
from typing import Any

from dybench import choice_extraction, lmms_eval_hooks
from dybench.atomic import write_text_atomic
from dybench.data import Dataset
from dybench.errors import DyBenchError
from dybench.families import FAMILIES, load_data
from dybench.metrics import item_table, pair_table
from dybench.prompts import render_prompt

DEFAULT_TASK = "dybench"
_TASK_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
_HOOKS_IMPORT = "from dybench.choice_extraction import extract_choice  # exported: replaced by that module's source\n"
_FUTURE = "from __future__ import annotations\n"


def exported_utils_source() -> str:
    """The task's utils.py: the hooks with the answer reader's source in place of its import."""
    hooks = inspect.getsource(lmms_eval_hooks)
    reader = inspect.getsource(choice_extraction).replace(_FUTURE, "")
    if _HOOKS_IMPORT not in hooks:
        raise AssertionError("dybench/lmms_eval_hooks.py lost the import line the exporter replaces")
    header = "# Written by `dybench export lmms-eval`; the answer reader below is dybench/choice_extraction.py.\n"
    return header + hooks.replace(_HOOKS_IMPORT, f"# --- dybench/choice_extraction.py ---\n{reader}\n# ---\n")


def task_docs(dataset: Dataset) -> list[dict[str, Any]]:
    """One lmms-eval doc per item, in manifest order (lmms-eval's doc_id is the row number)."""
    template = FAMILIES.get(dataset.family).template
    items = item_table(dataset, {})
    pairs = pair_table(items).set_index("pair_id")
    in_p_acc = pairs["contrast"] & (pairs["n"] > 1)
    docs = []
    for item in dataset.items:
        docs.append(
            {
                "id": item.id,
                "pair_id": item.pair_id,
                "task": item.task,
                "category": item.category,
                "transform": item.transform,
                "video": str(dataset.video_path(item).resolve()),
                "question": item.question,
                "options": list(item.options),
                "answer": item.answer,
                "prompt": render_prompt(item, template),
                "pair_size": int(pairs.at[item.pair_id, "n"]),
                "in_p_acc": bool(in_p_acc[item.pair_id]),
                "dataset_items": len(dataset.items),
                "dataset_pairs": int(in_p_acc.sum()),
            }
        )
    return docs


def task_yaml(task: str, data_file: Path, dataset: Dataset) -> str:
    """The task config. Written as text: lmms-eval's `!function` tags are not plain YAML. Strings
    are JSON-quoted, which YAML reads as the same string."""
    return "\n".join(
        [
            "# A DyBench dataset as an lmms-eval task, written by `dybench export lmms-eval` (see metadata).",
            f"task: {json.dumps(task)}",
            "dataset_path: json",
            "dataset_kwargs:",
            "  data_files:",
            f"    test: {json.dumps(str(data_file))}",
            "test_split: test",
            "output_type: generate_until",
            "doc_to_visual: !function utils.doc_to_visual",
            "doc_to_text: !function utils.doc_to_text",
            "doc_to_target: !function utils.doc_to_target",
            "generation_kwargs:",
            "  max_new_tokens: 64",
            "  temperature: 0",
            "  top_p: 1.0",
            "  do_sample: false",
            "process_results: !function utils.process_results",
            "metric_list:",
            f"  - metric: {lmms_eval_hooks.ACC}",
            "    aggregation: !function utils.aggregate_acc",
            "    higher_is_better: true",
            f"  - metric: {lmms_eval_hooks.P_ACC}",
            "    aggregation: !function utils.aggregate_p_acc",
            "    higher_is_better: true",
            "metadata:",
            "  version: 1",
            f"  dybench_dataset: {json.dumps(dataset.name)}",
            f"  dybench_fingerprint: {json.dumps(dataset.fingerprint)}",
            "",
        ]
    )


def export_lmms_eval(data: str, out: Path, task: str = DEFAULT_TASK) -> Path:
    """Write the task folder for `--data` into `out`; return the task YAML's path."""
    if not _TASK_NAME.match(task):
        raise DyBenchError(f"--task {task!r}: use letters, digits and underscores, starting with a letter")
    dataset = load_data(data)
    family = FAMILIES.get(dataset.family)
    if family.template.style != "lettered" or family.read_answer is not None:
        raise DyBenchError(
            f"{data}: the {dataset.family} family reads answers its own way; "
            "lmms-eval export covers lettered-option datasets (built folders, dybench:PATH)"
        )
    if not dataset.items:
        raise DyBenchError(f"{data}: no items to export")
    out = out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    data_file = out / f"{task}.jsonl"
    write_text_atomic(data_file, "".join(json.dumps(doc, ensure_ascii=False) + "\n" for doc in task_docs(dataset)))
    write_text_atomic(out / "utils.py", exported_utils_source())
    yaml_path = out / f"{task}.yaml"
    write_text_atomic(yaml_path, task_yaml(task, data_file, dataset))
    return yaml_path
