"""Reading a user's YAML file (a training config, a lab config, a field mapping) with one-line errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from dybench.errors import DyBenchError
from dybench.text_files import read_text


def read_yaml_mapping(path: Path, kind: str, shape: str) -> dict[str, Any]:
    """The mapping in `path` (empty file: {}). `kind` names the file in the not-found message,
    `shape` says what the file should hold when it is not a mapping."""
    path = Path(path)
    if not path.is_file():
        raise DyBenchError(f"{path}: {kind} not found")
    try:
        data = yaml.safe_load(read_text(path)) or {}
    except yaml.YAMLError as exc:
        raise DyBenchError(f"{path}: not valid YAML ({exc})") from None
    if not isinstance(data, dict):
        raise DyBenchError(f"{path}: {shape}")
    return data
