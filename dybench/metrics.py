"""Scores of one run: Acc, P-Acc (overall, per category, per task), TimeBlind's four metrics,
bootstrap intervals and the diagnostics that expose shortcuts.

Definitions (rates are fractions in [0, 1]):

- every item has exactly one outcome: right (`n_correct`), a valid but wrong letter (`n_wrong`),
  an unreadable answer (`n_invalid`), a failed request or unreadable video (`n_errors`, even when
  the row also carries a letter) or no prediction at all (`n_missing`); the five add up to
  `n_items`. Only the first is right: nothing is dropped;
- Acc = right items / all items of the dataset;
- "the same answer" within a pair means the same option: by letter where the pair's items list
  their options in one order, by option text where they list the same options in different orders
  (a release that shuffles options per video; see `pair_compares_text`);
- a *contrast pair* is a pair_id whose items have different correct answers (every DyBench and
  TimeBlind pair); P-Acc = contrast pairs with every item right / contrast pairs. A model that
  always gives the same answer therefore scores exactly 0. Pairs whose items share the answer
  (static control questions) are reported apart (`control`); an item alone under its pair_id
  (`n_unpaired_items`) counts for Acc only;
- answer-change rate: over contrast pairs where every item got a valid answer, the share where the
  model's answers differ (its complement, `same_answer_rate`, is the shortcut signal);
- Acc on original vs counterfactual clips only where the data records which clip was transformed
  (our manifests); elsewhere (`transforms_known` false) those four fields are None;
- intervals: 95% percentile bootstrap, resampling pairs (items of a pair move together), seeded,
  so the same predictions always give the same interval.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from dybench import __version__
from dybench.data import Dataset
from dybench.families import FAMILIES
from dybench.official import normalise_text
from dybench.schema import Item, Prediction, letter_index
from dybench.score_blocks import ScoringInput, blocks_for

N_BOOTSTRAP = 1000
BOOTSTRAP_SEED = 0
LEVEL = 0.95
"""Families whose items say which clip is the original and which the counterfactual. The official
release and TimeBlind pair real videos: their loaders mark every item "original"."""


def _rate(numerator: float, denominator: float) -> float | None:
    return float(numerator) / float(denominator) if denominator else None


def _valid_letter(value: str | None, n_options: int) -> str | None:
    if not value or len(value) != 1 or not value.isupper():
        return None
    try:
        return value if letter_index(value) < n_options else None
    except ValueError:
        return None


def _as_mapping(predictions: Mapping[str, Prediction] | Iterable[Prediction]) -> dict[str, Prediction]:
    if isinstance(predictions, Mapping):
        return dict(predictions)
    rows: dict[str, Prediction] = {}
    for row in predictions:
        rows.setdefault(row.id, row)  # first answer wins, as in the prediction store
    return rows


def predicted_letter(item: Item, prediction: Prediction, family: str) -> str | None:
    """The letter a prediction counts as: by the dataset family's own rule where it has one
    (TimeBlind reads the raw output with its reference scorer's extraction, so every TimeBlind
    number follows one rule); else the stored `pred` (extracted during eval), or extracted from
    `output` when a row has no `pred` field."""
    entry = FAMILIES.get(family)
    if entry.read_answer is not None:
        return entry.read_answer(item, prediction)
    if "pred" not in prediction.model_fields_set and prediction.output is not None:
        from dybench.prompts import extract_for_item

        return extract_for_item(prediction.output, item, entry.template)
    return _valid_letter(prediction.pred, len(item.options))


def scored_letter(item: Item, prediction: Prediction | None, family: str) -> str | None:
    """The letter a prediction is scored as: none for a missing row or a failed request (even
    where the row also carries a letter), else `predicted_letter`."""
    if prediction is None or prediction.error is not None:
        return None
    return predicted_letter(item, prediction, family)


def is_correct(item: Item, prediction: Prediction | None, family: str) -> bool:
    """Whether the item counts as right: the one rule behind every score (and a row's `correct`)."""
    return letter_is_right(item, scored_letter(item, prediction, family))


def letter_is_right(item: Item, pred: str | None) -> bool:
    return pred is not None and pred == item.answer


def pair_compares_text(members: Sequence[Item]) -> bool:
    """Whether answers within this pair are compared by option text rather than letter: true when
    its items offer the same options in different orders, so one letter names different options.
    In one order, letter and text agree; with different option sets (TimeBlind's Yes/No beside
    A/B) only the position is shared, so the letter it is."""
    texts = [[normalise_text(option) for option in member.options] for member in members]
    reordered = any(other != texts[0] for other in texts[1:])
    return reordered and all(sorted(other) == sorted(texts[0]) for other in texts[1:])


def answer_identity(item: Item, answer: str | None, by_text: bool) -> str | None:
    """What a letter `answer` of `item` is compared by within its pair (see `pair_compares_text`)."""
    if answer is None or not by_text:
        return answer
    return normalise_text(item.options[letter_index(answer)])


def item_table(dataset: Dataset, predictions: Mapping[str, Prediction]) -> pd.DataFrame:
    """One row per dataset item: what was asked, what came back, its one outcome (correct, wrong,
    invalid, error or missing), and the identities its answers are compared by within its pair."""
    members: dict[str, list[Item]] = {}
    for item in dataset.items:
        members.setdefault(item.pair_id, []).append(item)
    by_text = {pair_id: pair_compares_text(group) for pair_id, group in members.items()}
    records = []
    for item in dataset.items:
        prediction = predictions.get(item.id)
        error = prediction is not None and prediction.error is not None
        pred = scored_letter(item, prediction, dataset.family)
        records.append(
            {
                "id": item.id,
                "pair_id": item.pair_id,
                "task": item.task,
                "category": item.category,
                "kind": item.kind,
                "transform": item.transform,
                "answer": item.answer,
                "pred": pred,
                "answer_identity": answer_identity(item, item.answer, by_text[item.pair_id]),
                "pred_identity": answer_identity(item, pred, by_text[item.pair_id]),
                "missing": prediction is None,
                "error": error,
                "invalid": prediction is not None and not error and pred is None,
                "correct": letter_is_right(item, pred),
            }
        )
    return pd.DataFrame.from_records(
        records,
        columns=["id", "pair_id", "task", "category", "kind", "transform", "answer", "pred",
                 "answer_identity", "pred_identity", "missing", "error", "invalid", "correct"],
    )


def pair_table(items: pd.DataFrame) -> pd.DataFrame:
    """One row per pair_id: size, whether answers differ (contrast), all right, same prediction."""
    if items.empty:
        return pd.DataFrame(columns=["pair_id", "category", "task", "n", "n_correct", "contrast",
                                     "all_correct", "answered", "same_answer"])
    grouped = items.groupby("pair_id", sort=True)
    pairs = pd.DataFrame(
        {
            "category": grouped["category"].first(),
            "task": grouped["task"].first(),
            "n": grouped.size(),
            "n_correct": grouped["correct"].sum(),
            "contrast": grouped["answer_identity"].nunique() > 1,
            "all_correct": grouped["correct"].all(),
            "answered": grouped["pred_identity"].apply(lambda p: bool(p.notna().all())),
            "same_answer": grouped["pred_identity"].apply(lambda p: bool(p.notna().all() and p.nunique() == 1)),
        }
    ).reset_index()
    return pairs


def _stable_seed(seed: int, name: str) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(name.encode())])


def bootstrap_interval(values: np.ndarray, weights: np.ndarray | None, name: str,
                       seed: int = BOOTSTRAP_SEED, n_boot: int = N_BOOTSTRAP) -> list[float] | None:
    """Percentile interval of sum(values)/sum(weights) over groups resampled with replacement.

    values: per group, the successes (right items of a pair, or 1/0 for a pair); weights: per
    group, the trials (items of a pair), or None for one trial per group. Seeded per `name`, so
    every statistic has its own reproducible stream.
    """
    n = len(values)
    if n == 0:
        return None
    rng = _stable_seed(seed, name)
    draws = rng.integers(0, n, size=(n_boot, n))
    numerators = values[draws].sum(axis=1)
    denominators = weights[draws].sum(axis=1) if weights is not None else np.full(n_boot, n)
    stats = numerators / denominators
    tail = (1 - LEVEL) / 2
    low, high = np.quantile(stats, [tail, 1 - tail])
    return [float(low), float(high)]


def _group_scores(items: pd.DataFrame, pairs: pd.DataFrame, name: str, seed: int) -> dict[str, Any]:
    contrast = pairs[pairs["contrast"] & (pairs["n"] > 1)]
    grouped = pairs[pairs["n"] > 0]
    return {
        "acc": _rate(items["correct"].sum(), len(items)),
        "p_acc": _rate(contrast["all_correct"].sum(), len(contrast)),
        "n_items": int(len(items)),
        "n_pairs": int(len(contrast)),
        "acc_ci": bootstrap_interval(grouped["n_correct"].to_numpy(float), grouped["n"].to_numpy(float),
                                     f"{name}/acc", seed),
        "p_acc_ci": bootstrap_interval(contrast["all_correct"].to_numpy(float), None, f"{name}/p_acc", seed),
    }


def _shortcut_diagnostics(items: pd.DataFrame, pairs: pd.DataFrame, transforms_known: bool) -> dict[str, Any]:
    contrast_answered = pairs[pairs["contrast"] & (pairs["n"] > 1) & pairs["answered"]]
    same = _rate(contrast_answered["same_answer"].sum(), len(contrast_answered))
    diagnostics: dict[str, Any] = {
        "same_answer_rate": same,
        "answer_change_rate": None if same is None else 1.0 - same,
        "n_pairs_answered": int(len(contrast_answered)),
        "transforms_known": transforms_known,
        "acc_original": None,
        "acc_counterfactual": None,
        "n_original": None,
        "n_counterfactual": None,
    }
    if transforms_known:
        original = items[items["transform"] == "original"]
        counterfactual = items[items["transform"] != "original"]
        diagnostics.update(
            acc_original=_rate(original["correct"].sum(), len(original)),
            acc_counterfactual=_rate(counterfactual["correct"].sum(), len(counterfactual)),
            n_original=int(len(original)),
            n_counterfactual=int(len(counterfactual)),
        )
    return diagnostics


def timeblind_block(dataset: Dataset, predictions: Mapping[str, Prediction] | None = None,
                    rows: list[dict[str, Any]] | None = None, seed: int = BOOTSTRAP_SEED) -> dict[str, Any]:
    """TimeBlind's Acc / Q-Acc / V-Acc / I-Acc as its reference scorer computes them, from our
    predictions (by item id) or from rows in TimeBlind's own format ({index, model_output})."""
    from dybench.timeblind import reference_scores, types_by_row

    if rows is None:
        rows = []
        for item in dataset.items:
            prediction = (predictions or {}).get(item.id)
            if prediction is not None:
                rows.append({"index": item.meta["index"], "model_output": prediction.output})
    types, n_rows = types_by_row(dataset.items)
    scores = reference_scores(rows, types, n_rows)
    block = scores.as_dict()
    scored = {float(result.instance) for result in scores.instances}
    dataset_instances = {float(item.meta["instance"]) for item in dataset.items}
    block["n_instances_dataset"] = len(dataset_instances)
    block["n_instances_without_predictions"] = len(dataset_instances - scored)
    block["i_acc_ci"] = bootstrap_interval(
        np.array([float(r.all_right) for r in scores.instances]), None, "timeblind/i_acc", seed
    )
    block["note"] = (
        "reference scorer (Baiqi-Li/TimeBlind utils.py): instances with no prediction rows are "
        "outside the denominator; an incomplete instance scores all four items wrong"
    )
    return block


def score_predictions(dataset: Dataset, predictions: Mapping[str, Prediction] | Iterable[Prediction],
                      seed: int = BOOTSTRAP_SEED, timeblind_rows: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The content of `scores.json` for `predictions` (by item id, or a list) on `dataset`.

    `timeblind_rows`: TimeBlind-format prediction rows, when that is what was scored, so the
    TimeBlind block is computed from exactly the rows its reference scorer would see.
    """
    by_id = _as_mapping(predictions)
    items = item_table(dataset, by_id)
    pairs = pair_table(items)
    overall = _group_scores(items, pairs, "all", seed)
    replied = len(items) - int(items["missing"].sum()) - int(items["error"].sum())
    control = pairs[~pairs["contrast"] & (pairs["n"] > 1)]
    known = {item.id for item in dataset.items}
    scores: dict[str, Any] = {
        "dataset": dataset.name,
        "family": dataset.family,
        "dataset_fingerprint": dataset.fingerprint,
        **overall,
        "n_correct": int(items["correct"].sum()),
        "n_wrong": int((items["pred"].notna() & ~items["correct"]).sum()),
        "n_invalid": int(items["invalid"].sum()),
        "n_errors": int(items["error"].sum()),
        "n_missing": int(items["missing"].sum()),
        "invalid_rate": _rate(items["invalid"].sum(), replied),
        "n_unpaired_items": int(pairs.loc[pairs["n"] == 1, "n"].sum()) if not pairs.empty else 0,
        "n_unknown_predictions": sum(1 for key in by_id if key not in known),
        "diagnostics": _shortcut_diagnostics(items, pairs, FAMILIES.get(dataset.family).transforms_known),
        "control": {
            "n_pairs": int(len(control)),
            "pair_consistency": _rate(control["all_correct"].sum(), len(control)),
        },
        "per_category": {},
        "per_task": {},
    }
    for category in sorted(items["category"].unique()):
        mask = items["category"] == category
        block = _group_scores(items[mask], pairs[pairs["category"] == category], f"category/{category}", seed)
        scores["per_category"][category] = block
    for task in sorted(items["task"].unique()):
        mask = items["task"] == task
        scores["per_task"][task] = _group_scores(items[mask], pairs[pairs["task"] == task], f"task/{task}", seed)
    missing_ids = items.loc[items["missing"], "id"].tolist()
    if missing_ids:
        scores["missing_examples"] = missing_ids[:10]
    scoring = ScoringInput(dataset, by_id, items, pairs, seed, timeblind_rows)
    for block in blocks_for(dataset):
        scores[block.name] = block.compute(scoring)
    scores["intervals"] = {"method": "percentile bootstrap over pairs", "level": LEVEL,
                           "n_boot": N_BOOTSTRAP, "seed": seed}
    scores["notes"] = list(dataset.notes)
    scores["dybench_version"] = __version__
    return scores
