"""Reading the option letter a model's reply chose (lettered prompts).

Standard library only, and no import from dybench: `dybench export lmms-eval` copies this file's
source into the exported task's `utils.py`, so lmms-eval reads a reply exactly as `dybench score`
does (docs/architecture.md, the lmms-eval contract). Deliberately strict: an explicit answer, a
lone option letter or the text of exactly one option; None for anything else.
"""

from __future__ import annotations

import re
import string

LETTERS = string.ascii_uppercase


def letter(index: int) -> str:
    return LETTERS[index]


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
