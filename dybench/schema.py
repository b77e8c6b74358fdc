"""Pydantic models at the project's boundaries: manifest rows, predictions, run configs, scores.

Everything that is read from or written to disk goes through one of these models, so a malformed
row fails with a message naming the field instead of a KeyError three modules later.
"""

from __future__ import annotations

import string
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

TransformName = Literal["hflip", "reverse", "swap_segments"]
"""The counterfactual transforms a task can declare (a composite is written "hflip+reverse")."""

ItemTransform = Literal["original", "hflip", "reverse", "hflip+reverse", "swap_segments"]
Kind = Literal["dynamic", "static"]

LETTERS = string.ascii_uppercase
MAX_OPTIONS = len(LETTERS)
"""The most options an item may have: one letter each, A to Z. Rows with more are refused when read."""


def letter(index: int) -> str:
    """Option letter for a 0-based index: 0 -> "A"."""
    return LETTERS[index]


def letter_index(value: str) -> int:
    """0-based index of an option letter: "A" -> 0."""
    return LETTERS.index(value)


class Item(BaseModel):
    """One video-question pair: a row of `manifest.jsonl` (docs/architecture.md, "Contracts")."""

    model_config = ConfigDict(extra="allow")

    id: str
    pair_id: str
    task: str
    category: str
    video: str = Field(description="path relative to the manifest's folder")
    question: str
    options: list[str] = Field(min_length=2, max_length=MAX_OPTIONS)
    answer: str = Field(description="correct option letter")
    transform: ItemTransform = "original"
    kind: Kind = "dynamic"
    # Where the item comes from our own task tables, these say which canonical option each text
    # is, so the answer under any transform can be derived (see dybench.tasks).
    variant: str | None = None
    option_keys: list[str] | None = None
    # Which frames of the video file belong to the item (event sequence from real videos).
    meta: dict[str, Any] = Field(default_factory=dict)

    @field_validator("answer")
    @classmethod
    def _answer_is_letter(cls, value: str) -> str:
        if len(value) != 1 or value not in LETTERS:
            raise ValueError(f"answer must be one option letter (A, B, ...), got {value!r}")
        return value

    @model_validator(mode="after")
    def _answer_in_range(self) -> Item:
        if letter_index(self.answer) >= len(self.options):
            raise ValueError(f"answer {self.answer} is out of range for {len(self.options)} options")
        if self.option_keys is not None and len(self.option_keys) != len(self.options):
            raise ValueError("option_keys must have one key per option")
        return self

    @property
    def answer_text(self) -> str:
        return self.options[letter_index(self.answer)]


class Prediction(BaseModel):
    """One row of `RUN_DIR/predictions.jsonl`.

    A row whose reply was too long to store in full (see dybench.evaluate) also has `output_chars`,
    the full reply's length; `pred` was extracted from the full reply.

    `RECORD_FIELDS` describe the sample for readers of the file (docs/architecture.md,
    "Contracts"); rows written before they existed, and rows made elsewhere, lack them. Scoring
    never reads them: it recomputes correctness from the answer (dybench.metrics)."""

    model_config = ConfigDict(extra="allow")

    id: str
    key: str = Field(description="item id + run fingerprint: the resume key")
    output: str | None = None
    pred: str | None = Field(default=None, description="extracted option letter, None if invalid")
    error: str | None = None
    latency_s: float | None = None
    target: str | None = Field(default=None, description="the correct option letter for what the model was shown")
    correct: bool | None = Field(default=None, description="whether the answer counts as right, by the scoring rule")
    frame_indices: list[int] | None = Field(
        default=None, description="stream position of the frame in each slot sent to the model, in the order sent")
    frame_timestamps_s: list[float] | None = Field(
        default=None, description="presentation time of those frames, seconds since the stream's first frame")


RECORD_FIELDS: tuple[str, ...] = ("target", "correct", "frame_indices", "frame_timestamps_s")
"""Prediction fields that record the sample and play no part in scoring."""
