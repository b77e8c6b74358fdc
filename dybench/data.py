"""Datasets: read a built folder's `manifest.jsonl` safely, and resolve a `--data` spec.

A manifest is data from outside, so every row is validated (pydantic) and every video path must
stay inside the dataset folder; the first bad row stops everything with its line number.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import ValidationError

from dybench.errors import DyBenchError, pydantic_message
from dybench.schema import Item
from dybench.text_files import json_lines, read_text

MANIFEST = "manifest.jsonl"


@dataclass
class Dataset:
    """Items plus where their videos live. `family` picks the prompt template and the metrics."""

    name: str
    family: str
    """A name in the dataset-family registry (dybench/families.py)."""
    root: Path
    items: list[Item]
    fingerprint: str
    notes: list[str] = field(default_factory=list)

    def video_path(self, item: Item) -> Path:
        return safe_join(self.root, item.video)


def safe_join(root: Path, relative: str) -> Path:
    """`root / relative`, refusing absolute paths, NUL bytes and anything that escapes `root`."""
    if "\0" in relative:
        raise DyBenchError(f"video path {relative!r} contains a NUL byte; fix the path")
    candidate = Path(relative)
    if candidate.is_absolute():
        raise DyBenchError(f"video path {relative!r} is absolute; paths must be relative to the dataset folder")
    resolved = (root / candidate).resolve()
    if not resolved.is_relative_to(root.resolve()):
        raise DyBenchError(f"video path {relative!r} leaves the dataset folder {root}")
    return resolved


def refuse_nul(path: Path, what: str) -> None:
    """A NUL byte ends a path at the OS boundary (a ValueError deep inside `open`): say so here."""
    if "\0" in str(path):
        raise DyBenchError(f"{what} {str(path)!r} contains a NUL byte; fix the path")


def read_manifest(path: Path) -> list[Item]:
    """Parse and validate every row; raise naming the file and line of the first bad one."""
    if not path.is_file():
        raise DyBenchError(f"{path}: manifest not found (build one with `dybench build-pairs --out DIR`)")
    items: list[Item] = []
    seen: set[str] = set()
    lines_of_pair: dict[str, list[int]] = {}
    root = path.parent
    for number, row in json_lines(read_text(path), path):
        where = f"{path}:{number}"
        try:
            item = Item.model_validate(row)
        except ValidationError as exc:
            raise DyBenchError(f"{where}: {pydantic_message(exc)}") from None
        if item.id in seen:
            raise DyBenchError(f"{where}: duplicate item id {item.id!r}")
        try:
            safe_join(root, item.video)
        except DyBenchError as exc:
            raise DyBenchError(f"{where}: {exc}") from None
        seen.add(item.id)
        items.append(item)
        lines_of_pair.setdefault(item.pair_id, []).append(number)
    # P-Acc counts a pair as one unit: a third row would silently join the pair it shares an id with.
    for pair_id, numbers in lines_of_pair.items():
        if len(numbers) > 2:
            raise DyBenchError(
                f"{path}: pair {pair_id!r} has {len(numbers)} rows (lines {', '.join(map(str, numbers))}); "
                "a pair is an original and its counterfactual: give the others their own pair_id"
            )
    if not items:
        raise DyBenchError(f"{path}: manifest has no items")
    return items


def file_fingerprint(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def load_built(folder: Path) -> Dataset:
    """A folder written by `dybench build-pairs` (manifest.jsonl + videos/)."""
    manifest = folder / MANIFEST
    return Dataset(
        name=folder.resolve().name,
        family="synthetic",
        root=folder.resolve(),
        items=read_manifest(manifest),
        fingerprint=file_fingerprint(manifest),
    )


