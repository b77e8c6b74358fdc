"""A training question for both branches: the null option and the counterfactual label.

"None of the above" is appended to every multiple-choice question, in both branches, so the
counterfactual branch can say "the answer changed" even where the changed answer is not among the
options. The counterfactual label comes from the task table (``dybench.tasks.transformed_answer``)
where the item has option keys and the transformed answer is shown; otherwise it is the null
option for a question whose answer should change, and the original answer for one whose answer
should stay. A question the router could not classify (``unknown``) has no counterfactual branch
and no counterfactual label.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from dybench.errors import DyBenchError
from dybench.prompts import LETTERED, PromptTemplate
from dybench.schema import Item, letter
from dybench.tasks import transformed_answer
from dybench.train.router import Route, Router


@dataclass(frozen=True)
class TrainQuestion:
    """One item as the trainer sees it: shown options (null included), labels of both branches."""

    item: Item
    video_path: Path
    route: Route
    options: list[str]
    answer: str
    counterfactual_answer: str | None
    null_letter: str | None

    @property
    def id(self) -> str:
        return self.item.id

    def shown_item(self) -> Item:
        """The item with the options as shown to the model (null option included)."""
        return self.item.model_copy(update={"options": list(self.options)})


def with_null_option(options: list[str], text: str) -> tuple[list[str], str]:
    """`options` plus the null option (not added twice); returns (options, null letter)."""
    for index, option in enumerate(options):
        if option.strip().lower() == text.strip().lower():
            return list(options), letter(index)
    if len(options) >= 26:
        raise DyBenchError(f"cannot add {text!r}: the question already has 26 options")
    return [*options, text], letter(len(options))


def counterfactual_answer(item: Item, route: Route, null_letter: str | None) -> str | None:
    """The correct letter on the counterfactual clip (see the module docstring); None without one."""
    if not route.has_counterfactual:
        return None
    if not route.answer_changes:
        return item.answer
    if item.variant is not None and item.option_keys is not None:
        try:
            return transformed_answer(item, route.transform)  # type: ignore[arg-type]
        except DyBenchError:
            pass  # the transformed answer is not among the shown options: "none of the above"
    if null_letter is None:
        raise DyBenchError(
            f"item {item.id}: its answer after {route.transform} is unknown and there is no null option "
            "(enable null_option)"
        )
    return null_letter


def prepare_question(item: Item, video_path: Path, router: Router, null_option: str | None) -> TrainQuestion:
    """Route `item`, add the null option (when `null_option` is a text) and label both branches."""
    route = router(item)
    if null_option is not None:
        options, null_letter = with_null_option(item.options, null_option)
    else:
        options, null_letter = list(item.options), None
    return TrainQuestion(
        item=item,
        video_path=video_path,
        route=route,
        options=options,
        answer=item.answer,
        counterfactual_answer=counterfactual_answer(item, route, null_letter),
        null_letter=null_letter,
    )


TAG_INSTRUCTION = "Give the letter of your answer inside answer tags, like <answer>X</answer>."


def training_template(answer_format: str) -> PromptTemplate:
    """The evaluation prompt (same question and option layout), asking for `answer_format`.

    ``letter`` is exactly the evaluation template, so a trained model is evaluated on the prompt it
    was trained on; ``tag`` swaps only the instruction for the answer-tag format.
    """
    if answer_format == "letter":
        return LETTERED
    if answer_format == "tag":
        return LETTERED.model_copy(update={"name": "lettered-answer-tag-v1", "instruction": TAG_INSTRUCTION})
    raise DyBenchError(f"unknown answer format {answer_format!r}; use tag or letter")


def target_text(letter_: str, answer_format: str) -> str:
    """What a perfect completion looks like (the SFT target)."""
    return f"<answer>{letter_}</answer>" if answer_format == "tag" else letter_
