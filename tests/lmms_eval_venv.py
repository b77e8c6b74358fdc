"""The real lmms-eval from PyPI, in its own virtual environment at the repository root.

lmms-eval 0.7.3 pins older av, wandb and protobuf than dybench's environment holds, so it gets
`.venv-lmms-eval/` (ignored by git) instead of the main environment. Torch, transformers and the
rest are not installed twice: a `.pth` file appends the main environment's site-packages after the
new environment's own, so lmms-eval's pins installed there win and everything else is shared.
Made once and reused while its stamp (lmms-eval version, main site-packages) still matches; the
stamp is written last, so an interrupted install is redone.
"""

from __future__ import annotations

import fcntl
import json
import shutil
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

LMMS_EVAL_VERSION = "0.7.3"
# lmms-eval 0.7.3's evaluator imports filelock._api, which filelock 4 (the main environment's) removed.
EXTRA_REQUIREMENTS = ["filelock<4"]
ROOT = Path(__file__).resolve().parents[1]
VENV = ROOT / ".venv-lmms-eval"
STAMP = VENV / "dybench-lmms-eval.json"


def _wanted() -> dict[str, object]:
    return {"lmms_eval": LMMS_EVAL_VERSION, "extra": EXTRA_REQUIREMENTS,
            "main_site_packages": sysconfig.get_paths()["purelib"]}


def _python() -> Path:
    return VENV / "bin" / "python"


def ensure_lmms_eval_venv() -> Path:
    """The lmms-eval environment's python, made if missing or stale."""
    lock_path = ROOT / ".venv-lmms-eval.lock"
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # parallel test sessions build it once
        if STAMP.is_file() and json.loads(STAMP.read_text()).get("wanted") == _wanted():
            return _python()
        shutil.rmtree(VENV, ignore_errors=True)
        started = time.monotonic()
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        site_packages = Path(subprocess.run(
            [str(_python()), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            check=True, capture_output=True, text=True).stdout.strip())
        # .pth lines are appended to sys.path after the environment's own site-packages.
        (site_packages / "zz_dybench_main_env.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
        result = subprocess.run(
            [str(_python()), "-m", "pip", "install", "--quiet", f"lmms-eval=={LMMS_EVAL_VERSION}", *EXTRA_REQUIREMENTS],
            capture_output=True, text=True, timeout=1800)
        if result.returncode != 0:
            raise RuntimeError(f"pip install lmms-eval=={LMMS_EVAL_VERSION} failed:\n{result.stdout}\n{result.stderr}")
        STAMP.write_text(json.dumps({"wanted": _wanted(), "install_s": round(time.monotonic() - started, 1)}))
        return _python()


if __name__ == "__main__":
    print(ensure_lmms_eval_venv())
