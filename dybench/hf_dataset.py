"""Reading a dataset in the layout Hugging Face `datasets` reads (`--data hf:DIR`).

Two layouts are read, both without `datasets` itself (plain JSON and pyarrow, so a malformed row
is one line naming its file, line and field):

- a folder written by `dybench export hf` (dybench/hf_export.py): `metadata.jsonl`, one row per
  item with `file_name` (the clip, relative to the folder) and the manifest's fields
  (docs/architecture.md, "Contracts"), `meta` as a JSON string; `videos/`; `README.md`;
  `dybench_export.json` (what was exported: the source's name, family and split);
- parquet files as `datasets` writes them (`to_parquet`, or the `data/SPLIT-*.parquet` shards of
  `push_to_hub`): the same columns, the clip in `video` as `{bytes, path}`. Clips given as bytes
  are written once to the cache (`$DYBENCH_CACHE/hf-clips/`, named by their sha256); clips given
  as paths must be relative and stay inside DIR.

The items keep the ids, pairs, answers and transforms of the source, and the family recorded at
export (so they are asked with the same prompt template and scored by the same rules).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ValidationError

from dybench.atomic import write_atomic
from dybench.data import Dataset, safe_join
from dybench.errors import DyBenchError, pydantic_message
from dybench.schema import Item
from dybench.text_files import json_lines, read_text

METADATA = "metadata.jsonl"
RECORD = "dybench_export.json"
VIDEOS = "videos"
FAMILY = "hf"
"""The registry name of datasets read here whose export record names no other family."""
EXPORT_FORMAT = "dybench-hf-export"
ITEM_FIELDS = ("id", "pair_id", "task", "category", "question", "options", "answer", "transform", "kind",
               "variant", "option_keys", "meta")
"""The manifest fields a row carries besides its clip, in the order they are written."""
EXTRA = "extra"
"""A column (a JSON object as a string) holding a manifest row's fields beyond the contract, if any row has some."""


class ExportRecord(BaseModel):
    """`dybench_export.json`: what an export holds. Written last, so a folder without it is not a
    finished export."""

    format: Literal["dybench-hf-export"] = EXPORT_FORMAT
    name: str
    family: str
    split: Literal["test", "train"]
    source: str
    """The `--data` spec the export was made from, as given (the record travels with a push: no
    folder of this machine is added to it)."""
    source_fingerprint: str
    n_items: int
    n_clips: int
    dybench_version: str


def read_record(folder: Path) -> ExportRecord | None:
    path = folder / RECORD
    if not path.is_file():
        return None
    try:
        return ExportRecord.model_validate_json(read_text(path))
    except ValidationError as exc:
        raise DyBenchError(f"{path}: {pydantic_message(exc, 'file')}") from None


def row_to_item(row: Any, video: str, where: str) -> Item:
    """A metadata row (file_name already read) as an Item; `where` is `file:line` for errors."""
    if not isinstance(row, dict):
        raise DyBenchError(f"{where}: expected a JSON object")
    fields = {name: row[name] for name in ITEM_FIELDS if name in row}
    meta = fields.get("meta")
    if isinstance(meta, str):
        try:
            fields["meta"] = json.loads(meta)
        except json.JSONDecodeError as exc:
            raise DyBenchError(f"{where}: field meta: not a JSON object string ({exc.msg})") from None
    if meta is None:
        fields.pop("meta", None)
    extra = row.get(EXTRA)
    if extra is not None:
        try:
            extra = json.loads(extra) if isinstance(extra, str) else extra
        except json.JSONDecodeError as exc:
            raise DyBenchError(f"{where}: field {EXTRA}: not a JSON object string ({exc.msg})") from None
        if not isinstance(extra, dict):
            raise DyBenchError(f"{where}: field {EXTRA}: expected a JSON object")
        fields = {**{k: v for k, v in extra.items() if k not in ITEM_FIELDS and k != "video"}, **fields}
    try:
        return Item.model_validate({**fields, "video": video})
    except ValidationError as exc:
        raise DyBenchError(f"{where}: {pydantic_message(exc)}") from None


def _checked_items(rows: list[tuple[str, Item]], source: Path) -> list[Item]:
    """Ids unique, at most two rows a pair (as dybench.data.read_manifest demands of a manifest)."""
    seen: dict[str, str] = {}
    per_pair: dict[str, int] = {}
    for where, item in rows:
        if item.id in seen:
            raise DyBenchError(f"{where}: field id: duplicate item id {item.id!r} (also {seen[item.id]})")
        seen[item.id] = where
        per_pair[item.pair_id] = per_pair.get(item.pair_id, 0) + 1
        if per_pair[item.pair_id] > 2:
            raise DyBenchError(f"{where}: field pair_id: pair {item.pair_id!r} has more than two rows; "
                               "a pair is an original and its counterfactual")
    if not rows:
        raise DyBenchError(f"{source}: no rows")
    return [item for _, item in rows]


def _clip(folder: Path, relative: Any, where: str, field: str) -> str:
    if not isinstance(relative, str) or not relative:
        raise DyBenchError(f"{where}: field {field}: expected the clip's path relative to {folder}")
    try:
        path = safe_join(folder, relative)
    except DyBenchError as exc:
        raise DyBenchError(f"{where}: field {field}: {exc}") from None
    if not path.is_file():
        raise DyBenchError(f"{where}: field {field}: clip {relative} not found in {folder}")
    return relative


def read_metadata(folder: Path) -> list[Item]:
    path = folder / METADATA
    rows: list[tuple[str, Item]] = []
    for number, row in json_lines(read_text(path), path):
        where = f"{path}:{number}"
        if not isinstance(row, dict):
            raise DyBenchError(f"{where}: expected a JSON object")
        video = _clip(folder, row.get("file_name"), where, "file_name")
        rows.append((where, row_to_item(row, video, where)))
    return _checked_items(rows, path)


def parquet_files(folder: Path) -> list[Path]:
    """The parquet files of a folder, in name order (push_to_hub's shards sort by index)."""
    return sorted(p for p in folder.rglob("*.parquet") if p.is_file())


def _cached_clip(data: bytes, name: str) -> Path:
    from dybench.testing import default_cache_dir

    suffix = Path(name).suffix if Path(name).suffix else ".mp4"
    target = default_cache_dir() / "hf-clips" / f"{hashlib.sha256(data).hexdigest()}{suffix}"
    if not target.is_file():
        write_atomic(target, data)
    return target


def read_parquet(folder: Path, files: list[Path]) -> tuple[list[Item], Path]:
    """Items of parquet files, and the folder their clips are relative to: DIR where the rows name
    their clips by path, the cache where they carry them as bytes (all rows do one or the other)."""
    import pyarrow.parquet as pq

    rows: list[tuple[str, Item]] = []
    as_bytes: bool | None = None
    root = folder.resolve()
    for path in files:
        try:
            table = pq.read_table(path)
        except Exception as exc:  # pyarrow raises several types for a damaged file
            raise DyBenchError(f"{path}: not a readable parquet file ({str(exc).splitlines()[0]})") from None
        if "video" not in table.column_names:
            raise DyBenchError(f"{path}: no `video` column (expected a dataset written by `datasets` from "
                               "`dybench export hf`)")
        for number, row in enumerate(table.to_pylist()):
            where = f"{path}:row {number}"
            clip = row.get("video")
            if not isinstance(clip, dict):
                raise DyBenchError(f"{where}: field video: expected {{bytes, path}}")
            has_bytes = bool(clip.get("bytes"))
            if as_bytes is not None and has_bytes != as_bytes:
                raise DyBenchError(f"{where}: field video: earlier rows carry their clip as "
                                   f"{'bytes' if as_bytes else 'a path'}; write the dataset with one of the two")
            as_bytes = has_bytes
            if has_bytes:
                cached = _cached_clip(clip["bytes"], str(clip.get("path") or ""))
                root, video = cached.parent, cached.name
            else:
                video = _clip(folder, clip.get("path"), where, "video.path")
            rows.append((where, row_to_item(row, video, where)))
    return _checked_items(rows, folder), root


def _fingerprint(files: list[Path]) -> str:
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def _family(record: ExportRecord | None) -> str:
    from dybench.families import FAMILIES

    if record is None or record.family not in FAMILIES:
        return FAMILY
    return record.family


def load_hf(folder: Path) -> Dataset:
    """`--data hf:DIR`: an export folder (metadata.jsonl) or a folder of parquet files."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DyBenchError(f"hf:{folder}: no such folder (expected one written by `dybench export hf`, "
                           "or parquet files written by `datasets`)")
    record = read_record(folder)
    root = folder.resolve()
    if (folder / METADATA).is_file():
        if record is None:
            raise DyBenchError(f"{folder / RECORD}: missing: {folder} is not a finished export "
                               "(rerun `dybench export hf`)")
        items, fingerprint_files = read_metadata(folder), [folder / METADATA]
        name = record.name
    else:
        files = parquet_files(folder)
        if not files:
            raise DyBenchError(f"hf:{folder}: neither {METADATA} nor parquet files found "
                               "(export one with `dybench export hf DATA --out DIR`)")
        items, root = read_parquet(folder, files)
        fingerprint_files = files
        name = record.name if record else folder.resolve().name
    return Dataset(name=name, family=_family(record), root=root, items=items,
                   fingerprint=_fingerprint(fingerprint_files))


def split_of(dataset: Dataset) -> Literal["test", "train"]:
    """The split a dataset was built as: a build's `build.json`, an export's record, else `test`."""
    from dybench.build import BUILD_CONFIG, BuildConfig

    build = dataset.root / BUILD_CONFIG
    if build.is_file():
        try:
            return BuildConfig.model_validate_json(read_text(build)).split
        except ValidationError as exc:
            raise DyBenchError(f"{build}: {pydantic_message(exc, 'file')}") from None
    record = read_record(dataset.root)
    return record.split if record else "test"
