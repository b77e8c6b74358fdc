"""The task router: which kind of question is this, and which counterfactual transform tests it?

Kinds (the paper's four): ``spatial`` (mirroring changes the answer), ``temporal`` (playing the clip
backwards or swapping its segments does), ``spatiotemporal`` (both do) and ``static`` (nothing
does: the answer must survive any transform); plus ``unknown``: the router cannot tell, and the
question is trained without a counterfactual branch (no relation reward), since paying a model
for changing (or keeping) an answer that should not is worse than not paying it at all.

Three sources:

1. Items from DyBench's own tasks (``item.task`` is in the task table and the item carries its
   option keys): the kind and transform come from the task table, i.e. from which of the task's
   pair transforms change *this item's* answer (``dybench.tasks.pair_transforms_that_change``).
2. Anything else (user data), by the config's ``router``: conservative rules on the question text
   and options (``classify_question``, tested on a table of questions), or
3. an LLM asked through any eval backend (``dybench.train.llm_router``), as the paper did.

Where two transforms qualify (spatiotemporal, or static), the choice is fixed per question by a
hash of its id, so reruns and resumed runs see the same counterfactual.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from dataclasses import dataclass
from typing import Any, Callable, Literal, Protocol, Sequence

from dybench.schema import Item, TransformName, letter_index
from dybench.tasks import load_tasks, pair_transforms_that_change

RouteKind = Literal["spatial", "temporal", "spatiotemporal", "static", "unknown"]
RouteSource = Literal["task", "rules", "llm"]

SEGMENT_BOUNDARY_KEY = "segment_boundary"
"""`item.meta` key holding the frame where the second event starts (needed for swap_segments)."""


@dataclass(frozen=True)
class Route:
    """Kind of question, the transform that makes its counterfactual, and whether the answer should
    change; `transform` and `answer_changes` are None for an ``unknown`` question (no counterfactual)."""

    kind: RouteKind
    transform: TransformName | None
    answer_changes: bool | None = True
    source: RouteSource = "task"

    @property
    def has_counterfactual(self) -> bool:
        return self.transform is not None


def stable_choice(key: str, choices: Sequence[TransformName]) -> TransformName:
    """One of `choices`, fixed by `key` (not Python's salted hash: the same in every process)."""
    digest = hashlib.sha256(key.encode()).digest()
    return choices[digest[0] % len(choices)]


# --- rules for user data ----------------------------------------------------------------------

_WORD = r"\b(?:{})\b"
STATIC_PATTERNS = re.compile(
    r"\b(?:what|which)\s+(?:colou?r|shape|material|kind|type|brand)\b|\bhow many\b|\bcolou?r of\b"
    r"|\bis there\b|\bare there\b|\bwhat (?:is|are) (?:the )?(?:name|text|number)\b",
    re.IGNORECASE,
)
SIDE_WORDS = re.compile(
    _WORD.format(
        r"left|right|leftwards?|rightwards?|clockwise|counter-?clockwise|anti-?clockwise|east|west"
    ),
    re.IGNORECASE,
)
MOTION_WORDS = re.compile(
    _WORD.format(
        r"moves?|moving|moved|direction|travel(?:s|ling|ing)?|go(?:es|ing)?|heads?|heading|turns?|turning"
        r"|rotates?|rotating|rolls?|rolling|slides?|sliding|swims?|flies|flying|runs?|running|walks?"
        r"|walking|drives?|driving|pushe[sd]|pulls?|pulled|throws?|thrown|spins?|spinning|way"
    ),
    re.IGNORECASE,
)
ORDER_WORDS = re.compile(
    _WORD.format(r"first|last|before|after|then|earlier|later|beginning|end|next|order|sequence"),
    re.IGNORECASE,
)
PROCESS_WORDS = re.compile(
    _WORD.format(
        r"forwards?|backwards?|reversed?|opens?|opening|opened|closes?|closing|closed|grows?|growing"
        r"|shrinks?|shrinking|fills?|filling|drains?|draining|empties|emptying|increases?|decreases?"
        r"|rises?|rising|falls?|falling|appears?|disappears?|enters?|leaves|exits?|melts?|freezes?"
        r"|assembles?|disassembles?|stack(?:s|ed)?|unstack(?:s|ed)?|higher|lower|up|down|upwards?"
        r"|downwards?|towards?|away"
    ),
    re.IGNORECASE,
)
"""Words naming a direction in time or space that playing a clip backwards turns into its opposite."""
ORDER_QUESTION = re.compile(
    r"\bin (?:what|which) order\b"
    r"|\b(?:happens?|happened|occurs?|occurred|comes?|came)\s+(?:first|last|earlier|later|next)\b"
    r"|\b(?:which|what)\b[^?]*\b(?:first|last|earlier|later)\b",
    re.IGNORECASE,
)
"""A question that asks which of several events comes first or last (reversing swaps them)."""
YES_NO = {"yes", "no", "true", "false"}


def answer_text(question: str, options: Sequence[str]) -> str:
    """The text that carries the answer: the options, or the question itself where the options are
    only yes/no (or missing), since then the question names what is asked about."""
    if not options or {option.strip(" .!").lower() for option in options} <= YES_NO:
        return question
    return " ".join(options)


def classify_question(question: str, options: Sequence[str] = ()) -> RouteKind:
    """The kind of a question from its text, conservatively: a dynamic kind only where the answer
    itself names what a transform turns around, ``unknown`` where the rules cannot tell. First
    match wins:

    1. left/right (or clockwise) words in the answer text (see `answer_text`), with a motion word in
       the question or options -> ``spatiotemporal`` (mirroring and reversing both change it);
    2. left/right words in the answer text without motion -> ``spatial``;
    3. options (not yes/no) that name a direction in time or space ("opens", "grows", "up",
       "before") -> ``temporal``;
    4. a static form ("what colour", "what shape", "how many", "is there") -> ``static``, unless the
       question also names a side or a moment ("the car on the left", "at the end"), then ``unknown``;
    5. a question about which event comes first or last -> ``temporal``;
    6. anything else -> ``unknown`` ("What is the man holding before he sits down?": the time words
       are a condition, not what is asked).
    """
    answers = answer_text(question, options)
    text = " ".join([question, *options])
    yes_no = answers is question and bool(options)
    if not yes_no and SIDE_WORDS.search(answers):
        return "spatiotemporal" if MOTION_WORDS.search(text) else "spatial"
    if not yes_no and (PROCESS_WORDS.search(answers) or (options and ORDER_WORDS.search(answers))):
        return "temporal"
    if STATIC_PATTERNS.search(question):
        return "unknown" if SIDE_WORDS.search(question) or ORDER_WORDS.search(question) else "static"
    if ORDER_QUESTION.search(question):
        return "temporal"
    return "unknown"


def route_for_kind(item: Item, kind: RouteKind, static_transforms: Sequence[TransformName],
                   source: RouteSource) -> Route:
    """The route of a user question of `kind` (from the rules or an LLM)."""
    if kind == "unknown":
        return Route("unknown", None, None, source)
    if kind == "spatial":
        transform: TransformName = "hflip"
    elif kind == "temporal":
        transform = "swap_segments" if SEGMENT_BOUNDARY_KEY in item.meta else "reverse"
    elif kind == "spatiotemporal":
        transform = stable_choice(item.id, ("hflip", "reverse"))
    else:
        transform = stable_choice(item.id, static_transforms)
    return Route(kind, transform, kind != "static", source)


# --- the router -------------------------------------------------------------------------------


class Router(Protocol):
    """Anything that routes an item: the task table with rules (`TaskTableRouter`) or with an LLM's kinds."""

    def __call__(self, item: Item) -> Route: ...


def in_task_table(item: Item) -> bool:
    """Does the task table know this item's answer under every transform?"""
    return item.task in load_tasks() and item.variant is not None and item.option_keys is not None


def rules_kind(item: Item) -> RouteKind:
    return classify_question(item.question, item.options)


@dataclass(frozen=True)
class TaskTableRouter:
    """Task table for DyBench's own items; `classify` (the rules by default) for everything else."""

    static_transforms: tuple[TransformName, ...] = ("hflip", "reverse")
    classify: Callable[[Item], RouteKind] = rules_kind
    source: RouteSource = "rules"

    def __call__(self, item: Item) -> Route:
        if in_task_table(item):
            return self.from_task_table(item)
        return route_for_kind(item, self.classify(item), self.static_transforms, self.source)

    def from_task_table(self, item: Item) -> Route:
        task = load_tasks()[item.task]
        if task.kind == "static":
            return Route("static", stable_choice(item.id, self.static_transforms), False, "task")
        key = item.option_keys[letter_index(item.answer)]  # type: ignore[index]
        changing = pair_transforms_that_change(task, item.variant, key)  # type: ignore[arg-type]
        if changing:
            transform = stable_choice(item.id, changing)
            return Route(_kind_of(changing), transform, True, "task")
        # A dynamic task whose answer no pair transform changes (e.g. "it keeps the same size"):
        # the transform still tests the question, and the expected behaviour is "answer stays".
        transform = stable_choice(item.id, task.pair_transforms or list(self.static_transforms))
        return Route(_kind_of(task.pair_transforms), transform, False, "task")


def route_report(routes: dict[str, Route], router: str, model: str | None) -> dict[str, Any]:
    """How the questions were routed: counts per kind and per source, and every question's route."""
    return {
        "router": router,
        "router_model": model,
        "n_questions": len(routes),
        "by_kind": dict(sorted(Counter(route.kind for route in routes.values()).items())),
        "by_source": dict(sorted(Counter(route.source for route in routes.values()).items())),
        "routes": {
            item_id: {"kind": r.kind, "transform": r.transform, "answer_changes": r.answer_changes, "source": r.source}
            for item_id, r in routes.items()
        },
    }


def _kind_of(transforms: Sequence[TransformName]) -> RouteKind:
    names = set(transforms)
    spatial = "hflip" in names
    temporal = bool(names & {"reverse", "swap_segments"})
    if spatial and temporal:
        return "spatiotemporal"
    if spatial:
        return "spatial"
    if temporal:
        return "temporal"
    return "static"


def describe_routes(report: dict[str, Any]) -> str:
    """One line for the terminal: how many questions went which way, and from which source."""
    kinds = ", ".join(f"{n} {kind}" for kind, n in report["by_kind"].items())
    sources = ", ".join(f"{n} by {SOURCE_NAMES[source]}" for source, n in report["by_source"].items())
    unknown = report["by_kind"].get("unknown", 0)
    note = f"; the {unknown} unknown get no counterfactual branch" if unknown else ""
    return f"routes: {kinds} ({sources}){note}"


SOURCE_NAMES = {"task": "the task table", "rules": "rules", "llm": "the LLM router"}

__all__ = ["Route", "RouteKind", "Router", "TaskTableRouter", "classify_question", "describe_routes", "route_for_kind", "route_report",
           "stable_choice"]
