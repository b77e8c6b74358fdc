"""The one protocol every model backend implements: a batch of requests in, a batch of texts out."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from dybench.prompts import PromptTemplate
from dybench.schema import Item
from dybench.video import SampledClip


@dataclass
class Sampling:
    """Decoding settings; greedy by default so a run is reproducible."""

    max_tokens: int = 64
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int = 0


@dataclass
class Request:
    """What a backend needs to answer one item.

    `clip` holds the decoded, sampled frames with their indices and timestamps (None when the video
    could not be decoded; the loop records that as an error before a backend sees it). `video_path`
    is there for backends that send files (an OpenAI-compatible server with file:// access).
    `template` is the prompt template `prompt` was rendered with, so answerers without a model
    (baselines) can reply in the form the prompt asks for.
    """

    item: Item
    prompt: str
    clip: SampledClip
    video_path: Path
    template: PromptTemplate | None = None


@dataclass
class Response:
    text: str | None
    error: str | None = None
    latency_s: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class BatchInterrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM while a backend answered a batch. `responses` holds, in request order, the
    answers that had already arrived (None for the rest), so the eval loop stores them instead of
    throwing away work that was paid for. Backends that answer a batch at once need not raise it:
    a plain KeyboardInterrupt means none arrived."""

    def __init__(self, responses: list[Response | None]):
        super().__init__()
        self.responses = responses


class Backend(Protocol):
    """A model behind one interface. A backend that sends the video file instead of the sampled
    frames (its server samples them) also has `sends_video_file = True`, so prediction rows do
    not claim frames the model may not have seen (dybench/prediction_rows.py)."""

    name: str

    def generate(self, requests: list[Request], sampling: Sampling) -> list[Response]:
        """One response per request, in order. Per-item failures go in Response.error."""
        ...

    def describe(self) -> dict[str, Any]:
        """Settings that belong in run.json (never secrets such as API keys)."""
        ...

    def close(self) -> None: ...
