"""One synthetic pair, from plan to manifest rows: choose balanced keys, letters and transform,
render, check the labels from pixels, write both clips, and describe them as `Item`s.

Every choice comes from (seed, task, index) alone, so a pair is the same whichever process renders
it and whenever. Answers come only from `dybench.tasks`: the original's key is what the generator
was asked to draw, the counterfactual's is `answer_key_after(...)` of the pair's transform.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dybench.errors import DyBenchError
from dybench.schema import Item, letter
from dybench.synth import GENERATOR_VERSION, GENERATORS
from dybench.synth.base import Rendered
from dybench.synth.scene import SceneOptions
from dybench.tasks import Task, answer_key_after, get_task, pair_transforms_that_change
from dybench.video import apply_transform, write_video

MAX_ATTEMPTS = 30
"""Sub-seeds tried before giving up on a pair whose clip keeps failing its pixel check."""

STATIC_TASKS = ("static_color", "static_shape", "static_count")


def seed_words(seed: int, *parts: object) -> list[int]:
    """A stable numpy seed sequence for (seed, parts...): the same on every machine and process."""
    digest = hashlib.sha256(":".join(str(p) for p in (seed, *parts)).encode()).digest()
    return [int.from_bytes(digest[i : i + 4], "little") for i in range(0, 16, 4)]


def balanced_choice(seed: int, task: str, tag: str, index: int, choices: list[Any]) -> Any:
    """Cycle through `choices` in blocks, each block in its own seeded order: every choice is used
    equally often per block of len(choices) pairs, yet the order is not predictable from the index."""
    block, offset = divmod(index, len(choices))
    order = np.random.default_rng(seed_words(seed, task, tag, block)).permutation(len(choices))
    return choices[int(order[offset])]


def letter_slots(n_options: int, index: int) -> tuple[int, int]:
    """Positions of the original's and the counterfactual's answers: over every n_options pairs
    each letter is the original's answer once and the counterfactual's answer once."""
    first = index % n_options
    second = (first + 1 + (index // n_options) % (n_options - 1)) % n_options
    return first, second


@dataclass(frozen=True)
class PairPlan:
    task: str
    index: int
    variant: str
    key: str
    transform: str
    slots: tuple[int, int]


def plan_pair(task: Task, index: int, seed: int) -> PairPlan:
    """Balanced variant/answer-key/transform/letter choices for pair `index` of `task`."""
    combos: list[tuple[str, str]] = []
    for variant in task.variants:
        for key in variant.options:
            if pair_transforms_that_change(task, variant.name, key):
                combos.append((variant.name, key))
    if not combos:
        raise DyBenchError(f"task {task.name}: no option is changed by its pair transforms, so it cannot make pairs")
    variant, key = balanced_choice(seed, task.name, "answer", index, combos)
    transforms = pair_transforms_that_change(task, variant, key)
    transform = balanced_choice(seed, task.name, f"transform-{key}", index, list(transforms))
    return PairPlan(task.name, index, variant, key, transform, letter_slots(task.options_per_item, index))


def option_order(keys: list[str], placed: dict[int, str], n_options: int, rng: np.random.Generator) -> list[str]:
    """Option keys in display order: `placed` fixes some positions, the rest are shuffled in."""
    rest = [k for k in keys if k not in placed.values()]
    rng.shuffle(rest)
    fill = iter(rest)
    return [placed[i] if i in placed else next(fill) for i in range(n_options)]


def _fill(template: str, fills: dict[str, str], where: str) -> str:
    try:
        return template.format(**fills)
    except KeyError as exc:
        raise DyBenchError(f"{where}: template {template!r} needs {exc.args[0]!r}, which the scene does not provide") from None


def render_checked(plan: PairPlan, seed: int, options: SceneOptions) -> tuple[Rendered, np.ndarray, str, int]:
    """Render until the pixel check reads back both labels. Returns (rendered, counterfactual frames,
    counterfactual key, attempt)."""
    task = get_task(plan.task)
    generator = GENERATORS[plan.task]
    counter_key = answer_key_after(task, plan.variant, plan.key, plan.transform)
    for attempt in range(MAX_ATTEMPTS):
        rng = np.random.default_rng([*seed_words(seed, plan.task, plan.index), attempt])
        rendered = generator.render(rng, options, plan.variant, plan.key)
        counter = apply_transform(rendered.frames, plan.transform, rendered.boundary)
        counter_boundary = None if rendered.boundary is None else len(rendered.frames) - rendered.boundary
        if (
            generator.measure(rendered.frames, rendered, rendered.boundary) == plan.key
            and generator.measure(counter, rendered, counter_boundary) == counter_key
        ):
            return rendered, counter, counter_key, attempt
    raise DyBenchError(
        f"{plan.task} pair {plan.index}: no clip passed its pixel label check in {MAX_ATTEMPTS} attempts "
        f"(size {options.size}, {options.n_frames} frames); use a larger --size or more --frames"
    )


def _static_items(
    rendered: Rendered, clips: list[tuple[str, str, dict]], pair_id: str, seed: int, index: int, base_meta: dict
) -> list[Item]:
    """Static control questions on both clips of a pair: same options, same answer (every transform
    is the identity for them, which dybench.tasks confirms)."""
    items = []
    for name in STATIC_TASKS:
        if name not in rendered.static:
            continue
        task = get_task(name)
        variant = task.variants[0]
        key = rendered.static[name]
        n = task.options_per_item
        rng = np.random.default_rng([*seed_words(seed, name, index), 7])
        wrong = [k for k in variant.options if k != key]
        picked = [str(k) for k in rng.choice(wrong, size=n - 1, replace=False)]
        slot = balanced_choice(seed, name, "slot", index, list(range(n)))
        keys = option_order([key, *picked], {slot: key}, n, rng)
        question = _fill(variant.question, rendered.static_fills, f"task {name}")
        options = [_fill(variant.options[k], rendered.static_fills, f"task {name}") for k in keys]
        static_pair = f"{pair_id}-{name}"
        for clip_id, transform, meta in clips:
            answer_key = answer_key_after(task, variant.name, key, transform)
            items.append(Item(
                id=f"{static_pair}-{transform}", pair_id=static_pair, task=name, category=task.category,
                video=f"videos/{clip_id}.mp4", question=question, options=options,
                answer=letter(keys.index(answer_key)), transform=transform, kind="static",
                variant=variant.name, option_keys=keys, meta={**base_meta, **meta},
            ))
    return items


def build_pair(out: Path, plan: PairPlan, seed: int, options: SceneOptions, with_static: bool) -> list[Item]:
    """Render, check and write one pair; return its manifest rows (original first)."""
    task = get_task(plan.task)
    spec = task.variant(plan.variant)
    rendered, counter, counter_key, attempt = render_checked(plan, seed, options)

    n = task.options_per_item
    rng = np.random.default_rng([*seed_words(seed, plan.task, plan.index), 1_000_003])
    keys = option_order(list(spec.options), {plan.slots[0]: plan.key, plan.slots[1]: counter_key}, n, rng)
    where = f"task {task.name}/{spec.name}"
    question = _fill(spec.question, rendered.fills, where)
    texts = [_fill(spec.options[k], rendered.fills, where) for k in keys]

    pair_id = f"{plan.task}-{plan.index:05d}"
    ids = [f"{pair_id}-original", f"{pair_id}-{plan.transform}"]
    write_video(out / "videos" / f"{ids[0]}.mp4", rendered.frames, options.fps)
    write_video(out / "videos" / f"{ids[1]}.mp4", counter, options.fps)

    base_meta: dict[str, Any] = {
        "job": f"{plan.task}/{plan.index}",
        "generator_version": GENERATOR_VERSION,
        "seed": seed,
        "attempt": attempt,
        "scene": rendered.facts,
    }
    per_clip: list[dict[str, Any]] = [{}, {"source": ids[0]}]
    if rendered.boundary is not None:
        per_clip[0]["segment_boundary"] = rendered.boundary
        per_clip[1]["segment_boundary"] = len(rendered.frames) - rendered.boundary
    items = []
    for clip_id, transform, key, meta in zip(ids, ["original", plan.transform], [plan.key, counter_key], per_clip):
        items.append(Item(
            id=clip_id, pair_id=pair_id, task=task.name, category=task.category, video=f"videos/{clip_id}.mp4",
            question=question, options=texts, answer=letter(keys.index(key)), transform=transform,
            kind="dynamic", variant=spec.name, option_keys=keys, meta={**base_meta, **meta},
        ))
    if with_static:
        clips = [(ids[0], "original", per_clip[0]), (ids[1], plan.transform, per_clip[1])]
        items += _static_items(rendered, clips, pair_id, seed, plan.index, base_meta)
    for item in items:
        item.meta["job_rows"] = len(items)
    return items
