"""Prompt templates (one per dataset family) and answer extraction.

The template used is stored in `run.json` and is part of the run's fingerprint, so a changed prompt
never resumes an old run. Extraction is deliberately strict: it accepts an explicit answer, a
lone option letter or the text of exactly one option, and returns None for anything else. None is
scored wrong; a response is never guessed into an answer.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, Field

from dybench.errors import DyBenchError
from dybench.schema import LETTERS, Item, letter

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


# --- answer extraction -----------------------------------------------------------------------

_THINK_BLOCK = re.compile(r"<think>.*?</think>", re.IGNORECASE | re.DOTALL)
_ANSWER_TAG = re.compile(r"<answer>(.*?)</answer>", re.IGNORECASE | re.DOTALL)
# "Answer: B", "the answer is (B)", "Final answer - B." (the value is parsed afterwards)
_ANSWER_PHRASE = re.compile(r"\banswer\s*(?:is|:|-|=)\s*((?:(?!\banswer\b)[^\n])*)", re.IGNORECASE)
# A letter written as an option reference: the whole reply, "(B)", "B." / "B)" / "B:" at the start,
# "Option B". An article "A" inside a sentence is none of these.
_WRAP = " \t\r\n*_`'\"“”‘’[]{}"
_LONE = re.compile(r"^\(?([A-Z])\)?[.:)]?$")
_LEADING = re.compile(r"^\(?([A-Z])(?:[.:)]|\)\s)")
_PARENS = re.compile(r"\(([A-Z])\)")
_OPTION_WORD = re.compile(r"\b(?:option|choice)\s*\(?([A-Z])\b", re.IGNORECASE)
_NEGATION = re.compile(r"\b(?:not|no|never|neither|nor)\b|n't\b", re.IGNORECASE)


def strip_thinking(text: str) -> str:
    """Drop `<think>...</think>` blocks; text after a lone `</think>` (template opened it) is kept;
    an unclosed `<think>` means the reply never got past its reasoning, so nothing is left."""
    text = _THINK_BLOCK.sub(" ", text)
    lowered = text.lower()
    if "</think>" in lowered:
        text = text[lowered.rindex("</think>") + len("</think>") :]
    lowered = text.lower()
    if "<think>" in lowered:
        text = text[: lowered.index("<think>")]
    return text.strip()


def _normalise(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s]", " ", text.lower()).split())


def _letter_in_range(value: str, n_options: int) -> str | None:
    return value if len(value) == 1 and value in LETTERS[:n_options] else None


def _unique(found: set[str]) -> str | None:
    return found.pop() if len(found) == 1 else None


def _option_by_text(text: str, options: list[str]) -> str | None:
    """The letter whose option text the reply is, or mentions alone (no negation, no second option)."""
    reply = _normalise(text)
    if not reply:
        return None
    normalised = [_normalise(option) for option in options]
    exact = {letter(i) for i, option in enumerate(normalised) if option and option == reply}
    if exact:
        return _unique(exact)
    if _NEGATION.search(text):
        return None
    spans: list[tuple[int, int, str]] = []
    padded = f" {reply} "
    for i, option in enumerate(normalised):
        if not option:
            continue
        for match in re.finditer(re.escape(f" {option} "), padded):
            spans.append((match.start(), match.end(), letter(i)))
    # "upper left" also contains "left": a mention inside a longer mention does not count.
    kept = {
        name
        for start, end, name in spans
        if not any(s <= start and end <= e and (e - s) > (end - start) for s, e, _ in spans)
    }
    return _unique(kept)


def _value_to_letter(value: str, options: list[str]) -> str | None:
    """Parse what follows an explicit 'answer:' or sits in <answer>: a letter or an option's text."""
    value = value.strip(_WRAP)
    lone = _LONE.match(value) or _LEADING.match(value)
    if lone:
        return _letter_in_range(lone.group(1), len(options))
    return _option_by_text(value, options)


def extract_choice(text: str | None, options: list[str]) -> str | None:
    """The option letter a model's reply chose, or None when it is invalid or ambiguous.

    Order: strip thinking; an explicit `<answer>X</answer>` or "answer: X" (all explicit answers must
    agree); a lone letter ("B", "(B)", "B. left", "Option B"); the text of exactly one option.
    """
    if not isinstance(text, str) or not text:
        return None  # a backend that returned no text, or something else than text: invalid
    body = strip_thinking(text)
    if not body:
        return None
    explicit = [m.group(1) for m in _ANSWER_TAG.finditer(body)] or [m.group(1) for m in _ANSWER_PHRASE.finditer(body)]
    if explicit:
        chosen = {_value_to_letter(value, options) for value in explicit}
        return chosen.pop() if len(chosen) == 1 else None
    stripped = body.strip(_WRAP)
    candidates: set[str] = set()
    # A reply that is only a letter may be lower case ("b"); inside text, only capitals count.
    lone = _LONE.match(stripped) or (_LONE.match(stripped.upper()) if len(stripped) <= 3 else None)
    if lone:
        candidates.add(lone.group(1))
    else:
        leading = _LEADING.match(stripped)
        if leading:
            candidates.add(leading.group(1))
        candidates.update(_PARENS.findall(body))
        candidates.update(value.upper() for value in _OPTION_WORD.findall(body))
    if candidates:
        in_range = {c for c in candidates if _letter_in_range(c, len(options))}
        return _unique(in_range) if in_range == candidates else None
    return _option_by_text(body, options)


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
