"""The official DyBench release (`json/<category>.json` plus videos), read through a field mapping.

The release's JSON field names are not published, so nothing here assumes them: a mapping (default
`tasks/mappings/official.yaml`, MVBench-style `video`, `question`, `candidates`, `answer`) names
them. A user overrides it with `mapping.yaml` inside the data folder, or with
`dybench:PATH?mapping=FILE.yaml` (the latter wins); either may set only the keys that differ.

Pairs come from an explicit pair field when the mapping names one, else from the rows themselves
(`pairing: consecutive` or `question`, see the mapping file). A row that finds no partner is kept
for Acc, excluded from P-Acc, and counted in the dataset notes: never silently scored as a pair.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError, field_validator

from dybench.data import Dataset, safe_join
from dybench.errors import DyBenchError, pydantic_message
from dybench.schema import LETTERS, Item, letter, letter_index
from dybench.tasks import tasks_dir
from dybench.text_files import read_text
from dybench.yaml_files import read_yaml_mapping

CATEGORIES = ("reversible_dynamics", "moving_direction", "event_sequence")
USER_MAPPING = "mapping.yaml"


class FieldNames(BaseModel):
    model_config = {"extra": "forbid"}

    video: str = "video"
    question: str = "question"
    options: str = "candidates"
    answer: str = "answer"
    id: str | None = None
    pair: str | None = None


class OfficialMapping(BaseModel):
    """Which JSON field holds what, where videos live and how pairs are recovered."""

    model_config = {"extra": "forbid"}

    fields: FieldNames = Field(default_factory=FieldNames)
    video_roots: list[str] = Field(default_factory=lambda: ["videos/{category}", "videos", ""])
    pairing: Literal["consecutive", "question"] = "consecutive"

    @field_validator("video_roots")
    @classmethod
    def _only_the_category_placeholder(cls, roots: list[str]) -> list[str]:
        for number, root in enumerate(roots, start=1):
            try:
                root.format(category="category")
            except (KeyError, IndexError, ValueError, AttributeError):
                raise ValueError(
                    f"entry {number} uses a placeholder other than {{category}}, the only one there is "
                    "(write a literal brace as {{ or }})"
                ) from None
        return roots


def default_mapping_path() -> Path:
    return tasks_dir() / "mappings" / "official.yaml"


def _read_yaml(path: Path) -> dict[str, Any]:
    return read_yaml_mapping(path, "mapping file", "a mapping file must be a YAML mapping (fields:, video_roots:, pairing:)")


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def load_mapping(folder: Path, override: Path | None = None) -> tuple[OfficialMapping, list[Path]]:
    """The default mapping, then `folder/mapping.yaml`, then `override`; and the files used."""
    used = [default_mapping_path()]
    data = _read_yaml(used[0])
    set_by = dict.fromkeys(_key_paths(data), used[0])  # key path -> the last file that set it
    for candidate in (folder / USER_MAPPING, override):
        if candidate is not None and (candidate == override or candidate.is_file()):
            layer = _read_yaml(candidate)
            data = _merge(data, layer)
            set_by.update(dict.fromkeys(_key_paths(layer), candidate))
            used.append(candidate)
    try:
        return OfficialMapping.model_validate(data), used
    except ValidationError as exc:
        raise DyBenchError(f"{_culprit(exc, set_by, used[-1])}: {pydantic_message(exc)}") from None


def _key_paths(data: dict[str, Any], prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every key path of a nested mapping, inner ones included: {"a": {"b": 1}} -> [("a",), ("a", "b")]."""
    paths = []
    for key, value in data.items():
        paths.append((*prefix, str(key)))
        if isinstance(value, dict):
            paths += _key_paths(value, (*prefix, str(key)))
    return paths


def _culprit(exc: ValidationError, set_by: dict[tuple[str, ...], Path], fallback: Path) -> Path:
    """The file that set the value the first validation error is about (the mappings are merged)."""
    location = tuple(str(part) for part in exc.errors()[0]["loc"])
    for end in range(len(location), 0, -1):
        if location[:end] in set_by:
            return set_by[location[:end]]
    return fallback


def parse_spec(spec: str | Path) -> tuple[Path, Path | None]:
    """`PATH` or `PATH?mapping=FILE` -> (data folder, mapping override)."""
    text = str(spec)
    if "?mapping=" in text:
        folder, mapping = text.split("?mapping=", 1)
        return Path(folder), Path(mapping)
    if "?" in text:
        raise DyBenchError(f"dybench:{text}: the only option after '?' is mapping=FILE.yaml")
    return Path(text), None


def normalise_text(text: str) -> str:
    """Text as compared when matching answers and options: lower case, punctuation as spaces, spacing folded."""
    return " ".join(re.sub(r"[^\w\s]", " ", str(text).lower()).split())


_LETTER_ANSWER = re.compile(r"^\(?([A-Z])\)?[.:)]?$")


def answer_letter(answer: Any, options: list[str]) -> str | None:
    """The answer as an option letter: an option's text (exact, ignoring case, spacing and
    punctuation) first, else a letter such as "B", "(B)" or "B." within range."""
    if not isinstance(answer, str) or not answer.strip():
        return None
    wanted = normalise_text(answer)
    matches = [i for i, option in enumerate(options) if normalise_text(option) == wanted]
    if len(matches) == 1:
        return letter(matches[0])
    # MVBench-style "(A) text": a letter prefix followed by one option's text.
    prefixed = re.match(r"^\(?([A-Z])[).:]\s*(.+)$", answer.strip())
    if prefixed and LETTERS.index(prefixed.group(1)) < len(options):
        index = LETTERS.index(prefixed.group(1))
        if normalise_text(options[index]) == normalise_text(prefixed.group(2)):
            return prefixed.group(1)
    lone = _LETTER_ANSWER.match(answer.strip())
    if lone and LETTERS.index(lone.group(1)) < len(options):
        return lone.group(1)
    return None


def _field(row: dict[str, Any], name: str, where: str) -> Any:
    if name not in row:
        raise DyBenchError(
            f"{where}: no field {name!r} (row has {', '.join(sorted(row)) or 'no fields'}); "
            "set the field names in mapping.yaml (see tasks/mappings/official.yaml)"
        )
    return row[name]


def _resolve_video(folder: Path, category: str, video: str, roots: list[str], where: str) -> tuple[str, bool]:
    """The video path relative to `folder` (first root that holds it) and whether it exists."""
    candidates = []
    for root in roots:
        relative = str(Path(root.format(category=category)) / video) if root else video
        try:
            path = safe_join(folder, relative)
        except DyBenchError as exc:
            raise DyBenchError(f"{where}: {exc}") from None
        if path.is_file():
            return relative, True
        candidates.append(relative)
    return candidates[0], False


def _question_key(question: str, options: list[str]) -> tuple[str, tuple[str, ...]]:
    return normalise_text(question), tuple(sorted(normalise_text(o) for o in options))


def _answer_text(row: dict[str, Any]) -> str:
    return normalise_text(row["options"][letter_index(row["answer"])])


def recover_pairs(rows: list[dict[str, Any]], mapping: OfficialMapping) -> list[str | None]:
    """A pair label per row (None: unpaired). Rows are dicts with question, options, answer, pair."""
    labels: list[str | None] = [None] * len(rows)
    if mapping.fields.pair is not None:
        groups: dict[str, list[int]] = {}
        for i, row in enumerate(rows):
            if row["pair"] is not None:
                groups.setdefault(str(row["pair"]), []).append(i)
        for key, members in groups.items():
            if len(members) >= 2:
                for i in members:
                    labels[i] = key
        return labels
    if mapping.pairing == "consecutive":
        i = 0
        while i < len(rows) - 1:
            a, b = rows[i], rows[i + 1]
            if (_question_key(a["question"], a["options"]) == _question_key(b["question"], b["options"])
                    and _answer_text(a) != _answer_text(b)):
                labels[i] = labels[i + 1] = f"r{i:05d}"
                i += 2
            else:
                i += 1
        return labels
    by_question: dict[tuple[str, tuple[str, ...]], list[int]] = {}
    for i, row in enumerate(rows):
        by_question.setdefault(_question_key(row["question"], row["options"]), []).append(i)
    for members in by_question.values():
        if len(members) == 2:
            for i in members:
                labels[i] = f"r{members[0]:05d}"
    return labels


def _read_category(path: Path) -> list[Any]:
    try:
        data = json.loads(read_text(path))
    except json.JSONDecodeError as exc:
        raise DyBenchError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg})") from None
    if isinstance(data, dict):  # tolerate {"data": [...]} wrappers
        lists = [value for value in data.values() if isinstance(value, list)]
        if len(lists) != 1:
            raise DyBenchError(f"{path}: expected a JSON list of rows")
        data = lists[0]
    if not isinstance(data, list):
        raise DyBenchError(f"{path}: expected a JSON list of rows")
    return data


def _parse_rows(path: Path, category: str, folder: Path, mapping: OfficialMapping) -> tuple[list[dict[str, Any]], int]:
    names = mapping.fields
    parsed = []
    missing_videos = 0
    for number, row in enumerate(_read_category(path)):
        where = f"{path} row {number}"
        if not isinstance(row, dict):
            raise DyBenchError(f"{where}: expected a JSON object")
        options = _field(row, names.options, where)
        if not isinstance(options, list) or len(options) < 2 or not all(isinstance(o, str) for o in options):
            raise DyBenchError(f"{where}: field {names.options!r} must be a list of at least two option texts")
        if len(options) > len(LETTERS):
            raise DyBenchError(
                f"{where}: field {names.options!r} has {len(options)} options; at most {len(LETTERS)} "
                "can be asked (one letter A-Z each)"
            )
        question = _field(row, names.question, where)
        video = _field(row, names.video, where)
        if not isinstance(question, str) or not isinstance(video, str) or not video:
            raise DyBenchError(f"{where}: fields {names.question!r} and {names.video!r} must be text")
        raw_answer = _field(row, names.answer, where)
        answer = answer_letter(raw_answer, options)
        if answer is None:
            raise DyBenchError(
                f"{where}: field {names.answer!r} = {raw_answer!r} is neither one of the options nor an option letter"
            )
        relative, exists = _resolve_video(folder, category, video, mapping.video_roots, where)
        missing_videos += not exists
        parsed.append({
            "number": number,
            "id": str(row[names.id]) if names.id and row.get(names.id) is not None else None,
            "question": question,
            "options": options,
            "answer": answer,
            "video": relative,
            "pair": row.get(names.pair) if names.pair else None,
        })
    return parsed, missing_videos


def load_official(spec: str | Path) -> Dataset:
    """A local copy of the official release as a Dataset (family "dybench")."""
    folder, override = parse_spec(spec)
    json_dir = folder / "json"
    if not json_dir.is_dir():
        raise DyBenchError(f"{folder}: no json/ folder; expected the official layout json/<category>.json plus videos")
    mapping, used = load_mapping(folder, override)
    files = sorted(json_dir.glob("*.json"))
    if not files:
        raise DyBenchError(f"{json_dir}: no <category>.json files")
    digest = hashlib.sha256()
    for path in [*files, *used]:
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    items: list[Item] = []
    notes: list[str] = []
    seen: dict[str, str] = {}
    for path in files:
        category = path.stem
        rows, missing_videos = _parse_rows(path, category, folder.resolve(), mapping)
        labels = recover_pairs(rows, mapping)
        unpaired = [row["number"] for row, label in zip(rows, labels) if label is None]
        if unpaired:
            shown = ", ".join(str(n) for n in unpaired[:10]) + (" ..." if len(unpaired) > 10 else "")
            notes.append(f"{path.name}: {len(unpaired)} unpaired rows (Acc only, not in P-Acc): rows {shown}")
        if missing_videos:
            notes.append(f"{path.name}: {missing_videos} videos not found under {mapping.video_roots} (they will count as wrong)")
        position: dict[str, int] = {}
        for row, label in zip(rows, labels):
            item_id = row["id"] or f"{category}-{row['number']:05d}"
            if item_id in seen:
                raise DyBenchError(f"{path} row {row['number']}: duplicate id {item_id!r} (also {seen[item_id]})")
            seen[item_id] = f"{path.name} row {row['number']}"
            pair_id = f"{category}/{label}" if label is not None else f"{category}/unpaired-{row['number']:05d}"
            slot = position.get(pair_id, 0)
            position[pair_id] = slot + 1
            items.append(Item(
                id=item_id,
                pair_id=pair_id,
                task=category,
                category=category,
                video=row["video"],
                question=row["question"],
                options=row["options"],
                answer=row["answer"],
                transform="original",
                kind="dynamic",
                meta={"source": path.name, "row": row["number"], "pair_position": slot, "paired": label is not None},
            ))
    if not items:
        raise DyBenchError(f"{json_dir}: no rows")
    unknown = sorted({p.stem for p in files} - set(CATEGORIES))
    if unknown:
        notes.append(f"categories not in the paper: {', '.join(unknown)}")
    return Dataset(
        name="dybench",
        family="dybench",
        root=folder.resolve(),
        items=items,
        fingerprint=digest.hexdigest()[:16],
        notes=notes,
    )
