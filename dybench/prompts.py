"""Prompt templates (one per dataset family) and answer extraction.

The template used is stored in `run.json` and is part of the run's fingerprint, so a changed prompt
never resumes an old run. Extraction is deliberately strict: it accepts an explicit answer, a
lone option letter or the text of exactly one option, and returns None for anything else. None is
scored wrong; a response is never guessed into an answer.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from dybench.choice_extraction import extract_choice, strip_thinking
from dybench.errors import DyBenchError
from dybench.schema import Item, letter

__all__ = ["LETTERED", "MC_INSTRUCTION", "PromptTemplate", "TIMEBLIND_SUFFIXES", "extract_choice",
           "extract_for_item", "render_prompt", "reply_choosing", "strip_thinking"]

MC_INSTRUCTION = "Answer with the option's letter from the given choices directly."

TIMEBLIND_SUFFIXES = {
    "yes_no": " Please output Yes or No.",
    "multiple_choice": " Please output A or B.",
}
"""TimeBlind's own prompt suffixes, keyed by the row's `type` (kept in `Item.meta["type"]`)."""


class PromptTemplate(BaseModel):
    """How an item becomes the text a model sees. Stored verbatim in run.json."""

    name: str
    style: Literal["lettered", "suffix"] = Field(
        description="lettered: question + 'A. ...' option lines + instruction; "
        "suffix: the question as written plus a per-type suffix (TimeBlind)"
    )
    template: str = Field(default="", description="lettered only: uses {question}, {options}, {instruction}")
    option_format: str = "{letter}. {text}"
    instruction: str = MC_INSTRUCTION
    suffixes: dict[str, str] = Field(default_factory=dict, description="suffix only: meta['type'] -> suffix")


LETTERED = PromptTemplate(
    name="lettered-v1",
    style="lettered",
    template="{question}\n{options}\n{instruction}",
)

def render_prompt(item: Item, template: PromptTemplate) -> str:
    """The text shown to the model for `item` (the video goes alongside, not in the text)."""
    if template.style == "suffix":
        kind = item.meta.get("type")
        if kind not in template.suffixes:
            raise DyBenchError(
                f"item {item.id}: meta.type is {kind!r}; expected one of {', '.join(template.suffixes)}"
            )
        return item.question.rstrip() + template.suffixes[kind]
    options = "\n".join(
        template.option_format.format(letter=letter(i), text=text) for i, text in enumerate(item.options)
    )
    return template.template.format(question=item.question.strip(), options=options, instruction=template.instruction)


def reply_choosing(item: Item, index: int, template: PromptTemplate | None) -> str:
    """A reply that chooses option `index` in the form the item's prompt asks for: its letter
    ("Answer: B") under a lettered prompt, the option's own words ("Answer: Yes") under a suffix
    prompt (TimeBlind asks for Yes or No, or A or B). For answerers without a model (baselines)."""
    if template is not None and template.style == "suffix":
        return f"Answer: {item.options[index]}"
    return f"Answer: {letter(index)}"


# --- answer extraction (lettered prompts: dybench/choice_extraction.py) ---------------------


def extract_for_item(text: str | None, item: Item, template: PromptTemplate) -> str | None:
    """The letter an item's reply chose. TimeBlind items use TimeBlind's own reference extraction,
    so `pred` always agrees with how its scorer reads the same output."""
    if template.style == "suffix":
        from dybench.timeblind import UnreadableRow, choice_letter
        from dybench.timeblind import extract_choice as timeblind_choice

        try:
            return choice_letter(timeblind_choice(text, item.meta.get("type")))
        except UnreadableRow:
            return None
    return extract_choice(text, item.options)
