"""The lmms-eval hooks of an exported DyBench task: what its YAML's `!function utils.NAME` lines name.

`dybench export lmms-eval` writes this file as the task's `utils.py`, with the import of
`dybench.choice_extraction` replaced by that module's source, so the task runs where dybench is
not installed and reads a reply exactly as `dybench score` does. Standard library only.

Each exported doc carries what scoring needs beyond its reply (written by dybench/lmms_eval_export.py):
`id`, `pair_id`, `options`, `answer` (letter), `prompt` (DyBench's rendered prompt), `video`
(absolute path), `pair_size`, `in_p_acc` (whether its pair counts in P-Acc: more than one clip
and answers that differ), `dataset_items` and `dataset_pairs` (the denominators of Acc and P-Acc).
Rates follow docs/architecture.md: an item without a valid answer, or never asked, is wrong.
"""

from __future__ import annotations

from typing import Any

from dybench.choice_extraction import extract_choice  # exported: replaced by that module's source

ACC = "dybench_acc"
P_ACC = "dybench_p_acc"


def doc_to_visual(doc: dict[str, Any], lmms_eval_specific_kwargs: dict[str, Any] | None = None) -> list[str]:
    return [doc["video"]]


def doc_to_text(doc: dict[str, Any], lmms_eval_specific_kwargs: dict[str, Any] | None = None) -> str:
    """DyBench's prompt for the item, byte for byte; a pre_prompt / post_prompt given through
    lmms-eval's model-specific kwargs is added around it (none by default)."""
    kwargs = lmms_eval_specific_kwargs or {}
    return f"{kwargs.get('pre_prompt', '')}{doc['prompt']}{kwargs.get('post_prompt', '')}"


def doc_to_target(doc: dict[str, Any]) -> str:
    return doc["answer"]


def reply_text(results: Any) -> str | None:
    """The reply in lmms-eval's results for one doc (a list holding one text per request)."""
    while isinstance(results, (list, tuple)) and len(results) == 1:
        results = results[0]
    return results if isinstance(results, str) else None


def process_results(doc: dict[str, Any], results: list[Any]) -> dict[str, dict[str, Any]]:
    """One outcome per doc, under both metric names (lmms-eval hands each aggregation the list of
    its metric's values). The outcome carries the item id, so a sample log names its item."""
    pred = extract_choice(reply_text(results), list(doc["options"]))
    outcome = {
        "id": doc["id"],
        "pair_id": doc["pair_id"],
        "pred": pred,
        "correct": pred is not None and pred == doc["answer"],
        "pair_size": doc["pair_size"],
        "in_p_acc": doc["in_p_acc"],
        "dataset_items": doc["dataset_items"],
        "dataset_pairs": doc["dataset_pairs"],
    }
    return {ACC: outcome, P_ACC: outcome}


def _first_per_item(outcomes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    seen: dict[str, dict[str, Any]] = {}
    for outcome in outcomes:
        seen.setdefault(outcome["id"], outcome)  # first answer wins, as in dybench's prediction store
    return list(seen.values())


def aggregate_acc(outcomes: list[dict[str, Any]]) -> float | None:
    """Right items over all items of the dataset (items never asked count as wrong)."""
    outcomes = _first_per_item(outcomes)
    if not outcomes:
        return None
    total = outcomes[0]["dataset_items"]
    return sum(1 for o in outcomes if o["correct"]) / total if total else None


def aggregate_p_acc(outcomes: list[dict[str, Any]]) -> float | None:
    """Pairs with every clip right over the dataset's P-Acc pairs (a pair missing a clip is wrong)."""
    outcomes = _first_per_item(outcomes)
    if not outcomes:
        return None
    right: dict[str, int] = {}
    size: dict[str, int] = {}
    for o in outcomes:
        if o["in_p_acc"]:
            right[o["pair_id"]] = right.get(o["pair_id"], 0) + int(bool(o["correct"]))
            size[o["pair_id"]] = o["pair_size"]
    total = outcomes[0]["dataset_pairs"]
    return sum(1 for pair, n in right.items() if n == size[pair]) / total if total else None
