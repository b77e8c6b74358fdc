"""Reading a user's YAML file (a training config, a lab config, a field mapping) with one-line errors."""

from __future__ import annotations

import re
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
        raise DyBenchError(f"{path}{_position(exc)}: not valid YAML ({_problem(exc)})") from None
    if not isinstance(data, dict):
        raise DyBenchError(f"{path}: {shape}")
    return data


# YAML's own messages quote the offending line; a mistyped path could point at a file of secrets,
# so errors say where (line, column) and what (the parser's problem) only, with quoted text from the
# file masked. Quoted tokens of the grammar (',', '<stream end>') stay.
_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"")
_GRAMMAR_TOKEN = re.compile(r"'(<[a-z ]+>|[^\w\s])'")


def _position(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    return f":{mark.line + 1}:{mark.column + 1}" if mark is not None else ""


def _problem(exc: yaml.YAMLError) -> str:
    problem = getattr(exc, "problem", None)
    if not problem:
        return "cannot parse it"
    return _QUOTED.sub(lambda quoted: quoted[0] if _GRAMMAR_TOKEN.fullmatch(quoted[0]) else "'...'", problem)
