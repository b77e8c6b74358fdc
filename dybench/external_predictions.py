"""Score predictions made elsewhere: our `predictions.jsonl` rows, or TimeBlind's own JSON list.

Formats, told apart by their rows:
- ours: one JSON object per line (or a JSON list) with `id` and `output` and/or `pred`;
- TimeBlind's: a JSON list (or JSONL) of objects with `index` and `model_output`. Its rows go
  to the TimeBlind block unchanged, so the numbers equal the reference scorer's;
- lmms-eval's sample log (`samples_TASK.jsonl` from `--log_samples`) of a task written by
  `dybench export lmms-eval`: rows with `doc_id` and `filtered_resps`; the item id comes from the
  row's `doc` or from the outcome the task's process_results logged (dybench/lmms_eval_hooks.py),
  the reply from `resps` (raw) or `filtered_resps`, and DyBench reads the answer itself.

The output folder gets `scores.json` (atomic) carrying the model name, the predictions file's
digest and its date, so `dybench leaderboard publish` can list it beside measured runs.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from dybench.data import Dataset
from dybench.families import FAMILIES, load_data
from dybench.errors import DyBenchError, pydantic_message
from dybench.schema import RECORD_FIELDS, Prediction
from dybench.atomic import write_json_atomic
from dybench.store import SCORES
from dybench.text_files import json_lines, read_text

LMMS_EVAL_FORMAT = "lmms-eval"
TIMEBLIND_FORMAT = "timeblind"
"""TimeBlind's own prediction rows ({index, model_output}); the timeblind family accepts them (dybench/families.py)."""


def _rows(path: Path) -> list[tuple[str, Any]]:
    """(where, row) pairs from a JSON list or a JSONL file."""
    if not path.is_file():
        raise DyBenchError(f"{path}: predictions file not found")
    text = read_text(path)
    if text.lstrip().startswith("["):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise DyBenchError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg})") from None
        return [(f"{path} item {i}", row) for i, row in enumerate(data)]
    return [(f"{path}:{number}", row) for number, row in json_lines(text, path)]


def is_timeblind_format(rows: list[tuple[str, Any]]) -> bool:
    return bool(rows) and all(isinstance(row, dict) and "model_output" in row for _, row in rows)


def is_lmms_eval_format(rows: list[tuple[str, Any]]) -> bool:
    first = rows[0][1] if rows else None
    return isinstance(first, dict) and "doc_id" in first and ("filtered_resps" in first or "resps" in first)


def _sample_item_id(row: dict[str, Any]) -> Any:
    """The DyBench item id of an lmms-eval sample row: in its doc (when the log keeps docs) or in
    the outcome the exported task's process_results returned, which lmms-eval logs per row."""
    from dybench.lmms_eval_hooks import ACC, P_ACC

    doc = row.get("doc")
    if isinstance(doc, dict) and "id" in doc:
        return doc["id"]
    for metric in (ACC, P_ACC):
        if isinstance(row.get(metric), dict) and "id" in row[metric]:
            return row[metric]["id"]
    return None


def _sample_reply(row: dict[str, Any]) -> Any:
    """The raw reply: `resps` before lmms-eval's filters (it drops that field when equal), else
    `filtered_resps`; one-element lists unwrapped as lmms-eval nests them."""
    reply = row["resps"] if "resps" in row else row.get("filtered_resps")
    while isinstance(reply, list) and len(reply) == 1:
        reply = reply[0]
    return reply


def lmms_eval_predictions(rows: list[tuple[str, Any]]) -> dict[str, Prediction]:
    """lmms-eval sample rows as our Predictions, by item id, with no `pred`: the score reads the
    letter from the reply with DyBench's own extraction (dybench/metrics.py predicted_letter)."""
    predictions: dict[str, Prediction] = {}
    first_seen: dict[str, str] = {}
    for where, row in rows:
        if not isinstance(row, dict) or "doc_id" not in row:
            raise DyBenchError(f"{where}: expected an lmms-eval sample row (doc_id, filtered_resps, ...)")
        item_id = _sample_item_id(row)
        if not isinstance(item_id, str):
            raise DyBenchError(f"{where}: sample doc_id {row['doc_id']!r} names no DyBench item (no doc.id, no "
                               "dybench_acc.id); log samples of a task written by `dybench export lmms-eval`")
        reply = _sample_reply(row)
        if not isinstance(reply, str):
            got = f"{len(reply)} replies" if isinstance(reply, list) else type(reply).__name__
            raise DyBenchError(f"{where}: item {item_id!r}: expected one text reply in resps/filtered_resps, got {got}")
        if item_id in predictions:
            raise DyBenchError(f"{where}: item {item_id!r} was already given at {first_seen[item_id]}; "
                               "keep one sample per item")
        predictions[item_id] = Prediction(id=item_id, key=f"external/{item_id}", output=reply)
        first_seen[item_id] = where
    return predictions


def timeblind_predictions(dataset: Dataset, rows: list[dict[str, Any]]) -> dict[str, Prediction]:
    """TimeBlind rows as our Predictions (by item id) for the per-item numbers; a later row with
    the same index replaces an earlier one, as in the reference."""
    by_index = {item.meta["index"]: item for item in dataset.items}
    predictions: dict[str, Prediction] = {}
    for row in rows:
        item = by_index.get(row.get("index")) if isinstance(row.get("index"), int) else None
        if item is None:
            continue
        output = row.get("model_output")
        predictions[item.id] = Prediction(
            id=item.id, key=f"external/{item.id}", output=output if isinstance(output, str) else None
        )
    return predictions


def our_predictions(rows: list[tuple[str, Any]]) -> dict[str, Prediction]:
    """Our rows by item id. An id given twice is refused: which answer to score would be a guess
    (TimeBlind's format keeps its reference's rule instead, see timeblind_predictions)."""
    predictions: dict[str, Prediction] = {}
    first_seen: dict[str, str] = {}
    for where, row in rows:
        if not isinstance(row, dict):
            raise DyBenchError(f"{where}: expected a JSON object with id and output or pred")
        # The record-only fields are never scored (correctness is recomputed); rows from other
        # tools may hold anything under those names, so they are not read at all.
        row = {"key": f"external/{row.get('id')}", **{k: v for k, v in row.items() if k not in RECORD_FIELDS}}
        try:
            prediction = Prediction.model_validate(row)
        except ValidationError as exc:
            raise DyBenchError(f"{where}: {pydantic_message(exc)}") from None
        if "output" not in row and "pred" not in row:
            raise DyBenchError(f"{where}: a prediction needs an output (raw text) or a pred (letter)")
        if prediction.id in predictions:
            raise DyBenchError(f"{where}: id {prediction.id!r} was already given at {first_seen[prediction.id]}; "
                               "keep one prediction per item")
        predictions[prediction.id] = prediction
        first_seen[prediction.id] = where
    return predictions


def file_date(path: Path) -> str:
    """The file's modification date (UTC): stable for the same file, unlike the clock."""
    stamp = _dt.datetime.fromtimestamp(path.stat().st_mtime, tz=_dt.timezone.utc)
    return stamp.date().isoformat()


def score_prediction_file(data: str, predictions_path: Path, out: Path, model: str | None = None) -> dict[str, Any]:
    """Score `predictions_path` against `--data` and write `out/scores.json`; return the scores."""
    from dybench.metrics import score_predictions

    dataset = load_data(data)
    rows = _rows(predictions_path)
    if not rows:
        raise DyBenchError(f"{predictions_path}: no predictions")
    if is_timeblind_format(rows):
        if FAMILIES.get(dataset.family).prediction_format != TIMEBLIND_FORMAT:
            raise DyBenchError(
                f"{predictions_path}: rows in TimeBlind's format (index, model_output) need --data timeblind:PATH/data.jsonl"
            )
        raw = [row for _, row in rows]
        scores = score_predictions(dataset, timeblind_predictions(dataset, raw), timeblind_rows=raw)
        prediction_format = TIMEBLIND_FORMAT
    elif is_lmms_eval_format(rows):
        scores = score_predictions(dataset, lmms_eval_predictions(rows))
        prediction_format = LMMS_EVAL_FORMAT
    else:
        scores = score_predictions(dataset, our_predictions(rows))
        prediction_format = "dybench"
    digest = hashlib.sha256(predictions_path.read_bytes()).hexdigest()[:16]
    scores["source"] = {
        "model": model or predictions_path.stem,
        "predictions": predictions_path.name,
        "predictions_sha256": digest,
        "format": prediction_format,
        "data": data,
        "date": file_date(predictions_path),
    }
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / SCORES, scores)
    return scores
