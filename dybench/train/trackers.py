"""Experiment trackers (`--report-to tensorboard|wandb`), driven through accelerate's trackers.

The trackers receive exactly what metrics.jsonl records: every numeric value of a row, under its
column name, at the row's own `step` (null values, which an algorithm does not produce, are left
out, as TensorBoard has no null). metrics.jsonl stays the record a run is compared and resumed by;
a tracker only mirrors it, so turning one on changes nothing the run computes.

Where the logs go: TensorBoard event files in OUT/tensorboard/dybench/ (`tensorboard --logdir
OUT/tensorboard`); W&B runs in OUT/wandb/ (set WANDB_MODE=offline to log without a network and
`wandb sync` later). A resumed run writes to the same places; TensorBoard is told to discard what
an earlier attempt logged after the checkpoint it resumes from, as metrics.jsonl does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from dybench.errors import DyBenchError

ReportTo = Literal["none", "tensorboard", "wandb"]

PROJECT = "dybench"
"""The run name accelerate gives the trackers: TensorBoard's sub-folder, W&B's project."""

TENSORBOARD_DIR = "tensorboard"
WANDB_DIR = "wandb"
INSTALL_HINT = "pip install -e '.[trackers]'"


def check_tracker_installed(report_to: ReportTo) -> None:
    """A one-line error, before any model loads, when the chosen tracker's package is missing."""
    from accelerate.utils import is_tensorboard_available, is_wandb_available

    available = {"none": lambda: True, "tensorboard": is_tensorboard_available, "wandb": is_wandb_available}
    if not available[report_to]():
        raise DyBenchError(
            f"--report-to {report_to}: the {report_to} package is not installed; "
            f"install it with `{INSTALL_HINT}` (or `pip install {report_to}`), or use --report-to none"
        )


def accelerator_options(report_to: ReportTo, out: Path) -> dict[str, Any]:
    """Keyword arguments for `Accelerator(...)`: which tracker, and the folder its logs go under."""
    if report_to == "none":
        return {}
    from accelerate.utils import ProjectConfiguration

    logging_dir = out / (TENSORBOARD_DIR if report_to == "tensorboard" else WANDB_DIR)
    return {"log_with": report_to, "project_config": ProjectConfiguration(project_dir=str(out), logging_dir=str(logging_dir))}


def start_trackers(accelerator: Any, report_to: ReportTo, out: Path, config: dict[str, Any], step: int) -> None:
    """Open the run's tracker (main process only, as accelerate does), `config` as its
    hyperparameters; `step`: the update a resumed run continues after (0 for a fresh run)."""
    if report_to == "none":
        return
    out.mkdir(parents=True, exist_ok=True)
    init_kwargs: dict[str, Any] = {}
    if report_to == "tensorboard" and step > 0:
        # Events an earlier attempt wrote after the checkpoint are dropped by TensorBoard's readers.
        init_kwargs["tensorboard"] = {"purge_step": step + 1}
    if report_to == "wandb":
        (out / WANDB_DIR).mkdir(exist_ok=True)
        init_kwargs["wandb"] = {"dir": str(out / WANDB_DIR), "name": out.name}
    accelerator.init_trackers(PROJECT, config=hyperparameters(config), init_kwargs=init_kwargs)


def log_row(accelerator: Any, report_to: ReportTo, row: dict[str, Any]) -> None:
    """One metrics.jsonl row to the tracker, at the row's step."""
    if report_to != "none":
        accelerator.log(tracked_scalars(row), step=int(row["step"]))


def finish_trackers(accelerator: Any) -> None:
    """Flush and close the trackers (not `end_training`, which would also end the process group)."""
    for tracker in getattr(accelerator, "trackers", []):
        tracker.finish()
    if hasattr(accelerator, "trackers"):
        accelerator.trackers = []


def tracked_scalars(row: dict[str, Any]) -> dict[str, float | int]:
    """What a tracker logs of a metrics row: every numeric value but the step (its x-axis)."""
    return {
        name: value
        for name, value in row.items()
        if name != "step" and isinstance(value, (int, float)) and not isinstance(value, bool)
    }


def hyperparameters(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """The config flattened to `a.b: value` with scalar values (what TensorBoard's hparams take)."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(hyperparameters(value, f"{name}."))
        elif value is None or isinstance(value, (bool, int, float, str)):
            flat[name] = value
        else:
            flat[name] = str(value)
    return flat
