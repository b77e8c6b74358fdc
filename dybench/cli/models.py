"""`dybench models`: the built-in model aliases, their hub ids, default backends and video settings."""

from __future__ import annotations

from rich.table import Table

from dybench.backends.registry import NOISE_WARNING, list_models
from dybench.cli.common import console


def _video(spec) -> str:
    frames = f"{spec.num_frames} frames" if spec.num_frames else f"{spec.fps:g} fps, <= {spec.max_frames} frames"
    if spec.min_pixels and spec.max_pixels:
        frames += f", {spec.min_pixels}-{spec.max_pixels} px/frame"
    return frames


def list_models_command() -> None:
    """List model aliases. --model also takes a local checkpoint folder or an org/name hub id
    (weights are read from the local Hugging Face cache; nothing is downloaded)."""
    table = Table(title="dybench models (--model NAME)")
    for column in ("name", "weights", "backend", "video", "notes"):
        table.add_column(column)
    for spec in list_models():
        weights = spec.hub_id or ("built offline" if spec.builder else "none")
        table.add_row(spec.name, weights, spec.default_backend, _video(spec), spec.notes)
    console.print(table)
    console.print(f"[yellow]note:[/] {NOISE_WARNING}", highlight=False)
