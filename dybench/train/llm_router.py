"""An LLM as the task router for the questions DyBench's task table does not cover.

The paper's router is a language model. Here any eval backend can be one (`router: {kind: llm,
model: ..., backend: ...}` in the training config): each question is put to the router model as a
multiple-choice question about what mirroring or reversing the video would do to its answer, with
the item's own clip alongside (every backend takes one), through the eval's own prompt template,
batching and answer extraction. The chosen option is the question's kind; a reply that names no
option, or the option "it cannot be told", routes the question as ``unknown`` (no counterfactual
branch, no relation reward).

Answers are cached in OUT/router/answers.jsonl, one line per question, keyed by the router model,
backend, prompt version and the question's text and options: a rerun or a resumed run asks nothing
again (so it trains on the same routes), and another router never reuses these answers. A backend
error stops with a one-line message; the answers stored so far are kept.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Sequence

from pydantic import BaseModel, ValidationError

from dybench.backends.base import Sampling
from dybench.data import Dataset
from dybench.errors import DyBenchError
from dybench.prompts import LETTERED, extract_choice
from dybench.schema import Item, TransformName, letter_index
from dybench.train.config import RouterSettings
from dybench.train.router import RouteKind, Router, TaskTableRouter, in_task_table

PROMPT_VERSION = "dybench-router-v1"
CACHE_FILE = "answers.jsonl"
CHOICES: tuple[tuple[RouteKind, str], ...] = (
    ("spatial", "Mirroring the video left to right would change the correct answer; playing it backwards would not"),
    ("temporal", "Playing the video backwards would change the correct answer; mirroring it would not"),
    ("spatiotemporal", "Both mirroring the video and playing it backwards would change the correct answer"),
    ("static", "Neither mirroring the video nor playing it backwards would change the correct answer"),
    ("unknown", "It cannot be told from the question"),
)
"""The router's options, in order: the chosen letter gives the kind."""


class RouterAnswer(BaseModel):
    """One cached answer of the router model."""

    key: str
    id: str
    model: str
    output: str | None
    kind: RouteKind


def cache_key(settings: RouterSettings, item: Item) -> str:
    """What the answer depends on: router model and backend, prompt version, question and options."""
    payload = json.dumps([PROMPT_VERSION, settings.model, settings.backend, item.question, item.options])
    return hashlib.sha256(payload.encode()).hexdigest()


def routing_item(item: Item) -> Item:
    """The question about `item`'s question that the router model answers (same clip)."""
    question = (
        "Here is a question someone asks about this video, with its answer options.\n"
        f"Question: {item.question}\nOptions: {' | '.join(item.options)}\n"
        "Which statement is true of that question?"
    )
    return Item(id=item.id, pair_id=item.pair_id, task="router", category="router", video=item.video,
                question=question, options=[text for _, text in CHOICES], answer="A", meta=item.meta)


def read_cache(path: Path) -> dict[str, RouterAnswer]:
    """The cached answers by key (a line torn by a kill is skipped and asked again)."""
    if not path.is_file():
        return {}
    answers = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            answer = RouterAnswer.model_validate_json(line)
        except ValidationError:
            continue
        answers[answer.key] = answer
    return answers


def kind_of_reply(text: str | None) -> RouteKind:
    choice = extract_choice(text, [option for _, option in CHOICES])
    return "unknown" if choice is None else CHOICES[letter_index(choice)][0]


def llm_kinds(settings: RouterSettings, dataset: Dataset, items: Sequence[Item], cache_dir: Path) -> dict[str, RouteKind]:
    """The router model's kind for every item, asked through its backend where not cached yet."""
    from dybench.backends.registry import create_backend, resolve_model
    from dybench.evaluate import answer_batch, decode_item, video_settings

    path = cache_dir / CACHE_FILE
    cached = read_cache(path)
    todo = [item for item in items if cache_key(settings, item) not in cached]
    if todo:
        assert settings.model is not None  # checked by RouterSettings
        spec = resolve_model(settings.model)
        backend = create_backend(spec, settings.backend, **settings.options)
        video = video_settings(spec, None, None, None, None, None)
        cache_dir.mkdir(parents=True, exist_ok=True)
        try:
            for start in range(0, len(todo), settings.batch_size):
                batch = todo[start : start + settings.batch_size]
                decoded = [decode_item(dataset, routing_item(item), video) for item in batch]
                for entry in decoded:
                    if entry.error is not None:
                        raise DyBenchError(f"router: item {entry.item.id}: {entry.error}")
                responses = answer_batch(backend, decoded, LETTERED, Sampling(max_tokens=32))
                answers = []
                for item in batch:
                    response = responses[item.id]
                    if response.error is not None:
                        raise DyBenchError(f"router {settings.model}: item {item.id}: {response.error}; rerun to "
                                           "ask again (answers so far are kept)")
                    answers.append(RouterAnswer(key=cache_key(settings, item), id=item.id, model=settings.model,
                                                output=response.text, kind=kind_of_reply(response.text)))
                with path.open("a", encoding="utf-8") as handle:
                    handle.write("".join(answer.model_dump_json() + "\n" for answer in answers))
                cached.update({answer.key: answer for answer in answers})
        finally:
            backend.close()
    return {item.id: cached[cache_key(settings, item)].kind for item in items}


def build_router(settings: RouterSettings, static_transforms: Sequence[TransformName], dataset: Dataset,
                 cache_dir: Path) -> Router:
    """The configured router: the task table, then the rules or the LLM's kinds for the rest."""
    if settings.kind == "rules":
        return TaskTableRouter(static_transforms=tuple(static_transforms))
    kinds = llm_kinds(settings, dataset, [item for item in dataset.items if not in_task_table(item)], cache_dir)
    return TaskTableRouter(static_transforms=tuple(static_transforms),
                           classify=lambda item: kinds.get(item.id, "unknown"), source="llm")
