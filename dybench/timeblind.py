"""TimeBlind: load its `data.jsonl`, and score answers exactly as its public reference scorer does.

Layout (one row per video-question item): `index`, `video_path`, `question`, `answer`, `type`
(`yes_no` | `multiple_choice`). Rows form instances of four by `index // 4`, with role `index % 4`
in the order q0_i0, q0_i1, q1_i0, q1_i1. The expected answers are fixed by role (q0_i0 and q1_i1
are Yes/A, q0_i1 and q1_i0 are No/B); the reference scorer never reads the `answer` field.

Scoring follows the reference (repository Baiqi-Li/TimeBlind, `utils.py`), behaviour for
behaviour, so our Acc / Q-Acc / V-Acc / I-Acc equal its numbers to the last digit:

- answer extraction: NFKC + whitespace folding, then an ordered list of patterns (an explicit
  "answer: X" first, then a standalone token); anything else is invalid (scored wrong);
- predictions are grouped by `index // 4`; for a repeated index the later row wins;
- an instance missing any of its four roles, or with a row that cannot be read (index out of
  range, unknown type, a non-text output), scores all four items wrong;
- an instance with no prediction rows at all is left out of the denominator. We report how many
  dataset instances that was (`n_instances_without_predictions`) beside the score.
"""

from __future__ import annotations

import json
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Literal

from dybench.data import Dataset, file_fingerprint, safe_join
from dybench.errors import DyBenchError
from dybench.schema import Item
from dybench.text_files import json_lines, read_text

ROLES = ("q0_i0", "q0_i1", "q1_i0", "q1_i1")
EXPECTED = {"q0_i0": 1, "q0_i1": 0, "q1_i0": 0, "q1_i1": 1}
"""Expected extraction result per role: 1 = Yes/A, 0 = No/B (the reference's fixed pattern)."""
TYPES = ("yes_no", "multiple_choice")
OPTIONS = {"yes_no": ["Yes", "No"], "multiple_choice": ["A", "B"]}
INVALID = -1

Choice = Literal[1, 0, -1]


# --- answer extraction (reference-equivalent) -------------------------------------------------

_KEYWORDS = r"final(?: answer)?|answer|prediction"
_KEY = r"(?:" + _KEYWORDS + r")"
_YES_NO_RULES = (
    re.compile(_KEY + r"\s*[:：]\s*(yes|no)\b", re.IGNORECASE),
    re.compile(r"\b(yes|no)\b(?=[\s\.\,\!\?\)]|$)", re.IGNORECASE),
)
_CHOICE_ANCHOR = re.compile(_KEY + r"\s*[:：]\s*([AB])\b", re.IGNORECASE)
_CHOICE_RULES = (
    _CHOICE_ANCHOR,
    re.compile(r"(?:option|choice)\s*[:：]?\s*([AB])\b", re.IGNORECASE),
    re.compile(r"[\(\[\{]\s*([AB])\s*[\)\]\}]", re.IGNORECASE),
    re.compile(r"\b([AB])\s*[\.\)]\b", re.IGNORECASE),
)
# The last resort: a lone A or B (either case, so the article "a" counts, as in the reference).
_CHOICE_STANDALONE = re.compile(r"(?<![A-Za-z0-9/])([AB])(?![A-Za-z0-9/])", re.IGNORECASE)
_KEYWORD = re.compile(r"\b(" + _KEYWORDS + r")\b", re.IGNORECASE)


class UnreadableRow(Exception):
    """A row the reference cannot read; it makes its whole instance count as wrong."""


def fold_text(text: str) -> str:
    """NFKC-normalise and collapse whitespace (full-width 'Ｙｅｓ' and '：' read as 'Yes' and ':')."""
    return re.sub(r"\s+", " ", unicodedata.normalize("NFKC", text)).strip()


def _first_choice(pattern: re.Pattern[str], text: str) -> Choice | None:
    match = pattern.search(text)
    if match is None:
        return None
    return 1 if match.group(1).upper() in ("YES", "A") else 0


def extract_choice(output: Any, task_type: Any) -> Choice:
    """1 (Yes/A), 0 (No/B) or -1 (invalid) for one model output, as the reference extracts it.

    Raises UnreadableRow where the reference raises (unknown type, or a non-text output that is
    not empty): the caller then scores the whole instance wrong.
    """
    if not output or not str(output).strip():
        return INVALID  # checked before the type, as in the reference
    if task_type not in TYPES:
        raise UnreadableRow(f"type {task_type!r} is not one of {', '.join(TYPES)}")
    if not isinstance(output, str):
        raise UnreadableRow(f"model_output is {type(output).__name__}, not text")
    text = fold_text(output)
    if task_type == "yes_no":
        for rule in _YES_NO_RULES:
            found = _first_choice(rule, text)
            if found is not None:
                return found
        return INVALID
    for rule in _CHOICE_RULES:
        found = _first_choice(rule, text)
        if found is not None:
            return found
    # A lone letter: the one before the first answer keyword, else the one after it.
    keyword = _KEYWORD.search(text)
    if keyword is not None:
        for part in (text[: keyword.start()], text[keyword.end() :]):
            found = _first_choice(_CHOICE_STANDALONE, part)
            if found is not None:
                return found
    found = _first_choice(_CHOICE_STANDALONE, text)
    return INVALID if found is None else found


def choice_letter(choice: int) -> str | None:
    """Extraction result as an option letter of our Items (options ["Yes", "No"] or ["A", "B"])."""
    return {1: "A", 0: "B"}.get(choice)


# --- the reference's instance scores ----------------------------------------------------------


@dataclass
class InstanceResult:
    instance: int | float
    choices: dict[str, int]
    reason: str | None = None
    """Why the whole instance counts as wrong (incomplete, unreadable row), else None."""

    def right(self, role: str) -> bool:
        return self.choices[role] == EXPECTED[role]

    @property
    def n_correct(self) -> int:
        return sum(self.right(role) for role in ROLES)

    @property
    def questions_right(self) -> int:
        return int(self.right("q0_i0") and self.right("q0_i1")) + int(self.right("q1_i0") and self.right("q1_i1"))

    @property
    def videos_right(self) -> int:
        return int(self.right("q0_i0") and self.right("q1_i0")) + int(self.right("q0_i1") and self.right("q1_i1"))

    @property
    def all_right(self) -> bool:
        return self.n_correct == 4


@dataclass
class TimeBlindScores:
    acc: float | None
    q_acc: float | None
    v_acc: float | None
    i_acc: float | None
    n_instances: int
    """Instances in the denominator (those with at least one prediction row)."""
    n_incomplete: int
    """Instances in the denominator scored all wrong because a role was missing or unreadable."""
    instances: list[InstanceResult] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "acc": self.acc,
            "q_acc": self.q_acc,
            "v_acc": self.v_acc,
            "i_acc": self.i_acc,
            "n_instances": self.n_instances,
            "n_incomplete_instances": self.n_incomplete,
        }


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float))  # bool included: Python treats True as 1, so does the reference


def group_rows(rows: Iterable[dict[str, Any]]) -> dict[int | float, dict[int | float, dict[str, Any]]]:
    """Prediction rows by instance (`index // 4`) and role (`index % 4`); a later row replaces an
    earlier one with the same index, a row without an index is ignored (both as the reference)."""
    groups: dict[int | float, dict[int | float, dict[str, Any]]] = {}
    for number, row in enumerate(rows):
        if not isinstance(row, dict):
            raise DyBenchError(f"prediction row {number}: expected an object with index and model_output")
        index = row.get("index")
        if index is None:
            continue
        if not _is_number(index):
            raise DyBenchError(f"prediction row {number}: field index must be a number, got {index!r}")
        groups.setdefault(index // 4, {})[index % 4] = row
    return groups


def _score_instance(instance: int | float, group: dict[int | float, dict[str, Any]],
                    types_by_row: dict[int, str | None], n_rows: int) -> InstanceResult:
    invalid = {role: INVALID for role in ROLES}
    if len(group) != 4 or not all(role in group for role in range(4)):
        return InstanceResult(instance, invalid, reason="incomplete: not all four roles answered")
    try:
        choices = {}
        for position, role in enumerate(ROLES):
            index = group[position].get("index")
            if not 0 <= index <= n_rows - 1:
                raise UnreadableRow(f"index {index} is outside the data file's {n_rows} rows")
            if not isinstance(index, int):
                raise UnreadableRow(f"index {index!r} is not an integer")
            choices[role] = extract_choice(group[position].get("model_output"), types_by_row.get(int(index)))
    except UnreadableRow as exc:
        return InstanceResult(instance, invalid, reason=f"unreadable: {exc}")
    return InstanceResult(instance, choices)


def reference_scores(rows: Iterable[dict[str, Any]], types_by_row: dict[int, str | None], n_rows: int) -> TimeBlindScores:
    """Acc, Q-Acc, V-Acc and I-Acc of prediction rows ({index, model_output}) as the reference computes them.

    `types_by_row` maps a data-file row position to its `type` (the reference looks a prediction's
    `index` up by position); `n_rows` is the data file's row count (indices beyond it are unreadable).
    """
    results = [
        _score_instance(instance, group, types_by_row, n_rows) for instance, group in group_rows(rows).items()
    ]
    n = len(results)
    if n == 0:
        return TimeBlindScores(None, None, None, None, 0, 0, [])
    return TimeBlindScores(
        acc=sum(r.n_correct for r in results) / (n * 4),
        q_acc=sum(r.questions_right for r in results) / (n * 2),
        v_acc=sum(r.videos_right for r in results) / (n * 2),
        i_acc=sum(r.all_right for r in results) / n,
        n_instances=n,
        n_incomplete=sum(r.reason is not None for r in results),
        instances=results,
    )


# --- loading data.jsonl -----------------------------------------------------------------------


def read_rows(path: Path) -> list[tuple[int, dict[str, Any]]]:
    """(line number, row) for a JSONL file or a JSON array (the reference accepts both)."""
    if not path.is_file():
        raise DyBenchError(f"{path}: TimeBlind data file not found (expected timeblind:PATH/data.jsonl)")
    text = read_text(path)
    stripped = text.lstrip()
    if stripped.startswith("["):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise DyBenchError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg})") from None
        return [(number, row) for number, row in enumerate(data, start=1)]
    return json_lines(text, path)


def _video_relative(folder: Path, video_path: str) -> str:
    """The video path relative to the data folder. TimeBlind writes paths from its repository
    root (`TimeBlind/videos/x.mp4` next to `TimeBlind/data.jsonl`): a leading folder name equal to
    the data folder's own name is dropped when the path does not exist as written."""
    parts = Path(video_path).parts
    if parts and parts[0] == folder.name and not (folder / video_path).exists() and len(parts) > 1:
        return str(Path(*parts[1:]))
    return video_path


def _answer_letter(answer: Any) -> str | None:
    text = str(answer).strip().strip(".").lower() if answer is not None else ""
    return {"yes": "A", "a": "A", "no": "B", "b": "B"}.get(text)


def load_timeblind(path: Path) -> Dataset:
    """TimeBlind's `data.jsonl` as a Dataset (family "timeblind").

    Each row becomes an Item with options ["Yes", "No"] or ["A", "B"]; its answer is the role's
    expected answer (what the reference scores against). The pair of an item is its instance and
    question (q0 on videos i0 and i1), whose two answers always differ.
    """
    path = Path(path)
    folder = path.parent.resolve()
    items: list[Item] = []
    seen: dict[int, int] = {}
    notes: list[str] = []
    disagreeing: list[int] = []
    rows = read_rows(path)
    for position, (number, row) in enumerate(rows):
        where = f"{path}:{number}"
        if not isinstance(row, dict):
            raise DyBenchError(f"{where}: expected a JSON object")
        index = row.get("index")
        if not isinstance(index, int) or isinstance(index, bool) or index < 0:
            raise DyBenchError(f"{where}: field index must be a non-negative integer, got {index!r}")
        if index in seen:
            raise DyBenchError(f"{where}: index {index} repeats line {seen[index]}")
        seen[index] = number
        kind = row.get("type")
        if kind not in TYPES:
            raise DyBenchError(f"{where}: field type must be yes_no or multiple_choice, got {kind!r}")
        for name in ("video_path", "question"):
            if not isinstance(row.get(name), str) or not row[name].strip():
                raise DyBenchError(f"{where}: field {name} is missing or empty")
        video = _video_relative(folder, row["video_path"])
        try:
            safe_join(folder, video)
        except DyBenchError as exc:
            raise DyBenchError(f"{where}: {exc}") from None
        instance, role = divmod(index, 4)
        role_name = ROLES[role]
        expected = choice_letter(EXPECTED[role_name])
        if _answer_letter(row.get("answer")) != expected:
            disagreeing.append(index)
        question = role_name[:2]
        items.append(
            Item(
                id=f"tb-{index:05d}",
                pair_id=f"tb-{instance:04d}-{question}",
                task=f"timeblind_{kind}",
                category="timeblind",
                video=video,
                question=row["question"],
                options=list(OPTIONS[kind]),
                answer=expected,
                transform="original",
                kind="dynamic",
                meta={"index": index, "type": kind, "role": role_name, "instance": instance, "row": position},
            )
        )
    if not items:
        raise DyBenchError(f"{path}: no rows")
    if any(item.meta["index"] != item.meta["row"] for item in items):
        notes.append(
            "row indices differ from their positions in the file; as in the reference scorer, a "
            "prediction's index is looked up by position"
        )
    if disagreeing:
        notes.append(
            f"{len(disagreeing)} rows have an `answer` that differs from their role's expected answer "
            f"(first index {disagreeing[0]}); scores use the role's answer, as the reference does"
        )
    by_instance: dict[int, int] = {}
    for item in items:
        by_instance[item.meta["instance"]] = by_instance.get(item.meta["instance"], 0) + 1
    partial = sorted(i for i, n in by_instance.items() if n != 4)
    if partial:
        notes.append(f"{len(partial)} instances do not have all four rows (first: {partial[0]}); they cannot score I-Acc")
    return Dataset(
        name=f"timeblind-{path.stem}" if path.stem != "data" else "timeblind",
        family="timeblind",
        root=folder,
        items=items,
        fingerprint=file_fingerprint(path),
        notes=notes,
    )


def types_by_row(items: Iterable[Item]) -> tuple[dict[int, str | None], int]:
    """Row position -> type, and the row count, from a TimeBlind dataset's items."""
    table = {int(item.meta["row"]): item.meta.get("type") for item in items}
    return table, (max(table) + 1 if table else 0)
