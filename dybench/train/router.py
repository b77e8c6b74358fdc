"""The task router: which kind of question is this, and which counterfactual transform tests it?

Kinds (the paper's four): ``spatial`` (mirroring changes the answer), ``temporal`` (playing the clip
backwards or swapping its segments does), ``spatiotemporal`` (both do) and ``static`` (nothing
does: the answer must survive any transform).

Two sources, in order:

1. Items from DyBench's own tasks (``item.task`` is in the task table and the item carries its
   option keys): the kind and transform come from the task table, i.e. from which of the task's
   pair transforms change *this item's* answer (``dybench.tasks.pair_transforms_that_change``).
2. Anything else (user data): rules on the question text and options, documented in
   ``classify_question`` and tested on a table of questions.

Where two transforms qualify (spatiotemporal, or static), the choice is fixed per question by a
hash of its id, so reruns and resumed runs see the same counterfactual.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Literal, Protocol, Sequence

from dybench.schema import Item, TransformName, letter_index
from dybench.tasks import load_tasks, pair_transforms_that_change

RouteKind = Literal["spatial", "temporal", "spatiotemporal", "static"]

SEGMENT_BOUNDARY_KEY = "segment_boundary"
"""`item.meta` key holding the frame where the second event starts (needed for swap_segments)."""


@dataclass(frozen=True)
class Route:
    """Kind of question, the transform that makes its counterfactual, and whether the answer should change."""

    kind: RouteKind
    transform: TransformName
    answer_changes: bool = True
    source: Literal["task", "rules"] = "task"


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
        r"|walking|drives?|driving|pushe[sd]|pulls?|pulled|throws?|thrown|spins?|spinning"
    ),
    re.IGNORECASE,
)
TEMPORAL_WORDS = re.compile(
    _WORD.format(
        r"first|before|after|then|order|sequence|earlier|later|begin|beginning|start|starts|end|ends"
        r"|finally|last|forwards?|backwards?|reversed?|rewind|opens?|opening|closes?|closing|grows?"
        r"|growing|shrinks?|shrinking|fills?|filling|drains?|draining|increases?|decreases?|rises?"
        r"|falls?|appears?|disappears?|enters?|leaves|melts?|freezes?|assembles?|disassembles?"
        r"|stack(?:s|ed)?|unstack(?:s|ed)?|during|over time|happens?|bounces?|higher|lower|up|down"
    ),
    re.IGNORECASE,
)


def classify_question(question: str, options: Sequence[str] = ()) -> RouteKind:
    """The kind of a question from its text, by these rules (first match wins):

    1. a static form ("what colour", "what shape", "how many", "is there") -> ``static``;
    2. left/right (or clockwise) words in the question or options, together with a motion word
       ("move", "direction", "turn", ...) -> ``spatiotemporal`` (mirroring and reversing both
       change the answer);
    3. left/right words without motion ("on the left of") -> ``spatial``;
    4. motion or time words ("first", "before", "open", "grow", "up", ...) -> ``temporal``;
    5. anything else -> ``static``.
    """
    text = " ".join([question, *options])
    if STATIC_PATTERNS.search(question):
        return "static"
    sides = bool(SIDE_WORDS.search(text))
    motion = bool(MOTION_WORDS.search(text))
    if sides and motion:
        return "spatiotemporal"
    if sides:
        return "spatial"
    if motion or TEMPORAL_WORDS.search(text):
        return "temporal"
    return "static"


# --- the router -------------------------------------------------------------------------------


class Router(Protocol):
    """Anything that routes an item (rules here; an LLM through an eval backend could be another)."""

    def __call__(self, item: Item) -> Route: ...


@dataclass(frozen=True)
class TaskTableRouter:
    """Task table for DyBench's own items, rules on the text for everything else."""

    static_transforms: tuple[TransformName, ...] = ("hflip", "reverse")

    def __call__(self, item: Item) -> Route:
        if item.task in load_tasks() and item.variant is not None and item.option_keys is not None:
            return self.from_task_table(item)
        return self.from_rules(item)

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

    def from_rules(self, item: Item) -> Route:
        kind = classify_question(item.question, item.options)
        has_segments = SEGMENT_BOUNDARY_KEY in item.meta
        if kind == "spatial":
            transform: TransformName = "hflip"
        elif kind == "temporal":
            transform = "swap_segments" if has_segments else "reverse"
        elif kind == "spatiotemporal":
            transform = stable_choice(item.id, ("hflip", "reverse"))
        else:
            transform = stable_choice(item.id, self.static_transforms)
        return Route(kind, transform, kind != "static", "rules")


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


__all__ = ["Route", "RouteKind", "Router", "TaskTableRouter", "classify_question", "stable_choice"]
