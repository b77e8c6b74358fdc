"""Procedural scenes: a shared renderer and one generator module per DyBench category.

Each generator module exposes `render(rng, options, variant, key) -> Rendered` (an original clip
whose answer key the caller chose) and `measure(frames, rendered, boundary) -> key | None`, which
reads the label back from pixels alone. `dybench.build` pairs them with the task table.
"""

from __future__ import annotations

from types import ModuleType

from dybench.synth import direction, events, reversible
from dybench.synth.base import Rendered
from dybench.synth.scene import SceneOptions

GENERATOR_VERSION = "1.0"
"""Bumped whenever the same seed would render different pixels."""

GENERATORS: dict[str, ModuleType] = {
    "moving_direction": direction,
    "reversible_dynamics": reversible,
    "event_sequence": events,
}
"""Task name -> generator module. Static tasks reuse the clips of these."""

__all__ = ["GENERATORS", "GENERATOR_VERSION", "Rendered", "SceneOptions"]
