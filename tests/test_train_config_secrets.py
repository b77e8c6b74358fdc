"""`train_config.yaml` never holds a credential: backend options given with a user:password URL or an
API key are written redacted (dybench/redact.py), and the run still resumes from that file."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

CLI = [sys.executable, "-c", "from dybench.entry import main; main()"]
PASSWORD = "hunter2-router-pass"
API_KEY = "sk-live-0123456789abcdef"
ROUTER = {
    "kind": "llm",
    "model": "qwen3-vl-8b",
    "backend": "openai",
    "options": {"base_url": f"http://alice:{PASSWORD}@router.example:8000/v1?api_key={API_KEY}", "api_key_env": "ROUTER_KEY"},
}


def train(data: Path, out: Path, config: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*CLI, "train-crpo", "--model", "tiny-random-qwen3-vl", "--data", str(data), "--out", str(out),
         "--config", str(config), "--group-size", "2", "--batch-size", "1", "--max-new-tokens", "2",
         "--no-progress", *extra],
        capture_output=True, text=True, timeout=900,
    )


@pytest.mark.slow
def test_router_credentials_are_redacted_in_train_config_and_the_run_resumes(
    small_train_set: Path, tmp_path: Path, model_cache
) -> None:
    # The synthetic set is all in the task table, so the router model is never asked: only the
    # options as given reach the config.
    config = tmp_path / "train.yaml"
    config.write_text(yaml.safe_dump({"router": ROUTER}))
    out = tmp_path / "run"
    first = train(small_train_set, out, config, "--max-steps", "1")
    assert first.returncode == 0, first.stderr
    saved = (out / "train_config.yaml").read_text()
    assert PASSWORD not in saved and API_KEY not in saved
    options = yaml.safe_load(saved)["router"]["options"]
    assert options["base_url"] == "http://[redacted]@router.example:8000/v1?api_key=[redacted]"
    assert options["api_key_env"] == "ROUTER_KEY"  # the variable's name, not a secret, stays usable
    resumed = train(small_train_set, out, config, "--max-steps", "2", "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert PASSWORD not in (out / "train_config.yaml").read_text()
