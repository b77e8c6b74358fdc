"""Dataset families: the kinds of data `--data` can name, each declared once.

A family says how its data is loaded (a built folder, or `PREFIX:PATH`), which prompt template
its items are asked with, how a reply is read when the family has its own rule, whether its
items record which clip was transformed (for the original-vs-counterfactual diagnostics), and
which extra score blocks (dybench/score_blocks.py) its scores carry.

Built in: `synthetic` (a folder from `dybench build-pairs`), `dybench` (the official release
layout, `dybench:PATH`), `timeblind` (TimeBlind's data.jsonl, `timeblind:FILE`) and `hf` (a
Hugging Face datasets folder from `dybench export hf`, `hf:DIR`). A new family
is one `FAMILIES.register(...)` call in a plugin module (dybench/plugins.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from dybench.data import Dataset, load_built
from dybench.errors import DyBenchError
from dybench.prompts import LETTERED, TIMEBLIND_SUFFIXES, PromptTemplate
from dybench.registry import Registry
from dybench.schema import Item, Prediction

ReadAnswer = Callable[[Item, Prediction], "str | None"]


@dataclass(frozen=True)
class DatasetFamily:
    name: str
    summary: str
    load: Callable[[Path], Dataset]
    template: PromptTemplate
    prefix: str | None = None
    """`--data PREFIX:PATH` loads PATH with this family; None: the family of built folders."""
    read_answer: ReadAnswer | None = None
    """Reads the letter from a prediction's raw output by the family's own rule; None: the stored letter."""
    transforms_known: bool = False
    """Items record which clip was transformed (original vs counterfactual accuracy is defined)."""
    score_blocks: tuple[str, ...] = ()
    prediction_format: str | None = None
    """A prediction-file format of the family's own (rows `dybench score` accepts for it)."""


FAMILIES: Registry[DatasetFamily] = Registry("dataset family")


def family_of(dataset: Dataset) -> DatasetFamily:
    return FAMILIES.get(dataset.family)


def template_for(family: str) -> PromptTemplate:
    """The prompt template of a dataset family (synthetic, dybench, timeblind)."""
    if family not in FAMILIES:
        raise DyBenchError(f"no prompt template for dataset family {family!r}; known: {', '.join(FAMILIES.names())}")
    return FAMILIES.get(family).template


def load_data(spec: str) -> Dataset:
    """Resolve a `--data` spec: a built folder, or `PREFIX:PATH` for a family with a prefix
    (`dybench:PATH` for the official release, `timeblind:FILE`, `hf:DIR`)."""
    for family in FAMILIES.names():
        entry = FAMILIES.get(family)
        if entry.prefix and spec.startswith(entry.prefix + ":"):
            return entry.load(Path(spec.removeprefix(entry.prefix + ":")))
    folder = Path(spec)
    if not folder.is_dir():
        prefixed = " or ".join(f"{e.prefix}:PATH" for _, e in FAMILIES.items() if e.prefix)
        raise DyBenchError(
            f"{spec}: no such dataset folder (expected a folder from `dybench build-pairs`, or {prefixed})"
        )
    return _built_family().load(folder)


def _built_family() -> DatasetFamily:
    return next(entry for _, entry in FAMILIES.items() if entry.prefix is None)


# --- the built-in families --------------------------------------------------------------------


def _load_official(path: Path) -> Dataset:
    from dybench.official import load_official

    return load_official(path)


def _load_timeblind(path: Path) -> Dataset:
    from dybench.timeblind import load_timeblind

    return load_timeblind(path)


def _load_hf(path: Path) -> Dataset:
    from dybench.hf_dataset import load_hf

    return load_hf(path)


def _timeblind_answer(item: Item, prediction: Prediction) -> str | None:
    """TimeBlind items are read from the raw output with the reference scorer's extraction, so
    every TimeBlind number follows one rule."""
    from dybench.timeblind import UnreadableRow, choice_letter, extract_choice

    try:
        return choice_letter(extract_choice(prediction.output, item.meta.get("type")))
    except UnreadableRow:
        return None


FAMILIES.register("synthetic", DatasetFamily(
    "synthetic", "a folder from `dybench build-pairs`", load_built, LETTERED, transforms_known=True,
))
FAMILIES.register("dybench", DatasetFamily(
    "dybench", "the official DyBench release layout", _load_official, LETTERED, prefix="dybench",
))
FAMILIES.register("timeblind", DatasetFamily(
    "timeblind", "TimeBlind's data.jsonl", _load_timeblind,
    PromptTemplate(name="timeblind-v1", style="suffix", suffixes=TIMEBLIND_SUFFIXES), prefix="timeblind",
    read_answer=_timeblind_answer, score_blocks=("timeblind",), prediction_format="timeblind",
))
# An export keeps its source's family (dybench/hf_dataset.py): this entry is the prefix, and the
# family of parquet files that record none (their items carry transforms, like a build's).
FAMILIES.register("hf", DatasetFamily(
    "hf", "a Hugging Face datasets folder from `dybench export hf` (or its parquet files)", _load_hf, LETTERED,
    prefix="hf", transforms_known=True,
))
