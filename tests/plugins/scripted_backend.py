"""Test plugin: a backend added from outside the package. It answers from a script, a JSON file
mapping item ids to letters (`SCRIPTED_ANSWERS=FILE`); an item the script leaves out gets an empty
reply (an invalid answer). It also adds the model alias `scripted`, whose default backend it is.
One registry entry, no edit inside dybench/ (see docs/architecture.md)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from dybench.backends.base import Request, Response, Sampling
from dybench.backends.registry import BACKEND_REGISTRY, MODELS, BackendEntry, ModelSpec


class ScriptedBackend:
    name = "scripted"

    def __init__(self, script: Path):
        self.script = script
        self.answers: dict[str, str] = json.loads(script.read_text())

    def generate(self, requests: list[Request], sampling: Sampling) -> list[Response]:
        return [Response(text=self.answers.get(request.item.id, "")) for request in requests]

    def describe(self) -> dict[str, Any]:
        return {"script": self.script.name}

    def close(self) -> None:
        return None


def start(spec: ModelSpec, options: dict[str, Any]) -> ScriptedBackend:
    return ScriptedBackend(Path(os.environ["SCRIPTED_ANSWERS"]))


BACKEND_REGISTRY.register("scripted", BackendEntry("scripted", "answers from a JSON script (tests)", start,
                                                   default_batch_size=5))
MODELS.setdefault("scripted", ModelSpec(name="scripted", default_backend="scripted", num_frames=2))
