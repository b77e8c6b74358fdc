"""`dybench probe`: one model on the full video and under every shortcut probe, and what that says.

Each run is an ordinary run directory under OUT (`OUT/full`, `OUT/single-frame`, ...), so an
interrupted suite resumes where it stopped, and each run can be rescored or published alone. All
runs are checked before the model starts, and the model is started once for all of them.
`OUT/probes.json` (`ProbeSummary`) holds, per run, Acc and P-Acc overall and per category, and:

- temporal reliance = full P-Acc minus the best P-Acc among the static probes (`STATIC_PROBES`:
  no usable order of time left), overall and per category. Near 0: the score needs no order of
  time; as high as the full P-Acc: all of it comes from watching the clip unfold;
- reversed answer change: among items whose correct answer flips when the clip plays backwards
  (by the task table) and that got a valid answer in both runs, the share whose answer differs
  between the full and the reversed run. A model that ignores time keeps its answers (0).

`OUT/probes.png` draws P-Acc per run and category beside it.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

from pydantic import BaseModel, Field, ValidationError
from rich.console import Console

from dybench import __version__
from dybench.errors import DyBenchError, pydantic_message
from dybench.escaping import plot_text, rich_text
from dybench.probes import PROBES, STATIC_PROBES, NoItemsUnderProbe, check_probe
from dybench.text_files import read_text

if TYPE_CHECKING:
    from dybench.evaluate import PlannedRun

FULL = "full"
"""The name of the run on the unaltered video (its run directory is OUT/full)."""
SUMMARY = "probes.json"
CHART = "probes.png"


class GroupScores(BaseModel):
    acc: float | None = None
    p_acc: float | None = None
    n_items: int = 0
    n_pairs: int = 0
    acc_ci: list[float] | None = None
    p_acc_ci: list[float] | None = None


class ProbeRun(GroupScores):
    """One run of the suite: `full` or a probe, with its scores."""

    probe: str = Field(description="'full' or the probe's name")
    run_dir: str = Field(description="the run directory, relative to probes.json")
    invalid_rate: float | None = None
    per_category: dict[str, GroupScores] = Field(default_factory=dict)


class AnswerChange(BaseModel):
    rate: float | None = Field(description="n_changed / n_items")
    n_items: int = Field(description="items whose correct answer flips under reversal, answered validly in both runs")
    n_changed: int


class ProbeSummary(BaseModel):
    """`OUT/probes.json`."""

    model: str
    dataset: str
    data: str
    static_probes: list[str]
    runs: list[ProbeRun] = Field(description="the full run first, then each probe")
    temporal_reliance: float | None = Field(description="full P-Acc minus the best static probe's P-Acc")
    best_static_probe: str | None
    temporal_reliance_per_category: dict[str, float | None] = Field(default_factory=dict)
    reversed_answer_change: AnswerChange | None = None
    skipped: dict[str, str] = Field(default_factory=dict, description="probes not run, and why")
    dybench_version: str = __version__

    def run(self, name: str) -> ProbeRun | None:
        return next((run for run in self.runs if run.probe == name), None)

    def leaderboard_columns(self) -> dict[str, float | None]:
        """The columns a leaderboard row gains: p_acc_<probe> per probe, temporal_reliance and
        answer_change_reversed."""
        columns: dict[str, float | None] = {
            probe_column(run.probe): run.p_acc for run in self.runs if run.probe != FULL
        }
        columns["temporal_reliance"] = self.temporal_reliance
        columns["answer_change_reversed"] = self.reversed_answer_change.rate if self.reversed_answer_change else None
        return columns


def probe_column(probe: str) -> str:
    """`single-frame` -> `p_acc_single_frame` (the leaderboard column of a probe's P-Acc)."""
    return "p_acc_" + probe.replace("-", "_")


PROBE_COLUMNS = [*(probe_column(probe) for probe in PROBES), "temporal_reliance", "answer_change_reversed"]
"""Leaderboard columns that come from probe summaries, in the order they are shown."""


def read_summary(folder: Path) -> ProbeSummary:
    path = Path(folder) / SUMMARY
    if not path.is_file():
        raise DyBenchError(f"{path}: not found; is {folder} a folder written by `dybench probe`?")
    try:
        return ProbeSummary.model_validate_json(read_text(path))
    except ValidationError as exc:
        raise DyBenchError(f"{path}: {pydantic_message(exc)}") from None


# --- running ----------------------------------------------------------------------------------


def chosen_probes(names: Iterable[str]) -> list[str]:
    """The probes to run, validated, in the canonical order, each once."""
    wanted = {check_probe(name.strip()) for name in names if name.strip()}
    if not wanted:
        raise DyBenchError(f"no probe given; choose from {', '.join(PROBES)}")
    return [name for name in PROBES if name in wanted]


def run_probe_suite(
    model: str,
    data: str,
    out: str | Path,
    probes: Iterable[str] = PROBES,
    backend: str | None = None,
    backend_options: dict[str, Any] | None = None,
    decode_workers: int = 2,
    progress: bool = True,
    console: Console | None = None,
    **run_options: Any,
) -> ProbeSummary:
    """Evaluate `model` on `data` with the full video and under each probe, into OUT/<run>; write
    OUT/probes.json and OUT/probes.png. `run_options` are those of `plan_run` (limit, batch_size,
    shard, num_frames, fps, max_frames, min_pixels, max_pixels, sampling), the same for every run."""
    from dybench.evaluate import execute_run, plan_run, start_backend
    from dybench.atomic import write_atomic, write_json_atomic

    out = Path(out)
    console = console or Console(stderr=True)
    plans, skipped = [], {}
    for name in [None, *chosen_probes(probes)]:
        try:
            plans.append(plan_run(model, data, out / (name or FULL), backend=backend, probe=name, **run_options))
        except NoItemsUnderProbe as exc:  # e.g. reversed on data without task tables: the other probes still tell
            skipped[name] = str(exc)
            console.print(f"[yellow]warning:[/] {name} skipped: {rich_text(exc)}", highlight=False)
    engine = start_backend(plans[0], backend, backend_options)
    try:
        for plan in plans:
            if progress:
                console.print(f"[bold]{plan.config.probe or FULL}[/] -> {rich_text(plan.run_dir)}", highlight=False)
            execute_run(plan, engine, decode_workers=decode_workers, progress=progress, console=console)
    finally:
        engine.close()
    summary = summarise(out, model, plans).model_copy(update={"skipped": skipped})
    write_json_atomic(out / SUMMARY, summary.model_dump(mode="json"))
    write_atomic(out / CHART, chart_png(summary))
    return summary


# --- summarising ------------------------------------------------------------------------------


def _group(block: dict[str, Any]) -> GroupScores:
    return GroupScores.model_validate({k: block.get(k) for k in GroupScores.model_fields if k in block})


def probe_run(run_dir: Path, out: Path) -> ProbeRun:
    """The scores of one finished run of the suite, from its scores.json."""
    from dybench.store import read_run_config

    config = read_run_config(run_dir)
    scores = json.loads(read_text(run_dir / "scores.json"))
    return ProbeRun(
        probe=config.probe or FULL,
        run_dir=str(run_dir.relative_to(out)),
        invalid_rate=scores.get("invalid_rate"),
        per_category={name: _group(block) for name, block in sorted((scores.get("per_category") or {}).items())},
        **_group(scores).model_dump(),
    )


def temporal_reliance(full: GroupScores | None, static: dict[str, GroupScores]) -> tuple[float | None, str | None]:
    """Full P-Acc minus the best static probe's P-Acc, and which probe that was."""
    measured = {name: group.p_acc for name, group in static.items() if group.n_pairs and group.p_acc is not None}
    if full is None or full.p_acc is None or not full.n_pairs or not measured:
        return None, None
    best = max(measured, key=lambda name: (measured[name], -STATIC_PROBES.index(name)))
    return full.p_acc - measured[best], best


def reversed_answer_change(full_plan: PlannedRun, reversed_plan: PlannedRun) -> AnswerChange:
    """How often the model's answer differs between the full and the reversed run, over items
    whose correct answer flips under reversal and that got a valid answer in both runs."""
    from dybench.metrics import predicted_letter
    from dybench.store import read_predictions

    family = full_plan.dataset.family
    _, full_rows = read_predictions(full_plan.run_dir)
    _, reversed_rows = read_predictions(reversed_plan.run_dir)
    originals = {item.id: item for item in full_plan.dataset.items}
    compared = changed = 0
    for item in reversed_plan.dataset.items:
        original = originals.get(item.id)
        if original is None or original.answer == item.answer:
            continue  # only items whose correct answer flips tell a watching model from a blind one
        if item.id not in full_rows or item.id not in reversed_rows:
            continue
        before = predicted_letter(original, full_rows[item.id], family)
        after = predicted_letter(item, reversed_rows[item.id], family)
        if before is None or after is None:
            continue
        compared += 1
        changed += before != after
    return AnswerChange(rate=changed / compared if compared else None, n_items=compared, n_changed=changed)


def summarise(out: Path, model: str, plans: list[PlannedRun]) -> ProbeSummary:
    """The suite's summary from its finished runs (`plans` as made by `plan_run`, full first)."""
    runs = [probe_run(plan.run_dir, out) for plan in plans]
    by_name = {run.probe: run for run in runs}
    full = by_name.get(FULL)
    static = {name: by_name[name] for name in STATIC_PROBES if name in by_name}
    reliance, best = temporal_reliance(full, static)
    per_category: dict[str, float | None] = {}
    for category, block in (full.per_category if full else {}).items():
        blocks = {name: run.per_category[category] for name, run in static.items() if category in run.per_category}
        per_category[category] = temporal_reliance(block, blocks)[0]
    plan_by_name = {plan.config.probe or FULL: plan for plan in plans}
    change = None
    if FULL in plan_by_name and "reversed" in plan_by_name:
        change = reversed_answer_change(plan_by_name[FULL], plan_by_name["reversed"])
    return ProbeSummary(
        model=model,
        dataset=plans[0].dataset.name,
        data=plans[0].config.dataset.spec,
        static_probes=list(STATIC_PROBES),
        runs=runs,
        temporal_reliance=reliance,
        best_static_probe=best,
        temporal_reliance_per_category=per_category,
        reversed_answer_change=change,
    )


# --- the chart --------------------------------------------------------------------------------


def chart_png(summary: ProbeSummary) -> bytes:
    """Grouped bars: P-Acc of every run (full, then each probe), overall and per category. Drawn
    with usetex off whatever the user's matplotlibrc says, so plot_text's escaping holds (as the
    leaderboard chart in dybench/leaderboard.py is)."""
    import matplotlib

    matplotlib.use("Agg")
    with matplotlib.rc_context({"text.usetex": False}):
        return _draw_chart(summary)


def _draw_chart(summary: ProbeSummary) -> bytes:
    import matplotlib.pyplot as plt
    import numpy as np

    categories = sorted({c for run in summary.runs for c, block in run.per_category.items() if block.n_pairs})
    groups = ["all", *categories]
    n = len(summary.runs)
    width = 0.8 / max(n, 1)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.0 * len(groups) + 0.2 * n * len(groups)) + 2.0, 4.6), dpi=100)
    colours = plt.get_cmap("tab10")
    x = np.arange(len(groups))
    for i, run in enumerate(summary.runs):
        blocks = [run, *[run.per_category.get(c) for c in categories]]
        values = [100 * b.p_acc if b is not None and b.n_pairs and b.p_acc is not None else np.nan for b in blocks]
        bars = ax.bar(x - 0.4 + width * (i + 0.5), np.nan_to_num(values, nan=0.0), width, label=run.probe,
                      color="black" if run.probe == FULL else colours(i % colours.N), edgecolor="black", linewidth=0.4)
        # "n/a": the run has no pairs there (reversed leaves out tasks the table gives no answer for)
        ax.bar_label(bars, labels=["n/a" if np.isnan(v) else f"{v:.0f}" for v in values], fontsize=7, padding=1)
    ax.set_xticks(x)
    ax.set_xticklabels([plot_text(g.replace("_", " ")) for g in groups])
    ax.set_ylabel("P-Acc (%)")
    ax.set_ylim(0, 105)
    reliance = "-" if summary.temporal_reliance is None else f"{100 * summary.temporal_reliance:.1f} points"
    ax.set_title(plot_text(f"{summary.model} on {summary.dataset}: P-Acc under shortcut probes\n")
                 + f"temporal reliance {reliance} (full minus best static probe)", fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", metadata={"Software": None})
    plt.close(fig)
    return buffer.getvalue()
