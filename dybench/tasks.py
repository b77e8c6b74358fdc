"""Task definitions (tasks/*.yaml) and the one table everything hangs on: answers under transforms.

Each task variant names its options by *key* (``left``, ``grows``, ``a``) and declares, per
counterfactual transform, which keys swap. From that table alone come the labels of generated
counterfactual clips, the check that a pair's answers differ, CRPO's "should the answer change?"
and the trainer's choice of transform. Nothing else in the project re-derives it.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

from pydantic import BaseModel, Field, ValidationError, model_validator

from dybench.errors import DyBenchError, pydantic_message
from dybench.schema import Item, Kind, TransformName, letter, letter_index
from dybench.yaml_files import read_yaml_mapping

TRANSFORMS: tuple[TransformName, ...] = ("hflip", "reverse", "swap_segments")


PROJECT_TASKS = Path(__file__).resolve().parents[1] / "tasks"
"""The repository's `tasks/`: the benchmark's own task table."""


def tasks_dir() -> Path:
    """The folder of task YAML files: $DYBENCH_TASKS_DIR, else the repository's `tasks/`."""
    return Path(os.environ.get("DYBENCH_TASKS_DIR", PROJECT_TASKS))


class TaskVariant(BaseModel):
    """One question form of a task, with its options and how each transform permutes them."""

    name: str
    question: str = Field(description="question template; {placeholders} come from the scene")
    options: dict[str, str] = Field(description="option key -> option text template")
    transforms: dict[TransformName, list[tuple[str, str]]] = Field(
        default_factory=dict, description="per transform, the option keys that swap; absent = identity"
    )

    @model_validator(mode="after")
    def _swaps_are_a_permutation(self) -> TaskVariant:
        for name, swaps in self.transforms.items():
            seen: set[str] = set()
            for a, b in swaps:
                for key in (a, b):
                    if key not in self.options:
                        raise ValueError(f"transform {name} swaps unknown option {key!r}")
                    if key in seen:
                        raise ValueError(f"transform {name} moves option {key!r} twice")
                    seen.add(key)
        return self

    def permutation(self, transform: TransformName) -> dict[str, str]:
        """Option key -> option key after `transform` (every key present)."""
        mapping = {key: key for key in self.options}
        for a, b in self.transforms.get(transform, []):
            mapping[a], mapping[b] = b, a
        return mapping


class Task(BaseModel):
    name: str
    category: str
    kind: Kind
    description: str = ""
    pair_transforms: list[TransformName] = Field(
        default_factory=list, description="transforms used to build counterfactual pairs"
    )
    n_options: int | None = Field(default=None, description="options shown per item (default: all)")
    variants: list[TaskVariant] = Field(min_length=1)

    @model_validator(mode="after")
    def _consistent(self) -> Task:
        if self.kind == "static" and any(v.transforms for v in self.variants):
            raise ValueError("a static task must not change its answer under any transform")
        if self.kind == "dynamic":
            for variant in self.variants:
                for transform in self.pair_transforms:
                    if not variant.transforms.get(transform):
                        raise ValueError(
                            f"variant {variant.name}: pair transform {transform} changes no answer"
                        )
        sizes = {len(v.options) for v in self.variants}
        if self.n_options is None and len(sizes) > 1:
            raise ValueError("variants have different numbers of options: set n_options")
        return self

    def variant(self, name: str) -> TaskVariant:
        for variant in self.variants:
            if variant.name == name:
                return variant
        raise DyBenchError(f"task {self.name} has no variant {name!r}")

    @property
    def options_per_item(self) -> int:
        return self.n_options or len(self.variants[0].options)


class UnknownTaskError(DyBenchError):
    pass


def load_task_file(path: Path) -> Task:
    data = read_yaml_mapping(path, "task file", "a task file must be a YAML mapping (name:, category:, kind:, variants:)")
    try:
        return Task.model_validate(data)
    except ValidationError as exc:
        raise DyBenchError(f"{path}: {pydantic_message(exc, whole='task')}") from None


@lru_cache(maxsize=4)
def _load_all(folder: str) -> dict[str, Task]:
    tasks = {}
    for path in sorted(Path(folder).glob("*.yaml")):
        task = load_task_file(path)
        if task.name in tasks:
            raise DyBenchError(f"{path}: task {task.name!r} is defined twice")
        tasks[task.name] = task
    if not tasks:
        raise DyBenchError(f"no task definitions (*.yaml) found in {folder}")
    return tasks


def load_tasks() -> dict[str, Task]:
    """All tasks, by name, validated."""
    return _load_all(str(tasks_dir()))


def get_task(name: str) -> Task:
    tasks = load_tasks()
    if name not in tasks:
        raise UnknownTaskError(f"unknown task {name!r}; known tasks: {', '.join(tasks)}")
    return tasks[name]


def split_transform(transform: str) -> list[TransformName]:
    """"hflip+reverse" -> ["hflip", "reverse"]; "original" -> []."""
    if transform == "original":
        return []
    parts = transform.split("+")
    for part in parts:
        if part not in TRANSFORMS:
            raise DyBenchError(f"unknown transform {part!r}; known: original, {', '.join(TRANSFORMS)}")
    return parts  # type: ignore[return-value]


def answer_key_after(task: Task, variant: str, key: str, transform: str) -> str:
    """The correct option key after applying `transform` (possibly composite) to the clip."""
    spec = task.variant(variant)
    if key not in spec.options:
        raise DyBenchError(f"task {task.name}/{variant} has no option {key!r}")
    for part in split_transform(transform):
        key = spec.permutation(part)[key]
    return key


def answer_changes(task: Task, variant: str, key: str, transform: str) -> bool:
    """Should the correct answer change when the clip is transformed? (CRPO's relation.)"""
    return answer_key_after(task, variant, key, transform) != key


def transformed_answer(item: Item, transform: str) -> str:
    """The answer letter of `item` if its clip were transformed by `transform` (options kept in place)."""
    if item.variant is None or item.option_keys is None:
        raise DyBenchError(f"item {item.id}: no option keys, so its answer under {transform} is unknown")
    task = get_task(item.task)
    key = item.option_keys[letter_index(item.answer)]
    new_key = answer_key_after(task, item.variant, key, transform)
    if new_key not in item.option_keys:
        raise DyBenchError(f"item {item.id}: answer after {transform} ({new_key}) is not among its options")
    return letter(item.option_keys.index(new_key))


def pair_transforms_that_change(task: Task, variant: str, key: str) -> list[TransformName]:
    """The task's pair transforms under which this answer changes (the candidates for a pair)."""
    return [t for t in task.pair_transforms if answer_changes(task, variant, key, t)]
