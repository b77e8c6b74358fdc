"""The model registry: aliases, local folders, hub ids, and the missing-weights message."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dybench.backends.registry import (
    MODELS,
    create_backend,
    list_models,
    locate_weights,
    resolve_model,
)
from dybench.errors import DyBenchError


@pytest.mark.parametrize(
    "alias, hub_id",
    [
        ("qwen3-vl-2b", "Qwen/Qwen3-VL-2B-Instruct"),
        ("qwen3-vl-4b", "Qwen/Qwen3-VL-4B-Instruct"),
        ("qwen3-vl-8b", "Qwen/Qwen3-VL-8B-Instruct"),
        ("qwen3-vl-32b", "Qwen/Qwen3-VL-32B-Instruct"),
        ("qwen2.5-vl-3b", "Qwen/Qwen2.5-VL-3B-Instruct"),
        ("qwen2.5-vl-7b", "Qwen/Qwen2.5-VL-7B-Instruct"),
        ("qwen2.5-vl-72b", "Qwen/Qwen2.5-VL-72B-Instruct"),
    ],
)
def test_alias_maps_to_hub_id_with_vllm_and_video_defaults(alias: str, hub_id: str) -> None:
    spec = resolve_model(alias)
    assert spec.hub_id == hub_id
    assert spec.default_backend == "vllm"
    assert (spec.num_frames is not None) or (spec.fps is not None and spec.max_frames is not None)
    assert spec.min_pixels is not None and spec.max_pixels is not None and spec.min_pixels < spec.max_pixels


def test_alias_lookup_ignores_case() -> None:
    assert resolve_model("Qwen3-VL-8B").hub_id == "Qwen/Qwen3-VL-8B-Instruct"


def test_baselines_run_on_the_baseline_backend_only() -> None:
    for kind in ("random", "constant", "motion"):
        spec = resolve_model(f"baseline:{kind}")
        assert spec.default_backend == "baseline" and spec.hub_id is None
    with pytest.raises(DyBenchError, match="only with --backend baseline"):
        create_backend(resolve_model("baseline:constant"), "hf")
    with pytest.raises(DyBenchError, match="unknown baseline"):
        resolve_model("baseline:oracle")


def test_tiny_model_says_its_outputs_are_noise() -> None:
    spec = resolve_model("tiny-random-qwen3-vl")
    assert spec.outputs_are_noise and spec.default_backend == "hf"
    assert "noise" in spec.notes


def test_hub_id_outside_the_alias_table_is_accepted() -> None:
    spec = resolve_model("Qwen/Qwen2.5-VL-7B-Instruct")
    assert spec.hub_id == "Qwen/Qwen2.5-VL-7B-Instruct" and spec.family == "qwen2_5_vl"
    other = resolve_model("someorg/some-video-model")
    assert other.hub_id == "someorg/some-video-model" and other.family == "other"


def test_local_checkpoint_folder_is_used_as_is(tmp_path: Path) -> None:
    folder = tmp_path / "my-checkpoint"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "qwen3_vl"}))
    (folder / "model.safetensors").write_bytes(b"")
    spec = resolve_model(str(folder))
    assert spec.path == str(folder.resolve()) and spec.hub_id is None
    assert spec.family == "qwen3_vl" and spec.fps == MODELS["qwen3-vl-8b"].fps
    assert locate_weights(spec) == folder.resolve()


def test_folder_without_config_is_not_a_checkpoint(tmp_path: Path) -> None:
    with pytest.raises(DyBenchError, match="no config.json"):
        resolve_model(str(tmp_path))


def test_unknown_model_names_what_is_accepted() -> None:
    with pytest.raises(DyBenchError, match="unknown model 'gpt-vision-9000'.*dybench models"):
        resolve_model("gpt-vision-9000")
    with pytest.raises(DyBenchError, match="no such folder"):
        resolve_model("./checkpoints/missing")


def test_missing_weights_fail_fast_saying_where_and_how(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "empty-hf-home"
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DyBenchError) as caught:
        locate_weights(resolve_model("qwen3-vl-8b"))
    message = str(caught.value)
    assert "\n" not in message
    assert "Qwen/Qwen3-VL-8B-Instruct" in message
    assert str(home / "hub") in message  # where it looked
    assert "huggingface-cli download Qwen/Qwen3-VL-8B-Instruct" in message
    assert "--model PATH" in message and "HF_HOME" in message


def test_weights_in_the_local_hub_cache_are_found(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The hub cache layout: models--ORG--NAME/{refs/main, snapshots/COMMIT/...}.
    repo = tmp_path / "hub" / "models--Qwen--Qwen3-VL-2B-Instruct"
    commit = "0123456789abcdef0123456789abcdef01234567"
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    (snapshot / "config.json").write_text("{}")
    (snapshot / "model.safetensors").write_bytes(b"")
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    assert locate_weights(resolve_model("qwen3-vl-2b")) == snapshot


def test_unknown_backend_is_refused() -> None:
    with pytest.raises(DyBenchError, match="unknown backend 'tgi'"):
        create_backend(resolve_model("qwen3-vl-8b"), "tgi")


def test_list_models_covers_every_alias() -> None:
    names = [spec.name for spec in list_models()]
    assert len(names) == len(set(names))
    for required in ("qwen3-vl-8b", "qwen2.5-vl-72b", "tiny-random-qwen3-vl", "baseline:motion"):
        assert required in names


def test_models_command_lists_aliases() -> None:
    from typer.testing import CliRunner

    from dybench.cli import app

    result = CliRunner().invoke(app, ["models"], env={"COLUMNS": "250"})
    assert result.exit_code == 0
    assert "qwen3-vl-8b" in result.output and "Qwen/Qwen3-VL-8B-Instruct" in result.output
    assert "noise" in result.output


def test_missing_backend_package_is_one_clear_line(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "vllm", None)  # what Python sees when vllm cannot be imported
    with pytest.raises(DyBenchError) as caught:
        create_backend(resolve_model("qwen3-vl-8b"), "vllm")
    assert "needs the 'vllm' package" in str(caught.value) and "\n" not in str(caught.value)


def test_an_option_the_backend_does_not_take_is_a_user_error() -> None:
    with pytest.raises(DyBenchError, match="backend openai does not take the option\\(s\\) tensor_parallel_size"):
        create_backend(resolve_model("qwen3-vl-8b"), "openai", tensor_parallel_size=2)
