"""What a generator hands to the builder: rendered frames plus the facts the questions need.

A generator renders an *original* clip whose answer key it chose (the builder picks keys so that
answers are balanced). Its `measure` function reads a label back from pixels alone (optical flow,
areas, heights, where the changes are): the builder keeps a clip only when the measured label of
the original, and of its counterfactual, equal what dybench.tasks says they must be.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from dybench.synth.scene import SceneOptions


@dataclass
class Rendered:
    """An original clip and what is true about it."""

    frames: np.ndarray
    variant: str
    key: str
    fills: dict[str, str] = field(default_factory=dict)
    """Template placeholders of the question and options, e.g. {"object": "red circle"}."""
    facts: dict[str, Any] = field(default_factory=dict)
    """Scene facts stored in the manifest row's `meta` (JSON-serialisable)."""
    static: dict[str, str] = field(default_factory=dict)
    """Answer keys of the static questions that are unambiguous on this clip, by task name."""
    static_fills: dict[str, str] = field(default_factory=dict)
    boundary: int | None = None
    """Event sequence: the frame where the second segment starts."""
    probe: dict[str, Any] = field(default_factory=dict)
    """What `measure` may use besides pixels: colours and regions to look at, never the answer."""


class Generator(Protocol):
    def render(self, rng: np.random.Generator, options: SceneOptions, variant: str, key: str) -> Rendered: ...

    def measure(self, frames: np.ndarray, rendered: Rendered, boundary: int | None) -> str | None: ...
